"""The dashboard served at ``/``: one self-contained HTML page (no external assets).

Its script fetches ``metrics.json`` every ``REFRESH_MS`` milliseconds and fills the page:
totals and rates, a chart of decisions per second, the per-endpoint table, the most blocked
identities and the latest blocks. Every value is inserted as text, never as HTML.
"""

from __future__ import annotations

__all__ = ["REFRESH_MS", "render"]

REFRESH_MS = 2000

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flux · rate limits</title>
<style>
:root { --bg:#0f1419; --panel:#171d24; --line:#27303b; --text:#d7dde4; --dim:#8a96a3;
  --ok:#3fb950; --bad:#f85149; --warn:#d29922; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display:flex; align-items:baseline; gap:16px; padding:14px 24px;
  border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; letter-spacing:.5px; }
header h1 span { color:var(--accent); }
#status { color:var(--dim); font-size:13px; }
#status .dot { display:inline-block; width:8px; height:8px; border-radius:50%;
  background:var(--warn); margin-right:6px; }
#status.live .dot { background:var(--ok); }
#status.down .dot { background:var(--bad); }
main { padding:18px 24px; display:grid; gap:18px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(140px, 1fr)); gap:12px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px;
  padding:10px 14px; }
.card .label { color:var(--dim); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .value { font-size:24px; font-variant-numeric:tabular-nums; margin-top:2px; }
.card.blocked .value { color:var(--bad); }
.card.allowed .value { color:var(--ok); }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px;
  padding:12px 14px; overflow:auto; }
section h2 { font-size:13px; margin:0 0 8px; color:var(--dim); text-transform:uppercase;
  letter-spacing:.6px; }
.two { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
@media (max-width: 900px) { .two { grid-template-columns:1fr; } }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line);
  white-space:nowrap; }
th { color:var(--dim); font-weight:500; font-size:12px; }
td.num, th.num { text-align:right; }
td.bad { color:var(--bad); }
td.empty { color:var(--dim); text-align:center; }
.bar { display:inline-block; height:6px; background:var(--bad); border-radius:3px;
  vertical-align:middle; margin-left:6px; }
svg { width:100%; height:120px; display:block; }
.legend { color:var(--dim); font-size:12px; }
.legend b { display:inline-block; width:10px; height:3px; vertical-align:middle;
  margin:0 4px 0 10px; }
footer { color:var(--dim); font-size:12px; padding:0 24px 18px; }
code { color:var(--accent); }
</style>
</head>
<body>
<header>
  <h1><span>flux</span> rate limits</h1>
  <div id="status"><span class="dot"></span><span id="status-text">connecting…</span></div>
</header>
<main>
  <noscript>This dashboard needs JavaScript; the same numbers are at
    <a href="metrics.json">metrics.json</a> and <a href="metrics">metrics</a>.</noscript>
  <div class="cards">
    <div class="card"><div class="label">Decisions</div>
      <div class="value" id="total">&ndash;</div></div>
    <div class="card allowed"><div class="label">Allowed</div>
      <div class="value" id="allowed">&ndash;</div></div>
    <div class="card blocked"><div class="label">Blocked</div>
      <div class="value" id="blocked">&ndash;</div></div>
    <div class="card"><div class="label">Block rate</div>
      <div class="value" id="block-rate">&ndash;</div></div>
    <div class="card"><div class="label">Decisions/s</div>
      <div class="value" id="rate">&ndash;</div></div>
    <div class="card"><div class="label">Blocked/s</div>
      <div class="value" id="blocked-rate">&ndash;</div></div>
    <div class="card"><div class="label">Errors</div>
      <div class="value" id="errors">&ndash;</div></div>
    <div class="card"><div class="label">Workers</div>
      <div class="value" id="workers">&ndash;</div></div>
  </div>
  <section>
    <h2>Decisions per second, last minute
      <span class="legend"><b style="background:var(--ok)"></b>allowed
      <b style="background:var(--bad)"></b>blocked &middot; top <span id="chart-top">&ndash;</span>
      </span></h2>
    <svg id="chart" viewBox="0 0 600 120" preserveAspectRatio="none"></svg>
  </section>
  <section>
    <h2>Limits and endpoints</h2>
    <table id="endpoints">
      <thead><tr><th>Limit</th><th>Endpoint</th><th class="num">Allowed</th>
        <th class="num">Blocked</th><th class="num">Total</th><th class="num">Block rate</th>
        <th class="num">Capacity</th><th class="num">p50 ms</th><th class="num">p99 ms</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="9">no decisions yet</td></tr></tbody>
    </table>
  </section>
  <div class="two">
    <section>
      <h2>Top blocked identities</h2>
      <table id="top-blocked">
        <thead><tr><th>Limit</th><th>Identity</th><th class="num">Blocked</th></tr></thead>
        <tbody><tr><td class="empty" colspan="3">nobody blocked</td></tr></tbody>
      </table>
    </section>
    <section>
      <h2>Recent blocks</h2>
      <table id="recent">
        <thead><tr><th>Time</th><th>Limit</th><th>Endpoint</th><th>Identity</th>
          <th class="num">Retry after</th></tr></thead>
        <tbody><tr><td class="empty" colspan="5">no blocks yet</td></tr></tbody>
      </table>
    </section>
  </div>
