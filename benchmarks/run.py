#!/usr/bin/env python
"""Sidecar overhead benchmark: the sidecar vs. minimal pass-through proxies vs. direct.

    python benchmarks/run.py            # full run: ~6-7 min on 2 cores (more with profiles)
    python benchmarks/run.py --quick    # ~2 minutes: two short rounds, no profiles
    python benchmarks/run.py --guarded  # the guarded policy at 2/16/64 KB (benchmarks/guarded.py)

Starts on loopback, each as its own process: the fake upstream, the pass-through proxy
(``benchmarks/passthrough.py``) once per HTTP client, the sidecar with an empty policy, with the
default policy's plugins, with the resilience wrappers (fallback, retry, circuit breaker,
bulkhead), with the budget plugin (memory, and Redis on loopback: a redis-server of its own)
and with the content-scanning plugins (injection, moderation, both, pii; driven with a ~2 KB prose
prompt and compared with an empty policy driven with the same body), all pointed at the fake
upstream. Drives each row with wrk (Lua script for the POST body; a
Python aiohttp client in its own process when wrk is missing), measures TTFT with a Python SSE
client, then runs a fault storm: the resilience sidecar in front of a primary that answers 503
half the time (``benchmarks/flaky.py``) and a healthy backup. Prints markdown tables plus
PASS/FAIL lines for the targets. The report is also written to ``benchmarks/results/latest.md``
(raw numbers in ``latest.json``). See ``benchmarks/README.md`` for what each column means.

Rows are measured in interleaved rounds (the order reverses every other round, the baseline
next to the sidecar rows) so that background load on a shared machine hits every row alike;
ratios are against the aiohttp pass-through measured in the same run. CPU time per request,
read from /proc, is the figure to trust.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload
from config import (
    AUTO_PROFILE_BUDGET_S,
    BASELINE,
    FULL,
    HERE,
    MEASURE_ORDER,
    PLUGIN_ROWS,
    PROFILE_PRIORITY,
    QUICK,
    ROOT,
)
from measure import (
    Loader,
    build_storm,
    check_row,
    measure_round,
    measure_streams,
    measure_wrappers,
    profile_rows,
    run_storm,
)
from procs import Server, fake_upstream, stop_all
from report import (
    _f,
    client_comparison,
    render,
    render_paced,
    render_plugin_costs,
    render_storm,
    render_wrappers,
    targets,
)
from rows import build_rows, code_version

# -- main ---------------------------------------------------------------------------------


class _Deadline(Exception):
    pass


def main() -> int:
    if "--guarded" in sys.argv[1:]:  # the guarded policy of issue 17: benchmarks/guarded.py
        import guarded

        return guarded.main([a for a in sys.argv[1:] if a != "--guarded"])
    parser = argparse.ArgumentParser(description="sidecar overhead benchmark (loopback only)")
    parser.add_argument("--quick", action="store_true", help="two short rounds, 8 s storm (~2 min)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 6, quick 2)")
    parser.add_argument(
        "--python-load", action="store_true", help="use the Python load client even if wrk exists"
    )
    parser.add_argument(
        "--profile",
        default="auto",
        help="py-spy the sidecar under load: auto (the rows that failed a target, within ~285 s of "
        "run time; not with --quick), "
        "always, never, or comma-separated row keys",
    )
    parser.add_argument("--profile-seconds", type=int, help="py-spy seconds per row (default 8, quick 5)")
    parser.add_argument("--storm-seconds", type=int, help="fault storm length (default 30, quick 8; 0: skip)")
    parser.add_argument("--max-seconds", type=int, default=600, help="hard bound on the whole run")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where latest.md/json go")
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    if args.rounds:
        mode.rounds = max(1, args.rounds)
    if args.profile_seconds:
        mode.profile_s = max(1, args.profile_seconds)
    if args.storm_seconds is not None:
        mode.storm = max(0, args.storm_seconds)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])

    def on_alarm(*_: object) -> None:
        raise _Deadline(f"the run exceeded --max-seconds {args.max_seconds}")

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(args.max_seconds)
    started = time.monotonic()
    version = code_version()
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    servers: list[Server] = []
    try:
        upstream = fake_upstream(workdir, ROOT)
        servers.append(upstream)
        upstream.start()
        upstream.wait_listening()
        rows = build_rows(workdir, upstream)
        live = [r for r in rows if not r.skipped]
        storm = build_storm(workdir) if mode.storm else None
        aux = [r.aux for r in live if r.aux]
        for server in aux:  # redis first: the budget sidecar connects to it
            servers.append(server)
            server.start()
        for server in aux:
            server.wait_listening()
        started_servers = [r.server for r in live if r.server] + (storm.servers if storm else [])
        for server in started_servers:
            servers.append(server)
            server.start()
        for server in started_servers:
            server.wait_listening()
        loader = Loader(workdir, args.python_load)
        print(
            f"# load generator: {loader.name}; servers: uvicorn + uvloop, 1 worker, log level warning",
            file=sys.stderr,
        )
        for row in live:
            check_row(row)
            if mode.warmup:
                loader.load(row.url, 16, mode.warmup, row.prose)
        measure_streams(live, loader, mode.paced, payload.PACED_SCENARIO, paced=True)
        for rnd in range(mode.rounds):
            print(f"# round {rnd + 1}/{mode.rounds}", file=sys.stderr)
            order = sorted(live, key=lambda r: MEASURE_ORDER.index(r.key))
            for row in order if rnd % 2 == 0 else reversed(order):
                measure_round(row, upstream, loader, mode)
        measure_streams(live, loader, mode.ttft, payload.TTFT_SCENARIO, paced=False)
        for row in live:
            if row.server:
                row.rss = row.server.rss()
        print("# in-process cost of the resilience wrappers (wrappers.py)", file=sys.stderr)
        wrappers = measure_wrappers(workdir, mode)
        if storm:
            run_storm(storm, loader, mode.storm)
        direct = rows[0]
        table = render(rows, direct)
        failed: set[str] = set()
        checks = targets(rows, direct, failed, wrappers)
        clients = client_comparison(rows)
        elapsed = time.monotonic() - started

        want = args.profile.lower()
        sidecars = [r for r in live if r.key.startswith("sidecar")]
        if want == "auto":  # the rows that failed a target (the plugin rows with the empty policy)
            to_profile = [] if args.quick else [r for r in sidecars if r.key in failed]
            refs = {r.ref for r in to_profile if r.key in PLUGIN_ROWS} - failed
            to_profile += [r for r in sidecars if r.key in refs]
        elif want == "always":
            to_profile = sidecars
        elif want == "never":
            to_profile = []
        else:
            keys = set(want.split(","))
            to_profile = [r for r in live if r.key in keys and r.server]
        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("profile-*.txt"):  # from an earlier run: latest.md will not list them
            old.unlink()
        if to_profile and not any(r.key == BASELINE for r in to_profile):
            to_profile = [r for r in live if r.key == BASELINE] + to_profile
        left_out: list[str] = []
        if want == "auto" and to_profile:  # keep the whole run near AUTO_PROFILE_BUDGET_S
            fits = int((AUTO_PROFILE_BUDGET_S - (time.monotonic() - started)) // (mode.profile_s + 4))
            to_profile.sort(key=lambda r: PROFILE_PRIORITY.index(r.key) if r.key in PROFILE_PRIORITY else 99)
            to_profile, dropped = to_profile[: max(0, fits)], to_profile[max(0, fits) :]
            if not any(r.key in failed for r in to_profile):  # only the references would be left
                to_profile, dropped = [], to_profile + dropped
            left_out = [r.key for r in dropped]
        to_profile.sort(key=lambda r: MEASURE_ORDER.index(r.key))
        profiles = profile_rows(to_profile, loader, mode.profile_s, args.out, workdir) if to_profile else []
        if left_out:
            profiles.append(
                f"- not profiled, to keep the run under ~{AUTO_PROFILE_BUDGET_S // 60 + 1} minutes: "
                f"{', '.join(left_out)} (run again with --profile {','.join(left_out)})"
            )

        upstream_us = direct.upstream_cpu_us
        load_avg = os.getloadavg()
        header = [
            f"# Sidecar benchmark — {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            "",
            f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
            f"load average at the end {load_avg[0]:.2f} / {load_avg[1]:.2f}",
            f"- command: `{command}` ({'quick' if args.quick else 'full'}: {mode.rounds} round(s), "
            f"{mode.d16}s at 16 connections + {mode.d1}s at 1 connection per row and round, then "
            f"{mode.ttft} + {mode.paced} paced streams per row, then a {mode.storm}s fault storm; "
            f"took {elapsed:.0f}s)",
            f"- code: {version}"
            + ("" if code_version() == version else " (WARNING: the sources changed during the run)"),
            f"- load generator: {loader.name}; every server: uvicorn + uvloop + httptools, 1 worker, "
            "log level warning (no access log)",
            f"- body: {len(payload.chat_body())} bytes of chat messages; streams: "
            f"{len(payload.STREAM_TEXT)} characters in 16-character deltas, sent back to back (TTFT "
            "columns) or 20 ms apart (paced table)",
            "",
        ]
        notes = [
            "",
            f"Fake upstream CPU/request (every row pays it too): {_f(upstream_us, '{:.0f}')} µs. "
            "added = row minus the direct row. CPU/req: CPU time of the proxy process (schedstat, "
            "ns resolution; the same total as utime+stime) during "
            "the 16-connection load divided by the requests served, median of the rounds — the "
            "figure to trust on a shared machine; the latency and req/s columns move with whatever "
            "else runs. The ratio column is the median of per-round ratios (rows measured seconds "
            "apart); the CPU target line also gives it normalised: each side divided by the fake "
            "upstream's CPU/request in the same window, which cancels most background-load inflation.",
        ]
        report = [
            *header,
            *table,
            *notes,
            "",
            *render_paced(rows, direct),
            "",
            "## Plugin rows against the empty policy",
            "",
            *render_plugin_costs(rows),
            "",
            render_wrappers(wrappers),
            "",
            "Differences are taken round by round (the rows are measured seconds apart) and the median "
            "is shown with the range over the rounds in brackets. overhead vs empty's = (row - "
            "pass-through) / (empty - pass-through) CPU/request. CPU/request is the steady figure "
            "here: on this shared 2-core machine the 1-connection p50 moves by tenths of a "
            "millisecond with whatever else is scheduled. The resilience row's policy routes over "
            "two targets (both the healthy fake), so the fallback step takes its multi-target path. "
            "Redis: "
            "redis-server's own CPU per request, and its network reads per request (INFO stats: "
            "one per round trip; a pipeline is one).",
            "",
            "## Fault storm",
            "",
            *(render_storm(storm) if storm else ["(skipped: --storm-seconds 0)"]),
            "",
            "Python client (`load.py storm`, closed loop, one aiohttp connection pool) against the "
            "resilience sidecar; primary and backup are `benchmarks/flaky.py` (the fake upstream "
            "in-process behind a counter that answers a random share 503), each counting what it "
            "received. Attempts per request = requests the two upstreams received / client requests.",
            "",
            "## Targets",
            "",
            "```",
            *checks,
            "```",
            "",
            "## HTTP client of the pass-through",
            "",
            *clients,
        ]
        if profiles:
            report += ["", "## Profiles (py-spy, 16 connections)", "", *profiles]
        text = "\n".join(report) + "\n"
        print(text)
        (args.out / "latest.md").write_text(text)
        raw = {
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "command": command,
            "mode": mode.__dict__,
            "load_generator": loader.name,
            "rows": [
                {k: v for k, v in row.__dict__.items() if k not in ("server", "aux")}
                | {
                    "rps": row.rps,
                    "cpu_us": row.cpu_us,
                    "upstream_cpu_us": row.upstream_cpu_us,
                    "cpu1_us": row.cpu1 / row.requests1 * 1e6 if row.server and row.requests1 else None,
                    "p50_ms": row.p50_ms,
                    "p99_ms": row.p99_ms,
                    "ttft_p50_ms": row.ttft_ms,
                }
                for row in rows
            ],
            "targets": checks,
            "storm": storm.result if storm else None,
            "wrappers_in_process": wrappers,
        }
        (args.out / "latest.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        return 0
    except (_Deadline, KeyboardInterrupt, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark aborted: {exc!r}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        stop_all(servers)
        for server in servers:
            if server.proc and server.proc.returncode not in (None, 0, -signal.SIGTERM):
                print(
                    f"# {server.name} exited with {server.proc.returncode}:\n{server.tail()}", file=sys.stderr
                )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
