// Open the token-alignment notebook in JupyterLab (headless Chromium), run it, click a word,
// and record whether the heatmap changed. Usage: node alignment.mjs <notebook url> <artifact dir>
// Writes <artifact dir>/result.json: {ok, error?, errors: [JavaScript errors logged], steps: [...]}.
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
try {
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console.error: ${message.text()}`);
  });
  await page.goto(url);
  await page.locator(".jp-Notebook").first().waitFor({ timeout: 90000 });
  step("notebook open");
  // The toolbar can read idle while the kernel still starts: wait for the status bar's text.
  await page.getByText(/\| Idle/).first().waitFor({ timeout: 120000 });
  step("kernel idle");
  const news = page.getByRole("button", { name: "No", exact: true });
  if (await news.count()) await news.first().click();
  await page.getByRole("menuitem", { name: "Run", exact: true }).click();
  await page.getByRole("menuitem", { name: /^Run All Cells/ }).click();
  step("run all");
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
  result = { ok: true };
} catch (error) {
  result = { ok: false, error: String(error) };
  if (page) await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
  writeFileSync(`${artifacts}/result.json`, JSON.stringify({ ...result, errors, steps }, null, 2));
}
