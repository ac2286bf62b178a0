// orderlake dashboard: polls the JSON endpoints and draws the two figures as SVG bars.
// Vanilla JS, no library: the page must work on a machine without internet access.
"use strict";

const REFRESH_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const STATUSES = ["final", "provisional"];

// --- small DOM helpers (text goes through textContent: table values are never HTML) ----------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
}

const count = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const percent = (share) => `${(100 * share).toFixed(1)}%`;
const fixed = (n, digits) => (n === null || n === undefined ? "—" : Number(n).toFixed(digits));

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  return response.json();
}

function badge(kind, text) {
  return el("span", { class: `badge ${kind}` }, text);
}

function noData(panel, answer) {
  const note = panel.querySelector(".nodata");
  note.hidden = false;
  note.replaceChildren("no data yet", answer && answer.reason ? el("span", { class: "reason" }, ` (${answer.reason})`) : "");
}

// --- figures -----------------------------------------------------------------------------------
// One stacked bar per label: final orders below, provisional above. mode "orders" plots order
// counts (age), mode "share" plots the share of all orders in % (gender).
function barChart(fig, mode) {
  const left = 52, right = 10, top = 34, bottom = 40, height = 300;
  const width = Math.max(360, 72 * fig.labels.length + left + right);
  const total = fig.totals.all || 1;
  const value = (orders) => (mode === "share" ? (100 * orders) / total : orders);
  const stacks = fig.labels.map((_, i) => value(fig.orders.all[i]));
  const ticks = niceTicks(Math.max(...stacks), mode === "share" ? 0.1 : 1);
  const max = ticks[ticks.length - 1];
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const step = (width - left - right) / fig.labels.length;
  const barWidth = Math.min(step * 0.7, 80);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-figure": fig.column });

  for (const tick of ticks) {
    chart.append(
      svg("line", { class: "axis", x1: left, x2: width - right, y1: y(tick), y2: y(tick), "stroke-dasharray": tick ? "2,3" : null }),
      svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" },
        mode === "share" ? `${+tick.toFixed(1)}%` : count(tick)),
    );
  }
  fig.labels.forEach((label, i) => {
    const x = left + i * step + (step - barWidth) / 2;
    let base = 0;
    for (const status of STATUSES) {
      const orders = fig.orders[status] ? fig.orders[status][i] : 0;
      if (!orders) continue;
      const h = value(orders);
      chart.append(
        svg("rect", { class: `bar ${status}`, x, width: barWidth, y: y(base + h), height: y(base) - y(base + h), "data-label": label, "data-status": status },
          svg("title", {}, `${label}, ${status}: ${count(orders)} orders`)),
      );
      base += h;
    }
    chart.append(
      svg("text", { x: x + barWidth / 2, y: y(base) - 16, "text-anchor": "middle", class: "share", "data-label": label },
        percent(fig.shares.all[i])),
      svg("text", { x: x + barWidth / 2, y: y(base) - 4, "text-anchor": "middle", class: "orders", "data-label": label },
        count(fig.orders.all[i])),
      svg("text", { x: x + barWidth / 2, y: height - bottom + 16, "text-anchor": "middle" }, label),
    );
  });
  return chart;
}

