"""The review page (``GET /admin/review``): one self-contained HTML file, no external assets.

The page itself holds no data, so it is served like the live page; everything it shows comes from
``/admin/review.json`` and every label goes to ``/admin/review/labels``, both behind the admin
token, which the reviewer types into the page (a browser cannot put a bearer token on a plain
navigation). Sealed records (``text: encrypted``) are opened *in the page* with WebCrypto's
AES-GCM and the key the reviewer types: the sidecar never serves clear text, and a stolen admin
token alone reads no prompt. Data is only ever put in the DOM with ``textContent``.
"""

from __future__ import annotations

REVIEW_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>policy-sidecar review</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
input, select, button { font: inherit; margin: 0 .4rem .4rem 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
td, th { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: left; }
.record { border: 1px solid #ddd; border-radius: 6px; padding: .6rem .8rem; margin: .8rem 0; }
.record.labelled { border-color: #2a9d8f; }
pre.text { white-space: pre-wrap; background: #f7f7f7; padding: .5rem; max-height: 16rem; overflow: auto; }
.meta { color: #666; font-size: 12px; }
#status { color: #b00020; }
</style></head><body>
<h1>Review captured traffic</h1>
<p>Label what the rules caught. Labels are appended to the capture store; <code>policy-sidecar
calibrate --policy POLICY CAPTURE_DIR</code> turns them into thresholds.</p>
<div>
<input id="token" type="password" placeholder="admin token" autocomplete="off">
<input id="key" type="password" placeholder="capture key (encrypted text only)" autocomplete="off">
<input id="reviewer" placeholder="your name (optional)">
<button id="load">Load</button>
</div>
<div>
<select id="rule"><option value="">all rules</option></select>
<select id="band"><option value="">all score bands</option></select>
<label><input id="unlabelled" type="checkbox"> unlabelled only</label>
<span id="count" class="meta"></span> <span id="status"></span>
</div>
<h2>Agreement with the policy</h2>
<table id="agreement"><thead><tr><th>rule</th><th>captured</th><th>labelled</th><th>agreement</th>
<th>weighted</th></tr></thead><tbody></tbody></table>
<div id="records"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let cryptoKey = null;
let categories = [];
let keyText = "";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
function num(x) { return x === null || x === undefined ? "-" : Number(x).toFixed(3); }
function b64(s) { return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)); }
function headers() { return {"authorization": "Bearer " + $("token").value}; }

function partText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p && (p.text || p.input_text)) || "").join(" ");
  return content === undefined || content === null ? "" : JSON.stringify(content);
}
function render(payload) {
  const lines = [];
  const req = (payload && payload.request) || {};
  for (const m of req.messages || []) lines.push((m.role || "?") + ": " + partText(m.content));
  if (req.instructions) lines.push("instructions: " + partText(req.instructions));
  if (req.input !== undefined) {
    if (Array.isArray(req.input)) {
      for (const m of req.input) {
        lines.push((m.role || "input") + ": " + partText(m.content !== undefined ? m.content : m));
      }
    } else lines.push("input: " + partText(req.input));
  }
  const resp = payload && payload.response;
  if (resp && Array.isArray(resp.choices)) {
    for (const c of resp.choices) lines.push("answer: " + partText((c.message || {}).content));
  }
  if (resp && Array.isArray(resp.output)) {
    for (const o of resp.output) if (o && o.content) lines.push("answer: " + partText(o.content));
  }
  if (!lines.length && payload && payload.request) lines.push("body: " + JSON.stringify(req));
  return lines.join("\\n");
}
async function openSealed(rec) {
  if (!cryptoKey) return "[encrypted: type the capture key above to read it]";
  try {
    const s = rec.sealed;
    const clear = await crypto.subtle.decrypt(
      {name: "AES-GCM", iv: b64(s.nonce), additionalData: new TextEncoder().encode(rec.id)},
      cryptoKey, b64(s.data));
    return render(JSON.parse(new TextDecoder().decode(clear)));
  } catch (e) {
    return "[cannot decrypt: wrong key, or the record was altered]";
  }
}
function answers(rule) {
  const k = (rule.plugin + " " + rule.rule).toLowerCase();
  if (k.includes("inject") || k.includes("jailbreak")) return ["attack", "benign"];
  if (k.includes("moderation") || k.includes("harm")) {
    return ["harmful (" + rule.rule.replace(/^(input|output)_/, "") + ")", "not harmful"];
  }
  if (k.includes("pii")) return ["PII type correct", "PII type wrong"];
  return ["rule right", "rule wrong"];
}
async function label(id, labels, extra) {
  const reviewer = $("reviewer").value || undefined;
  const body = Object.assign({id: id, labels: labels, reviewer: reviewer}, extra || {});
  const h = Object.assign({"content-type": "application/json"}, headers());
  const r = await fetch("review/labels", {method: "POST", headers: h, body: JSON.stringify(body)});
  if (!r.ok) {
    $("status").textContent = "label not saved: " + ((await r.json()).error || {}).message;
    return;
  }
  await load();
}
async function card(rec) {
  const div = el("div", null, "record" + (rec.label ? " labelled" : ""));
  div.dataset.id = rec.id;
  const when = new Date(rec.ts * 1000).toISOString();
  const meta = [rec.id, when, "tenant " + (rec.tenant || "-"), "weight " + num(rec.weight), rec.text];
  if (rec.path) meta.push("pass-through " + rec.path);
  if (rec.response_truncated) meta.push("answer truncated");
  div.appendChild(el("div", meta.join(" · "), "meta"));
  div.appendChild(el("pre", rec.sealed ? await openSealed(rec) : render(rec), "text"));
  const table = el("table");
  for (const r of rec.rules) {
    const tr = el("tr"); tr.dataset.rule = r.rule;
    tr.appendChild(el("td", r.rule));
    tr.appendChild(el("td", "score " + num(r.score) + " / threshold " + num(r.threshold), "score"));
    tr.appendChild(el("td", r.band, "band"));
    const says = "policy: " + (r.policy_says ? "yes" : "no") + " (" + r.mode + " " + r.action + ")";
    tr.appendChild(el("td", says, "policy"));
    const [yes, no] = answers(r);
    const by = el("button", yes, "yes"); by.onclick = () => label(rec.id, {[r.rule]: true});
    const bn = el("button", no, "no"); bn.onclick = () => label(rec.id, {[r.rule]: false});
    const td = el("td"); td.appendChild(by); td.appendChild(bn); tr.appendChild(td);
    const current = r.label === null || r.label === undefined ? "unlabelled" : (r.label ? yes : no);
    tr.appendChild(el("td", current, "label"));
    table.appendChild(tr);
  }
  div.appendChild(table);
  const benign = el("button", "all benign", "benign");
  const none = Object.fromEntries(rec.rules.map((r) => [r.rule, false]));
  benign.onclick = () => label(rec.id, none, {label: "benign"});
  div.appendChild(benign);
  const harm = el("select", null, "category");
  harm.appendChild(el("option", "harmful: category…"));
  harm.options[0].value = "";
  for (const c of categories) { const o = el("option", c); o.value = c; harm.appendChild(o); }
  harm.onchange = () => { if (harm.value) label(rec.id, {}, {label: harm.value}); };
  div.appendChild(harm);
  const whole = rec.label && rec.label.label;
  if (whole) div.appendChild(el("span", " record labelled: " + whole, "record-label"));
  return div;
}
function fillSelect(sel, values) {
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const v of values) { const o = el("option", v); o.value = v; sel.appendChild(o); }
  sel.value = values.includes(keep) ? keep : "";
}
async function load() {
  $("status").textContent = "";
  const text = $("key").value.trim();
  if (text !== keyText) {
    keyText = text; cryptoKey = null;
    if (text) {
      try { cryptoKey = await crypto.subtle.importKey("raw", b64(text), "AES-GCM", false, ["decrypt"]); }
      catch (e) { $("status").textContent = "the capture key is not a base64 AES-256 key"; }
    }
  }
  const q = new URLSearchParams();
  if ($("rule").value) q.set("rule", $("rule").value);
  if ($("band").value) q.set("band", $("band").value);
  if ($("unlabelled").checked) q.set("unlabelled", "1");
  const r = await fetch("review.json?" + q, {headers: headers(), cache: "no-store"});
  const data = await r.json();
  if (!r.ok) { $("status").textContent = (data.error || {}).message || ("HTTP " + r.status); return; }
  fillSelect($("rule"), data.rules.map((x) => x.rule));
  fillSelect($("band"), data.bands);
  categories = data.categories || [];
  const tbody = $("agreement").querySelector("tbody");
  tbody.replaceChildren();
  for (const a of data.rules) {
    const tr = el("tr"); tr.dataset.rule = a.rule;
    tr.appendChild(el("td", a.rule));
    tr.appendChild(el("td", a.records, "records"));
    tr.appendChild(el("td", a.labelled, "labelled"));
    tr.appendChild(el("td", pct(a.agreement), "agreement"));
    tr.appendChild(el("td", pct(a.weighted_agreement), "weighted"));
    tbody.appendChild(tr);
  }
  const list = $("records");
  const cards = [];
  for (const rec of data.records) cards.push(await card(rec));
  list.replaceChildren(...cards);
  $("count").textContent = data.records.length + " shown of " + data.records_total + " captured";
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}
$("load").onclick = load;
$("rule").onchange = load; $("band").onchange = load; $("unlabelled").onchange = load;
</script>
</body></html>
"""
