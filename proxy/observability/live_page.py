"""``GET /admin/live``: one static, read-only HTML page that polls ``live.json``.

No build step and no external assets (the admin port is often unreachable from the internet
and a CDN script would be a supply-chain hole on an admin surface): inline CSS, a few lines of
vanilla JS, sparklines drawn as inline SVG. Everything from the server is put in the page with
``textContent`` only, so a rule id can never inject markup.
"""

from __future__ import annotations

LIVE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>policy-sidecar live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
 h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
 h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
 table { border-collapse: collapse; }
 th, td { padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
 th:first-child, td:first-child, td.rule, td.mode { text-align: left; }
 .shadow { background: #fff7e0; }
 .muted { color: #777; }
 .error { color: #b00020; }
 code { font-size: 13px; }
 svg { vertical-align: middle; }
</style>
</head>
<body>
<h1>policy-sidecar: live</h1>
<div id="policy">revision <code id="revision">…</code> · last reload: <span id="reload">…</span>
 <span id="reload-error" class="error"></span></div>
<div class="muted">refreshed every <span id="every"></span> s · <span id="updated">never</span></div>

<h2>Traffic per minute (last <span id="window"></span> minutes)</h2>
<table id="traffic"><thead><tr><th></th><th>last minute</th><th>window</th><th>per minute</th></tr></thead>
<tbody></tbody></table>

<h2>Decisions per rule (last <span id="window2"></span> minutes)</h2>
<table id="rules"><thead><tr>
 <th>rule</th><th>step mode</th>
 <th>enforce: block</th><th>redact</th><th>flag</th><th>other</th>
 <th class="shadow">shadow: block</th><th class="shadow">redact</th><th class="shadow">flag</th>
 <th class="shadow">other</th><th class="shadow">total</th><th>shadow per minute</th>
</tr></thead><tbody></tbody></table>
<p id="empty" class="muted">No decisions in the window yet.</p>

<h2>Staged promotion (<code>promote:</code>)</h2>
<table id="promotions"><thead><tr>
 <th>step</th><th>status</th><th>enforced</th><th>stages</th><th>stage since</th>
 <th>requests</th><th>block rate</th><th>max</th>
</tr></thead><tbody></tbody></table>
<ul id="promotion-history"></ul>
<p id="no-promotions" class="muted">No promoted steps in this policy.</p>

<h2>Response cache (last <span id="window3"></span> minutes)</h2>
<table id="cache"><thead><tr><th>mode</th><th>answers from the cache</th><th>tokens saved</th>
 <th>USD saved (list price)</th></tr></thead><tbody></tbody></table>

<script>
"use strict";
const EVERY = Math.max(1, Number(new URLSearchParams(location.search).get("every")) || 3);
const MAIN = ["block", "redact", "flag"];
document.getElementById("every").textContent = EVERY;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function spark(values) {
  const ns = "http://www.w3.org/2000/svg", w = 120, h = 22, max = Math.max(1, ...values);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) => (i * step).toFixed(1) + "," + (h - 1 - (v / max) * (h - 3)).toFixed(1));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#3366cc");
  line.setAttribute("stroke-width", "1.5");
  svg.appendChild(line);
  return svg;
}
function sum(a) { return a.reduce((x, y) => x + y, 0); }
function others(counts) {
  return sum(Object.entries(counts).filter(([k]) => !MAIN.includes(k)).map(([, v]) => v));
}
function render(data) {
  const p = data.policy || {};
  document.getElementById("revision").textContent = p.revision || "none";
  const r = p.last_reload || {};
  const at = r.at ? new Date(r.at * 1000).toISOString().replace(".000", "") : "";
  document.getElementById("reload").textContent = (r.result || "?") + " (" + (r.trigger || "?") + ") " + at
    + (r.error_cleared ? ": restored to the running revision, previous error cleared" : "");
  document.getElementById("reload-error").textContent = p.last_error ? "error: " + p.last_error : "";
  for (const id of ["window", "window2", "window3"]) {
    document.getElementById(id).textContent = data.window_minutes;
  }
  const cache = document.querySelector("#cache tbody");
  cache.replaceChildren();
  for (const [mode, c] of Object.entries(data.cache || {})) {
    const tr = el("tr"); tr.dataset.mode = mode;
    const label = mode === "shadow" ? "shadow (would have)" : mode;
    tr.append(el("td", label), el("td", c.hits, "hits"), el("td", c.tokens, "tokens"));
    tr.append(el("td", c.usd.toFixed(6), "usd"));
    cache.append(tr);
  }
  const traffic = document.querySelector("#traffic tbody");
  traffic.replaceChildren();
  for (const key of ["requests", "errors", "refused"]) {
    const values = data.minutes.map(m => m[key]);
    const tr = el("tr"); tr.dataset.series = key;
    tr.append(el("td", key), el("td", values[values.length - 1]), el("td", sum(values)));
    const td = el("td"); td.append(spark(values)); tr.append(td);
    traffic.append(tr);
  }
  const modes = {};
  for (const s of p.steps || []) modes[s.id] = s.mode;
  const body = document.querySelector("#rules tbody");
  body.replaceChildren();
  for (const row of data.rules) {
    const tr = el("tr"); tr.dataset.rule = row.plugin + "/" + row.rule;
    tr.append(el("td", row.plugin + " / " + row.rule, "rule"), el("td", modes[row.plugin] || "-", "mode"));
    for (const a of MAIN) tr.append(el("td", row.enforce[a] || 0, "enforce-" + a));
    tr.append(el("td", others(row.enforce), "enforce-other"));
    for (const a of MAIN) tr.append(el("td", row.shadow[a] || 0, "shadow shadow-" + a));
    tr.append(el("td", others(row.shadow), "shadow shadow-other"));
    tr.append(el("td", sum(Object.values(row.shadow)), "shadow shadow-total"));
    const td = el("td"); td.append(spark(row.shadow_per_minute)); tr.append(td);
    body.append(tr);
  }
  document.getElementById("empty").hidden = data.rules.length > 0;
  const promos = p.promotions || [];
  const ptable = document.querySelector("#promotions tbody");
  ptable.replaceChildren();
  for (const row of promos) {
    const tr = el("tr"); tr.dataset.step = row.step;
    const since = new Date(row.stage_started * 1000).toISOString().replace(".000", "");
    const names = ["shadow", ...row.steps.map(x => x + "%")];
    const stages = names.map((x, i) => i === row.stage ? "[" + x + "]" : x);
    tr.append(el("td", row.step, "rule"), el("td", row.status, "status"),
      el("td", row.percent + "%", "percent"), el("td", stages.join(" → ")), el("td", since),
      el("td", row.requests),
      el("td", row.block_rate === null ? "-" : row.block_rate, "rate"), el("td", row.max_block_rate));
    ptable.append(tr);
  }
  const hist = document.getElementById("promotion-history");
  hist.replaceChildren();
  for (const t of (p.promotion_history || []).slice().reverse()) {
    const at = new Date(t.at * 1000).toISOString().replace(".000", "");
    hist.append(el("li", at + " " + t.step_id + ": " + t.kind + " " + t.from_percent + "% → " + t.to_percent
      + "% (" + t.reason + ")", t.kind));
  }
  document.getElementById("no-promotions").hidden = promos.length > 0;
  document.getElementById("updated").textContent = "updated " + new Date().toISOString();
}
async function poll() {
  try {
    const resp = await fetch("live.json", {cache: "no-store"});
    if (resp.ok) render(await resp.json());
    else document.getElementById("updated").textContent = "live.json answered " + resp.status;
  } catch (e) {
    document.getElementById("updated").textContent = "sidecar unreachable: " + e;
  }
  setTimeout(poll, EVERY * 1000);
}
poll();
</script>
</body>
</html>
"""
