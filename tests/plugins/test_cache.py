"""Unit tests of the cache step's parts: keys, fingerprint, Cache-Control, LRU, stream <-> JSON."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from plugins.blocklist import BlocklistConfig
from plugins.budget import BudgetConfig
from plugins.cache import CachePlugin
from plugins.cache.config import CacheConfig
from plugins.cache.keys import cache_key, deterministic, parse_cache_control, policy_fingerprint
from plugins.cache.replay import Assembler, complete
from plugins.cache.semantic import SemanticIndex
from plugins.cache.store import Entry, MemoryStore
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.errors import ConfigError
from proxy.models.chat import Route
from proxy.models.completion_stream import completion_to_sse
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.sse import SSEParser

BODY: dict[str, Any] = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}


def ctx(tenant: str | None = None, key: str = "Bearer a") -> RequestContext:
    return RequestContext("r", Route.CHAT, {"authorization": key}, model="m", tenant=tenant)


def test_key_ignores_framing_and_order_but_not_content_or_caller() -> None:
    base = cache_key(BODY, ctx(), "fp")
    reordered = dict(reversed(list(BODY.items())))
    framed = {
        **BODY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u",
        "metadata": {"a": 1},
    }
    assert cache_key(reordered, ctx(), "fp") == base
    assert cache_key(framed, ctx(), "fp") == base
    assert cache_key({**BODY, "temperature": 0.0001}, ctx(), "fp") != base
    assert cache_key(BODY, ctx(tenant="t"), "fp") != base
    assert cache_key(BODY, ctx(key="Bearer b"), "fp") != base
    assert cache_key(BODY, ctx(), "other-policy") != base


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert deterministic({"temperature": 0})
    assert deterministic({"temperature": 0.0})
    assert deterministic({"seed": 0})
    assert not deterministic({})
    assert not deterministic({"temperature": 0.2})
    assert not deterministic({"temperature": False})


def test_cache_control_parsing() -> None:
    assert parse_cache_control(None) == parse_cache_control("") == parse_cache_control("private")
    cc = parse_cache_control('No-Cache, max-age="30", no-store')
    assert (cc.no_cache, cc.no_store, cc.max_age) == (True, True, 30)
    assert parse_cache_control("max-age=abc").max_age is None


def test_fingerprint_follows_enforcing_answer_changing_steps_only() -> None:
    redact = BlocklistConfig(type="blocklist", patterns=("x",), action="redact")
    budget = BudgetConfig.model_validate(
        {"type": "budget", "limits": [{"name": "r", "requests": 5, "window": "minute"}]}
    )
    base = policy_fingerprint([], "routing")
    assert policy_fingerprint([budget], "routing") == base  # budgets never change an answer
    assert policy_fingerprint([redact.model_copy(update={"mode": "shadow"})], "routing") == base
    assert policy_fingerprint([redact], "routing") != base
    assert policy_fingerprint([], "other-upstreams") != base


def test_config_checks() -> None:
    with pytest.raises(ValidationError):
        CacheConfig(type="cache", backend="redis")
    with pytest.raises(ValidationError, match="route"):
        CacheConfig.model_validate({"type": "cache", "route_ttls": {"chat.completion": 5}})
    cfg = CacheConfig.model_validate({"type": "cache", "ttl": 9, "route_ttls": {"messages": 3}})
    assert (cfg.ttl_for("messages"), cfg.ttl_for("chat.completions")) == (3, 9)


def test_memory_store_is_an_lru_bounded_by_bytes() -> None:
    async def run() -> None:
        now = time.time()
        size = len(Entry({"x": "a" * 100}, now).dumps())  # every entry below has this size
        store = MemoryStore(max_bytes=3 * size)
        for k in "abc":
            await store.put(k, Entry({"x": k * 100}, now), keep=60)
        assert await store.get("a") is not None  # a is now the most recent
        await store.put("d", Entry({"x": "d" * 100}, now), keep=60)
        assert await store.get("b") is None  # least recently used went first
        assert {k for k in "acd" if await store.get(k) is not None} == set("acd")
        assert store.size_bytes <= 3 * size
        await store.put("old", Entry({"x": 1}, now - 100), keep=50)  # past its retention
        assert await store.get("old") is None

    asyncio.run(run())


ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"},
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            "finish_reason": "tool_calls",
        },
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
}


def test_stream_replay_round_trips_through_the_real_codec() -> None:
    sse = completion_to_sse(ANSWER, include_usage=True)
    assert sse.endswith(b"data: [DONE]\n\n")
    codec, asm = ChatStreamCodec(), Assembler()
    for event in SSEParser(1 << 20).feed(sse):
        for ev in codec.decode(event):
            asm.see(ev)
    assert codec.ended
    body = asm.body("m")
    assert body is not None
    assert [c["message"] for c in body["choices"]] == [c["message"] for c in ANSWER["choices"]]
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "tool_calls"]
    assert body["usage"] == ANSWER["usage"]
    assert b'"usage"' not in completion_to_sse(ANSWER, include_usage=False)


def test_incomplete_answers_are_not_stored() -> None:
    assert complete(ANSWER)
    cut = orjson.loads(orjson.dumps(ANSWER))
    cut["choices"][1]["finish_reason"] = None
    assert not complete(cut)
    assert not complete({"choices": []})
    asm = Assembler()
    codec = ChatStreamCodec()
    sse = completion_to_sse(ANSWER, include_usage=False)
    first_event = sse[: sse.index(b"\n\n") + 2]  # choice 0's text, before its finish reason
    for event in SSEParser(1 << 20).feed(first_event):
        for ev in codec.decode(event):
            asm.see(ev)
    assert asm.body("m") is None  # the choice has no finish reason yet


def _deps(*steps: Any) -> Deps:
    deps = Deps(Resources())
    deps.steps = tuple(steps)
    return deps


def test_an_answer_changing_step_before_the_cache_is_refused() -> None:
    redact = BlocklistConfig(type="blocklist", patterns=("x",), action="redact")
    cache = CacheConfig(type="cache")
    with pytest.raises(ConfigError, match="blocklist"):
        CachePlugin(cache, _deps(redact, cache))
    CachePlugin(cache, _deps(cache, redact))  # guards after the cache: stored post-guard
    CachePlugin(cache, _deps(redact.model_copy(update={"mode": "shadow"}), cache))  # changes nothing
    through = CacheConfig(type="cache", replay_through_guards=True)
    CachePlugin(through, _deps(redact, through))  # hits go through every response hook


def test_foreign_or_broken_entries_are_misses() -> None:
    good = Entry({"choices": []}, 5.0)
    assert Entry.loads(good.dumps()) == good
    for raw in (b"not json", b"{}", b'{"b": [], "t": 1}', b'{"b": {}, "t": "x"}', b"[1]"):
        assert Entry.loads(raw) is None


def test_semantic_index_finds_the_closest_prompt_in_its_scope_only() -> None:
    index = SemanticIndex(max_entries=2)
    index.add("s", [1.0, 0.0], "k1")
    index.add("s", [0.6, 0.8], "k2")
    index.add("other", [1.0, 0.0], "k3")  # over the cap: k1, the oldest, goes
    assert index.nearest("s", [1.0, 0.1]) == ("k2", pytest.approx(0.6 / (1.01**0.5) + 0.08 / (1.01**0.5)))
    assert index.nearest("other", [1.0, 0.0]) == ("k3", pytest.approx(1.0))
    assert index.nearest("nobody", [1.0, 0.0]) is None
    assert index.nearest("s", [1.0, 0.0, 0.0]) == ("k2", 0.0)  # another dimension never matches
