"""In-process cost of tracing + metrics per request, against the same policy without them.

    python benchmarks/telemetry_micro.py [--requests 400 --rounds 9]

Why this exists: the ``sidecar-telemetry`` row of ``run.py`` (target: tracing at ratio 1.0 with
the in-memory exporter, plus metrics, add < 0.3 ms p50 per request) moves by tenths of a
millisecond with whatever else runs on a shared 2-core machine, and a wall-clock p50 over
sockets cannot say *where* the time goes. This drives the real ASGI apps (``build_sidecar`` +
``build_app``, lifespan included) in one process and one thread, against the built-in demo
upstream (``builtin:demo``, an ASGI app called in-process), with the benchmark row's policy
(the default policy's plugins) and its telemetry settings:

* ``off``: ``OTEL_TRACES_EXPORTER=none``, ``observability.metrics.enabled: false``
  (the ``sidecar-default-notel`` row);
* ``metrics``: metrics on, no trace exporter (the default of every other row);
* ``tracing+metrics``: ``OTEL_TRACES_EXPORTER=memory``, ``sample_ratio: 1.0``, metrics on
  (the ``sidecar-telemetry`` row).

Each round sends ``--requests`` sequential requests to each app, in alternating order; the
figures are medians over rounds of thread CPU µs per request (what the sidecar spends; wall time
is shown too, and the mean time in the garbage collector: a collection runs in whichever
block happens to trigger it, so it is shared out unevenly between the cases). "added" is the
median over rounds of the difference with ``off`` in the same round, and the PASS/FAIL line
compares the ``tracing+metrics`` one with the issue's 300 µs budget.

It also prints, for information, the OpenTelemetry SDK's own cost per span measured in
isolation (start + 8 attributes + end, exported to the in-memory ring) and the time
``content.redact`` takes on adversarial input (long runs an attacker controls).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.payload import chat_body  # noqa: E402
from proxy.app import build_app, build_sidecar  # noqa: E402
from proxy.observability import content  # noqa: E402
from proxy.settings import Settings  # noqa: E402

BUDGET_US = 300.0
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "off": ("none", {"metrics": {"enabled": False}}),
    "metrics": ("none", {"metrics": {"enabled": True}}),
    "tracing+metrics": ("memory", {"tracing": {"sample_ratio": 1.0}, "metrics": {"enabled": True}}),
}


class App:
    """One sidecar app, started (lifespan) and called directly with ASGI messages."""

    def __init__(self, workdir: Path, name: str, exporter: str, observability: dict[str, Any]) -> None:
        doc = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
        doc["observability"] = observability
        path = workdir / f"{name.replace('+', '_')}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.environ["OTEL_TRACES_EXPORTER"] = exporter  # read once, by build_sidecar
        self.sidecar = build_sidecar(Settings(policy_path=path, watch=False))
        self.app = build_app(self.sidecar)
        self.body = chat_body()
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"sidecar"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
                (b"authorization", b"Bearer sk-test"),
            ],
            "server": ("sidecar", 80),
            "client": ("127.0.0.1", 1),
        }
        self._stop: asyncio.Event | None = None
        self._lifespan: asyncio.Task[None] | None = None

    async def start(self) -> None:
        started = asyncio.Event()
        self._stop = stop = asyncio.Event()
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> MutableMapping[str, Any]:
            try:
                return next(messages)
            except StopIteration:
                await stop.wait()
                return {"type": "lifespan.shutdown"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"].startswith("lifespan.startup"):
                started.set()

        self._lifespan = asyncio.create_task(self.app({"type": "lifespan"}, receive, send))
        await started.wait()

    async def stop(self) -> None:
        if self._stop is not None and self._lifespan is not None:
            self._stop.set()
            await self._lifespan

    async def request(self) -> int:
        sent = False
        status = 0

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(dict(self.scope), receive, send)  # background tasks (finish) included
        return status


class _GcClock:
    """Wall time spent in the garbage collector (``gc.callbacks``), in ns since the last ``take``."""

    def __init__(self) -> None:
        self.total = 0
        self._started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.total += time.perf_counter_ns() - self._started

    def take(self) -> int:
        total, self.total = self.total, 0
        return total


GC = _GcClock()


async def _block(app: App, n: int) -> tuple[float, float, float]:
    """µs per request: (thread CPU, wall, garbage collection) for ``n`` sequential requests."""
    GC.take()
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        if await app.request() != 200:
            raise RuntimeError("the sidecar did not answer 200")
    cpu, wall = time.thread_time_ns() - cpu0, time.perf_counter_ns() - wall0
    return cpu / n / 1000, wall / n / 1000, GC.take() / n / 1000


Samples = dict[str, tuple[list[float], list[float], list[float]]]


async def measure(requests: int, rounds: int) -> Samples:
    with tempfile.TemporaryDirectory() as tmp:
        apps = {name: App(Path(tmp), name, exp, obs) for name, (exp, obs) in CASES.items()}
        for app in apps.values():
            await app.start()
        samples: Samples = {name: ([], [], []) for name in apps}
        try:
            for app in apps.values():  # warm-up: imports, caches, first-call paths
                await _block(app, 100)
            for r in range(rounds):
                order = list(apps.items())
                for name, app in order if r % 2 == 0 else reversed(order):
                    for series, value in zip(samples[name], await _block(app, requests), strict=True):
                        series.append(value)
            memory = apps["tracing+metrics"].sidecar.telemetry
            exported = memory.tracing.memory.exported if memory and memory.tracing.memory else 0
            print(f"spans exported by tracing+metrics: {exported} "
                  f"({exported / (100 + requests * rounds):.1f} per request)\n")  # fmt: skip
        finally:
            for app in apps.values():
                await app.stop()
        return samples


def span_cost(n: int = 5000) -> float:
    """µs of thread CPU per SDK span (start with 8 attributes, end, in-memory export), alone."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from proxy.observability.tracing import MemoryExporter

    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(MemoryExporter()))
    tracer = provider.get_tracer("bench")
    attrs = {f"attr.{i}": i for i in range(8)}
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time_ns()
        for _ in range(n):
            tracer.start_span("span", attributes=attrs).end()
        best = min(best, (time.thread_time_ns() - t0) / n / 1000)
    return best


