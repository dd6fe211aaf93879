// The dashboards page of `quickchat-etl serve`. `/` lists the dashboards; `/dashboards/<name>`
// draws one: each chart's rows come from /api/dashboards/<name>/<chart> (the server runs the
// chart's SQL from its dashboard file); here they are only drawn: uPlot for line, area and bar
// charts, HTML for KPIs, top-N lists and tables. The controls (time range, top N, refresh,
// raw data) start at the dashboard file's defaults and are kept in the address.
"use strict";

const params = new URLSearchParams(location.search);
const state = (window.quickchatDashboard = { name: null, refreshes: 0, errors: 0 });
const plots = {};

const { getJson } = window.quickchatApi;

const element = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
function show(value, unit) {
  if (value == null) return "∅";
  const n = typeof value === "number" ? value : Number(value);
  const text = typeof value !== "boolean" && value !== "" && Number.isFinite(n) ? number.format(n) : typeof value === "object" ? JSON.stringify(value) : String(value);
  return unit ? `${text} ${unit}` : text;
}

// A time as seconds since the epoch (uPlot's x), or null when the value is not a time.
function asTime(value) {
  if (typeof value !== "string" || !/^\d{4}-\d{2}-\d{2}/.test(value)) return null;
  const ms = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value);
  return Number.isNaN(ms) ? null : ms / 1000;
}

const PALETTE = ["#2e6fdb", "#e8590c", "#12805c", "#9c36b5", "#c2255c", "#5c940d", "#1098ad", "#f08c00", "#495057", "#d6336c"];

// Rows into uPlot's columns: x, then one column per y (or per value of `series`).
function toColumns(chart, data) {
  const at = (name) => data.columns.indexOf(name);
  const xs = data.rows.map((row) => row[at(chart.x)]);
  const times = xs.map(asTime);
  const isTime = xs.length > 0 && times.every((t) => t != null);
  const xKeys = [...new Set(isTime ? times : xs)];
  if (isTime) xKeys.sort((a, b) => a - b);
  const index = new Map(xKeys.map((key, i) => [key, i]));
  const names = chart.series ? [...new Set(data.rows.map((row) => String(row[at(chart.series)])))].sort() : chart.y;
  const columns = names.map(() => new Array(xKeys.length).fill(null));
  data.rows.forEach((row, r) => {
    const i = index.get(isTime ? times[r] : xs[r]);
    if (chart.series) {
      columns[names.indexOf(String(row[at(chart.series)]))][i] = Number(row[at(chart.y[0])]);
    } else {
      chart.y.forEach((y, s) => { columns[s][i] = row[at(y)] == null ? null : Number(row[at(y)]); });
    }
  });
  return { isTime, labels: xKeys.map(String), x: isTime ? xKeys : xKeys.map((_, i) => i), names, columns };
}

function drawPlot(figure, chart, data) {
  const { isTime, labels, x, names, columns } = toColumns(chart, data);
  const kind = chart.kind;
  const key = `${names.join("\u0000")}|${isTime}`;
  const bars = kind === "bar" && uPlot.paths?.bars ? uPlot.paths.bars({ size: [0.8, 60] }) : undefined;
  const series = names.map((label, i) => ({
    label,
    stroke: PALETTE[i % PALETTE.length],
    width: kind === "bar" ? 0 : 1.5,
    fill: kind === "area" || kind === "bar" ? `${PALETTE[i % PALETTE.length]}${kind === "bar" ? "cc" : "33"}` : undefined,
    paths: bars,
    points: { show: kind !== "bar" && x.length < 60 },
    spanGaps: true,
    value: (_, v) => show(v, chart.unit),
  }));
  const data2 = [x, ...columns];
  const previous = plots[chart.name];
  if (previous && previous.key === key && previous.figure === figure) {
    previous.plot.setData(data2);
    return;
  }
  previous?.plot.destroy();
  const options = {
    width: Math.max(320, figure.clientWidth - 24),
    height: 240,
    scales: { x: { time: isTime } },
    series: [{ label: chart.x, value: (_, v) => (v == null ? "" : isTime ? new Date(v * 1000).toISOString().replace(".000Z", "Z") : labels[v] ?? "") }, ...series],
    axes: [isTime ? {} : { values: (_, ticks) => ticks.map((t) => labels[t] ?? "") }, { size: 60, values: (_, ticks) => ticks.map((t) => number.format(t)) }],
  };
  const holder = element("div", { className: "plot" });
  figure.querySelector(".body").replaceChildren(holder);
  plots[chart.name] = { key, figure, plot: new uPlot(options, data2, holder) };
}

function rowsTable(data, only) {
  const columns = only?.length ? only : data.columns;
  const table = element("table", { className: "rows" });
  const head = table.createTHead().insertRow();
  for (const column of columns) head.append(element("th", { textContent: column }));
  const body = table.createTBody();
  for (const row of data.rows) {
    const tr = body.insertRow();
    for (const column of columns) tr.insertCell().textContent = show(row[data.columns.indexOf(column)]);
  }
  return table;
}

