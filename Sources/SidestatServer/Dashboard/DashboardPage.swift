//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The dashboard's one page: HTML, with its CSS and JavaScript served beside it (`/dashboard.css`, `/dashboard.js`:
/// nothing inline, so that the port's Content-Security-Policy can allow this origin's files alone), and nothing
/// fetched from elsewhere (it works offline). It asks `/api/keys` for a page of rows with sparklines (at most 200 at
/// a time, so 10,000 keys stay quick), `/api/series` for the selected row's hour, and `/api/health`, again after
/// every flush.
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sidestat</title>
<link rel="stylesheet" href="/dashboard.css">
</head>
<body>
<header>
  <h1>Sidestat</h1>
  <input id="search" type="search" placeholder="Search keys" autocomplete="off">
  <span id="status" class="muted">waiting for the first flush…</span>
  <span id="health"></span>
  <button id="theme" title="Light or dark">◐</button>
</header>
<main>
  <div>
    <section><h2>Metrics</h2><div id="user"></div></section>
    <section class="below"><h2>Dyno: processes and memory</h2><div id="dyno"></div></section>
    <section class="below"><h2>statsd</h2><div id="statsd"></div></section>
  </div>
  <section id="chart">
    <div id="chart-title" class="muted">Select a key</div>
    <div id="chart-summary" class="muted"></div>
    <svg id="chart-svg" viewBox="0 0 800 260" preserveAspectRatio="none"></svg>
  </section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
"""#

    static let css = #"""
:root { --bg:#fafafa; --fg:#1d232a; --muted:#69727d; --panel:#ffffff; --line:#e3e6ea; --accent:#2563eb;
        --band:rgba(37,99,235,.15); --p90:#7c3aed; --bad:#dc2626; --ok:#16a34a; }
[data-theme=dark] { --bg:#0f1419; --fg:#e6e9ed; --muted:#8b949e; --panel:#161b22; --line:#2a313a; --accent:#60a5fa;
        --band:rgba(96,165,250,.18); --p90:#a78bfa; --bad:#f87171; --ok:#4ade80; }
* { box-sizing:border-box }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif; background:var(--bg); color:var(--fg) }
header { display:flex; gap:16px; align-items:center; padding:10px 16px; border-bottom:1px solid var(--line);
        background:var(--panel); position:sticky; top:0; z-index:1; flex-wrap:wrap }
header h1 { font-size:16px; margin:0 }
#status, .muted { color:var(--muted) }
#health { display:flex; gap:8px; flex-wrap:wrap }
.chip { border:1px solid var(--line); border-radius:10px; padding:1px 8px; font-size:12px }
.chip.bad { color:var(--bad); border-color:var(--bad) } .chip.ok { color:var(--ok) }
#search { flex:1; min-width:180px; max-width:420px; padding:6px 10px; border:1px solid var(--line); border-radius:6px;
        background:var(--bg); color:var(--fg) }
button { background:none; border:1px solid var(--line); color:var(--fg); border-radius:6px; padding:4px 10px; cursor:pointer }
main { display:grid; grid-template-columns:minmax(320px,1fr) minmax(360px,1.3fr); gap:16px; padding:16px }
@media (max-width:900px) { main { grid-template-columns:1fr } }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; overflow:hidden }
section h2 { font-size:13px; margin:0; padding:8px 12px; border-bottom:1px solid var(--line); color:var(--muted);
        font-weight:600; text-transform:uppercase; letter-spacing:.04em }
.row { display:grid; grid-template-columns:1fr auto 90px 120px; gap:8px; align-items:center; padding:5px 12px;
        border-bottom:1px solid var(--line); cursor:pointer }
.row:hover, .row.selected { background:var(--band) }
.name { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; font-family:ui-monospace,monospace; font-size:13px }
.kind { font-size:11px; color:var(--muted) } .last { text-align:right; font-variant-numeric:tabular-nums }
svg.spark { width:120px; height:24px } svg.spark path { fill:none; stroke:var(--accent); stroke-width:2; stroke-linecap:round }
#chart { padding:12px; position:sticky; top:60px; align-self:start }
#chart-title { font-family:ui-monospace,monospace; font-size:14px; margin:0 0 4px; word-break:break-all }
#chart svg { width:100%; height:260px }
#chart .axis { stroke:var(--line) } #chart text { fill:var(--muted); font-size:11px }
#chart .value { fill:none; stroke:var(--accent); stroke-width:2.5; stroke-linecap:round }
#chart .p90 { fill:none; stroke:var(--p90); stroke-width:1.5; stroke-linecap:round }
#chart .band { fill:var(--band); stroke:none }
.more { padding:6px 12px; color:var(--muted); font-size:12px }
.below { margin-top:16px }
"""#

    static let javascript = #"""
