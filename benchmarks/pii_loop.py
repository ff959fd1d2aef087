#!/usr/bin/env python
"""Is the event loop still responsive while the NER model works? ``/healthz`` under NER load.

    python benchmarks/pii_loop.py [--concurrency 16] [--seconds 10]

Starts the fake upstream and the real sidecar (``python -m proxy serve``) with a ``pii`` step
using ``ner: required``, keeps ``--concurrency`` chat requests with a ~2 KB PII-dense prompt in
flight, and meanwhile probes ``/healthz`` every 20 ms on its own connection. Prints health p50 /
p99 / max under load (and idle, for reference) and a PASS/FAIL line against the target
(p99 < 20 ms with 16 concurrent NER requests). Timings, so a benchmark, never a unit test: the
mechanism (NER in the CPU pool, one model call at a time) is asserted in
tests/unit/test_pii_offload.py. The probe runs in a process of its own, so what it measures is
the sidecar, not the load generator's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pii_micro import PII_DENSE_2K, _pad  # noqa: E402
from benchmarks.procs import LOOPBACK, Server, free_port  # noqa: E402

POLICY = """version: 1
upstreams:
  default:
    base_url: {upstream}/v1
plugins:
  - type: pii
    id: pii
    ner: required
"""


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def _probe(port: int, seconds: float, out: Queue[list[float]]) -> None:
    """In its own process (so the load generator's event loop cannot delay the measurement):
    GET /healthz on one keep-alive connection every 20 ms, latency in ms."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, resp.status
        time.sleep(0.02)
    conn.close()
    out.put(times)


def _probe_for(port: int, seconds: float) -> list[float]:
    """Run ``_probe`` in a child process and return its samples."""
    ctx = multiprocessing.get_context("fork")
    q: Queue[list[float]] = ctx.Queue()
    proc = ctx.Process(target=_probe, args=(port, seconds, q))
    proc.start()
    times = q.get(timeout=seconds + 30)
    proc.join(10)
    return times


async def _load(client: object, url: str, stop: asyncio.Event, done: list[float]) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    body = {"model": "m", "messages": [{"role": "user", "content": _pad(PII_DENSE_2K)}]}
    while not stop.is_set():
        t0 = time.perf_counter()
        r = await client.post(url, json=body)
        assert r.status_code == 200, r.text[:300]
        done.append((time.perf_counter() - t0) * 1000)


async def _measure(base: str, port: int, concurrency: int, seconds: float) -> dict[str, list[float]]:
    import httpx

    loop = asyncio.get_running_loop()
    idle = await loop.run_in_executor(None, _probe_for, port, min(3.0, seconds / 3))
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as load:
        done: list[float] = []
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(_load(load, f"{base}/v1/chat/completions", stop, done))
            for _ in range(concurrency)
        ]
        await asyncio.sleep(1.0)  # every worker has a request in flight
        busy = await loop.run_in_executor(None, _probe_for, port, seconds)
        stop.set()
        await asyncio.gather(*workers)
    return {"idle": idle, "busy": busy, "requests": done}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from proxy.detectors.pii import ner_module

    if ner_module() is None:
        print("SKIP: no spaCy English model installed (pip install 'policy-sidecar[ner]')")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        up_port, port = free_port(), free_port()
        upstream = Server(
            "upstream", [sys.executable, "-m", "proxy", "fake-upstream", "--port", str(up_port)], up_port,
            work / "upstream.log", cwd=str(ROOT),
        )  # fmt: skip
        policy = work / "pii.yaml"
        policy.write_text(POLICY.format(upstream=upstream.url))
        sidecar = Server(
            "sidecar",
            [sys.executable, "-m", "proxy", "serve", "--policy", str(policy), "--port", str(port),
             "--no-watch", "--log-level", "warning"],
            port, work / "sidecar.log", cwd=str(ROOT),
        )  # fmt: skip
        try:
            upstream.start()
            sidecar.start()
            upstream.wait_listening()
            sidecar.wait_listening(120)
            res = asyncio.run(_measure(sidecar.url, port, args.concurrency, args.seconds))
        finally:
            sidecar.stop()
            upstream.stop()
    req = res["requests"]
    print(f"{args.concurrency} concurrent NER requests (~2 KB PII-dense prompt), {args.seconds:.0f} s")
    print()
    print("| /healthz | probes | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name in ("idle", "busy"):
        xs = res[name]
        print(f"| {name} | {len(xs)} | {statistics.median(xs):.1f} | {_pct(xs, 0.99):.1f} | {max(xs):.1f} |")
    print()
    print(
        f"chat requests: {len(req)} done, {len(req) / args.seconds:.1f}/s, "
        f"p50 {statistics.median(req):.0f} ms, p99 {_pct(req, 0.99):.0f} ms"
    )
    p99 = _pct(res["busy"], 0.99)
    print(f"{'PASS' if p99 < 20 else 'FAIL'}: /healthz p99 under load {p99:.1f} ms (target < 20 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
