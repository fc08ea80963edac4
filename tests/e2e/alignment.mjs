// Open the token-alignment notebook in JupyterLab (headless Chromium), run it, click a word,
// and record whether the heatmap changed. Usage: node alignment.mjs <notebook url> <artifact dir>
// Writes <artifact dir>/result.json: {ok, error?, errors: [JavaScript errors logged], steps: [...]}.
import { runNotebook } from "./lab.mjs";

const [url, artifacts] = process.argv.slice(2);
await runNotebook(url, artifacts, { width: 1400, height: 1000 }, async (page, step) => {
  const heatmap = page.locator("img.finelip-heatmap");
  await heatmap.waitFor({ state: "visible", timeout: 400000 });
  await page.getByText(/\| Idle/).first().waitFor({ timeout: 120000 });
  step("explorer shown");
  await heatmap.scrollIntoViewIfNeeded();
  const before = await heatmap.getAttribute("src");
  await heatmap.screenshot({ path: `${artifacts}/heatmap_before.png` });
  await page.locator("button.finelip-word-5").click();
  await page.waitForFunction(
    (previous) => document.querySelector("img.finelip-heatmap").getAttribute("src") !== previous,
    before, { timeout: 60000 });
  await page.waitForTimeout(500);
  step("word clicked, heatmap re-rendered");
  await heatmap.screenshot({ path: `${artifacts}/heatmap_after.png` });
  await page.screenshot({ path: `${artifacts}/notebook.png`, fullPage: true });
  return {};
});
