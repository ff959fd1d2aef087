"""blocklist: request, response and stream paths; chunking never changes a stream's verdict."""

from __future__ import annotations

import itertools
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from plugins.blocklist import BlocklistConfig, BlocklistPlugin
from proxy.chain.context import RequestContext
from proxy.chain.plugin import Deps, Resources, StreamFilter
from proxy.errors import Rejected
from proxy.models import ChatRequest, ChatResponse, Finish, Route, StreamEvent, TextDelta
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.sse import SSEParser, encode_event

FAST = settings(max_examples=100, deadline=None)


def _plugin(**config: Any) -> BlocklistPlugin:
    return BlocklistPlugin(BlocklistConfig(**config), Deps(Resources()))


def _ctx() -> RequestContext:
    return RequestContext(request_id="req-1", route=Route.CHAT, headers={})


def _stream_filter(plugin: BlocklistPlugin, ctx: RequestContext) -> StreamFilter:
    flt = plugin.open_stream(ctx)
    assert flt is not None
    return flt


async def _stream(plugin: BlocklistPlugin, chunks: list[str], ctx: RequestContext | None = None) -> str:
    flt = _stream_filter(plugin, ctx or _ctx())
    out: list[StreamEvent] = []
    for c in chunks:
        out.extend(await flt.on_event(TextDelta(0, c)))
    out.extend(await flt.on_event(Finish(0, "stop")))
    out.extend(await flt.on_end())
    assert out[-1] == Finish(0, "stop")
    return "".join(e.text for e in out if isinstance(e, TextDelta))


def _keyword_rx(keywords: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(k) for k in keywords), re.IGNORECASE)


