"""Budget check cost on Redis Cluster vs one Redis server, as ratios from one run.

    python benchmarks/redis_cluster_budget.py [--checks 400 --rounds 7]

Why this exists (issue 23): in a cluster a request's limits live in different slots, so the
budget reserves limit by limit (one script per limit, all at once, give-back on refusal)
instead of one Lua call over every limit (proxy/budget/redis_backend.py). This measures what
that costs per request, on the same machine in the same run, so the ratio holds even on a busy
shared box where absolute figures move:

* one budget check = what the plugin does per request: ``reserve`` (3 windowed limits +
  1 concurrency lease), ``adjust`` (the correction after the answer), ``release`` (the lease);
* backends: ``memory`` (no Redis: the baseline), ``single`` (one ``redis-server``, one Lua call),
  ``cluster`` (3 primaries / 3 replicas, per-limit protocol), all started here on loopback
  (the same helpers as the tests, tests/e2e/redis_topologies.py);
* figures: median over rounds of the wall-clock p50 per check and of this thread's CPU per
  check (the client side: what the sidecar spends); "added" is minus ``memory``; the ratio
  line is cluster / single for both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.budget.backends import Backend, MemoryBackend, SlotCheck, WindowCheck  # noqa: E402
from proxy.budget.redis_backend import RedisBackend  # noqa: E402
from proxy.redis import connect, parse  # noqa: E402
from tests.e2e import redis_topologies as rt  # noqa: E402


async def _round(backend: Backend, checks: int, tag: str) -> tuple[float, float]:
    """p50 wall µs and mean thread-CPU µs per budget check."""
    walls = []
    cpu0 = time.thread_time()
    for i in range(checks):
        key = f"@bench/{tag}:tenant{i % 50}"
        windows = [
            WindowCheck(f"{key}/rpm", 60, 1e12, 1),
            WindowCheck(f"{key}/tpm", 60, 1e12, 500),
            WindowCheck(f"{key}/usd", 3600, 1e12, 0.01),
        ]
        slot = SlotCheck(f"{key}/inflight", 1000, f"req-{i}", 30)
        t0 = time.perf_counter()
        res = await backend.reserve(windows, [slot])
        await backend.adjust([(res.charges[1], -300.0), (res.charges[2], -0.006)])
        await backend.release([slot])
        walls.append(time.perf_counter() - t0)
    cpu = (time.thread_time() - cpu0) / checks
    return statistics.median(walls) * 1e6, cpu * 1e6


async def _run(urls: dict[str, str], checks: int, rounds: int) -> dict[str, tuple[float, float]]:
    backends: dict[str, Any] = {"memory": MemoryBackend()}
    for name, url in urls.items():
        target = parse(url)
        client = connect(target, connect_timeout=2.0, socket_timeout=None, decode_responses=True)
        backends[name] = RedisBackend(client, "bench:", timeout=2.0, per_limit=target.cluster)
    for name, b in backends.items():  # warm up: connections, slot map, scripts
        await _round(b, 20, f"warm-{name}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in backends}
    for r in range(rounds):
        order = list(backends) if r % 2 == 0 else list(reversed(backends))
        for name in order:
            results[name].append(await _round(backends[name], checks, f"r{r}"))
    for b in backends.values():
        await b.aclose()
    return {
        name: (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
        for name, rows in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if rt.MISSING:
        sys.exit(rt.SKIP)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with rt.single(base / "single") as single_url, rt.cluster(base / "cluster") as cluster:
            figures = asyncio.run(
                _run({"single": single_url, "cluster": cluster.url}, args.checks, args.rounds)
            )
    mem_wall, mem_cpu = figures["memory"]
    print(f"{'backend':<10}{'p50 µs':>10}{'CPU µs':>10}{'added p50':>12}{'added CPU':>12}")
    for name, (wall, cpu) in figures.items():
        print(f"{name:<10}{wall:>10.0f}{cpu:>10.0f}{wall - mem_wall:>12.0f}{cpu - mem_cpu:>12.0f}")
    (sw, sc), (cw, cc) = figures["single"], figures["cluster"]
    print(
        f"cluster / single: p50 x{cw / sw:.2f}, CPU x{cc / sc:.2f}; "
        f"added p50 x{(cw - mem_wall) / (sw - mem_wall):.2f}, "
        f"added CPU x{(cc - mem_cpu) / (sc - mem_cpu):.2f}"
    )


if __name__ == "__main__":
    main()
