#!/usr/bin/env python
"""The guarded policy of issue 17 end to end: CPU per request against the pass-through floor.

    python benchmarks/run.py --guarded [--quick]          # the same as:
    python benchmarks/guarded.py [--quick] [--rounds N] [--seconds S]
    python benchmarks/guarded.py --compare /path/to/other/checkout   # before/after in one run
    python benchmarks/guarded.py --same-body      # the old way: one body on every request

Starts on loopback the fake upstream, the aiohttp pass-through (``passthrough.py``), and one
sidecar per policy: empty, the guarded policy (``config.GUARDED_PLUGINS``: timeout, retry,
circuit_breaker, the secrets blocklist, injection, pii with ``ner: off``, moderation on input
and output, budget on the memory backend) and each of its steps alone (``config.GUARD_PARTS``).
Drives them with wrk at 16 connections with support-ticket prompts (``tickets.TicketSet``: a few
email addresses and phone numbers per KB, so pii redacts and restores) of 2, 16 and 64 KB: the
pass-through, empty and guarded rows at every size, the single steps at 2 KB. Every request
sends a different ticket (the wrk script cycles through 256 and puts a per-request id in the
e-mail addresses and a reference; the system prompt stays the same), pass-through and sidecars
alike, so caches keyed by text content miss as on real traffic; ``--same-body`` sends one
body on every request instead (the behaviour before), and by default the guarded, pii and
budget rows at 2 KB are also measured that way (``(same body)`` rows, ratio against the
pass-through's rotating figure), to show how much those caches flatter a same-body run. Rounds are
interleaved (order reversed every other round), and every ratio is taken round by round against
the pass-through driven with the same body in the same round.

``--compare DIR`` adds the guarded and pii rows run from another checkout's sources (its
``proxy``/``plugins`` on ``PYTHONPATH``), so a before/after is measured in the same run.

While the guarded sidecar serves the 64 KB prompt, a probe thread GETs ``/health`` every 20 ms:
its p99 shows whether a big prompt blocks the event loop.

Prints a markdown table; writes ``results/guarded.md`` and ``results/guarded.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload
import tickets
from config import CHAT, GUARD_PARTS, GUARD_SIZES, GUARDED_PLUGINS, HERE, ROOT
from measure import Loader, _get_json, drain, reset_upstream
from procs import Server, fake_upstream, free_port, passthrough_floor, report_abort, stop_all
from rows import _policy, code_version


@dataclass
class GRow:
    key: str
    server: Server
    size: int
    same: bool = False  # one body on every request (else the rotating tickets)
    cpu_us: list[float] = field(default_factory=list)  # per round
    ratio: list[float] = field(default_factory=list)  # per round, vs the pass-through at this size
    p50: list[float] = field(default_factory=list)  # ms at 16 connections
    probe_p99: list[float] = field(default_factory=list)
    errors: int = 0


#: Rows measured a second time with one body on every request (unless ``--same-body``): the steps
#: whose caches are keyed by text (token counts; e-mail validity, vault) and the whole stack.
SAME_BODY_ROWS = ("guarded", "pii", "budget")


def _sidecar(workdir: Path, key: str, plugins: list[Any], upstream: str, src: Path) -> Server:
    port = free_port()
    policy = _policy(workdir, key, upstream, plugins)
    argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(policy), "--port", str(port)]
    argv += ["--no-watch", "--log-level", "warning"]
    # The checkout first; an inherited PYTHONPATH after it (e.g. a metadata shim for a worktree
    # whose installed entry points name plugins it does not have).
    path = os.pathsep.join(p for p in (str(src), os.environ.get("BENCH_EXTRA_PYTHONPATH", "")) if p)
    env = {"OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": path}
    return Server(key, argv, port, workdir / f"{key}.log", env=env, cwd=str(src))


class Bodies:
    """wrk Lua scripts, one per prompt size and body mode (rotating tickets or one body)."""

    def __init__(self, workdir: Path, loader: Loader) -> None:
        self.loader = loader
        self.lua: dict[tuple[int, bool], Path] = {}
        self.sets: dict[tuple[int, bool], tickets.TicketSet] = {}
        for size in GUARD_SIZES:
            for same in (False, True):
                name = f"ticket-{size}{'-same' if same else ''}"
                self.sets[(size, same)] = ticket_set = tickets.TicketSet(size, same=same)
                self.lua[(size, same)] = workdir / f"{name}.lua"
                ticket_set.write_lua(self.lua[(size, same)], workdir / f"{name}.jsonl")
                # The Python load client (no wrk) sends one body: the set's first.
                (workdir / f"{name}.json").write_bytes(ticket_set.body(0))

    def load(self, url: str, size: int, seconds: int, same: bool) -> dict[str, Any]:
        loader = self.loader
        loader.lua = self.lua[(size, same)]  # Loader.load uses loader.lua for the non-prose body
        loader.body = self.lua[(size, same)].with_suffix(".json")
        return loader.load(url, 16, seconds)


def _probe(url: str, stop: threading.Event, out: list[float]) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.is_set():
        t0 = time.perf_counter()
        with contextlib.suppress(OSError), opener.open(url, timeout=5) as resp:
            resp.read()
            out.append((time.perf_counter() - t0) * 1000)
        stop.wait(0.02)


def measure(row: GRow, bodies: Bodies, upstream: Server, seconds: int, probe: bool) -> float:
    reset_upstream(upstream)
    samples: list[float] = []
    stop = threading.Event()
    thread = None
    if probe:
        thread = threading.Thread(
            target=_probe, args=(row.server.url + "/health", stop, samples), daemon=True
        )
        thread.start()
    drain(row.server)
    before = row.server.cpu_precise()
    r = bodies.load(row.server.url + CHAT, row.size, seconds, row.same)
    stop.set()
    # Requests still in flight when wrk stops are finished by the server (a 64 KB guarded request
    # takes tens of ms, 16 of them are in flight): count their CPU and the requests themselves,
    # as the fake upstream saw them, rather than charge their work to wrk's completed count.
    drain(row.server)
    cpu = row.server.cpu_precise() - before
    served = max(r["requests"], len(_get_json(upstream.url + "/_fake/requests")))
    if thread is not None:
        thread.join(10)
        if samples:
            row.probe_p99.append(statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0])
    row.errors += r["errors"]
    if r["requests"]:  # wrk reports 0 ms when nothing completed: not a latency
        row.p50.append(r["p50_ms"])
    us = float(cpu / max(1, served) * 1e6)
    row.cpu_us.append(us)
    return us


def _check(row: GRow, bodies: Bodies) -> None:
    body = bodies.sets[(row.size, row.same)].body(0)
    req = urllib.request.Request(row.server.url + CHAT, data=body, headers=payload.HEADERS, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        body = json.loads(resp.read())
    if resp.status != 200 or not body["choices"][0]["message"]["content"]:
        raise RuntimeError(f"{row.key}: unexpected answer {resp.status}")


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = "{:.2f}") -> str:
    return "—" if value is None else spec.format(value)


def render(rows: list[GRow], rss: dict[str, float]) -> list[str]:
    floor = {r.size: _med(r.cpu_us) for r in rows if r.key == "pt-aiohttp"}
    floor_p50 = {r.size: _med(r.p50) for r in rows if r.key == "pt-aiohttp"}
    out = [
        "| row | prompt | CPU/req (µs) | vs pass-through (median [min-max]) | added CPU µs per KB "
        "| p50 @16c (ms) | added p50 | /health p99 under load (ms) | RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu, kb = _med(r.cpu_us), r.size / 1024
        base = floor.get(r.size)
        added_kb = (cpu - base) / kb if cpu is not None and base is not None else None
        ratio = f"{_med(r.ratio):.2f}x [{min(r.ratio):.2f}-{max(r.ratio):.2f}]" if r.ratio else "1.00x"
        p50, fp50 = _med(r.p50), floor_p50.get(r.size)
        added = p50 - fp50 if p50 is not None and fp50 is not None else None
        out.append(
            f"| {r.key} | {r.size // 1024} KB | {_fmt(cpu, '{:.0f}')} | {ratio} | {_fmt(added_kb, '{:.0f}')} "
            f"| {_fmt(p50)} | {_fmt(added, '{:+.2f}')} | {_fmt(_med(r.probe_p99))} "
            f"| {_fmt(rss.get(r.server.name), '{:.0f}')} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s per row (default 4 of 2 s)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int, help="seconds of load per row and round")
    parser.add_argument("--compare", type=Path, help="another checkout: its guarded and pii rows too")
    parser.add_argument(
        "--same-body", action="store_true", help="one body on every request (default: rotating tickets)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    rounds = args.rounds or (2 if args.quick else 4)
    seconds = args.seconds or (1 if args.quick else 2)
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-guarded-"))
    servers: list[Server] = []
    started = time.monotonic()
    try:
        upstream = fake_upstream(workdir, ROOT)
        up_api = upstream.url + "/v1"
        pt = passthrough_floor(workdir, HERE, up_api)
        policies: dict[str, tuple[list[Any], Path]] = {
            "empty": ([], ROOT),
            "guarded": (GUARDED_PLUGINS, ROOT),
        }
        policies |= {part: (plugins, ROOT) for part, plugins in GUARD_PARTS.items()}
        if args.compare:
            src = args.compare.resolve()
            policies |= {
                "guarded (compare)": (GUARDED_PLUGINS, src),
                "pii (compare)": (GUARD_PARTS["pii"], src),
            }
        sidecars = {
            key: _sidecar(workdir, key.replace(" ", "-").strip("()"), plugins, up_api, src)
            for key, (plugins, src) in policies.items()
        }
        for key, server in sidecars.items():
            server.name = key
        servers = [upstream, pt, *sidecars.values()]
        for server in servers:
            server.start()
        for server in servers:
            server.wait_listening(60)
        loader = Loader(workdir, force_python=False)
        bodies = Bodies(workdir, loader)
        rows: list[GRow] = []
        same = args.same_body
        for size in GUARD_SIZES:
            rows.append(GRow("pt-aiohttp", pt, size, same))
            for key in ("empty", "guarded", "guarded (compare)"):
                if key in sidecars:
                    rows.append(GRow(key, sidecars[key], size, same))
        for key in [*GUARD_PARTS, "pii (compare)"]:
            if key in sidecars:
                rows.append(GRow(key, sidecars[key], GUARD_SIZES[0], same))
        if not same:  # what the text caches flatter: these rows again, one body on every request
            for key in SAME_BODY_ROWS:
                rows.append(GRow(f"{key} (same body)", sidecars[key], GUARD_SIZES[0], True))
        print(f"# load generator: {loader.name}", file=sys.stderr)
        for row in rows:
            if row.key != "pt-aiohttp":
                _check(row, bodies)
            bodies.load(row.server.url + CHAT, row.size, 1, row.same)  # warm-up
        for rnd in range(rounds):
            print(f"# round {rnd + 1}/{rounds}", file=sys.stderr)
            for size in GUARD_SIZES if rnd % 2 == 0 else reversed(GUARD_SIZES):
                group = [r for r in rows if r.size == size]
                floor_row = group[0]
                others = group[1:] if rnd % 2 == 0 else list(reversed(group[1:]))
                floor_us = measure(floor_row, bodies, upstream, seconds, False)
                for row in others:
                    us = measure(row, bodies, upstream, seconds, row.key == "guarded" and size == 65536)
                    row.ratio.append(us / floor_us)
        rss = {s.name: s.rss() for s in [pt, *sidecars.values()]}
        table = render(rows, rss)
        guarded2k = next(r for r in rows if r.key == "guarded" and r.size == GUARD_SIZES[0])
        goal = _med(guarded2k.ratio)
        verdict = "MET" if goal is not None and goal <= 3.0 else "NOT MET"
        header = [
            f"# Guarded policy (issue 17) — {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            "",
            f"- command: `python benchmarks/guarded.py {' '.join(given)}` "
            f"({rounds} rounds x {seconds} s per row at 16 connections, wrk; took "
            f"{time.monotonic() - started:.0f} s)",
            f"- code: {code_version()}" + (f"; compare rows from {args.compare}" if args.compare else ""),
            f"- machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
            "- prompt: `tickets.TicketSet(size)`, support tickets with ~1.6 email addresses and ~1.6 "
            "phone numbers per KB; "
            + (
                "**one body on every request** (`--same-body`)"
                if same
                else "a different ticket on every request (256 generated, a per-request id in the "
                "e-mail addresses and in a reference, the system prompt constant); `(same body)` rows: "
                "one body on every request, ratio against the pass-through's rotating figure"
            )
            + "; the fake upstream echoes it back (moderation checks ~the same text on output, pii "
            "restores its placeholders)",
            "",
        ]
        notes = [
            "",
            "CPU/req: the process's CPU time (all threads, schedstat) from the start of the 16-connection "
            "load until the process is idle again / the requests the fake upstream received in that "
            "time (requests in flight when wrk stops are finished and counted), median over rounds. "
            "The ratio is taken round by round against the "
            "pass-through driven with the same body in the same round. added CPU µs per KB = (row - "
            "pass-through) / prompt KB. /health p99: a probe every 20 ms while the guarded sidecar "
            "serves the 64 KB prompt at 16 connections.",
            "",
            f"Goal of issue 17, guarded policy on the 2 KB prompt ≤ 3.0x the pass-through: **{verdict}** "
            f"({_fmt(goal)}x).",
        ]
        text = "\n".join([*header, *table, *notes]) + "\n"
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "guarded.md").write_text(text)
        raw = {
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "rounds": rounds,
            "seconds": seconds,
            "same_body": same,
            "rows": [
                {
                    "key": r.key,
                    "size": r.size,
                    "same_body": r.same,
                    "cpu_us": r.cpu_us,
                    "ratio": r.ratio,
                    "p50_ms": r.p50,
                    "probe_p99_ms": r.probe_p99,
                    "errors": r.errors,
                    "rss_mb": rss.get(r.server.name),
                }
                for r in rows
            ],
        }
        (args.out / "guarded.json").write_text(json.dumps(raw, indent=1) + "\n")
        if any(r.errors for r in rows):
            print("WARN: errors during load: " + ", ".join(f"{r.key}/{r.size}" for r in rows if r.errors))
        return 0
    except (KeyboardInterrupt, RuntimeError) as exc:
        return report_abort(exc, servers)
    finally:
        stop_all(servers)


if __name__ == "__main__":
    sys.exit(main())
