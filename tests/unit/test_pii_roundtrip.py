"""Property: any prompt with PII, any chunking of the model's echo -> the client sees the originals."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.pii import PiiConfig, PiiPlugin
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.models import ChatRequest, ChatResponse, Route, StreamEvent, TextDelta

EMAILS = st.from_regex(r"[a-z]{2,8}\.[a-z]{2,6}@(example|corp|mail)\.(com|org|net)", fullmatch=True)
FIXED = st.sampled_from(
    [
        "4111 1111 1111 1111",
        "DE89370400440532013000",
        "+1 212-555-0142",
        "192.168.10.20",
        "https://intranet.example.com/x?id=7",
        "<PERSON_1>",
        "[email_address_1]",
        "< EMAIL_ADDRESS_1 >",
        "<LITERAL_1>",
        "<EMAIL_ADDRESS_",
        "[",
        "<",
    ]
)
WORDS = st.text(alphabet="abcxyzABC019_<>[] ,!-", min_size=0, max_size=12)
PROMPTS = st.lists(st.one_of(EMAILS, FIXED, WORDS), min_size=1, max_size=8).map(" ".join)


@pytest.fixture(scope="module")
def plugin() -> PiiPlugin:
    return PiiPlugin(PiiConfig(ner="off"), Deps(Resources()))


def _ctx(conv: str = "c1") -> RequestContext:
    return RequestContext("r1", Route.CHAT, {"x-conversation-id": conv})


async def _redact(plugin: PiiPlugin, prompt: str, ctx: RequestContext) -> str:
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": prompt}]}, Route.CHAT)
    await plugin.on_request(req, ctx)
    content: str = req.body["messages"][0]["content"]
    return content


async def _stream(plugin: PiiPlugin, ctx: RequestContext, chunks: list[str]) -> str:
    flt = plugin.open_stream(ctx)
    events: list[StreamEvent] = []
    for c in chunks:
        events += await flt.on_event(TextDelta(0, c)) if flt else [TextDelta(0, c)]
    if flt:
        events += await flt.on_end()
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=PROMPTS, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_any_prompt_any_chunking_restores_exactly(plugin: PiiPlugin, prompt: str, cuts: list[int]) -> None:
    async def run() -> None:
        ctx = _ctx()
        redacted = await _redact(plugin, prompt, ctx)
        for email in EMAIL_RX.findall(prompt):
            assert email not in redacted
        echo = "You said: " + redacted
        assert await _stream(plugin, ctx, _split(echo, cuts)) == "You said: " + prompt
        resp = ChatResponse(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": echo}}]}, Route.CHAT
        )
        await plugin.on_response(resp, ctx)
        assert resp.body["choices"][0]["message"]["content"] == "You said: " + prompt

    asyncio.run(run())


EMAIL_RX = re.compile(r"[a-z]{2,8}\.[a-z]{2,6}@(?:example|corp|mail)\.(?:com|org|net)")


def test_placeholders_are_stable_per_conversation_and_distinct_across(plugin: PiiPlugin) -> None:
    async def run() -> list[Any]:
        a1 = await _redact(plugin, "x a.b@example.com y c.d@example.com", _ctx("A"))
        a2 = await _redact(plugin, "c.d@example.com then a.b@example.com", _ctx("A"))
        b1 = await _redact(plugin, "c.d@example.com", _ctx("B"))
        return [a1, a2, b1]

    a1, a2, b1 = asyncio.run(run())
    assert a1 == "x <EMAIL_ADDRESS_1> y <EMAIL_ADDRESS_2>"
    assert a2 == "<EMAIL_ADDRESS_2> then <EMAIL_ADDRESS_1>"
    assert b1 == "<EMAIL_ADDRESS_1>"  # numbering is per conversation


def test_restore_only_uses_this_requests_values(plugin: PiiPlugin) -> None:
    async def run() -> str:
        await _redact(plugin, "secret a.b@example.com", _ctx("A"))
        ctx = _ctx("A")  # same conversation, but this request never held the value
        await _redact(plugin, "hello", ctx)
        return await _stream(plugin, ctx, ["<EMAIL_", "ADDRESS_1>"])

    assert asyncio.run(run()) == "<EMAIL_ADDRESS_1>"
