// The shared part of the browser tests: open a notebook in JupyterLab in headless Chromium, wait
// for its kernel, run all cells, hand the page to the test, and write <artifacts>/result.json:
// {ok, error?, errors: [JavaScript errors logged], steps: [{name, seconds}], ...what the test returned}.
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];

export async function runNotebook(url, artifacts, viewport, test) {
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
    page = await browser.newPage({ viewport });
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
    result = { ok: true, ...(await test(page, step)) };
  } catch (error) {
    result = { ok: false, error: String(error) };
    if (page) await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
  } finally {
    await browser.close();
    writeFileSync(`${artifacts}/result.json`, JSON.stringify({ ...result, errors, steps }, null, 2));
  }
}
