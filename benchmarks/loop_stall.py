#!/usr/bin/env python
"""Event-loop stalls under 64 KB prompts (issue 17): /health p50/p99 and CPU per request, per setting.

    python benchmarks/loop_stall.py [--rounds N] [--seconds S] [--size BYTES]
    python benchmarks/loop_stall.py --config "1ms=SIDECAR_SWITCH_INTERVAL=0.001" --config ...

Starts the fake upstream and one sidecar per configuration, all with the guarded policy
(``config.GUARDED_PLUGINS``, as ``guarded.py``), each configuration being a set of ``SIDECAR_*``
environment variables (default set: the switch interval at Python's 5 ms, 1 ms and 0.5 ms, with
two CPU-pool threads and with one, and the checkout's defaults). Drives each with wrk at 16
connections with the 64 KB support ticket (``payload.ticket``) while a probe thread GETs
``/health`` every 20 ms, rounds interleaved (order reversed every other round). Reports, per
configuration, the probe's p50, p99 and max, the CPU per request (all threads, schedstat,
requests in flight when wrk stops included) and the ratio of each to the first configuration,
round by round. No thresholds: it prints figures to choose a default by.

Why a probe and not the loop's own lag: ``/health`` answers from the event loop without touching
any plugin, so its latency is what a kubelet probe or any cheap request sees while big prompts
are scanned in the CPU pool.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload
from config import CHAT, GUARDED_PLUGINS, ROOT
from guarded import Bodies, GRow, _check, _sidecar, measure
from measure import Loader, drain
from procs import Server, fake_upstream, report_abort, stop_all

DEFAULT_CONFIGS = (
    "5ms-2workers=SIDECAR_SWITCH_INTERVAL=0,SIDECAR_CPU_WORKERS=2",  # before issue 17's loop work
    "1ms-2workers=SIDECAR_SWITCH_INTERVAL=0.001,SIDECAR_CPU_WORKERS=2",
    "0.5ms-2workers=SIDECAR_SWITCH_INTERVAL=0.0005,SIDECAR_CPU_WORKERS=2",
    "5ms-1worker=SIDECAR_SWITCH_INTERVAL=0,SIDECAR_CPU_WORKERS=1",
    "0.5ms-1worker=SIDECAR_SWITCH_INTERVAL=0.0005,SIDECAR_CPU_WORKERS=1",
    "defaults=",  # whatever this checkout's settings default to (1 ms, 1 worker)
)


@dataclass
class Config:
    name: str
    env: dict[str, str]
    row: GRow | None = None
    probe: list[list[float]] = field(default_factory=list)  # per round: the probe's samples (ms)


def parse_config(spec: str) -> Config:
    """``name=VAR=value,VAR=value`` (``name=`` alone: no variables, the built-in defaults)."""
    name, _, rest = spec.partition("=")
    env = dict(item.split("=", 1) for item in rest.split(",") if item)
    return Config(name, env)


def _q(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="name=VAR=value,... (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--size", type=int, default=65536, help="prompt characters (2048, 16384, 65536)")
    parser.add_argument(
        "--probe-prompt",
        type=int,
        default=0,
        help="the probe POSTs a guarded chat request with a ticket of this many characters instead "
        "of GET /health: what a small request waits behind the big ones (e.g. for the CPU pool)",
    )
    args = parser.parse_args(argv)
    configs = [parse_config(spec) for spec in (args.config or DEFAULT_CONFIGS)]
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-loopstall-"))
    servers: list[Server] = []
    try:
        upstream = fake_upstream(workdir, ROOT)
        up_api = upstream.url + "/v1"
        for i, cfg in enumerate(configs):
            server = _sidecar(workdir, f"stall-{i}", GUARDED_PLUGINS, up_api, ROOT)
            server.env.update(cfg.env)
            server.name = cfg.name
            cfg.row = GRow(cfg.name, server, args.size)
        servers = [upstream, *(c.row.server for c in configs if c.row)]
        for server in servers:
            server.start()
        for server in servers:
            server.wait_listening(60)
        bodies = Bodies(workdir, Loader(workdir, force_python=False))
        rows = [c.row for c in configs if c.row]
        for row in rows:
            _first_request(row)
        for row in rows:
            bodies.load(row.server.url + "/v1/chat/completions", row.size, 1)  # warm-up
            drain(row.server)
        for rnd in range(args.rounds):
            print(f"# round {rnd + 1}/{args.rounds}", file=sys.stderr)
            order = configs if rnd % 2 == 0 else list(reversed(configs))
            for cfg in order:
                assert cfg.row is not None
                before = len(cfg.row.probe_p99)
                samples = _measure_with_samples(cfg.row, bodies, upstream, args.seconds, args.probe_prompt)
                cfg.probe.append(samples)
                del cfg.row.probe_p99[before:]
        print(render(configs, args))
        return 0
    except (KeyboardInterrupt, RuntimeError) as exc:
        return report_abort(exc, servers)
    finally:
        stop_all(servers)


def _first_request(row: GRow) -> None:
    """``guarded._check``, retried: several sidecars starting together on 2 busy cores can take longer
    than its 30 s timeout to answer their first 64 KB request (lazy compiles, cold caches)."""
    for attempt in range(3):
        try:
            _check(row)
            return
        except TimeoutError:
            print(f"# {row.key}: first request timed out (attempt {attempt + 1})", file=sys.stderr)
    raise RuntimeError(f"{row.key}: no answer to the first request")


def _chat_probe(url: str, body: bytes, stop: threading.Event, out: list[float]) -> None:
    """``guarded._probe`` with a POST of a small chat request instead of GET /health."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.is_set():
        req = urllib.request.Request(url, data=body, headers=payload.HEADERS, method="POST")
        t0 = time.perf_counter()
        with contextlib.suppress(OSError), opener.open(req, timeout=30) as resp:
            resp.read()
            out.append((time.perf_counter() - t0) * 1000)
        stop.wait(0.02)


