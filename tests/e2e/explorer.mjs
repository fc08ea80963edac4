// Open the ablation explorer notebook in JupyterLab (headless Chromium), run it, change the
// effects table's baseline and brush one parallel axis, and record what the tables showed.
// Usage: node explorer.mjs <notebook url> <artifact dir>
// Writes <artifact dir>/result.json: {ok, error?, errors: [JavaScript errors logged], steps, effects_before,
// effects_after, brush_before, brush_after, rows_before, rows_after}, and screenshots.
import { runNotebook } from "./lab.mjs";

const [url, artifacts] = process.argv.slice(2);
await runNotebook(url, artifacts, { width: 1500, height: 1100 }, async (page, step) => {
  const rows = async () => page.locator(".finelip-settings-table tbody tr").count();
  const effects = page.locator(".finelip-effects");
  await effects.locator("table").first().waitFor({ state: "visible", timeout: 300000 });
  const parallel = page.locator(".finelip-parallel .parcoords");
  await parallel.first().waitFor({ state: "visible", timeout: 120000 });
  await page.getByText(/\| Idle/).first().waitFor({ timeout: 120000 });
  await page.waitForTimeout(1000);
  step("explorer shown");
  await effects.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${artifacts}/explorer_default_view.png` });
  await effects.screenshot({ path: `${artifacts}/effects_before.png` });
  const effectsBefore = await effects.innerText();

  // change the baseline: compare with K = 4 instead of the preset default
  const compare = page.locator(".finelip-compare-with select");
  const options = await compare.locator("option").allTextContents();
  // (ipywidgets writes the options' spaces as non-breaking ones: \s matches both)
  const k4 = options.findIndex((o) => /(^|,\s)atrm_k=4(,|$)/.test(o));
  if (k4 < 0) throw new Error(`no K = 4 setting among the baselines: ${options.slice(0, 5)}`);
  await compare.selectOption({ index: k4 });
  await page.waitForFunction((previous) => document.querySelector(".finelip-effects").innerText !== previous,
                             effectsBefore, { timeout: 60000 });
  await page.waitForTimeout(500);
  step("baseline changed");
  const effectsAfter = await effects.innerText();
  await effects.screenshot({ path: `${artifacts}/effects_after.png` });

  // brush the last parallel axis (the metric) over its top half
  const plot = page.locator(".finelip-parallel").first();
  await plot.scrollIntoViewIfNeeded();
  const status = page.locator(".finelip-brush-status");
  const brushBefore = await status.innerText();
  const rowsBefore = await rows();
  await plot.screenshot({ path: `${artifacts}/parallel_before.png` });
  const backgrounds = page.locator(".finelip-parallel .axis-brush rect.background");
  const count = await backgrounds.count();
  if (count === 0) throw new Error("no brushable parallel axis (rect.background) found");
  const box = await backgrounds.nth(count - 1).boundingBox();
  const x = box.x + box.width / 2;
  await page.mouse.move(x, box.y + box.height * 0.05);
  await page.mouse.down();
  await page.mouse.move(x, box.y + box.height * 0.25, { steps: 8 });
  await page.mouse.move(x, box.y + box.height * 0.45, { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction((previous) => document.querySelector(".finelip-brush-status").innerText !== previous,
                             brushBefore, { timeout: 60000 });
  await page.waitForTimeout(500);
  step("axis brushed");
  const brushAfter = await status.innerText();
  const rowsAfter = await rows();
  await plot.screenshot({ path: `${artifacts}/parallel_brushed.png` });
  await page.locator(".finelip-settings-table").screenshot({ path: `${artifacts}/settings_brushed.png` });
  await page.screenshot({ path: `${artifacts}/notebook.png`, fullPage: true });
  return { effects_before: effectsBefore, effects_after: effectsAfter, brush_before: brushBefore,
           brush_after: brushAfter, rows_before: rowsBefore, rows_after: rowsAfter };
});
