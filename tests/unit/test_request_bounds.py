"""Request-side work is bounded (issue 16, items 1 and 6).

* Token counting of a huge text encodes a bounded prefix and bounds the rest from above.
* The budget step counts a big request in the CPU pool, never on the event loop's thread.
* Guards stop at the request deadline instead of finishing thousands of scans first, and score
  at most ``INLINE_TEXTS`` texts on the event loop whatever their size.

Mechanisms are asserted (what ran where, how many scans), never timings.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import proxy.tokens.counting as counting
from plugins.budget import BudgetConfig, BudgetPlugin
from plugins.injection import InjectionConfig, InjectionPlugin
from plugins.moderation import ModerationConfig, ModerationPlugin
from plugins.pii import PiiConfig, PiiPlugin
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.shared import INLINE_TEXTS
from proxy.errors import UpstreamTimeout
from proxy.models import ChatRequest, Route
from proxy.tokens import count_text
from proxy.tokens.encodings import get_encoding

TEXTS = {
    "prose": "The greenhouse keeps the seedlings warm after the sun has gone. " * 80,
    "one character": "x" * 5000,
    "digits": "0123456789" * 500,
    "cjk and emoji": "漢字かな交じり文😀🙂 " * 400,
    "whitespace": " \n\t " * 1200,
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_a_text_past_exact_chars_is_bounded_from_above(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    text = TEXTS[name]
    exact = len(get_encoding("o200k_base").encode_ordinary(text))
    monkeypatch.setattr(counting, "EXACT_CHARS", 1000)
    monkeypatch.setattr(counting, "CACHE_MAX_CHARS", 100)
    bounded = count_text(text, "gpt-4o")
    head = len(get_encoding("o200k_base").encode_ordinary(text[:1000]))
    assert bounded == head + len(text[1000:].encode()) + 1  # the documented formula
    assert bounded >= exact  # never under-counts


def test_big_texts_are_not_memoised() -> None:
    counting._counts.clear()
    count_text("a" * (counting.CACHE_MAX_CHARS + 1), "gpt-4o")
    assert len(counting._counts) == 0
    count_text("short " * 20, "gpt-4o")  # past SHORT_CHARS, which skip the memo when compiled
    assert len(counting._counts) == 1


class _Deps(Deps):
    """Records which thread ran each CPU-pool call."""

    def __init__(self) -> None:
        super().__init__(Resources())
        self.offloaded: list[str] = []

    async def run_cpu(self, fn: Any, *args: Any) -> Any:
        self.offloaded.append(getattr(fn, "__name__", repr(fn)))
        return await super().run_cpu(fn, *args)


def _ctx(route: Route = Route.CHAT, deadline: float | None = None) -> RequestContext:
    ctx = RequestContext("rid", route, {}, "rev", "gpt-4o")
    ctx.deadline = deadline
    return ctx


def test_a_budget_that_counts_tokens_builds_the_encodings_at_policy_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Building the BPE tables holds the GIL ~0.25 s: on the first request it stalled the loop."""
    import plugins.budget.plugin as budget_module

    calls: list[int] = []
    monkeypatch.setattr(budget_module, "preload_encodings", lambda: calls.append(1))
    BudgetPlugin(
        BudgetConfig(limits=[{"name": "rpm", "requests": 10, "window": "minute"}]), Deps(Resources())
    )  # type: ignore[list-item]
    assert calls == []  # no token limit: nothing to count
    BudgetPlugin(BudgetConfig(limits=[{"name": "tpm", "tokens": 10, "window": "minute"}]), Deps(Resources()))  # type: ignore[list-item]
    assert calls == [1]


async def test_the_budget_counts_a_big_prompt_in_the_cpu_pool() -> None:
    deps = _Deps()
    plugin = BudgetPlugin(BudgetConfig(limits=[{"name": "tpm", "tokens": 10**9, "window": "minute"}]), deps)  # type: ignore[list-item]
    small = ChatRequest({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, Route.CHAT)
    await plugin.on_request(small, _ctx())
    assert deps.offloaded == []
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 20_000}]}
    await plugin.on_request(ChatRequest(big, Route.CHAT), _ctx())  # no raw bytes: sized by walking
    assert deps.offloaded == ["count_chat_request"]
    emb = ChatRequest({"model": "text-embedding-3-small", "input": ["word " * 10_000] * 2}, Route.EMBEDDINGS)
    await plugin.on_request(emb, _ctx(Route.EMBEDDINGS))
    assert deps.offloaded[-1] == "count_embedding_inputs"