def _measure_with_samples(
    row: GRow, bodies: Bodies, upstream: Server, seconds: int, probe_prompt: int = 0
) -> list[float]:
    """``guarded.measure`` with the probe on, keeping the raw samples (it keeps only their p99)."""
    import guarded

    kept: list[float] = []
    original = guarded._probe
    chat = payload.ticket_body(probe_prompt) if probe_prompt else b""

    def probe(url: str, stop: threading.Event, out: list[float]) -> None:
        if probe_prompt:
            _chat_probe(url.removesuffix("/health") + CHAT, chat, stop, out)
        else:
            original(url, stop, out)
        kept.extend(out)

    guarded._probe = probe
    try:
        measure(row, bodies, upstream, seconds, True)
    finally:
        guarded._probe = original
    return kept


def render(configs: list[Config], args: argparse.Namespace) -> str:
    base = configs[0]
    assert base.row is not None
    probe = f"{args.probe_prompt // 1024} KB chat probe" if args.probe_prompt else "/health"
    out = [
        f"# Event-loop stalls: guarded policy, {args.size // 1024} KB ticket, 16 connections "
        f"({args.rounds} rounds x {args.seconds} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"| config | env | {probe} p50 (ms) | p99 (ms) | max (ms) | p99 vs first (median of rounds) "
        "| CPU/req (µs) | CPU vs first | p50 @16c (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cfg in configs:
        row = cfg.row
        assert row is not None
        pooled = [s for rnd in cfg.probe for s in rnd]
        p99s = [_q(r, 99) for r in cfg.probe if r]
        base_p99s = [_q(r, 99) for r in base.probe if r]
        p99_ratio = statistics.median(a / b for a, b in zip(p99s, base_p99s, strict=False))
        cpu_ratio = statistics.median(a / b for a, b in zip(row.cpu_us, base.row.cpu_us, strict=False))
        env = ", ".join(f"{k}={v}" for k, v in cfg.env.items()) or "(defaults)"
        out.append(
            f"| {cfg.name} | {env} | {_q(pooled, 50):.1f} | {_q(pooled, 99):.1f} | {max(pooled):.1f} "
            f"| {p99_ratio:.2f}x | {statistics.median(row.cpu_us):.0f} | {cpu_ratio:.2f}x "
            f"| {statistics.median(row.p50) if row.p50 else float('nan'):.0f} |"
        )
    out += [
        "",
        f"{probe}: a request every 20 ms from a probe thread while wrk drives the sidecar; p50/p99/max over "
        "all rounds' samples pooled. CPU/req: process CPU (all threads, schedstat) / requests the "
        "upstream received, median over rounds; ratios are taken round by round against the first row."
        + (
            " With a chat probe CPU/req also divides by the probe's requests, whose number depends "
            "on their latency: not a cost figure then."
            if args.probe_prompt
            else ""
        ),
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
