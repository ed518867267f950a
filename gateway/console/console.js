// The console: polls the gateway's /console/api/* JSON every few seconds and redraws.
// No framework and no build step; charts are SVG drawn here.
"use strict";

const POLL_MS = 5000;
const state = { fn: null, range: "hour", timer: null };

async function api(path) {
  const reply = await fetch("api/" + path, { credentials: "same-origin" });
  if (reply.status === 401) { showSignIn(); throw new Error("signed out"); }
  if (!reply.ok) throw new Error(path + ": " + reply.status);
  return reply.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.onclick = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? "-"));
  return node;
}

function table(id, columns, rows, onRow) {
  const t = document.getElementById(id);
  t.tHead.replaceChildren(el("tr", {}, ...columns.map(([title]) => el("th", {}, title))));
  const body = rows.length ? rows.map((row) => {
    const tr = el("tr", onRow ? { class: "clickable" } : {},
      ...columns.map(([, get]) => el("td", {}, get(row))));
    if (onRow) tr.onclick = () => onRow(row);
    return tr;
  }) : [el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "none"))];
  t.tBodies[0].replaceChildren(...body);
}

const when = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
const num = (n) => (n === null || n === undefined ? "-" : n);

// ---- the overview: functions, mappings, workers ---------------------------------------------
async function refreshOverview() {
  const data = await api("overview");
  table("functions-table", [
    ["Name", (f) => f.name], ["Runtime", (f) => f.runtime], ["Handler", (f) => f.handler],
    ["Memory MB", (f) => f.memory_mb], ["Timeout s", (f) => f.timeout_s], ["Pool", (f) => f.pool],
    ["Reserved", (f) => num(f.reserved_concurrency)],
    ["Versions", (f) => f.versions.join(", ") || "-"],
    ["Aliases", (f) => f.aliases.map((a) => a.name + "→" + a.version).join(", ") || "-"],
    ["In flight", (f) => f.in_flight], ["Invocations", (f) => f.invocations],
    ["Errors", (f) => f.errors], ["Throttles", (f) => f.throttles],
  ], data.functions, (f) => selectFunction(f));
  table("mappings-table", [
    ["Id", (m) => m.uuid], ["Function", (m) => m.function], ["Source", (m) => m.source],
    ["State", (m) => m.state], ["Lag s", (m) => num(m.lag_s)], ["Read", (m) => m.read],
    ["Invoked", (m) => m.invoked], ["Failed", (m) => m.failed], ["Last result", (m) => m.last_result],
  ], data.mappings);
  table("workers-table", [
    ["Id", (w) => w.id], ["Host", (w) => w.host], ["Pool", (w) => w.pool],
    ["Slots", (w) => w.slots], ["Busy", (w) => w.busy], ["Warm", (w) => w.warm],
    ["Completed", (w) => w.completed], ["Heartbeat age s", (w) => w.heartbeat_age_s],
  ], data.workers);
  const slots = data.workers.reduce((n, w) => n + w.slots, 0);
  const busy = data.workers.reduce((n, w) => n + w.busy, 0);
  document.getElementById("fleet").textContent =
    `${data.workers.length} workers, ${busy}/${slots} slots busy`;
  if (state.fn) {
    const current = data.functions.find((f) => f.name === state.fn.name);
    if (current) state.fn = current;
  }
  if (!state.fn && data.functions.length) selectFunction(data.functions[0], false);
}

// ---- one function: configuration, charts, recent invocations --------------------------------
function selectFunction(fn, scroll = true) {
  state.fn = fn;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-name").textContent = fn.name;
  refreshDetail();
  if (scroll) document.getElementById("detail").scrollIntoView();
}