class _Counting:
    """Wraps a detector's ``scan``: counts calls and records the thread of each."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self.inner = inner
        self.thresholds = inner.thresholds
        self.delay = delay
        self.threads: list[str] = []

    def scan(self, text: str, cache: Any = None) -> Any:
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        return self.inner.scan(text, cache)


def _guard(kind: str, delay: float = 0.0) -> tuple[Any, _Counting]:
    deps = Deps(Resources())
    if kind == "injection":
        plugin: Any = InjectionPlugin(InjectionConfig(), deps)
    else:
        plugin = ModerationPlugin(ModerationConfig(), deps)
    counting_scan = _Counting(plugin.detector, delay)
    plugin.detector = counting_scan
    return plugin, counting_scan


def _many(n: int) -> ChatRequest:
    return ChatRequest({"model": "m", "input": [f"item {i}" for i in range(n)]}, Route.EMBEDDINGS)


@pytest.mark.parametrize("kind", ["injection", "moderation"])
async def test_a_guard_past_the_deadline_stops_scanning(kind: str) -> None:
    plugin, scans = _guard(kind)
    with pytest.raises(UpstreamTimeout) as err:
        await plugin.on_request(_many(1000), _ctx(Route.EMBEDDINGS, deadline=time.monotonic() - 1))
    assert err.value.code == "deadline_exceeded"
    assert err.value.status == 504
    assert len(scans.threads) <= INLINE_TEXTS  # only what was scored inline before the first batch


@pytest.mark.parametrize("kind", ["injection", "moderation"])
async def test_a_deadline_passing_mid_request_stops_the_pool_batches(kind: str) -> None:
    plugin, scans = _guard(kind, delay=0.002)
    with pytest.raises(UpstreamTimeout):
        await plugin.on_request(_many(1000), _ctx(Route.EMBEDDINGS, deadline=time.monotonic() + 0.1))
    assert len(scans.threads) < 1000


@pytest.mark.parametrize("kind", ["injection", "moderation"])
async def test_many_tiny_texts_are_scored_in_pool_batches_not_on_the_loop(kind: str) -> None:
    plugin, scans = _guard(kind)
    loop_thread = threading.current_thread().name
    await plugin.on_request(_many(500), _ctx(Route.EMBEDDINGS))
    assert len(scans.threads) == 500
    assert scans.threads.count(loop_thread) == INLINE_TEXTS
    assert all(name.startswith("cpu") for name in scans.threads[INLINE_TEXTS:])


async def test_pii_stops_at_the_deadline_and_offloads_many_texts() -> None:
    deps = _Deps()
    plugin = PiiPlugin(PiiConfig(), deps)
    with pytest.raises(UpstreamTimeout):
        await plugin.on_request(_many(1000), _ctx(Route.EMBEDDINGS, deadline=time.monotonic() - 1))
    calls: list[int] = []
    analyze = plugin.engine.analyze_many

    def counted(texts: Any, *args: Any) -> Any:
        calls.append(len(texts))
        return analyze(texts, *args)

    plugin.engine.analyze_many = counted  # type: ignore[method-assign]
    await plugin.on_request(_many(INLINE_TEXTS + 1), _ctx(Route.EMBEDDINGS))  # tiny, but many
    assert deps.offloaded == ["_detect"]
    with pytest.raises(UpstreamTimeout):  # the check inside the pool thread, between batches
        plugin._detect(["a"] * 1000, True, time.monotonic() - 1)


@pytest.mark.parametrize("action", ["block", "redact"])
async def test_the_blocklist_matches_a_big_text_in_the_cpu_pool(action: str) -> None:
    from plugins.blocklist import OFFLOAD_CHARS, BlocklistConfig, BlocklistPlugin
    from proxy.errors import Rejected

    deps = _Deps()
    plugin = BlocklistPlugin(BlocklistConfig(keywords=("secret",), action=action), deps)  # type: ignore[arg-type]
    small = ChatRequest({"model": "m", "messages": [{"role": "user", "content": "a secret"}]}, Route.CHAT)
    big = ChatRequest(
        {"model": "m", "messages": [{"role": "user", "content": "x" * OFFLOAD_CHARS + " a secret"}]},
        Route.CHAT,
    )
    for req in (small, big):
        if action == "block":
            with pytest.raises(Rejected):
                await plugin.on_request(req, _ctx())
        else:
            await plugin.on_request(req, _ctx())
            assert req.body["messages"][0]["content"].endswith("a [REDACTED]")
    assert deps.offloaded == ["_search" if action == "block" else "_subn"]  # the big one only


def test_validation_defaults_equal_the_policy_limits_defaults() -> None:
    """proxy.models.validate cannot import the policy (layers): its defaults mirror ``limits:``."""
    from dataclasses import asdict

    from proxy.models.validate import DEFAULT_LIMITS, DefaultLimits
    from proxy.policy.schema import Limits

    assert isinstance(DEFAULT_LIMITS, DefaultLimits)
    policy = Limits()
    for name, value in asdict(DEFAULT_LIMITS).items():
        assert getattr(policy, name) == value, name
