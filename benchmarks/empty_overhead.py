#!/usr/bin/env python
"""The empty policy's and the streamed path's CPU per request against the pass-through floor.

    python benchmarks/empty_overhead.py [--rounds 6] [--seconds 2] [--compare /other/checkout]

Issue 17's two rows every request pays whatever the policy: the empty policy (``plugins: []``)
on a whole 2 KB support ticket, and the same request streamed back in 50 content chunks. Starts on
loopback the fake upstream, the aiohttp pass-through (``passthrough.py``) and a sidecar with the
empty policy (with ``--compare DIR``, a second one run from another checkout's sources, so a
before/after is measured in the same run), then drives each with wrk at 16 connections, rounds
interleaved, and prints CPU per request (schedstat, the process's all threads) and the ratio to
the pass-through, taken round by round. A narrower, quicker tool than ``guarded.py``; writes
``results/empty_overhead.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload
import tickets
from config import CHAT, HERE, ROOT
from guarded import _sidecar
from measure import _get_json, drain, reset_upstream
from procs import Server, fake_upstream, passthrough_floor, report_abort, stop_all
from rows import code_version

#: 50 content chunks of 16 characters (plus the role chunk, the finish chunk and [DONE]).
STREAM_SCENARIO = json.dumps({"chunk_size": 16, "chunk_delay": 0.0, "content": "0123456789abcdef" * 50})


def _lua(path: Path, body: bytes, extra: dict[str, str]) -> Path:
    data = path.with_suffix(".json")
    data.write_bytes(body)
    headers = {**payload.HEADERS, **extra}
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    path.write_text(
        f'wrk.method = "POST"\nlocal f = assert(io.open("{data}", "rb"))\nwrk.body = f:read("*a")\n'
        f"f:close()\n{lines}\ndone = function(summary, latency, requests)\n{payload.WRK_REPORT_LUA}\nend\n"
    )
    return path


def _wrk(url: str, lua: Path, seconds: int) -> dict[str, Any]:
    import subprocess

    cmd = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return result


#: Non-2xx answers and socket errors per row and mode (counted, reported, not fatal: a rare
#: non-2xx under load shows up on the unchanged code as well).
ERRORS: dict[tuple[str, str], int] = {}


def _cpu_per_request(server: Server, upstream: Server, lua: Path, seconds: int, mode: str) -> float:
    reset_upstream(upstream)
    drain(server)
    before = server.cpu_precise()
    r = _wrk(server.url + CHAT, lua, seconds)
    drain(server)
    cpu = server.cpu_precise() - before
    served = max(r["requests"], len(_get_json(upstream.url + "/_fake/requests")))
    key = (server.name, mode)
    ERRORS[key] = ERRORS.get(key, 0) + r["status"] + r["read"] + r["connect"] + r["timeout"]
    return float(cpu / max(1, served) * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout: its empty sidecar too")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-empty-"))
    servers: list[Server] = []
    try:
        upstream = fake_upstream(workdir, ROOT)
        up_api = upstream.url + "/v1"
        sidecars = {"empty": _sidecar(workdir, "empty", [], up_api, ROOT)}
        if args.compare:
            sidecars["compare"] = _sidecar(workdir, "compare", [], up_api, args.compare.resolve())
            sidecars["compare"].name = "empty (compare)"
        servers = [upstream, passthrough_floor(workdir, HERE, up_api), *sidecars.values()]
        for server in servers:
            server.start()
        for server in servers:
            server.wait_listening(60)
        body = tickets.TicketSet(2048, same=True).body(0)
        stream_body = json.loads(body)
        stream_body["stream"] = True
        modes = {
            "whole": _lua(workdir / "whole.lua", body, {}),
            "streamed": _lua(
                workdir / "stream.lua",
                json.dumps(stream_body).encode(),
                {"x-fake-scenario": STREAM_SCENARIO},
            ),
        }
        targets = servers[1:]
        for server in targets:
            for lua in modes.values():
                _wrk(server.url + CHAT, lua, 1)  # warm-up
        cpu: dict[tuple[str, str], list[float]] = {}
        ratio: dict[tuple[str, str], list[float]] = {}
        for rnd in range(args.rounds):
            print(f"# round {rnd + 1}/{args.rounds}", file=sys.stderr)
            for mode, lua in modes.items():
                order = targets[1:] if rnd % 2 == 0 else list(reversed(targets[1:]))
                floor = _cpu_per_request(targets[0], upstream, lua, args.seconds, mode)
                cpu.setdefault((targets[0].name, mode), []).append(floor)
                for server in order:
                    us = _cpu_per_request(server, upstream, lua, args.seconds, mode)
                    cpu.setdefault((server.name, mode), []).append(us)
                    ratio.setdefault((server.name, mode), []).append(us / floor)
        lines = [
            f"# Empty policy and streamed overhead (issue 17) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
            "",
            f"- command: `python benchmarks/empty_overhead.py {' '.join(sys.argv[1:])}` "
            f"({args.rounds} rounds x {args.seconds} s per row at 16 connections, wrk; "
            f"took {time.monotonic() - started:.0f} s)",
            f"- code: {code_version()}" + (f"; compare row from {args.compare}" if args.compare else ""),
            f"- machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
            "- body: one 2 KB support ticket (`tickets.TicketSet(2048, same=True)`); streamed: the same "
            "with `stream: true`, answered in 50 content chunks of 16 characters",
            "",
            "| row | mode | CPU/req (µs) | vs pass-through (median [min-max]) | errors |",
            "|---|---|---:|---:|---:|",
        ]
        for (name, mode), values in cpu.items():
            r = ratio.get((name, mode))
            shown = f"{statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]" if r else "1.00x"
            errors = ERRORS.get((name, mode), 0)
            lines.append(f"| {name} | {mode} | {statistics.median(values):.0f} | {shown} | {errors} |")
        lines += [
            "",
            "CPU/req: the process's CPU time (all threads, schedstat) over the 16-connection load until "
            "it is idle again / the requests the fake upstream received, median over rounds; the ratio "
            "is taken round by round against the pass-through in the same round. errors: non-2xx answers "
            "and socket errors wrk counted over all rounds.",
        ]
        print("\n".join(lines))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "empty_overhead.md").write_text("\n".join(lines) + "\n")
        return 0
    except Exception as exc:
        return report_abort(exc, servers)
    finally:
        stop_all(servers)


if __name__ == "__main__":
    sys.exit(main())