async function refreshDetail() {
  const fn = state.fn;
  if (!fn) return;
  const config = document.getElementById("detail-config");
  const shown = { Handler: fn.handler, Runtime: fn.runtime, "Memory (MB)": fn.memory_mb,
    "Timeout (s)": fn.timeout_s, Pool: fn.pool, ARN: fn.arn, "Code SHA-256": fn.code_sha256 };
  config.replaceChildren(...Object.entries(shown).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const range = state.range;
  const [data, recent] = await Promise.all([
    api(`series?function=${encodeURIComponent(fn.name)}&range=${range}`),
    api(`logs?function=${encodeURIComponent(fn.name)}&limit=10`),
  ]);
  // Another function (or range) was chosen meanwhile: its own refresh draws it.
  if (!state.fn || state.fn.name !== fn.name || state.range !== range) return;
  for (const key of ["invocations", "errors", "throttles", "duration"]) {
    const field = key === "duration" ? "duration_ms" : key;
    drawChart(document.getElementById("chart-" + key), data.points, field);
  }
  document.getElementById("invocations").replaceChildren(...(recent.invocations.length
    ? recent.invocations.map((inv) => el("details", {},
        el("summary", {}, `${when(inv.time)}  ${inv.request_id}  (version ${inv.version})`),
        el("pre", { class: "log" }, inv.log)))
    : [el("p", { class: "muted" }, "No invocations yet.")]));
  const first = document.querySelector("#invocations details");
  if (first && !document.querySelector("#invocations details[open]")) first.open = true;
}

function drawChart(svg, points, field) {
  const W = 340, H = 140, L = 34, B = 18, T = 6;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const values = points.map((p) => p[field]).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const x = (i) => L + (i * (W - L - 4)) / Math.max(1, points.length - 1);
  const y = (v) => H - B - ((H - B - T) * v) / max;
  const ns = "http://www.w3.org/2000/svg";
  const shape = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const parts = [
    shape("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }),
    shape("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
  ];
  const label = (text, attrs) => { const t = shape("text", attrs); t.textContent = text; return t; };
  parts.push(label(String(Math.round(max * 100) / 100), { x: 2, y: T + 8 }));
  parts.push(label("0", { x: 2, y: H - B }));
  if (points.length) {
    const fmt = (t) => new Date(t * 1000).toISOString().slice(11, 16);
    parts.push(label(fmt(points[0].t), { x: L, y: H - 4 }));
    parts.push(label(fmt(points[points.length - 1].t), { x: W - 30, y: H - 4 }));
  }
  const coords = points.map((p, i) => (p[field] === null || p[field] === undefined ? null
    : [x(i), y(p[field]), p]));
  const path = coords.filter(Boolean).map(([px, py], i) => `${i ? "L" : "M"}${px},${py}`).join(" ");
  if (path) parts.push(shape("path", { d: path, class: "line" }));
  for (const c of coords) {
    if (!c || !c[2][field]) continue; // a point where something happened
    const dot = shape("circle", { cx: c[0], cy: c[1], r: 2.5, class: "point" });
    const title = shape("title", {});
    title.textContent = `${when(c[2].t)}: ${c[2][field]}`;
    dot.append(title);
    parts.push(dot);
  }
  svg.replaceChildren(...parts);
  svg.dataset.points = String(coords.filter((c) => c && c[2][field]).length);
}

// ---- usage and cost ----------------------------------------------------------------------------
async function refreshUsage() {
  const since = document.getElementById("usage-since").value;
  const arch = document.getElementById("usage-arch").value;
  const data = await api(`usage?since=${since}&arch=${arch}`);
  const u = data.usage, c = data.cost;
  document.getElementById("usage-total").textContent =
    `${u.requests} requests, ${u.errors} errors, ${u.gb_seconds} GB-s ` +
    `(p50 ${num(u.duration_p50_ms)} ms, p99 ${num(u.duration_p99_ms)} ms); ` +
    `on AWS Lambda (${c.architecture}, prices read ${c.prices.read_on}): $${c.lambda_usd.toFixed(4)}; ` +
    `sandboxes busy ${c.fleet.busy_slot_seconds} s`;
  const rows = Object.entries(u.functions).map(([name, f]) => ({ name, ...f,
    usd: (c.functions[name] || { lambda_usd: 0 }).lambda_usd }));
  table("usage-table", [
    ["Function", (r) => r.name], ["Requests", (r) => r.requests], ["Errors", (r) => r.errors],
    ["GB-s", (r) => r.gb_seconds], ["Init GB-s", (r) => r.init_gb_seconds],
    ["p50 ms", (r) => num(r.duration_p50_ms)], ["p99 ms", (r) => num(r.duration_p99_ms)],
    ["Lambda $", (r) => r.usd.toFixed(6)],
  ], rows);
}

// ---- the loop and sign-in ---------------------------------------------------------------------
async function refresh() {
  try {
    await refreshOverview();
    await Promise.all([refreshDetail(), refreshUsage()]);
    document.getElementById("updated").textContent = "updated " + when(Date.now() / 1000) + " UTC";
  } catch (err) {
    document.getElementById("updated").textContent = String(err.message || err);
  }
}

function showSignIn() {
  clearInterval(state.timer);
  document.getElementById("main").hidden = true;
  document.getElementById("signin").hidden = false;
}

function start() {
  document.getElementById("signin").hidden = true;
  document.getElementById("main").hidden = false;
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
}

document.getElementById("signin-form").onsubmit = async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const reply = await fetch("api/login", { method: "POST", credentials: "same-origin",
    body: JSON.stringify({ key_id: form.get("key_id"), secret: form.get("secret") }) });
  if (reply.ok) start();
  else document.getElementById("signin-error").textContent = (await reply.json()).error;
};
for (const button of document.querySelectorAll("button.range")) {
  button.onclick = () => {
    state.range = button.dataset.range;
    document.querySelectorAll("button.range").forEach((b) => b.classList.toggle("selected", b === button));
    refreshDetail();
  };
}
document.getElementById("usage-since").onchange = refreshUsage;
document.getElementById("usage-arch").onchange = refreshUsage;

fetch("api/session", { credentials: "same-origin" }).then((r) => r.json()).then((s) => {
  if (s.signed_in) start(); else showSignIn();
});