</main>
<footer>Refreshes every __REFRESH_S__ s from <a href="metrics.json"><code>metrics.json</code></a>;
Prometheus scrapes <a href="metrics"><code>/metrics</code></a>.</footer>
<script>
"use strict";
const REFRESH_MS = __REFRESH_MS__;

const $ = (id) => document.getElementById(id);
const fmt = (n) => n === null || n === undefined ? "\\u2013" :
  Number(n).toLocaleString("en-US", {maximumFractionDigits: Number.isInteger(n) ? 0 : 1});
const pct = (r) => (100 * r).toFixed(r > 0 && r < 0.001 ? 3 : 1) + "%";
const ms = (v) => v === null || v === undefined ? "\\u2013" : v.toFixed(v < 0.1 ? 3 : 2);

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(table, rows, columns, emptyText) {
  const body = $(table).tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.insertRow();
    const td = cell(tr, emptyText, "empty");
    td.colSpan = columns;
    return;
  }
  for (const build of rows) build(body.insertRow());
}

function chart(timeline) {
  const svg = $("chart");
  const w = 600, h = 120;
  const n = timeline.allowed.length;
  const top = Math.max(1, ...timeline.allowed.map((a, i) => a + timeline.blocked[i]));
  const line = (values, color) => {
    const pts = values.map((v, i) =>
      (w * i / Math.max(1, n - 1)).toFixed(1) + "," + (h - 4 - (h - 8) * v / top).toFixed(1));
    return '<polyline fill="none" stroke="' + color + '" stroke-width="2" points="' +
      pts.join(" ") + '"/>';
  };
  svg.innerHTML = '<line x1="0" y1="' + (h - 4) + '" x2="' + w + '" y2="' + (h - 4) +
    '" stroke="#27303b"/>' + line(timeline.allowed, "#3fb950") +
    line(timeline.blocked, "#f85149");
  $("chart-top").textContent = fmt(top) + "/s";
}

function render(data) {
  const t = data.totals;
  $("total").textContent = fmt(t.total);
  $("allowed").textContent = fmt(t.allowed);
  $("blocked").textContent = fmt(t.blocked);
  $("block-rate").textContent = pct(t.block_rate);
  $("errors").textContent = fmt(t.errors);
  $("workers").textContent = fmt(data.store.workers);
  $("rate").textContent = fmt(Math.round(data.rates.decisions * 10) / 10);
  $("blocked-rate").textContent = fmt(Math.round(data.rates.blocked * 10) / 10);
  chart(data.timeline);
  fill("endpoints", data.endpoints.map((e) => (tr) => {
    cell(tr, e.name); cell(tr, e.endpoint || "\\u2013");
    cell(tr, fmt(e.allowed), "num"); cell(tr, fmt(e.blocked), e.blocked ? "num bad" : "num");
    cell(tr, fmt(e.total), "num");
    const rate = cell(tr, pct(e.block_rate), "num");
    const bar = document.createElement("span");
    bar.className = "bar"; bar.style.width = Math.round(40 * e.block_rate) + "px";
    rate.appendChild(bar);
    cell(tr, e.limit === null ? "\\u2013" : fmt(e.limit), "num");
    cell(tr, ms(e.latency_ms.p50), "num"); cell(tr, ms(e.latency_ms.p99), "num");
  }), 9, "no decisions yet");
  fill("top-blocked", data.top_blocked.map((b) => (tr) => {
    cell(tr, b.limit); cell(tr, b.identity); cell(tr, fmt(b.blocked), "num bad");
  }), 3, "nobody blocked");
  fill("recent", data.recent_blocks.slice(0, 15).map((b) => (tr) => {
    cell(tr, new Date(b.time * 1000).toLocaleTimeString("en-GB"));
    cell(tr, b.limit); cell(tr, b.endpoint || "\\u2013"); cell(tr, b.identity || "\\u2013");
    cell(tr, b.retry_after === null || b.retry_after === undefined ? "\\u2013" :
      b.retry_after.toFixed(1) + " s", "num");
  }), 5, "no blocks yet");
  const status = $("status");
  const up = data.store.up !== false;
  status.className = up ? "live" : "down";
  status.dataset.state = up ? "live" : "down";
  const where = data.source === "redis" ? "Redis (all workers)"
    : data.source === "shared" ? "shared region (all workers)" : "this process";
  $("status-text").textContent = (up ? "live · " : "store unreachable · ") + where +
    " · updated " + new Date(data.generated_at * 1000).toLocaleTimeString("en-GB");
}

async function refresh() {
  try {
    const response = await fetch("metrics.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (err) {
    const status = $("status");
    status.className = "down";
    status.dataset.state = "down";
    $("status-text").textContent = "cannot reach the analytics server (" + err.message + ")";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
</script>
</body>
</html>
"""


def render(refresh_ms: int = REFRESH_MS) -> str:
    """The dashboard page, refreshing every ``refresh_ms`` milliseconds."""
    return _PAGE.replace("__REFRESH_MS__", str(int(refresh_ms))).replace(
        "__REFRESH_S__", f"{refresh_ms / 1000:g}"
    )