@st.composite
def _case(draw: st.DrawFn, must_match: bool = False) -> tuple[list[str], str, list[str]]:
    """Keywords over "xyz" (so "[REDACTED]" cannot form one) and a chunked text full of near-misses."""
    keywords = draw(st.lists(st.text(alphabet="xyzXY", min_size=1, max_size=8), min_size=1, max_size=3))
    fragments = [k[: i + 1] for k in keywords for i in range(len(k))] + [
        k[i:] for k in keywords for i in range(len(k))
    ]
    piece = st.sampled_from(keywords) | st.sampled_from(fragments) | st.text(alphabet="xyz ab", max_size=3)
    parts = draw(st.lists(piece, max_size=10))
    if must_match:
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(keywords)))
    text = "".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return keywords, text, [text[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------ stream, redact


@FAST
@given(_case())
async def test_stream_redact_is_chunking_independent(case: tuple[list[str], str, list[str]]) -> None:
    keywords, text, chunks = case
    plugin = _plugin(keywords=tuple(keywords), action="redact")
    ctx = _ctx()
    chunked = await _stream(plugin, chunks, ctx)
    assert chunked == await _stream(plugin, [text])
    rx = _keyword_rx(keywords)
    assert chunked == rx.sub("[REDACTED]", text)
    assert rx.search(chunked) is None  # no keyword survives, in any case
    # Every redaction is recorded (counts add up whatever the chunking).
    assert sum(d.detail["count"] for d in ctx.decisions) == len(rx.findall(text))
    assert all((d.rule, d.action) == ("stream_match", "redact") for d in ctx.decisions)


@FAST
@given(st.lists(st.sampled_from(["sk-", "sk-ab12", "sk-abcdefghij", "s", "k-", "ab", "9", " "]), max_size=10))
async def test_stream_redact_pattern(parts: list[str]) -> None:
    text = "".join(parts)
    plugin = _plugin(patterns=(r"sk-[a-z0-9]{4,8}",), max_match_chars=11, action="redact", replacement="#")
    expected = re.sub(r"sk-[a-z0-9]{4,8}", "#", text)
    assert await _stream(plugin, [text]) == expected
    assert await _stream(plugin, list(text)) == expected  # one character per delta
    assert await _stream(plugin, parts) == expected


async def test_stream_redact_example_split_keyword() -> None:
    plugin = _plugin(keywords=("password",), action="redact")
    assert await _stream(plugin, ["my pass", "WORD is ", "hunter2"]) == "my [REDACTED] is hunter2"


async def test_stream_case_sensitive() -> None:
    plugin = _plugin(keywords=("Secret",), action="redact", case_sensitive=True)
    assert await _stream(plugin, ["a SECRET and a Sec", "ret"]) == "a SECRET and a [REDACTED]"


# ------------------------------------------------------------------ stream, block


@FAST
@given(_case(must_match=True))
async def test_stream_block_rejects_before_any_part_of_the_keyword(
    case: tuple[list[str], str, list[str]],
) -> None:
    keywords, text, chunks = case
    first = _keyword_rx(keywords).search(text)
    assert first is not None
    ctx = _ctx()
    flt = _stream_filter(_plugin(keywords=tuple(keywords), action="block"), ctx)
    released = ""
    with pytest.raises(Rejected) as info:
        for c in chunks:
            released += "".join(
                e.text for e in await flt.on_event(TextDelta(0, c)) if isinstance(e, TextDelta)
            )
        await flt.on_event(Finish(0, "stop"))
        await flt.on_end()
    assert info.value.code == "content_blocked"
    assert released == text[: len(released)]  # released text is untouched ...
    assert len(released) <= first.start()  # ... and ends before the first keyword starts
    assert [(d.rule, d.action) for d in ctx.decisions] == [("stream_match", "block")]


@st.composite
def _clean_case(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Keywords and chunks of a text made of near-misses only: keyword fragments that do not match,
    joined by separators outside the keyword alphabet (so no match can span two fragments)."""
    keywords = draw(st.lists(st.text(alphabet="xyzXY", min_size=1, max_size=8), min_size=1, max_size=3))
    rx = _keyword_rx(keywords)
    fragments = [k[a:b] for k in keywords for a in range(len(k)) for b in range(a + 1, len(k) + 1)]
    near_misses = [f for f in fragments if rx.search(f) is None] or ["-"]
    parts = draw(st.lists(st.sampled_from(near_misses), max_size=10))
    seps = draw(st.lists(st.sampled_from([" ", "a", " b "]), min_size=len(parts), max_size=len(parts)))
    text = "".join(p + s for p, s in zip(parts, seps, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    return keywords, [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


@FAST
@given(_clean_case())
async def test_stream_block_passes_clean_text(case: tuple[list[str], list[str]]) -> None:
    keywords, chunks = case
    text = "".join(chunks)
    assert _keyword_rx(keywords).search(text) is None
    assert await _stream(_plugin(keywords=tuple(keywords), action="block"), chunks) == text


async def test_stream_block_example() -> None:
    flt = _stream_filter(_plugin(keywords=("forbidden",)), _ctx())
    # Text that cannot start a match is released at once; "forb" might become "forbidden".
    assert await flt.on_event(TextDelta(0, "this is forb")) == [TextDelta(0, "this is ")]
    assert await flt.on_event(TextDelta(0, "id")) == []  # "forbid" held
    with pytest.raises(Rejected):
        await flt.on_event(TextDelta(0, "den fruit, and more text"))


async def test_stream_releases_ordinary_text_immediately() -> None:
    flt = _stream_filter(
        _plugin(patterns=("sk-[A-Za-z0-9]{20,}",), max_match_chars=200, action="redact"), _ctx()
    )
    assert await flt.on_event(TextDelta(0, "Hello, how are you today? ")) == [
        TextDelta(0, "Hello, how are you today? ")
    ]
    assert await flt.on_event(TextDelta(0, "Ask")) == [TextDelta(0, "A")]  # "sk" could start a key
    assert await flt.on_event(TextDelta(0, "ed.")) == [TextDelta(0, "sked.")]


def test_no_stream_filter_when_responses_are_not_scanned() -> None:
    assert _plugin(keywords=("x",), scan_response=False).open_stream(_ctx()) is None


# ------------------------------------------------------------------ requests


def _request(route: Route = Route.CHAT) -> ChatRequest:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "the secret system prompt"},
            {"role": "user", "content": "tell me the SECRET"},
            {"role": "assistant", "content": "no secret for you"},
            {"role": "tool", "tool_call_id": "call_1", "content": "secret=42"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "again: secret secret"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/secret.png"}},
                ],
            },
        ],
    }
    return ChatRequest(body, route, orjson.dumps(body))


async def test_request_redaction_scans_user_and_tool_roles_only() -> None:
    req, ctx = _request(), _ctx()
    await _plugin(keywords=("secret",), action="redact").on_request(req, ctx)
    messages = orjson.loads(req.encode())["messages"]
    assert req.dirty
    assert messages[0]["content"] == "the secret system prompt"  # system: trusted by default
    assert messages[1]["content"] == "tell me the [REDACTED]"
    assert messages[2]["content"] == "no secret for you"  # assistant history is not scanned
    assert messages[3]["content"] == "[REDACTED]=42"
    assert messages[4]["content"][0]["text"] == "again: [REDACTED] [REDACTED]"
    assert messages[4]["content"][1]["image_url"]["url"] == "https://example.com/secret.png"
    assert [(d.rule, d.action, d.detail["count"]) for d in ctx.decisions] == [("request_match", "redact", 4)]


async def test_request_redaction_with_roles_including_system() -> None:
    req = _request()
    await _plugin(keywords=("secret",), action="redact", roles=("system",)).on_request(req, _ctx())
    messages = req.body["messages"]
    assert messages[0]["content"] == "the [REDACTED] system prompt"
    assert messages[1]["content"] == "tell me the SECRET"


async def test_request_untouched_when_nothing_matches() -> None:
    req, ctx = _request(), _ctx()
    await _plugin(keywords=("banana",), action="redact").on_request(req, ctx)
    assert not req.dirty
    assert req.encode() == req.raw
    assert ctx.decisions == []


async def test_request_block() -> None:
    ctx = _ctx()
    with pytest.raises(Rejected) as info:
        await _plugin(keywords=("secret",), message="nope").on_request(_request(), ctx)
    assert info.value.code == "content_blocked"
    assert info.value.message == "nope"
    assert "secret" not in orjson.dumps(info.value.envelope()).decode().lower()
    assert [(d.rule, d.action) for d in ctx.decisions] == [("request_match", "block")]


async def test_request_block_ignores_system_by_default() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "secret"}, {"role": "user", "content": "hi"}],
    }
    req = ChatRequest(body, Route.CHAT)
    await _plugin(keywords=("secret",)).on_request(req, _ctx())  # no exception: system not scanned
    with pytest.raises(Rejected):
        await _plugin(keywords=("secret",), roles=("system", "user")).on_request(req, _ctx())


async def test_request_not_scanned_when_disabled() -> None:
    req = _request()
    await _plugin(keywords=("secret",), scan_request=False).on_request(req, _ctx())
    assert not req.dirty


async def test_request_pattern_block() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "key sk-abc123def"}]}
    with pytest.raises(Rejected):
        await _plugin(patterns=(r"sk-[a-z0-9]{6,}",)).on_request(ChatRequest(body, Route.CHAT), _ctx())


# ------------------------------------------------------------------ responses


def _response() -> ChatResponse:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The Secret is out"},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "nothing here"},
                "finish_reason": "stop",
            },
        ],
    }
    return ChatResponse(body, Route.CHAT, orjson.dumps(body))


async def test_response_redaction() -> None:
    resp, ctx = _response(), _ctx()
    await _plugin(keywords=("secret",), action="redact", replacement="***").on_response(resp, ctx)
    choices = orjson.loads(resp.encode())["choices"]
    assert [c["message"]["content"] for c in choices] == ["The *** is out", "nothing here"]
    assert [(d.rule, d.action) for d in ctx.decisions] == [("response_match", "redact")]


async def test_response_block() -> None:
    with pytest.raises(Rejected):
        await _plugin(keywords=("secret",)).on_response(_response(), _ctx())


async def test_response_not_scanned_when_disabled() -> None:
    resp = _response()
    await _plugin(keywords=("secret",), scan_response=False).on_response(resp, _ctx())
    assert not resp.dirty


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "at least one keyword or pattern"),
        ({"keywords": (), "patterns": ()}, "at least one keyword or pattern"),
        ({"patterns": ("(unclosed",)}, "invalid regular expression"),
        ({"patterns": ("ok", "[z-a]")}, "invalid regular expression"),
        ({"keywords": ("x",), "max_match_chars": 0}, "greater than or equal to 1"),
        ({"keywords": ("x",), "max_match_chars": 5000}, "less than or equal to 4096"),
        ({"keywords": ("x",), "action": "drop"}, "'block' or 'redact'"),
        ({"keywords": ("x",), "unknown_option": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_validation(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        BlocklistConfig(**config)


def test_config_defaults() -> None:
    cfg = BlocklistConfig(keywords=("x",))
    assert (cfg.action, cfg.case_sensitive, cfg.roles) == ("block", False, ("user", "tool", "function"))
    assert cfg.step_id == "blocklist"


# ------------------------------------------------------------------ known bugs


async def test_stream_word_boundary_pattern_is_chunking_independent() -> None:
    plugin = _plugin(patterns=(r"\bcat\b",), max_match_chars=5, action="redact")
    text = "the category of concat dog"
    assert await _stream(plugin, [text]) == text
    assert await _stream(plugin, ["the categor", "y of concat ", "dog"]) == text


async def test_stream_redaction_does_not_leak_through_logprobs() -> None:
    def chunk(token: str) -> bytes:
        lp = {
            "content": [{"token": token, "logprob": -0.1, "bytes": list(token.encode()), "top_logprobs": []}]
        }
        choice = {"index": 0, "delta": {"content": token}, "logprobs": lp, "finish_reason": None}
        return encode_event(orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice]}))

    codec, flt = ChatStreamCodec(), _stream_filter(_plugin(keywords=("hunter2",), action="redact"), _ctx())
    out = []
    for token in ["my password is ", "hunter2", ", ok"]:
        (sse,) = SSEParser().feed(chunk(token))
        for ev in codec.decode(sse):
            out.append(codec.encode(list(await flt.on_event(ev))))
    out.append(codec.encode(list(await flt.on_end())))
    wire = b"".join(out)
    assert b"[REDACTED]" in wire
    assert b"hunter2" not in wire
    assert orjson.dumps(list(b"hunter2"))[1:-1] not in wire  # nor as logprobs bytes
