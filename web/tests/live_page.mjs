// Loads a running pipeline's live page, waits for its charts to draw, reads its figures, waits
// until auto-refresh shows a later micro-batch (without a reload), saves a screenshot, and
// prints what it saw as one JSON line for the Rust test to check. With `once`, it reads the
// page as first drawn and does not wait for a later micro-batch (a run that is caught up).
//   node web/tests/live_page.mjs <page URL> <screenshot path> [once]
import { openBrowser, watchedPage } from "./browser.mjs";

const [url, screenshot, mode] = process.argv.slice(2);
const PATIENCE_MS = 60_000;
const browser = await openBrowser();
try {
  const { page, problems } = await watchedPage(browser);
  await page.goto(url);
  await page.waitForFunction(
    () =>
      document.querySelectorAll(".chart .uplot canvas").length >= 5 &&
      document.querySelectorAll(".output table").length > 0 &&
      document.querySelectorAll("#state tbody tr").length > 0,
    null,
    { timeout: PATIENCE_MS },
  );
  const read = () =>
    page.evaluate(() => ({
      kpis: Object.fromEntries([...document.querySelectorAll("[data-kpi]")].map((k) => [k.dataset.kpi, k.dataset.value])),
      status: document.getElementById("status").textContent,
      pipeline: document.getElementById("pipeline").textContent,
      points: Object.fromEntries([...document.querySelectorAll("[data-chart]")].map((c) => [c.dataset.chart, Number(c.dataset.points)])),
      max: Object.fromEntries([...document.querySelectorAll("[data-chart]")].map((c) => [c.dataset.chart, Number(c.dataset.max)])),
      last: Object.fromEntries([...document.querySelectorAll("[data-chart]")].map((c) => [c.dataset.chart, Number(c.dataset.last)])),
      drawn: [...document.querySelectorAll("[data-chart]")].filter((c) => c.querySelector(".uplot canvas")).map((c) => c.dataset.chart),
      outputs: [...document.querySelectorAll(".output")].map((o) => ({
        output: o.dataset.output,
        columns: [...(o.querySelector("table")?.querySelectorAll("th") ?? [])].map((th) => th.textContent),
        rows: o.querySelectorAll("tbody tr").length,
      })),
      state: [...document.querySelectorAll("#state tbody tr")].map((tr) => ({
        table: tr.dataset.table,
        operator: tr.cells[1].textContent,
      })),
      refreshes: window.quickchatLive.refreshes,
      lastError: window.quickchatLive.lastError,
    }));
  const first = await read();
  if (mode === "once") {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ first, problems }));
  } else {
    await page.evaluate(() => (window.notReloaded = true));
    await page.waitForFunction(
      (epoch) => Number(document.querySelector('[data-kpi="last_epoch"]').dataset.value) > epoch + 2,
      Number(first.kpis.last_epoch),
      { timeout: PATIENCE_MS },
    );
    const later = await read();
    const notReloaded = await page.evaluate(() => window.notReloaded === true);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ first, later, notReloaded, problems }));
  }
} finally {
  await browser.close();
}
