// The live pipeline page: polls /api/status, /api/progress (the micro-batches it has not seen),
// /api/state and /api/latest/<output> every few seconds and redraws its figures, charts
// (uPlot) and tables in place, without reloading.
// Everything shown comes from those endpoints; nothing is computed here but differences of
// what they return (lag = latest offset - end offset, watermark delay = commit time - watermark).
"use strict";

const params = new URLSearchParams(location.search);
const REFRESH_SECONDS = Math.max(1, Number(params.get("refresh")) || 2);
// How far back the charts go: the page keeps what it polled for this long (the server keeps
// the last 100 micro-batches).
const HISTORY_MINUTES = Math.max(1, Number(params.get("minutes")) || 10);
// Where the page was loaded from, so that it works behind a path prefix too.
const BASE = location.pathname.replace(/[^/]*$/, "");

const live = (window.quickchatLive = { refreshes: 0, lastError: null });
const charts = {};
const history = new Map(); // batch_id -> progress, of the pipeline shown
let newestBatch = null; // the newest batch id in the history: only newer ones are asked for
let drawnBatch; // the newest batch id when the charts and tables were last drawn

const getJson = (path) => window.quickchatApi.getJson(BASE + path);

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${decimal.format(n)} ${units[i]}`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

// A figure: its raw value in data-value (what tests read), its text formatted.
function setKpi(name, value, format = integer.format) {
  const element = document.querySelector(`[data-kpi="${name}"]`);
  element.dataset.value = value == null ? "" : String(value);
  element.querySelector(".value").textContent = value == null ? "–" : format(value);
}

const seconds = (rfc3339) => Date.parse(rfc3339) / 1000;
const sum = (values) => values.reduce((a, b) => a + b, 0);

// Per source, the records its partitions hold that were not read yet (null: the input does
// not tell where its end is).
function lagBySource(batch) {
  const lag = {};
  for (const source of batch.sources) {
    const partitions = Object.keys(source.latest_offset);
    if (partitions.length === 0) continue;
    lag[source.name] = sum(partitions.map((p) => Math.max(0, source.latest_offset[p] - (source.end_offset[p] ?? 0))));
  }
  return lag;
}

function watermarkDelayBySource(batch) {
  const delay = {};
  for (const source of batch.sources) {
    if (source.watermark) delay[source.name] = Math.max(0, seconds(batch.timestamp) - seconds(source.watermark));
  }
  return delay;
}

// Series named by the keys `pick` returns for each micro-batch.
function keyedSeries(progress, pick) {
  const picked = progress.map(pick);
  const names = [...new Set(picked.flatMap((values) => Object.keys(values)))].sort();
  return { names, columns: names.map((name) => picked.map((values) => values[name] ?? null)) };
}

const PALETTE = ["#2e6fdb", "#e8590c", "#12805c", "#9c36b5", "#c2255c", "#5c940d", "#1098ad", "#f08c00"];

// Draws (or redraws with new data) the chart `name`: x = commit times, one line per series.
function draw(name, times, series) {
  const figure = document.querySelector(`[data-chart="${name}"]`);
  figure.dataset.points = String(times.length);
  const key = series.names.join("\u0000");
  let chart = charts[name];
  if (series.names.length === 0 || times.length === 0) {
    if (chart) { chart.plot.destroy(); delete charts[name]; }
    if (!figure.querySelector(".empty")) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = name === "lag" ? "no Kafka offsets to compare (the input is not Kafka)" : "nothing yet";
      figure.append(empty);
    }
    return;
  }
  figure.querySelector(".empty")?.remove();
  // What the chart shows, for the browser tests: its highest point, and its last points' sum.
  const values = (column) => column.filter((v) => v != null);
  figure.dataset.max = String(Math.max(...series.columns.flatMap(values)));
  figure.dataset.last = String(sum(series.columns.map((column) => column[column.length - 1] ?? 0)));
  const data = [times, ...series.columns];
  if (chart && chart.key === key) {
    chart.plot.setData(data);
    return;
  }
  chart?.plot.destroy();
  const options = {
    width: Math.max(300, figure.clientWidth - 16),
    height: 220,
    series: [{}, ...series.names.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true }))],
    axes: [{}, { size: 60 }],
    legend: { live: true },
  };
  charts[name] = { key, plot: new uPlot(options, data, figure) };
}

function renderTable(title, table) {
  const wrapper = document.createElement("div");
  const heading = document.createElement("h3");
  heading.textContent = `${title} (${table.rows.length} rows)`;
  wrapper.append(heading);
  if (table.rows.length === 0) return wrapper;
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  for (const column of table.columns) head.append(Object.assign(document.createElement("th"), { textContent: column }));
  const body = element.createTBody();
  for (const row of table.rows) {
    const tr = body.insertRow();
    for (const column of table.columns) {
      const value = row[column];
      tr.insertCell().textContent = value == null ? "∅" : typeof value === "object" ? JSON.stringify(value) : String(value);
    }
  }
  wrapper.append(element);
  return wrapper;
}

function renderOutputs(latest, stateful) {
  const section = document.getElementById("outputs");
  const parts = [Object.assign(document.createElement("h2"), { textContent: "Outputs: latest rows" })];
  for (const output of latest) {
    const box = document.createElement("div");
    box.className = "output";
    box.dataset.output = output.output;
    box.append(Object.assign(document.createElement("h2"), { textContent: `${output.output} · micro-batch ${output.batch_id}` }));
    const stateless = stateful ? !stateful.has(output.output) : JSON.stringify(output.changed) === JSON.stringify(output.emitted);
    if (stateless) {
      // A stateless output: what changed is what it emitted.
      box.append(renderTable("last rows written", output.emitted));
    } else {
      box.append(renderTable("last changed (open windows and groups, current values)", output.changed));
      box.append(renderTable("last emitted (final rows)", output.emitted));
    }
    parts.push(box);
  }
  section.replaceChildren(...parts);
}

function renderState(listed) {
  const body = document.querySelector("#state tbody");
  const rows = (listed?.tables ?? []).map((table) => {
    const tr = document.createElement("tr");
    tr.dataset.table = table.name;
    const link = Object.assign(document.createElement("a"), {
      href: `api/state/${encodeURIComponent(table.name)}`,
      textContent: table.name,
    });
    tr.insertCell().append(link);
    tr.insertCell().textContent = table.operator;
    tr.insertCell().textContent = integer.format(table.state_rows);
    tr.insertCell().textContent = bytes(table.state_bytes);
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("attach-url").textContent = location.origin + BASE.replace(/\/$/, "");
}

function showStatus(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = `status ${text}`;
}

async function refresh() {
  const status = await getJson("api/status");
  const pipeline = status.pipelines[0];
  if (!pipeline) throw new Error("this process runs no pipeline");
  // A checkpoint reset starts the batch ids again: start the history again too.
  if (newestBatch !== null && (pipeline.last_epoch ?? 0) < newestBatch) {
    history.clear();
    newestBatch = null;
  }
  const query = newestBatch === null ? "last=100" : `since=${newestBatch}`;
  for (const batch of await getJson(`api/progress?${query}`)) {
    if (batch.pipeline !== pipeline.name) continue;
    history.set(batch.batch_id, batch);
    newestBatch = Math.max(newestBatch ?? 0, batch.batch_id);
  }
  const since = Date.now() / 1000 - HISTORY_MINUTES * 60;
  for (const [id, batch] of history) if (seconds(batch.timestamp) < since) history.delete(id);
  const progress = [...history.values()].sort((a, b) => a.batch_id - b.batch_id);
  // The outputs' rows and the state change only with a micro-batch: asked for again then.
  const changed = newestBatch !== drawnBatch;
  const latest = changed
    ? await Promise.all(
        pipeline.outputs.map((output) => getJson(`api/latest/${encodeURIComponent(output)}`).catch(() => null)),
      )
    : null;
  // Answered by the engine between micro-batches; a busy or ended run leaves the last list.
  const state = changed ? await getJson("api/state").catch(() => undefined) : undefined;

  document.getElementById("pipeline").textContent = pipeline.name;
  document.title = `${pipeline.name} · quickchat-etl`;
  showStatus(pipeline.status);
  document.getElementById("about").textContent =
    `quickchat-etl ${status.version} · started ${new Date(status.started_at).toLocaleString()}` +
    (pipeline.last_commit ? ` · last commit ${new Date(pipeline.last_commit).toLocaleTimeString()}` : "");
  setKpi("uptime", status.uptime_seconds, duration);
  setKpi("last_epoch", pipeline.last_epoch);
  setKpi("records_read", pipeline.records_read);
  setKpi("late", pipeline.late);
  setKpi("quarantined", pipeline.quarantined);
  setKpi("state_rows", pipeline.state_rows);
  setKpi("state_bytes", pipeline.state_bytes, bytes);
  setKpi("retries", sum(status.retries.map((r) => r.count)));
  const last = progress[progress.length - 1];
  setKpi("input_rate", last?.input_rows_per_second);
  setKpi("processing_rate", last?.processed_rows_per_second);
  setKpi("batch_ms", last?.duration_ms.total, decimal.format);
  const lastLag = last ? Object.values(lagBySource(last)) : [];
  setKpi("lag", lastLag.length ? sum(lastLag) : null);
  const lastDelay = last ? Object.values(watermarkDelayBySource(last)) : [];
  setKpi("watermark_delay", lastDelay.length ? Math.max(...lastDelay) : null, decimal.format);

  if (!changed) return;
  drawnBatch = newestBatch;
  const times = progress.map((p) => seconds(p.timestamp));
  draw("rates", times, keyedSeries(progress, (p) => ({ input: p.input_rows_per_second, processed: p.processed_rows_per_second })));
  draw("duration", times, keyedSeries(progress, (p) => ({ total: p.duration_ms.total })));
  draw("lag", times, keyedSeries(progress, lagBySource));
  draw("watermark", times, keyedSeries(progress, watermarkDelayBySource));
  draw("state", times, keyedSeries(progress, (p) => Object.fromEntries(p.state_operators.map((o) => [o.operator, o.rows]))));
  draw("refused", times, keyedSeries(progress, (p) => ({
    late: sum(p.sources.map((s) => s.late_rows)),
    duplicate: sum(p.sources.map((s) => s.duplicate_rows)),
    quarantined: sum(p.sources.map((s) => s.quarantined_rows)),
  })));
  if (state !== undefined) renderState(state);
  // Outputs with state have open rows and final rows; the others only the rows they wrote.
  const stateful = state ? new Set(state.tables.map((t) => t.name)) : null;
  renderOutputs(latest.filter(Boolean), stateful);
}

async function loop() {
  const problem = document.getElementById("problem");
  try {
    await refresh();
    problem.hidden = true;
    live.lastError = null;
  } catch (error) {
    // The run ended or the network is away: say so and keep trying.
    showStatus("unreachable");
    problem.textContent = `cannot refresh: ${error.message}`;
    problem.hidden = false;
    live.lastError = error.message;
  }
  live.refreshes += 1;
  setTimeout(loop, REFRESH_SECONDS * 1000);
}

document.getElementById("refresh").textContent = String(REFRESH_SECONDS);
document.getElementById("minutes").textContent = String(HISTORY_MINUTES);
loop();
