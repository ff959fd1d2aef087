"""Rendering the report: markdown tables and PASS/FAIL target lines."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import payload
from config import (
    BASELINE,
    PACED_HOLD_MS,
    PLUGIN_ROWS,
    TARGET_ADDED_MS,
    TARGET_BUDGET_ADDED_MS,
    TARGET_CPU_RATIO,
    TARGET_RESILIENCE_OVERHEAD,
    TARGET_RSS_MB,
    TARGET_TEXT,
)
from measure import Storm
from rows import Row

# -- report -------------------------------------------------------------------------------


def render_storm(storm: Storm) -> list[str]:
    r = storm.result
    if not r or not r.get("requests"):
        return []
    n = r["requests"]
    prim, back = r["primary"], r["backup"]
    served = r["upstream"]
    ok = r["status"].get("200", 0)
    others = ", ".join(f"{k}: {v}" for k, v in sorted(r["status"].items()) if k != "200") or "none"
    timeline = " ".join(str(req) for req, _ in prim["per_second"])
    decisions = ", ".join(f"{k} {v}" for k, v in sorted(r["decisions"].items())) or "none"
    return [
        f"| Fault storm: resilience sidecar, {r['connections']} connections, {r['seconds']} s; primary "
        f"answers 503 on a random {storm.fail_ratio:.0%}, backup healthy | value |",
        "|---|---:|",
        f"| client requests (req/s) | {n} ({n / r['duration_s']:.0f}/s) |",
        f"| success rate (share of 200s) | {100 * ok / n:.2f}% |",
        f"| other answers | {others} |",
        f"| latency p50 / p99, all answers (ms) | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} |",
        f"| latency p50 / p99, 200s only (ms) | {r['ok_p50_ms']:.2f} / {r['ok_p99_ms']:.2f} |",
        f"| upstream attempts per client request | {(prim['requests'] + back['requests']) / n:.3f} |",
        f"| … to the primary (answered 503) | {prim['requests'] / n:.3f} "
        f"({prim['failed']} of {prim['requests']}) |",
        f"| … to the backup | {back['requests'] / n:.3f} |",
        f"| served by primary / backup (`x-sidecar-upstream`) | {100 * served.get('primary', 0) / n:.1f}% "
        f"/ {100 * served.get('backup', 0) / n:.1f}% |",
        f"| sidecar CPU/request (µs) | {_f(r['sidecar_cpu_us'], '{:.0f}')} |",
        f"| decision records (plugin/rule/action count) | {decisions} |",
        f"| attempts reaching the primary, per second of the run | {timeline} |",
    ]


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def _paired(a: list[float], b: list[float]) -> list[float]:
    """Round-by-round differences a - b (rows are measured every round, seconds apart)."""
    return [x - y for x, y in zip(a, b, strict=False)]


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    return (statistics.median(values), min(values), max(values)) if values else None


Spread = tuple[float, float, float]  # median, min, max over rounds


@dataclass
class PluginCost:
    """A plugin row against the empty policy and the aiohttp pass-through, round by round.

    CPU differences come normalised (each side's CPU/request divided by the fake upstream's in
    the same window, then scaled back to µs by the empty row's median upstream CPU/request): the
    upstream does the same work for all these rows, so this cancels most of the inflation that
    background load causes and that differs between rounds. Raw differences are kept alongside.
    """

    cpu_vs_empty: Spread | None  # µs/request: row - empty, normalised
    cpu_vs_empty_raw: Spread | None
    empty_overhead: Spread | None  # µs/request: empty - pass-through, normalised
    empty_overhead_raw: Spread | None
    p50_vs_empty: Spread | None  # ms at 1 connection: row - empty

    @property
    def overhead_ratio(self) -> float | None:
        """(row - PT) / (empty - PT), from the medians of the paired differences."""
        if not self.cpu_vs_empty or not self.empty_overhead or self.empty_overhead[0] <= 0:
            return None
        return 1 + self.cpu_vs_empty[0] / self.empty_overhead[0]


def _normalised(row: Row, scale: float) -> list[float]:
    return [c / u * scale if u else c for c, u in zip(row.round_cpu_us, row.round_upstream_us, strict=True)]


def plugin_cost(row: Row, empty: Row | None, base: Row | None) -> PluginCost:
    if empty is None or not row.round_cpu_us or not empty.round_cpu_us:
        return PluginCost(None, None, None, None, None)
    scale = statistics.median(empty.round_upstream_us)
    mine, ref = _normalised(row, scale), _normalised(empty, scale)
    theirs = _normalised(base, scale) if base and base.round_cpu_us else None
    return PluginCost(
        _spread(_paired(mine, ref)),
        _spread(_paired(row.round_cpu_us, empty.round_cpu_us)),
        _spread(_paired(ref, theirs)) if theirs else None,
        _spread(_paired(empty.round_cpu_us, base.round_cpu_us)) if theirs and base else None,
        _spread(_paired(row.p50, empty.p50)),
    )


def redis_per_request(row: Row) -> tuple[float, float] | None:
    """EVALSHA calls and round trips (network reads, less the benchmark's own two INFO reads per
    round) per request, during the 16-connection load."""
    if not row.redis_calls or not row.requests16:
        return None
    reads = row.redis_calls.get("reads", 0) - row.redis_calls.get("info", 0)
    return row.redis_calls.get("evalsha", 0) / row.requests16, reads / row.requests16


def render_plugin_costs(rows: list[Row]) -> list[str]:
    by = {r.key: r for r in rows}
    empty, base = by.get("sidecar-empty"), by.get(BASELINE)
    plugin_rows = [by[k] for k in PLUGIN_ROWS if k in by and not by[k].skipped and by[k].round_cpu_us]
    if empty is None or not empty.round_cpu_us or not plugin_rows:
        return []
    empty2k = by.get("sidecar-empty-2k")
    if empty2k is not None and empty2k.round_cpu_us and any(r.prose for r in plugin_rows):
        # its own reference line, right before the rows driven with the same 2 KB body
        first = next(i for i, r in enumerate(plugin_rows) if r.prose)
        plugin_rows.insert(first, empty2k)

    def rng(v: Spread | None, fmt: str) -> str:
        return "—" if v is None else f"{fmt.format(v[0])} ({fmt.format(v[1])} … {fmt.format(v[2])})"

    def med(v: Spread | None, fmt: str) -> str:
        return "—" if v is None else fmt.format(v[0])

    lines = [
        "| Row, against the empty policy measured in the same rounds | CPU/req (µs) "
        "| added CPU/req vs empty, normalised (µs) | raw (µs) | CPU overhead over aiohttp PT, "
        "normalised (µs) | overhead vs empty's | added p50 @1c vs empty (ms) | Redis CPU/req (µs) "
        "| Redis round trips/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = plugin_cost(empty, empty, base)
    lines.append(
        f"| {empty.label} (reference) | {_f(empty.cpu_us, '{:.0f}')} | — | — "
        f"| {rng(ref.empty_overhead, '{:.0f}')} | 1.00x | — | — | — |"
    )
    for row in plugin_rows:
        if row.key == "sidecar-empty-2k":  # the reference of the 2 KB rows (PT ran the 1 KB body)
            lines.append(
                f"| {row.label} (reference for the rows below) | {_f(row.cpu_us, '{:.0f}')} | — | — "
                "| — | — | — | — | — |"
            )
            continue
        # the 2 KB rows: against the 2 KB empty policy; no pass-through columns (PT ran the 1 KB body)
        c = plugin_cost(row, by.get(row.ref), None if row.prose else base)
        e, d = c.empty_overhead, c.cpu_vs_empty
        overhead = d[0] + e[0] if d and e else None
        redis = redis_per_request(row)
        aux = statistics.median(row.round_aux_us) if row.round_aux_us else None
        lines.append(
            f"| {row.label}{' ⚠' if row.errors else ''} | {_f(row.cpu_us, '{:.0f}')} "
            f"| {rng(d, '{:+.0f}')} | {med(c.cpu_vs_empty_raw, '{:+.0f}')} | {_f(overhead, '{:.0f}')} "
            f"| {_f(c.overhead_ratio, '{:.2f}x')} | {rng(c.p50_vs_empty, '{:+.2f}')} | {_f(aux, '{:.0f}')} "
            f"| {'—' if redis is None else f'{redis[1]:.2f} ({redis[0]:.2f} EVALSHA)'} |"
        )
    return lines


def render_wrappers(w: dict[str, Any]) -> str:
    if "added_us" not in w:
        return f"In-process cost of the resilience wrappers: the run failed: {w.get('error', '?')}"
    lo, hi = w["added_range_us"]
    return (
        f"In-process (`wrappers.py`: the same two-target route compiled with and without the four "
        f"wrappers, upstreams replaced by stubs, {w['blocks']} alternating blocks of {w['calls']} "
        f"calls, thread CPU time): {w['bare']['us']:.1f} µs per call without the wrappers, "
        f"{w['wrapped']['us']:.1f} µs with them: **{w['added_us']:+.1f} µs** per request "
        f"(blocks: {lo:+.1f} … {hi:+.1f}), the steady figure for the wrappers' own cost."
    )


def render(rows: list[Row], direct: Row) -> list[str]:
    base = next((r for r in rows if r.key == BASELINE), None)
    lines = [
        "| Row | req/s @16c | p50 @1c (ms) | p99 @1c (ms) | added p50 (ms) | CPU/req (µs) "
        "| CPU/req vs aiohttp PT | TTFT p50 (ms) | TTFT added (ms) | RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.label} | skipped: {row.skipped} |" + " |" * 8)
            continue
        added = row.p50_ms - direct.p50_ms if row.server and row.p50_ms and direct.p50_ms else None
        ttft_added = row.ttft_ms - direct.ttft_ms if row.server and row.ttft_ms and direct.ttft_ms else None
        paired = row.ratio(base) if row.server else None
        ratio = paired[0] if paired else None
        lines.append(
            f"| {row.label}{' ⚠' if row.errors else ''} | {_f(row.rps, '{:.0f}')} | {_f(row.p50_ms)} "
            f"| {_f(row.p99_ms)} | {_f(added, '{:+.2f}')} | {_f(row.cpu_us, '{:.0f}')} "
            f"| {_f(ratio, '{:.2f}x')} | {_f(row.ttft_ms)} | {_f(ttft_added, '{:+.2f}')} "
            f"| {_f(row.rss, '{:.1f}')} |"
        )
    return lines


def render_paced(rows: list[Row], direct: Row) -> list[str]:
    if not direct.paced:
        return []
    d = statistics.median(t for t, _ in direct.paced)
    lines = [
        "| Row (paced stream: 20 ms between events) | TTFT p50 (ms) | TTFT added (ms) "
        "| whole stream p50 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        if row.paced:
            t = statistics.median(x for x, _ in row.paced)
            total = statistics.median(x for _, x in row.paced)
            added = f"{t - d:+.1f}" if row.server else "—"
            lines.append(f"| {row.label} | {t:.1f} | {added} | {total:.1f} |")
    return lines


def targets(
    rows: list[Row], direct: Row, failed: set[str] | None = None, wrappers: dict[str, Any] | None = None
) -> list[str]:
    """PASS/FAIL lines; the keys of rows with a failed target are added to ``failed``."""
    by = {r.key: r for r in rows}
    out = []
    failed = set() if failed is None else failed

    def line(ok: bool | None, text: str, key: str | None = None) -> None:
        out.append(f"{'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {text}")
        if ok is False and key:
            failed.add(key)

    base, empty, default = by.get(BASELINE), by.get("sidecar-empty"), by.get("sidecar-default")
    ratio, norm = (empty.ratio(base), empty.ratio(base, normalized=True)) if empty else (None, None)
    if base and empty and ratio and norm and base.cpu_us and empty.cpu_us:
        line(
            norm[0] <= TARGET_CPU_RATIO,
            f"sidecar (empty policy) CPU/request = {norm[0]:.2f}x the aiohttp pass-through's, normalised "
            f"(range {norm[1]:.2f}-{norm[2]:.2f}); raw {ratio[0]:.2f}x "
            f"(range {ratio[1]:.2f}-{ratio[2]:.2f}), "
            f"{empty.cpu_us:.0f} vs {base.cpu_us:.0f} µs (target ≤ {TARGET_CPU_RATIO}x)",
            empty.key,
        )
    else:
        line(None, "CPU/request ratio: missing a row")

    def ref(value: float | None, base_value: float | None) -> str:
        return f"; the aiohttp pass-through: {value - base_value:+.2f} ms" if value and base_value else ""

    for row in (empty, default):
        if row is None:
            continue
        if row.p50_ms is not None and direct.p50_ms is not None:
            added = row.p50_ms - direct.p50_ms
            line(
                added < TARGET_ADDED_MS,
                f"{row.label}: added p50 at 1 connection {added:+.2f} ms (target < {TARGET_ADDED_MS} ms"
                f"{ref(base.p50_ms if base else None, direct.p50_ms)})",
                row.key,
            )
        if row.ttft_ms is not None and direct.ttft_ms is not None:
            added = row.ttft_ms - direct.ttft_ms
            line(
                added < TARGET_ADDED_MS,
                f"{row.label}: streaming TTFT added {added:+.2f} ms (target < {TARGET_ADDED_MS} ms"
                f"{ref(base.ttft_ms if base else None, direct.ttft_ms)})",
                row.key,
            )
    if default and default.rss is not None:
        line(
            default.rss < TARGET_RSS_MB,
            f"{default.label}: RSS after load {default.rss:.1f} MB (target < {TARGET_RSS_MB:.0f} MB)",
            default.key,
        )
    for row in (empty, default):
        if row and row.paced and direct.paced:
            added = statistics.median(t for t, _ in row.paced) - statistics.median(t for t, _ in direct.paced)
            line(
                added < PACED_HOLD_MS,
                f"{row.label}: paced stream (20 ms/event) TTFT added {added:+.1f} ms "
                f"(check: < {PACED_HOLD_MS:.0f} ms, i.e. the first token is not held back for later events)",
                row.key,
            )
    moderation = by.get("sidecar-moderation")
    if moderation and moderation.paced and empty and empty.paced:
        held = statistics.median(t for t, _ in moderation.paced)
        added = held - statistics.median(t for t, _ in empty.paced)
        first = payload.STREAM_TEXT.index(". ") + 1  # the first sentence's end
        deltas = -(-first // 16)  # 16-character deltas up to and including the one that ends it
        out.append(
            f"INFO  {moderation.label}: paced stream (20 ms/event) TTFT added vs the empty policy "
            f"{added:+.1f} ms; expected with stream: window ≈ the first sentence ({first} characters, "
            f"{deltas} deltas) held until it ends: {(deltas - 1) * 20} ms of upstream pacing"
        )
    plugin_targets(by, line, out, wrappers or {})
    for row in rows:
        for err in row.errors:
            out.append(f"WARN  {row.key}: {err}")
    return out


def plugin_targets(
    by: dict[str, Row], line: Callable[..., None], out: list[str], wrappers: dict[str, Any]
) -> None:
    """Resilience wrappers: CPU overhead vs the empty policy's; budget: added p50 vs the empty policy.

    The resilience target allows 5% of the empty policy's overhead over the pass-through: a few
    µs, below what end-to-end CPU/request resolves on a shared machine. So the verdict uses the
    in-process cost of the wrappers (``wrappers.py``) when it ran, and the end-to-end paired
    difference is printed next to it as the cross-check.
    """
    empty, base = by.get("sidecar-empty"), by.get(BASELINE)
    res = by.get("sidecar-resilience")
    if res is not None and not res.skipped:
        c = plugin_cost(res, empty, base)
        d, e = c.cpu_vs_empty, c.empty_overhead  # normalised (see PluginCost)
        w = wrappers.get("added_us")
        if d and e:
            allowed = (TARGET_RESILIENCE_OVERHEAD - 1) * e[0]
            added = w if w is not None else d[0]
            ok = e[0] > 0 and added <= allowed
            ratio = f"{1 + added / e[0]:.2f}x" if e[0] > 0 else "undefined (empty ≤ pass-through this run)"
            inproc = (
                f"in-process {w:+.1f} µs/request (wrappers.py blocks: {wrappers['added_range_us'][0]:+.1f} … "
                f"{wrappers['added_range_us'][1]:+.1f}); end to end {d[0]:+.1f}"
                if w is not None
                else f"end to end {d[0]:+.1f} (in-process run failed)"
            )
            disagree = (
                f"; end to end alone would say {'PASS' if e[0] > 0 and d[0] <= allowed else 'FAIL'} "
                "within its noise"
                if w is not None and (e[0] > 0 and d[0] <= allowed) != ok
                else ""
            )
            line(
                ok,
                f"{res.label}: wrappers add {inproc} µs/request (normalised; rounds: {d[1]:+.1f} … "
                f"{d[2]:+.1f}) over the empty policy, whose overhead over the aiohttp pass-through is "
                f"{e[0]:.1f} µs (rounds: {e[1]:.1f} … {e[2]:.1f}); allowed {allowed:+.1f} µs, i.e. "
                f"(resilience - PT) / (empty - PT) = {ratio} (target ≤ {TARGET_RESILIENCE_OVERHEAD}x)"
                f"{disagree}",
                res.key,
            )
        else:
            line(None, f"{res.label}: CPU overhead: missing the empty policy or the pass-through row")
    for key, limit in TARGET_BUDGET_ADDED_MS.items():
        row = by.get(key)
        if row is None or row.skipped:
            if row is not None:
                line(None, f"{row.label}: skipped ({row.skipped})")
            continue
        c = plugin_cost(row, by.get(row.ref), base)
        if c.p50_vs_empty is None or c.cpu_vs_empty is None:
            line(None, f"{row.label}: added latency: missing the empty policy row")
            continue
        p, d, raw = c.p50_vs_empty, c.cpu_vs_empty, c.cpu_vs_empty_raw
        versus = "the empty policy" if row.ref.startswith("sidecar-empty") else f"'{by[row.ref].label}'"
        what = f"{TARGET_TEXT[key]}: {row.label}:" if key in TARGET_TEXT else f"{row.label}:"
        line(
            p[0] < limit,
            f"{what} added p50 at 1 connection vs {versus} {p[0]:+.3f} ms (rounds: "
            f"{p[1]:+.3f} … {p[2]:+.3f}; target < {limit} ms); CPU/request {d[0]:+.0f} µs vs {versus}, "
            f"normalised (rounds: {d[1]:+.0f} … {d[2]:+.0f}; raw {raw[0] if raw else 0:+.0f}), "
            "the steadier figure on this shared machine",
            key,
        )
        redis = redis_per_request(row)
        if row.aux is not None and (redis is None or redis[0] < 0.99):
            out.append(
                f"WARN  {key}: {0 if redis is None else redis[0]:.2f} EVALSHA per request: the budget "
                "plugin did not reach Redis for every request (fail-open?), so this row understates its cost"
            )


def client_comparison(rows: list[Row]) -> list[str]:
    pts = [r for r in rows if r.key.startswith("pt-")]
    base = next((r for r in pts if r.key == BASELINE and r.cpu_us), None)
    out = []
    for r in pts:
        if r.skipped:
            out.append(f"- {r.key}: skipped ({r.skipped})")
        elif r.cpu_us and (paired := r.ratio(base)):
            out.append(
                f"- {r.key}: {r.cpu_us:.0f} µs CPU/request ({paired[0]:.2f}x aiohttp, range "
                f"{paired[1]:.2f}-{paired[2]:.2f}), {_f(r.rps, '{:.0f}')} req/s at 16 connections, "
                f"p50 at 1 connection {_f(r.p50_ms)} ms"
            )
    return out
