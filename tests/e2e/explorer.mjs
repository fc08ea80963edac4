// Open the ablation explorer notebook in JupyterLab (headless Chromium), run it, change the
// effects table's baseline and brush one parallel axis, and record what the tables showed.
// Usage: node explorer.mjs <notebook url> <artifact dir>
// Writes <artifact dir>/result.json: {ok, error?, errors: [JavaScript errors logged], steps, effects_before,
// effects_after, brush_before, brush_after, rows_before, rows_after}, and screenshots.
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, artifacts] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const errors = [];
const steps = [];
const started = Date.now();
const step = (name) => steps.push({ name, seconds: (Date.now() - started) / 1000 });
let result = { ok: false };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
  args: FLAGS,
  headless: true,
});
let page;
const rows = async () => page.locator(".finelip-settings-table tbody tr").count();
try {
  page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console.error: ${message.text()}`);
  });
  await page.goto(url);
  await page.locator(".jp-Notebook").first().waitFor({ timeout: 90000 });
  step("notebook open");
  await page.getByText(/\| Idle/).first().waitFor({ timeout: 120000 });
  step("kernel idle");
  const news = page.getByRole("button", { name: "No", exact: true });
  if (await news.count()) await news.first().click();
  await page.getByRole("menuitem", { name: "Run", exact: true }).click();
  await page.getByRole("menuitem", { name: /^Run All Cells/ }).click();
  step("run all");
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
  result = { ok: true, effects_before: effectsBefore, effects_after: effectsAfter, brush_before: brushBefore,
             brush_after: brushAfter, rows_before: rowsBefore, rows_after: rowsAfter };
} catch (error) {
  result = { ok: false, error: String(error) };
  if (page) await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
  writeFileSync(`${artifacts}/result.json`, JSON.stringify({ ...result, errors, steps }, null, 2));
}