// 0 and about four round steps (1, 2, 2.5 or 5 times a power of ten) up to at least max.
function niceTicks(max, smallest) {
  const raw = Math.max(max, smallest) / 4;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(smallest, [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw));
  const ticks = [0];
  while (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
  return ticks.length > 1 ? ticks : [0, step];
}

function legend() {
  return el("p", { class: "legend" },
    ...STATUSES.flatMap((s) => [el("span", { class: `swatch ${s}` }), s]));
}

// The numbers behind a chart: orders per status, all orders, share of all.
function figureTable(name, fig) {
  const head = el("tr", {}, el("th", {}, fig.column === "gender" ? "gender" : "age bracket"),
    ...STATUSES.map((s) => el("th", {}, s)), el("th", {}, "orders"), el("th", {}, "share"));
  const cell = (label, field, text) => el("td", { "data-figure": name, "data-label": label, "data-field": field }, text);
  const rows = fig.labels.map((label, i) => el("tr", {},
    el("td", {}, label),
    ...STATUSES.map((s) => cell(label, s, count(fig.orders[s] ? fig.orders[s][i] : 0))),
    cell(label, "orders", count(fig.orders.all[i])),
    cell(label, "share", percent(fig.shares.all[i]))));
  const total = el("tr", { class: "total" }, el("th", {}, "total"),
    ...STATUSES.map((s) => el("th", {}, count(fig.totals[s] || 0))),
    el("th", { "data-figure": name, "data-field": "total" }, count(fig.totals.all)), el("th", {}, "100%"));
  return [el("thead", {}, head), el("tbody", {}, ...rows), el("tfoot", {}, total)];
}

function drawFigure(name, answer) {
  const panel = document.getElementById(`${name}-panel`);
  const chart = document.getElementById(`${name}-chart`);
  const table = document.getElementById(`${name}-table`);
  if (!answer.ok) {
    noData(panel, answer);
    chart.replaceChildren();
    table.replaceChildren();
    return;
  }
  panel.querySelector(".nodata").hidden = true;
  chart.replaceChildren(barChart(answer[name], name === "gender" ? "share" : "orders"), legend());
  table.replaceChildren(...figureTable(name, answer[name]));
}

async function refreshFigures() {
  const answer = await getJSON("/api/figures");
  drawFigure("age", answer);
  drawFigure("gender", answer);
  const range = document.getElementById("range");
  range.textContent = answer.ok ? `data: ${answer.title}` : "no data yet";
  const stale = answer.ok ? Object.values(answer.stale || {}) : [];
  range.title = stale.join("\n");
}

// --- pipeline health ---------------------------------------------------------------------------
function drawHealth(answer) {
  const panel = document.getElementById("health");
  const table = document.getElementById("components");
  if (!answer.ok) {
    noData(panel, { reason: answer.message });
    table.replaceChildren();
    return;
  }
  panel.querySelector(".nodata").hidden = true;
  const s = answer.speed || {};
  const item = (term, value, key) => el("div", {}, el("dt", {}, term), el("dd", { "data-speed": key }, value));
  document.getElementById("speed").replaceChildren(
    item("events/s", fixed(s.events_per_s, 1), "events_per_s"),
    item("processed/s", fixed(s.processed_per_s, 1), "processed_per_s"),
    item("last micro-batch", s.batch_duration_ms == null ? "—" : `${count(s.batch_duration_ms)} ms`, "batch_duration_ms"),
    item("latency (Kafka → lake)", s.latency_s == null ? "—" : `${fixed(s.latency_s, 1)} s`, "latency_s"),
    item("Kafka lag", s.kafka_lag == null ? "—" : `${count(s.kafka_lag)} records`, "kafka_lag"),
    item("speed query", s.query_state || "—", "query_state"),
  );
  const head = el("tr", {}, ...["component", "", "state", "pid", "uptime", "free disk", "address", "warnings"].map((h) => el("th", {}, h)));
  const rows = answer.components.map((c) => el("tr", { "data-component": c.name },
    el("td", {}, c.name),
    el("td", {}, badge(c.up ? "up" : "down", c.up ? "up" : "down")),
    el("td", {}, c.state),
    el("td", {}, c.pid == null ? "—" : String(c.pid)),
    el("td", {}, c.uptime_s == null ? "—" : `${count(c.uptime_s)} s`),
    el("td", {}, c.free_gb == null ? "—" : `${fixed(c.free_gb, 1)} GiB`),
    el("td", {}, c.address || ""),
    el("td", { class: (c.warnings || []).length ? "warning" : "" }, (c.warnings || []).join("; "))));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

async function refreshHealth() {
  drawHealth(await getJSON("/api/health"));
}

// --- checks ------------------------------------------------------------------------------------
function checkTable(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function drawReconciliation(run) {
  const body = document.querySelector("#reconciliation .body");
  if (!run.ok) {
    body.replaceChildren(el("p", { class: "nodata" }, "no data yet", el("span", { class: "reason" }, ` (${run.reason})`)));
    return;
  }
  const rows = run.checks.map((c) => el("tr", { "data-check": c.check },
    el("td", {}, c.check), el("td", {}, badge(c.status, c.status)),
    el("td", {}, `${c.ok} / ${c.explained} / ${c.failed}`),
    el("td", {}, count(c.expected)), el("td", {}, count(c.actual)),
    el("td", {}, count(c.difference)), el("td", {}, count(c.explained_rows))));
  body.replaceChildren(
    el("p", {}, badge(run.status, run.status), ` run ${run.run_id} at ${run.checked_at}`),
    checkTable(["check", "", "scopes ok / explained / failed", "expected", "actual", "difference", "explained"], rows));
}

function drawValidation(run) {
  const body = document.querySelector("#validation .body");
  if (!run.ok) {
    body.replaceChildren(el("p", { class: "nodata" }, "no data yet", el("span", { class: "reason" }, ` (${run.reason})`)));
    return;
  }
  const rows = run.suites.map((s) => el("tr", { "data-suite": s.suite },
    el("td", {}, s.suite), el("td", {}, badge(s.success ? "ok" : "failed", s.success ? "passed" : "failed")),
    el("td", {}, s.table_name), el("td", {}, s.table_version == null ? "—" : String(s.table_version)),
    el("td", {}, `${s.expectations - s.failed} / ${s.expectations}`),
    el("td", { title: s.failed_expectations.join("\n") }, s.failed_expectations.slice(0, 3).join(", ")),
    el("td", {}, s.data_docs_url ? el("a", { href: s.data_docs_url }, "Data Docs") : "")));
  body.replaceChildren(
    el("p", {}, badge(run.success ? "ok" : "failed", run.success ? "passed" : "failed"), ` run ${run.run_id} at ${run.validated_at}`),
    checkTable(["suite", "", "table", "version", "passed", "failed expectations", ""], rows));
}

async function refreshChecks() {
  const answer = await getJSON("/api/checks");
  drawReconciliation(answer.reconciliation);
  drawValidation(answer.validation);
  document.getElementById("reconcile-link").href = answer.reconciliation_url;
  document.getElementById("validate-link").href = answer.validation_url;
  const docs = document.getElementById("data-docs-link");
  docs.href = answer.data_docs_url;
  docs.title = answer.data_docs_present ? "" : "no Data Docs yet: they appear after a validation";
}

// --- refresh loop ------------------------------------------------------------------------------
let refreshes = 0;

async function refresh() {
  const results = await Promise.allSettled([refreshFigures(), refreshHealth(), refreshChecks()]);
  const failed = results.filter((r) => r.status === "rejected");
  refreshes += 1;
  document.getElementById("updated").textContent = failed.length
    ? `dashboard server unreachable at ${new Date().toLocaleTimeString()}`
    : `refreshed ${new Date().toLocaleTimeString()} (every ${REFRESH_MS / 1000} s)`;
  document.body.dataset.refreshes = String(refreshes);
  document.body.dataset.state = failed.length ? "error" : "ready";
}

// chained rather than setInterval: a slow answer never stacks refreshes on top of each other
async function loop() {
  await refresh();
  setTimeout(loop, REFRESH_MS);
}

loop();