function drawChart(figure, chart, data) {
  const body = figure.querySelector(".body");
  const at = (name) => data.columns.indexOf(name);
  figure.dataset.rows = String(data.rows.length);
  if (chart.kind === "kpi") {
    const value = data.rows[0]?.[at(chart.value)];
    const kpi = element("div", { className: "kpi", textContent: show(value, chart.unit) });
    kpi.dataset.value = value == null ? "" : String(value);
    body.replaceChildren(kpi);
  } else if (chart.kind === "top") {
    const values = data.rows.map((row) => Number(row[at(chart.value)]) || 0);
    const most = Math.max(1, ...values.map(Math.abs));
    const table = element("table", { className: "top" });
    data.rows.forEach((row, i) => {
      const tr = table.insertRow();
      tr.dataset.label = String(row[at(chart.label)]);
      tr.dataset.value = String(row[at(chart.value)]);
      tr.insertCell().textContent = `${i + 1}. ${show(row[at(chart.label)])}`;
      const bar = tr.insertCell();
      bar.className = "bar";
      bar.append(element("div", { style: `width: ${(100 * Math.abs(values[i])) / most}%` }));
      tr.insertCell().textContent = show(row[at(chart.value)], chart.unit);
    });
    body.replaceChildren(table);
  } else if (chart.kind === "table") {
    body.replaceChildren(rowsTable(data, chart.columns));
  } else if (data.rows.length === 0) {
    plots[chart.name]?.plot.destroy();
    delete plots[chart.name];
    body.replaceChildren(element("p", { className: "note", textContent: "no rows in this time range" }));
  } else {
    drawPlot(figure, chart, data);
  }
  figure.querySelector(".raw").replaceChildren(...(document.getElementById("raw").checked && chart.kind !== "table" ? [rowsTable(data)] : []));
  figure.querySelector(".note-rows").textContent = data.truncated ? `the first ${data.rows.length} rows` : "";
}

function chartQuery(dashboard) {
  const query = new URLSearchParams();
  const range = Number(document.getElementById("range").value);
  if (range) query.set("from", new Date(Date.now() - range * 1000).toISOString());
  query.set("top", document.getElementById("top").value);
  return query.toString();
}

async function refreshCharts(dashboard) {
  const query = chartQuery(dashboard);
  let errors = 0;
  await Promise.all(
    dashboard.charts.map(async (chart) => {
      const figure = document.querySelector(`[data-chart="${chart.name}"]`);
      try {
        const data = await getJson(`/api/dashboards/${encodeURIComponent(dashboard.name)}/${encodeURIComponent(chart.name)}?${query}`);
        drawChart(figure, chart, data);
        figure.dataset.state = "drawn";
      } catch (error) {
        errors += 1;
        plots[chart.name]?.plot.destroy();
        delete plots[chart.name];
        figure.querySelector(".body").replaceChildren(element("p", { className: "error", textContent: error.message }));
        figure.dataset.state = "error";
      }
    }),
  );
  state.errors = errors;
  state.refreshes += 1;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// The controls' values in the address, so that a link shows the same view.
function keepInAddress() {
  const kept = new URLSearchParams(location.search);
  for (const id of ["range", "top", "refresh"]) kept.set(id, document.getElementById(id).value);
  kept.set("raw", document.getElementById("raw").checked ? "1" : "0");
  history.replaceState(null, "", `${location.pathname}?${kept}`);
}

async function showDashboard(name) {
  const dashboard = await getJson(`/api/dashboards/${encodeURIComponent(name)}`);
  state.name = name;
  document.title = `${dashboard.title} · quickchat-etl`;
  document.getElementById("title").textContent = dashboard.title;
  document.getElementById("description").textContent = dashboard.description;
  const pick = (id, value) => {
    const control = document.getElementById(id);
    if (value != null && [...(control.options ?? [])].every((o) => o.value !== String(value)) && control.tagName === "SELECT") {
      control.append(element("option", { value: String(value), textContent: `${value} s` }));
    }
    control.value = String(value ?? "");
  };
  pick("range", params.get("range") ?? (dashboard.range_seconds ?? ""));
  pick("refresh", params.get("refresh") ?? (dashboard.refresh_seconds ?? ""));
  pick("top", params.get("top") ?? dashboard.top);
  document.getElementById("top-value").textContent = document.getElementById("top").value;
  document.getElementById("raw").checked = params.get("raw") === "1";
  document.getElementById("controls").hidden = false;

  const grid = element("section", { className: "grid" });
  for (const chart of dashboard.charts) {
    const figure = element(
      "figure",
      { className: "chart" },
      element("figcaption", { textContent: chart.title }),
      element("div", { className: "body" }),
      element("p", { className: "note note-rows" }),
      element("div", { className: "raw" }),
    );
    figure.dataset.chart = chart.name;
    figure.dataset.kind = chart.kind;
    grid.append(figure);
  }
  document.getElementById("main").replaceChildren(grid);

  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    const every = Number(document.getElementById("refresh").value);
    if (every) timer = setTimeout(async () => { await refreshCharts(dashboard); schedule(); }, every * 1000);
  };
  const changed = async () => {
    document.getElementById("top-value").textContent = document.getElementById("top").value;
    keepInAddress();
    await refreshCharts(dashboard);
    schedule();
  };
  for (const id of ["range", "top", "refresh", "raw"]) document.getElementById(id).addEventListener("change", changed);
  await refreshCharts(dashboard);
  schedule();
}

async function showList() {
  const dashboards = await getJson("/api/dashboards");
  const list = element("section", { className: "list" });
  for (const d of dashboards) {
    const link = element("a", { href: `/dashboards/${encodeURIComponent(d.name)}` }, element("strong", { textContent: d.title }), d.description, ` (${d.charts} charts)`);
    link.dataset.dashboard = d.name;
    list.append(link);
  }
  document.getElementById("main").replaceChildren(list);
  state.refreshes += 1;
}

const name = decodeURIComponent(location.pathname.match(/^\/dashboards\/([^/]+)/)?.[1] ?? "");
(name ? showDashboard(name) : showList()).catch((error) => {
  document.getElementById("main").replaceChildren(element("p", { className: "error", textContent: error.message }));
  state.errors += 1;
});