def redact_cost() -> dict[str, float]:
    """ms per ``content.redact`` call on adversarial and ordinary inputs."""
    inputs: dict[str, str] = {
        '"x" * 2000': "x" * 2000,
        '"x" * 20_000': "x" * 20_000,
        '"a." * 10_000': "a." * 10_000,
        '"1a" * 10_000': "1a" * 10_000,
        '"-" * 20_000': "-" * 20_000,
        '"a@" * 10_000': "a@" * 10_000,
        "2 KB prose with an email": "Contact bob@example.com about card 4111 1111 1111 1111. " * 36,
    }
    out: dict[str, float] = {}
    for name, text in inputs.items():
        t0 = time.perf_counter()
        content.redact(text)
        out[name] = (time.perf_counter() - t0) * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=41, help="rounds (alternating order)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # as run.py's servers: --log-level warning
    samples = asyncio.run(measure(args.requests, args.rounds))
    base_cpu = statistics.median(samples["off"][0])
    base_wall = statistics.median(samples["off"][1])
    print(f"{args.rounds} rounds of {args.requests} sequential requests per app; thread CPU µs/request\n")
    print("| case | CPU µs p50 | range | wall µs p50 | GC µs mean | x off | added CPU µs | added wall µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    added: dict[str, float] = {}
    for name, (cpu, wall, collect) in samples.items():
        p50, w50 = statistics.median(cpu), statistics.median(wall)
        # The added cost per round (paired), then the median: cancels slow rounds.
        paired = statistics.median(c - b for c, b in zip(cpu, samples["off"][0], strict=True))
        added[name] = paired
        gc_us = statistics.fmean(collect)
        print(
            f"| {name} | {p50:.1f} | {min(cpu):.1f} … {max(cpu):.1f} | {w50:.1f} "
            f"| {gc_us:.1f} | {p50 / base_cpu:.2f} | {paired:+.1f} | {w50 - base_wall:+.1f} |"
        )
    verdict = "PASS" if added["tracing+metrics"] < BUDGET_US else "FAIL"
    print(f"\n{verdict}: tracing (ratio 1.0, memory exporter) + metrics add "
          f"{added['tracing+metrics']:.1f} µs CPU per request (budget {BUDGET_US:.0f} µs)")  # fmt: skip
    print(f"\nOpenTelemetry SDK alone: {span_cost():.1f} µs CPU per span (8 attributes, memory export)\n")
    print("| content.redact input | ms |")
    print("|---|---:|")
    for name, ms in redact_cost().items():
        print(f"| {name} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