"use strict";
const $ = (id) => document.getElementById(id);
const state = { query: "", selected: null, kind: null, interval: 10, timer: null };
const units = { counter: "/s", gauge: "", timer: " ms", set: " members" };

function theme(next) {
  const saved = next || localStorage.getItem("sidestat-theme") ||
    (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.dataset.theme = saved;
  if (next) localStorage.setItem("sidestat-theme", next);
}
$("theme").onclick = () => theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
theme();

function format(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v * 1000) / 1000);
}

function path(values, width, height, lo, hi) {
  const n = values.length, span = (hi - lo) || 1;
  let d = "", pen = false;
  values.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    const x = n > 1 ? (i / (n - 1)) * width : width / 2;
    const y = height - ((v - lo) / span) * (height - 2) - 1;
    // A point alone (a key's first flush, or between gaps) still shows: a round cap on a zero-length stroke.
    d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + (pen ? "" : "l0.01 0");
    pen = true;
  });
  return d;
}

function range(lists) {
  let lo = Infinity, hi = -Infinity;
  for (const list of lists) for (const v of list) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) { lo = Math.min(0, lo); hi = hi === 0 ? 1 : Math.max(hi, 0); }
  return [lo, hi];
}

function row(key) {
  const div = document.createElement("div");
  div.className = "row" + (key.name === state.selected && key.kind === state.kind ? " selected" : "");
  div.dataset.key = key.name;
  div.dataset.kind = key.kind;
  const [lo, hi] = range([key.spark]);
  div.innerHTML = '<span class="name"></span><span class="kind"></span><span class="last"></span>' +
    '<svg class="spark" viewBox="0 0 120 24" preserveAspectRatio="none"><path d="' + path(key.spark, 120, 24, lo, hi) + '"/></svg>';
  div.querySelector(".name").textContent = key.name;
  div.querySelector(".name").title = key.name;
  div.querySelector(".kind").textContent = key.kind;
  div.querySelector(".last").textContent = format(key.last) + (key.last === null ? "" : units[key.kind]);
  div.onclick = () => { state.selected = key.name; state.kind = key.kind; refresh(); };
  return div;
}

async function loadKeys() {
  const response = await fetch("/api/keys?limit=200&points=60&q=" + encodeURIComponent(state.query));
  const data = await response.json();
  state.interval = data.interval || 10;
  const groups = { user: $("user"), dyno: $("dyno"), statsd: $("statsd") };
  const fragments = { user: document.createDocumentFragment(), dyno: document.createDocumentFragment(),
    statsd: document.createDocumentFragment() };
  for (const key of data.keys) fragments[key.group].appendChild(row(key));
  for (const name in groups) {
    groups[name].replaceChildren(fragments[name]);
    if (!groups[name].children.length) groups[name].innerHTML = '<div class="more">no keys' + (state.query ? " match" : " yet") + '</div>';
  }
  if (data.total > data.keys.length) {
    const more = document.createElement("div");
    more.className = "more";
    more.id = "more";
    more.textContent = "showing " + data.keys.length + " of " + data.total + " keys: type to narrow";
    $("statsd").appendChild(more);
  }
  const when = data.time ? new Date(data.time * 1000).toLocaleTimeString() : "–";
  $("status").textContent = data.total + " keys · last flush " + when + " · every " + state.interval + " s";
  if (!state.selected && data.keys.length) {
    const first = data.keys.find(k => k.group === "user") || data.keys[0];
    state.selected = first.name;
    state.kind = first.kind;
  }
}

