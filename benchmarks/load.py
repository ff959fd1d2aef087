"""Python load clients, run by ``run.py`` as a separate process; each prints one JSON object.

    python benchmarks/load.py load --url URL --body FILE --connections 16 --duration 5
        closed-loop POST load (the fallback when wrk is not installed): requests, p50/p99 latency
    python benchmarks/load.py ttft --url URL [--url URL2 ...] --body FILE --requests 100 \\
            --header 'x-fake-scenario: {...}'
        sequential streamed requests, one connection per URL, the URLs interleaved: time to the
        first content token and to the end of the stream, per request
    python benchmarks/load.py storm --url URL --body FILE --connections 8 --duration 30
        closed-loop POST load that keeps every answer: status, latency and the sidecar's
        ``x-sidecar-upstream`` header per request (the fault-storm section)

Only loopback URLs are accepted: this is a benchmark of local processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp


def _pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples; NaN when empty."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def _headers(extra: list[str]) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    for item in extra:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def run_load(
    url: str, body: bytes, headers: dict[str, str], connections: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status < 400
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "duration_s": elapsed,
        "p50_ms": _pct(latencies, 50) * 1000,
        "p99_ms": _pct(latencies, 99) * 1000,
    }


async def run_storm(
    url: str, body: bytes, headers: dict[str, str], connections: int, duration: float
) -> dict[str, Any]:
    """Like ``run_load``, but every request counts: its status (0 for a transport error), its
    latency and which upstream served it, overall and per second of the run."""
    records: list[tuple[float, float, int, str]] = []  # (start offset s, latency s, status, upstream)
    first_error: str | None = None
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal first_error
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        data = await resp.read()
                        status = resp.status
                        upstream = resp.headers.get("x-sidecar-upstream", "none")
                        if status != 200 and first_error is None:
                            first_error = f"status {status}: {data[:200]!r}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, upstream = 0, "none"
                    if first_error is None:
                        first_error = repr(exc)
                records.append((t0 - started, time.perf_counter() - t0, status, upstream))

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies = [r[1] for r in records]
    ok = [r[1] for r in records if r[2] == 200]
    statuses: dict[str, int] = {}
    upstreams: dict[str, int] = {}
    per_second: list[dict[str, int]] = []
    for offset, _, status, upstream in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        upstreams[upstream] = upstreams.get(upstream, 0) + 1
        second = int(offset)
        while len(per_second) <= second:
            per_second.append({})
        slot = per_second[second]
        slot[upstream] = slot.get(upstream, 0) + 1
        if status != 200:
            slot["failed"] = slot.get("failed", 0) + 1
    return {
        "requests": len(records),
        "duration_s": elapsed,
        "status": statuses,
        "upstream": upstreams,
        "per_second": per_second,
        "p50_ms": _pct(latencies, 50) * 1000,
        "p99_ms": _pct(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "ok_p50_ms": _pct(ok, 50) * 1000,
        "ok_p99_ms": _pct(ok, 99) * 1000,
        "first_error": first_error,
    }


def _token(line: bytes) -> bool:
    """True for an SSE data line carrying non-empty text (chat chunk content)."""
    if not line.startswith(b"data:"):
        return False
    data = line[5:].strip()
    if data == b"[DONE]":
        return False
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ())


async def run_ttft(urls: list[str], body: bytes, headers: dict[str, str], requests: int) -> dict[str, Any]:
    """``requests`` streams per URL, interleaved (request i goes to URL i mod n) so that every URL
    is measured under the same background load; one keep-alive connection per URL."""
    results: dict[str, dict[str, list[Any]]] = {
        url: {"ttft_ms": [], "stream_ms": [], "errors": []} for url in urls
    }
    sessions = {url: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for url in urls}
    try:
        warmup = len(urls)  # one discarded stream per URL first: connection setup, cold caches
        for i in range(warmup + requests * len(urls)):
            url = urls[i % len(urls)]
            res: dict[str, list[Any]] = (
                results[url] if i >= warmup else {"ttft_ms": [], "stream_ms": [], "errors": []}
            )
            t0 = time.perf_counter()
            first = None
            done = False
            try:
                async with sessions[url].post(url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        res["errors"].append(f"status {resp.status}: {(await resp.read())[:200]!r}")
                        continue
                    async for line in resp.content:
                        if first is None and _token(line):
                            first = time.perf_counter() - t0
                        elif line.strip() == b"data: [DONE]":
                            done = True
            except aiohttp.ClientError as exc:
                res["errors"].append(repr(exc))
                continue
            if first is None or not done:
                res["errors"].append(
                    "stream without a content token" if first is None else "stream without [DONE]"
                )
                continue
            res["ttft_ms"].append(first * 1000)
            res["stream_ms"].append((time.perf_counter() - t0) * 1000)
    finally:
        for session in sessions.values():
            await session.close()
    return {
        url: {
            "requests": requests,
            "errors": len(r["errors"]),
            "first_error": r["errors"][0] if r["errors"] else None,
            "ttft_ms": r["ttft_ms"],
            "stream_ms": r["stream_ms"],
        }
        for url, r in results.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="benchmark load clients")
    parser.add_argument("mode", choices=["load", "ttft", "storm"])
    parser.add_argument("--url", action="append", required=True, help="repeatable for ttft (interleaved)")
    parser.add_argument("--body", required=True, help="file with the request body")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE (repeatable)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    if any(urlsplit(u).hostname not in ("127.0.0.1", "localhost", "::1") for u in args.url):
        print("refusing a non-loopback URL", file=sys.stderr)
        return 2
    with open(args.body, "rb") as f:
        body = f.read()
    headers = _headers(args.header)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run  # type: ignore[assignment,unused-ignore]
    if args.mode == "load":
        result = runner(run_load(args.url[0], body, headers, args.connections, args.duration))
    elif args.mode == "storm":
        result = runner(run_storm(args.url[0], body, headers, args.connections, args.duration))
    else:
        result = runner(run_ttft(args.url, body, headers, args.requests))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
