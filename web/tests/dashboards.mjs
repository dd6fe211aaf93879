// Opens `serve`'s list page and each named dashboard, waits for every chart to draw (or show
// its error), reads what each chart shows, saves a screenshot per dashboard; then keeps the
// dashboard `watch` open with auto-refresh and waits until its KPI `watchChart` shows another
// value than at first (the test feeds the lake meanwhile: it starts once `<dir>/watching`
// appears). Prints what it saw as one JSON line.
//   node web/tests/dashboards.mjs <base URL> <screenshot dir> <watch> <watchChart> <names...>
import { writeFileSync } from "node:fs";
import { openBrowser, watchedPage } from "./browser.mjs";

const [base, dir, watch, watchChart, ...names] = process.argv.slice(2);
const PATIENCE_MS = 90_000;
const browser = await openBrowser();

const readCharts = (page) =>
  page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll("[data-chart]")].map((figure) => [
        figure.dataset.chart,
        {
          kind: figure.dataset.kind,
          state: figure.dataset.state,
          rows: Number(figure.dataset.rows ?? 0),
          canvas: figure.querySelectorAll("canvas").length,
          kpi: figure.querySelector(".kpi")?.dataset.value ?? null,
          top: [...figure.querySelectorAll(".top tr")].map((tr) => [tr.dataset.label, tr.dataset.value]),
          error: figure.querySelector(".error")?.textContent ?? null,
        },
      ]),
    ),
  );

const allDrawn = () =>
  window.quickchatDashboard.refreshes > 0 &&
  [...document.querySelectorAll("[data-chart]")].every((f) => f.dataset.state);

try {
  const { page, problems } = await watchedPage(browser);
  await page.goto(`${base}/`);
  await page.waitForFunction(() => window.quickchatDashboard.refreshes > 0, null, { timeout: PATIENCE_MS });
  const listed = await page.$$eval("[data-dashboard]", (links) => links.map((a) => a.dataset.dashboard));

  const dashboards = {};
  for (const name of names) {
    await page.goto(`${base}/dashboards/${name}?top=5`);
    await page.waitForFunction(allDrawn, null, { timeout: PATIENCE_MS });
    dashboards[name] = await readCharts(page);
    await page.screenshot({ path: `${dir}/dashboard-${name}.png`, fullPage: true });
  }

  await page.goto(`${base}/dashboards/${watch}?refresh=5`);
  await page.waitForFunction(allDrawn, null, { timeout: PATIENCE_MS });
  await page.evaluate(() => (window.notReloaded = true));
  const kpi = (chart) => document.querySelector(`[data-chart="${chart}"] .kpi`)?.dataset.value;
  const first = await page.evaluate(kpi, watchChart);
  writeFileSync(`${dir}/watching`, String(first));
  await page.waitForFunction(([chart, before]) => {
    const now = document.querySelector(`[data-chart="${chart}"] .kpi`)?.dataset.value;
    return now != null && now !== before;
  }, [watchChart, first], { timeout: PATIENCE_MS });
  const later = await page.evaluate(kpi, watchChart);
  const notReloaded = await page.evaluate(() => window.notReloaded === true);
  console.log(JSON.stringify({ listed, dashboards, watched: { first, later, notReloaded }, problems }));
} finally {
  await browser.close();
}
