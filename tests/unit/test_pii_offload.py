"""Where detection runs: NER in the CPU pool (never on the event loop), bounded; small
pattern-only requests inline. Asserts the mechanism, no timings (benchmarks/pii_loop.py measures)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from plugins.pii import INLINE_MAX_CHARS, PiiConfig, PiiPlugin
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.pii import Span, engine_key
from proxy.models import ChatRequest, Route


class StubEngine:
    """Records which thread analyses, and how many analyses overlap; optionally blocks."""

    entities = frozenset({"EMAIL_ADDRESS"})
    ner_model = "stub"

    def __init__(self, uses_model: bool, gate: threading.Event | None = None) -> None:
        self.uses_model = uses_model
        self.gate = gate
        self.threads: list[str] = []
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def prepare(self, entities: object) -> None:
        """The real engine compiles its one-pass pre-scan here; nothing to build for the stub."""

    def analyze_many(self, texts: Sequence[str], entities: object, min_score: float) -> list[list[Span]]:
        with self.lock:
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.peak = max(self.peak, self.running)
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        with self.lock:
            self.running -= 1
        return [[Span(0, 3, "EMAIL_ADDRESS", 1.0)] if t.startswith("a@b") else [] for t in texts]


def _plugin(engine: StubEngine, workers: int = 2) -> PiiPlugin:
    cfg = PiiConfig(ner="auto")
    deps = Deps(Resources(), cpu_workers=workers)
    deps.resource(engine_key(cfg.ner, cfg.recognizers), lambda: engine)
    return PiiPlugin(cfg, deps)


async def _request(plugin: PiiPlugin, text: str) -> str:
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": text}]}, Route.CHAT)
    await plugin.on_request(req, RequestContext("r", Route.CHAT, {}))
    return str(req.body["messages"][0]["content"])


def test_ner_analysis_runs_in_the_cpu_pool_not_on_the_loop_thread() -> None:
    engine = StubEngine(uses_model=True)
    plugin = _plugin(engine)
    out = asyncio.run(_request(plugin, "a@b hello"))
    assert out.startswith("<EMAIL_ADDRESS_1>")
    assert engine.threads and all(name.startswith("cpu") for name in engine.threads), engine.threads


def test_small_pattern_only_requests_run_inline_big_ones_are_offloaded() -> None:
    engine = StubEngine(uses_model=False)
    plugin = _plugin(engine)

    async def both() -> None:
        loop_thread = threading.current_thread().name
        await _request(plugin, "a@b short")
        assert engine.threads[-1] == loop_thread
        await _request(plugin, "a@b " + "x" * INLINE_MAX_CHARS)
        assert engine.threads[-1].startswith("cpu")

    asyncio.run(both())


@pytest.mark.parametrize(("uses_model", "bound"), [(True, 1), (False, 2)])
def test_concurrent_requests_are_bounded_and_the_loop_stays_free(uses_model: bool, bound: int) -> None:
    """16 big requests at once: model calls one at a time (the model holds the GIL), pattern
    calls at most one per pool thread; meanwhile the event loop keeps running."""
    gate = threading.Event()
    engine = StubEngine(uses_model=uses_model, gate=gate)
    plugin = _plugin(engine, workers=2)
    big = "x" * INLINE_MAX_CHARS  # above the inline limit: offloaded even without a model

    async def run() -> list[str]:
        tasks = [asyncio.create_task(_request(plugin, f"a@b request {i} {big}")) for i in range(16)]
        for _ in range(400):
            await asyncio.sleep(0.005)
            if engine.running == bound:
                break
        for _ in range(20):  # let any excess call reach the engine if the bound were broken
            await asyncio.sleep(0.005)
        assert engine.running == bound and not any(t.done() for t in tasks)
        gate.set()
        return await asyncio.gather(*tasks)

    outs = asyncio.run(run())
    assert engine.peak == bound
    assert len(engine.threads) == 16 and all(o.startswith("<EMAIL_ADDRESS_1>") for o in outs)


def test_the_pattern_engine_says_it_runs_no_model() -> None:
    plugin = PiiPlugin(PiiConfig(ner="off"), Deps(Resources()))
    assert plugin.engine.uses_model is False
