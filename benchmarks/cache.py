#!/usr/bin/env python
"""The ``cache`` step: what a hit costs against the pass-through, in one run.

    python benchmarks/cache.py [--quick] [--rounds N] [--seconds S]

Starts on loopback the fake upstream, the aiohttp pass-through (``passthrough.py``), and three
sidecars: the empty policy, ``- type: cache`` (memory backend) and ``- type: cache`` on a
redis-server of its own (skipped without redis-server). Every request is the same ~1 KB
deterministic chat body (``temperature: 0``), so after the first one every request to a cache
row is a hit: the upstream is never called, and what is measured is the lookup, the key, the
JSON replay and the sidecar itself. wrk at 16 connections; rounds are interleaved (order
reversed every other round) and every CPU ratio is taken against the pass-through in the same
round. Prints a markdown table; writes ``results/cache.md`` and ``results/cache.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload
from config import CHAT, HERE, ROOT
from measure import Loader, _get_json, drain, reset_upstream
from procs import Server, fake_upstream, free_port, passthrough_floor, report_abort, stop_all
from rows import _policy, code_version, redis_server


@dataclass
class CRow:
    key: str
    server: Server
    cpu_us: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    errors: int = 0


def _body() -> bytes:
    body = json.loads(payload.chat_body())
    body["temperature"] = 0
    return json.dumps(body).encode()


def _sidecar(workdir: Path, key: str, plugins: list[Any], upstream: str) -> Server:
    port = free_port()
    policy = _policy(workdir, key, upstream, plugins)
    argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(policy), "--port", str(port)]
    argv += ["--no-watch", "--log-level", "warning"]
    env = {"OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(ROOT)}
    return Server(key, argv, port, workdir / f"{key}.log", env=env, cwd=str(ROOT))


def _check(row: CRow, body: bytes) -> str:
    """One request; returns the ``x-sidecar-cache`` header (a cache row must say hit after warm-up)."""
    req = urllib.request.Request(row.server.url + CHAT, data=body, headers=payload.HEADERS, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        answer = json.loads(resp.read())
        if resp.status != 200 or not answer["choices"][0]["message"]["content"]:
            raise RuntimeError(f"{row.key}: unexpected answer {resp.status}")
        return str(resp.headers.get("x-sidecar-cache", ""))


def measure(row: CRow, loader: Loader, upstream: Server, seconds: int) -> float:
    reset_upstream(upstream)
    drain(row.server)
    before = row.server.cpu_precise()
    r = loader.load(row.server.url + CHAT, 16, seconds)
    drain(row.server)
    cpu = row.server.cpu_precise() - before
    served = max(r["requests"], len(_get_json(upstream.url + "/_fake/requests")))
    row.errors += r["errors"]
    if r["requests"]:
        row.p50.append(r["p50_ms"])
    us = cpu / max(1, served) * 1e6
    row.cpu_us.append(us)
    return us


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = "{:.2f}") -> str:
    return "—" if value is None else spec.format(value)


def render(rows: list[CRow]) -> list[str]:
    floor_p50 = _med(rows[0].p50)
    out = [
        "| row | CPU/req (µs) | vs pass-through (median [min-max]) | p50 @16c (ms) "
        "| added p50 vs pass-through |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{_med(r.ratio):.2f}x [{min(r.ratio):.2f}-{max(r.ratio):.2f}]" if r.ratio else "1.00x"
        p50 = _med(r.p50)
        added = p50 - floor_p50 if p50 is not None and floor_p50 is not None else None
        cpu = _fmt(_med(r.cpu_us), "{:.0f}")
        out.append(f"| {r.key} | {cpu} | {ratio} | {_fmt(p50)} | {_fmt(added, '{:+.2f}')} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s per row (default 4 of 2 s)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    rounds = args.rounds or (2 if args.quick else 4)
    seconds = args.seconds or (1 if args.quick else 2)
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-cache-"))
    servers: list[Server] = []
    started = time.monotonic()
    try:
        upstream = fake_upstream(workdir, ROOT)
        up_api = upstream.url + "/v1"
        pt = passthrough_floor(workdir, HERE, up_api, "pass-through (aiohttp)")
        servers = [upstream, pt]
        rows = [CRow("pass-through (aiohttp)", pt)]
        plans: dict[str, list[Any]] = {
            "sidecar, empty policy (miss path)": [],
            "sidecar, cache hit (memory)": [{"type": "cache"}],
        }
        redis = redis_server(workdir) if shutil.which("redis-server") else None
        if redis is not None:
            servers.append(redis)
            url = f"redis://127.0.0.1:{redis.port}/0"
            plans["sidecar, cache hit (redis on loopback)"] = [
                {"type": "cache", "backend": "redis", "redis_url": url}
            ]
        for i, (key, plugins) in enumerate(plans.items()):
            server = _sidecar(workdir, f"sidecar-{i}", plugins, up_api)
            server.name = key
            servers.append(server)
            rows.append(CRow(key, server))
        for server in servers:
            server.start()
        for server in servers:
            server.wait_listening(60)
        loader = Loader(workdir, force_python=False)
        body = workdir / "deterministic.json"
        body.write_bytes(_body())
        loader._write_lua(loader.lua, body)
        for row in rows[1:]:
            _check(row, body.read_bytes())
            state = _check(row, body.read_bytes())
            if "cache" in row.key and state != "hit":
                raise RuntimeError(f"{row.key}: expected a hit after warm-up, got {state!r}")
        for row in rows:
            loader.load(row.server.url + CHAT, 16, 1)  # warm-up
        for rnd in range(rounds):
            print(f"# round {rnd + 1}/{rounds}", file=sys.stderr)
            floor_us = measure(rows[0], loader, upstream, seconds)
            for row in rows[1:] if rnd % 2 == 0 else list(reversed(rows[1:])):
                row.ratio.append(measure(row, loader, upstream, seconds) / floor_us)
        header = [
            f"# Cache hit cost — {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            "",
            f"- command: `python benchmarks/cache.py {' '.join(given)}` ({rounds} rounds x {seconds} s "
            f"per row at 16 connections, {loader.name}; took {time.monotonic() - started:.0f} s)",
            f"- code: {code_version()}",
            f"- machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
            "- body: the ~1 KB benchmark conversation with `temperature: 0`; cache rows answer every "
            "request but the first from the cache",
            "",
        ]
        notes = [
            "",
            "CPU/req: the process's CPU time from the start of the load until it is idle again / "
            "requests served; ratios are per round against the pass-through in the same round. "
            "Redis row: the sidecar's CPU only (redis-server's own CPU is not counted).",
        ]
        text = "\n".join([*header, *render(rows), *notes]) + "\n"
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cache.md").write_text(text)
        raw = {
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "rounds": rounds,
            "seconds": seconds,
            "rows": [
                {"key": r.key, "cpu_us": r.cpu_us, "ratio": r.ratio, "p50_ms": r.p50, "errors": r.errors}
                for r in rows
            ],
        }
        (args.out / "cache.json").write_text(json.dumps(raw, indent=1) + "\n")
        if any(r.errors for r in rows):
            print("WARN: errors during load: " + ", ".join(r.key for r in rows if r.errors))
        return 0
    except (KeyboardInterrupt, RuntimeError) as exc:
        return report_abort(exc, servers)
    finally:
        stop_all(servers)


if __name__ == "__main__":
    sys.exit(main())