async function loadHealth() {
  const data = await (await fetch("/api/health")).json();
  const chips = [];
  chips.push('<span class="chip ' + (data.badLines ? "bad" : "ok") + '" id="bad-lines">bad lines: ' + data.badLines +
    " (" + data.badLinesTotal + " in all)</span>");
  if (data.evicted) chips.push('<span class="chip bad">evicted keys: ' + data.evicted + "</span>");
  chips.push('<span class="chip">history ' + format(data.bytes / 1048576) + " of " + format(data.budget / 1048576) + " MiB</span>");
  for (const backend of data.backends) {
    const s = backend.status, parts = [];
    const lastFlush = s.last_flush ?? s.lastFlush, lastException = s.last_exception ?? s.lastException;
    if (lastFlush) parts.push("flushed " + Math.max(0, Math.round(Date.now() / 1000 - lastFlush)) + " s ago");
    if (s.queued_bytes) parts.push(format(s.queued_bytes) + " B queued");
    if (s.dropped_points) parts.push(format(s.dropped_points) + " dropped");
    const failing = lastException && lastException > (lastFlush || 0);
    chips.push('<span class="chip ' + (failing || s.dropped_points ? "bad" : "ok") + '">' + backend.name +
      (parts.length ? ": " + parts.join(", ") : "") + "</span>");
  }
  $("health").innerHTML = chips.join("");
}

async function loadChart() {
  if (!state.selected) return;
  const response = await fetch("/api/series?key=" + encodeURIComponent(state.selected) + "&kind=" + encodeURIComponent(state.kind || ""));
  if (!response.ok) return;
  const data = await response.json();
  const svg = $("chart-svg"), width = 800, height = 240;
  const lanes = data.kind === "timer" ? [data.median, data.p90, data.max] : [data.value];
  const [lo, hi] = range(lanes);
  let body = '<line class="axis" x1="0" y1="' + height + '" x2="' + width + '" y2="' + height + '"/>';
  if (data.kind === "timer") {
    let band = "";
    const n = data.max.length;
    data.max.forEach((v, i) => {
      if (v === null || data.p90[i] === null) return;
      const x = n > 1 ? (i / (n - 1)) * width : width / 2, w = Math.max(width / Math.max(n - 1, 1), 2);
      const top = height - ((v - lo) / ((hi - lo) || 1)) * (height - 2) - 1;
      const bottom = height - ((data.p90[i] - lo) / ((hi - lo) || 1)) * (height - 2) - 1;
      band += '<rect class="band" x="' + (x - w / 2).toFixed(1) + '" y="' + top.toFixed(1) + '" width="' + w.toFixed(1) +
        '" height="' + Math.max(bottom - top, 1).toFixed(1) + '"/>';
    });
    body += band + '<path class="p90" d="' + path(data.p90, width, height, lo, hi) + '"/>' +
      '<path class="value" d="' + path(data.median, width, height, lo, hi) + '"/>';
  } else {
    body += '<path class="value" d="' + path(data.value, width, height, lo, hi) + '"/>';
  }
  body += '<text x="4" y="12">' + format(hi) + '</text><text x="4" y="' + (height - 4) + '">' + format(lo) + "</text>";
  if (data.times.length) {
    const t = (s) => new Date(s * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    body += '<text x="0" y="258">' + t(data.times[0]) + '</text><text x="798" y="258" text-anchor="end">' +
      t(data.times[data.times.length - 1]) + "</text>";
  }
  svg.innerHTML = body;
  const main = data.kind === "timer" ? data.median : data.value;
  const seen = main.filter(v => v !== null), last = seen.length ? seen[seen.length - 1] : null;
  const label = { counter: "rate per second", gauge: "gauge", timer: "timer: median, p90 (line) and p90–max (band), ms", set: "set: distinct members" }[data.kind];
  $("chart-title").textContent = data.name;
  $("chart-summary").textContent = label + " · last " + format(last) + " · min " + format(seen.length ? Math.min(...seen) : null) +
    " · max " + format(seen.length ? Math.max(...(data.kind === "timer" ? data.max.filter(v => v !== null) : seen)) : null);
  $("chart").dataset.key = data.name;
  $("chart").dataset.kind = data.kind;
  $("chart").dataset.max = String(seen.length ? Math.max(...seen) : "");
}

async function refresh() {
  try {
    await loadKeys();
    await Promise.all([loadChart(), loadHealth()]);
    document.body.dataset.ready = "1";
  } catch (error) {
    $("status").textContent = "Sidestat is not answering (" + error.message + ")";
  }
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, Math.min(Math.max(state.interval, 1), 10) * 1000);
}

let typing = null;
$("search").addEventListener("input", (event) => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.query = event.target.value.trim(); refresh(); }, 150);
});
refresh();
"""#
}
