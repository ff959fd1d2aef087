"""Instruction texts (system / developer messages) are analysed once per step, not per request,
and the request that reuses the kept analysis is redacted exactly as a fresh analysis would."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from plugins.pii import PiiConfig, PiiPlugin
from plugins.pii.plugin import INSTRUCTION_CACHE_ENTRIES, INSTRUCTION_CACHE_MAX_CHARS
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.pii import PiiEngine, Span, engine_key
from proxy.models import ChatRequest, Route
from tests.datasets import dataset_or_skip

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload


class CountingEngine(PiiEngine):
    """The real pattern engine, counting the texts it is asked to analyse."""

    def __init__(self) -> None:
        self.analysed: list[str] = []
        super().__init__("off")

    def analyze_many(
        self, texts: Sequence[str], entities: list[str] | None, min_score: float
    ) -> list[list[Span]]:
        self.analysed += texts
        return super().analyze_many(texts, entities, min_score)


@pytest.fixture(scope="module")
def engine() -> CountingEngine:
    return CountingEngine()


def _plugin(engine: PiiEngine) -> PiiPlugin:
    cfg = PiiConfig(ner="off", secret=SecretStr("s" * 32))
    deps = Deps(Resources(), cpu_workers=1)
    deps.resource(engine_key(cfg.ner, cfg.recognizers), lambda: engine)
    return PiiPlugin(cfg, deps)


def _body(system: str, user: str) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


async def _send(plugin: PiiPlugin, body: dict[str, Any]) -> dict[str, Any]:
    req = ChatRequest(copy.deepcopy(body), Route.CHAT)
    ctx = RequestContext("r", Route.CHAT, {"x-conversation-id": "c1"})
    await plugin.on_request(req, ctx)
    return {"body": req.body, "decisions": [(d.rule, d.action, d.detail) for d in ctx.decisions]}


def test_a_system_prompt_is_analysed_once_and_redacted_the_same(engine: CountingEngine) -> None:
    system = "You help Acme. Escalations go to ops@acme-widgets.example.org or +1 415 555 0100."
    user = payload.ticket(2048)
    cached, fresh = _plugin(engine), _plugin(engine)
    engine.analysed.clear()
    first = asyncio.run(_send(cached, _body(system, user)))
    second = asyncio.run(_send(cached, _body(system, user)))
    assert engine.analysed.count(system) == 1  # the second request reused the analysis
    assert engine.analysed.count(user) == 2  # user text is analysed every time
    reference = asyncio.run(_send(fresh, _body(system, user)))
    assert first == second == reference
    assert "<EMAIL_ADDRESS_" in json.dumps(second["body"]["messages"][0])


def test_kept_analyses_equal_fresh_ones_on_the_dataset(engine: CountingEngine) -> None:
    """Every dataset text as a system prompt: the kept spans are the fresh spans, text by text."""
    data = json.loads((dataset_or_skip("pii") / "presidio_synth_dataset_v2.json").read_text())
    texts = [row["full_text"] for row in data[:300]]
    plugin = _plugin(engine)

    async def run() -> None:
        for text in texts:
            first = await plugin._detect_slots([text, "hi"], ["system", "user"], None)
            again = await plugin._detect_slots([text, "hi"], ["system", "user"], None)
            assert first == again == plugin._detect([text, "hi"], True), text

    asyncio.run(run())


def test_the_cache_is_bounded(engine: CountingEngine) -> None:
    plugin = _plugin(engine)
    long = "x" * (INSTRUCTION_CACHE_MAX_CHARS + 1)

    async def run() -> None:
        for i in range(INSTRUCTION_CACHE_ENTRIES + 10):
            await plugin._detect_slots([f"system prompt {i}"], ["system"], None)
        await plugin._detect_slots([long], ["system"], None)

    asyncio.run(run())
    assert len(plugin._instructions._found) == INSTRUCTION_CACHE_ENTRIES
    assert plugin._instructions.get(long, True) is None
    assert plugin._instructions.get("system prompt 0", True) is None  # the oldest went first
