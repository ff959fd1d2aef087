"""OpenAI stream codecs: decode -> encode keeps what the provider sent; filtered text cannot leak."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel

from proxy.chain.holdback import HoldBack, regex_safe
from proxy.chain.plugin import StreamFilter
from proxy.chain.textfilter import TextStreamFilter
from proxy.models.stream import ErrorEvent, Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec
from proxy.upstream.sse import MalformedEvent, SSEEvent, SSEParser, encode_event

Codec = ChatStreamCodec | ResponsesStreamCodec


def _sse(payload: Any, event: str | None = None) -> bytes:
    return encode_event(orjson.dumps(payload), event)


def _parse(stream: bytes) -> list[SSEEvent]:
    p = SSEParser()
    return p.feed(stream) + p.flush()


def _through(codec: Codec, stream: bytes, net: int = 7) -> bytes:
    """What the pipeline does without filters: parse network chunks, decode, encode, [DONE] if due."""
    parser = SSEParser()
    out = [
        codec.encode([ev for sse in parser.feed(stream[i : i + net]) for ev in codec.decode(sse)])
        for i in range(0, len(stream), net)
    ]
    out.append(codec.encode([ev for sse in parser.flush() for ev in codec.decode(sse)]))
    return b"".join(out) + codec.encode_done()


async def _through_filter(codec: Codec, stream: bytes, flt: StreamFilter, net: int = 7) -> bytes:
    """The same with one stream filter between decode and encode (``on_end`` before ``[DONE]``)."""

    async def push(sses: list[SSEEvent]) -> list[StreamEvent]:
        return [out for sse in sses for ev in codec.decode(sse) for out in await flt.on_event(ev)]

    parser = SSEParser()
    out = [codec.encode(await push(parser.feed(stream[i : i + net]))) for i in range(0, len(stream), net)]
    tail = await push(parser.flush())
    tail.extend(await flt.on_end())
    return b"".join(out) + codec.encode(tail) + codec.encode_done()


# ================================================================ chat.completion.chunk

_TOP = {
    "id": "chatcmpl-AbC123",
    "object": "chat.completion.chunk",
    "created": 1727000000,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_e2bde53e6e",
    "x_vendor": {"region": "eu-1", "trace": [1, 2]},  # unknown to the proxy and to the SDK
}


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**_TOP, "choices": choices, "usage": usage}


def _logprobs(token: str) -> dict[str, Any]:
    entry = {"token": token, "logprob": -0.25, "bytes": list(token.encode())}
    return {"content": [{**entry, "top_logprobs": [entry]}], "refusal": None}


def _text(index: int, content: str, **choice: Any) -> dict[str, Any]:
    return {"index": index, "delta": {"content": content}, "finish_reason": None, **choice}


_USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 4,
    "total_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}

TEXT_CHUNKS = [
    _chunk(
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": {"content": [], "refusal": None},
                "finish_reason": None,
            }
        ]
    ),
    _chunk([_text(0, "Hello", logprobs=_logprobs("Hello"))]),
    _chunk([_text(0, " wörld 🎉", logprobs=_logprobs(" wörld 🎉"))]),
    _chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]),
    _chunk([], usage=_USAGE),
]

TOOL_CHUNKS = [
    _chunk(
        [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                },
                "finish_reason": None,
            }
        ]
    ),
    _chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}}]),
    _chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Par'}}]}}]),
    _chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}}]),
    _chunk(
        [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ]
    ),
    _chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
]

# n=2: choices interleave, and one chunk carries both choices (and content with a finish).
MULTI_CHUNKS = [
    _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
    _chunk([{"index": 1, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
    _chunk([_text(1, "B says")]),
    _chunk([_text(0, "A says"), _text(1, " more")]),
    _chunk([{"index": 1, "delta": {"content": "!"}, "finish_reason": "stop"}]),
    _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
]


def _stream(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    return b"".join(_sse(c) for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


def _chunks_out(out: bytes) -> tuple[list[ChatCompletionChunk], list[dict[str, Any]], bool]:
    """Parse re-encoded bytes the way a client does; every chunk must validate as the SDK type."""
    events = _parse(out)
    done = bool(events) and events[-1].data == b"[DONE]"
    raw = [orjson.loads(e.data) for e in events if e.data != b"[DONE]"]
    assert all(e.event is None for e in events)
    return [ChatCompletionChunk.model_validate(c) for c in raw], raw, done


def _final(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the official SDK accumulates from a stream (``client.chat.completions.stream``)."""
    state = ChatCompletionStreamState()
    for c in chunks:
        if "error" not in c:
            state.handle_chunk(ChatCompletionChunk.model_validate(c))
    return state.get_final_completion().model_dump()


@pytest.mark.parametrize("chunks", [TEXT_CHUNKS, TOOL_CHUNKS, MULTI_CHUNKS], ids=["text", "tools", "n2"])
def test_chat_roundtrip_is_what_the_sdk_accumulates(chunks: list[dict[str, Any]]) -> None:
    codec = ChatStreamCodec()
    _, raw, done = _chunks_out(_through(codec, _stream(chunks)))
    assert done
    assert _final(raw) == _final(chunks)  # content, role, logprobs, tool calls, finish, usage
    for c in raw:
        # Every re-encoded chunk keeps the provider's top-level fields, unknown ones included.
        assert {k: c.get(k) for k in _TOP} == _TOP


def test_chat_decode_events() -> None:
    codec = ChatStreamCodec()
    events = [ev for c in TEXT_CHUNKS for ev in codec.decode(SSEEvent(orjson.dumps(c)))]
    assert [type(e) for e in events] == [TextDelta, TextDelta, TextDelta, Finish, Usage]
    role, hello, world, finish, usage = events
    assert isinstance(role, TextDelta) and role.text == ""
    assert role.extra is not None and role.extra["delta"] == {"role": "assistant", "refusal": None}
    assert isinstance(hello, TextDelta) and hello.text == "Hello"
    assert hello.extra is not None and hello.extra["choice"]["logprobs"] == _logprobs("Hello")
    assert isinstance(world, TextDelta) and world.text == " wörld 🎉"
    assert finish == Finish(0, "stop")
    assert isinstance(usage, Usage) and usage.data == _USAGE
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 4)


def test_chat_decode_tool_calls() -> None:
    codec = ChatStreamCodec()
    events = [ev for c in TOOL_CHUNKS for ev in codec.decode(SSEEvent(orjson.dumps(c)))]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.call_index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "call_a", "get_weather", ""),
        (0, None, None, '{"ci'),
        (0, None, None, 'ty": "Par'),
        (0, None, None, 'is"}'),
        (1, "call_b", "get_time", '{"tz": "CET"}'),
    ]
    assert events[-1] == Finish(0, "tool_calls")


def test_chat_roundtrip_byte_identical_where_possible() -> None:
    # A plain content chunk re-encodes to exactly the same JSON (same keys, same order).
    chunk = {**_TOP, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    codec = ChatStreamCodec()
    assert codec.encode(codec.decode(SSEEvent(orjson.dumps(chunk)))) == _sse(chunk)


def test_chat_usage_chunk_has_empty_choices() -> None:
    codec = ChatStreamCodec()
    codec.decode(SSEEvent(orjson.dumps(TEXT_CHUNKS[0])))
    events = codec.decode(SSEEvent(orjson.dumps(_chunk([], usage=_USAGE))))
    assert events == [Usage(_USAGE)]
    (chunk,) = [orjson.loads(e.data) for e in _parse(codec.encode(events))]
    assert chunk["choices"] == []
    assert chunk["usage"] == _USAGE
    assert ChatCompletionChunk.model_validate(chunk).usage is not None


def test_chat_error_chunk() -> None:
    error = {"message": "The server is overloaded.", "type": "server_error", "param": None, "code": None}
    codec = ChatStreamCodec()
    events = codec.decode(SSEEvent(orjson.dumps({"error": error})))
    assert events == [ErrorEvent(error)]
    assert codec.encode(events) == _sse({"error": error})


@pytest.mark.parametrize("done", [True, False])
def test_chat_done_only_when_upstream_sent_it(done: bool) -> None:
    out = _through(ChatStreamCodec(), _stream(TEXT_CHUNKS, done=done))
    assert out.count(b"[DONE]") == (1 if done else 0)
    assert out.endswith(b"data: [DONE]\n\n") == done


@pytest.mark.parametrize("codec", [ChatStreamCodec(), ResponsesStreamCodec()], ids=["chat", "responses"])
@pytest.mark.parametrize("data", [b"not json", b"42", b'["a"]', b"\x00\xff"])
def test_non_json_object_event_is_a_typed_upstream_error(
    codec: ChatStreamCodec | ResponsesStreamCodec, data: bytes
) -> None:
    """Issue 16 item 8: garbage never reaches a client whose stream the sidecar parses."""
    with pytest.raises(MalformedEvent) as info:
        codec.decode(SSEEvent(data, "ping"))
    assert info.value.status == 502 and info.value.code == "upstream_malformed_event"


def test_empty_event_is_dropped() -> None:
    assert ChatStreamCodec().decode(SSEEvent(b"", "ping")) == []


def test_chat_modified_text_is_encoded_with_its_chunk_fields() -> None:
    codec = ChatStreamCodec()
    events = [ev for c in TEXT_CHUNKS[:3] for ev in codec.decode(SSEEvent(orjson.dumps(c)))]
    edited = [TextDelta(e.index, e.text.upper(), e.extra) if isinstance(e, TextDelta) else e for e in events]
    chunks, raw, _ = _chunks_out(codec.encode(edited))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "HELLO WÖRLD 🎉"
    assert raw[0]["choices"][0]["delta"]["role"] == "assistant"


def test_chat_tool_call_only_answer_keeps_content_null() -> None:
    first = _chunk(
        [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": None,
            }
        ]
    )
    chunks = [first, _chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])]
    _, raw, _ = _chunks_out(_through(ChatStreamCodec(), _stream(chunks)))
    assert _final(chunks)["choices"][0]["message"]["content"] is None
    assert _final(raw)["choices"][0]["message"]["content"] is None


def test_chat_each_chunk_keeps_its_own_top_level_fields() -> None:
    azure_first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    later = {**_TOP, "x_groq": {"id": "req_1"}}
    chunks = [azure_first, *TEXT_CHUNKS[:3], {**later, "choices": [], "usage": _USAGE}]
    # Azure's first chunk is not a valid ChatCompletionChunk (object ""), so no SDK validation here.
    raw = [orjson.loads(e.data) for e in _parse(_through(ChatStreamCodec(), _stream(chunks)))[:-1]]
    assert raw[0].get("prompt_filter_results") == azure_first["prompt_filter_results"]
    assert all(c["id"] == "chatcmpl-AbC123" and c["object"] == "chat.completion.chunk" for c in raw[1:])
    assert raw[-1].get("x_groq") == {"id": "req_1"}


# ================================================================ Responses API

_MSG_ID = "msg_67ccd3acc8d48190a77525dc6de64b4104becd25b6e0c11c"
_REASONING = {"type": "reasoning", "id": "rs_1", "summary": []}
_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1727000000,
    "model": "gpt-4o-mini-2024-07-18",
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "metadata": {},
}


def _responses_stream(deltas: list[str], done: bool = False) -> list[tuple[str, dict[str, Any]]]:
    full = "".join(deltas)
    part = {"type": "output_text", "text": full, "annotations": [], "logprobs": []}
    message = {
        "type": "message",
        "id": _MSG_ID,
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    loc = {"item_id": _MSG_ID, "output_index": 1, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**_RESPONSE, "status": "in_progress", "output": []}},
        {"type": "response.in_progress", "response": {**_RESPONSE, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": _REASONING},
        {"type": "response.output_item.done", "output_index": 0, "item": _REASONING},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **loc, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **loc, "delta": d, "logprobs": [], "obfuscation": "Zx"}
            for d in deltas
        ),
        {"type": "response.output_text.done", **loc, "text": full, "logprobs": []},
        {"type": "response.content_part.done", **loc, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {
            "type": "response.completed",
            "response": {
                **_RESPONSE,
                "status": "completed",
                "output": [_REASONING, message],
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 7,
                    "total_tokens": 12,
                    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            },
        },
    ]
    return [(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)]


def _responses_bytes(events: list[tuple[str, dict[str, Any]]], done: bool = False) -> bytes:
    return b"".join(_sse(payload, name) for name, payload in events) + (b"data: [DONE]\n\n" if done else b"")


# The SDK's event classes by their ``type`` literal (validating the whole union gives unreadable errors).
_EVENT_CLASSES: dict[str, type[BaseModel]] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


def _responses_out(out: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """Parse re-encoded bytes; every event must validate as the SDK's ResponseStreamEvent."""
    parsed = [(e.event, orjson.loads(e.data)) for e in _parse(out) if e.data != b"[DONE]"]
    for name, payload in parsed:
        assert name == payload["type"]
        _EVENT_CLASSES[payload["type"]].model_validate(payload)
    return parsed


_DELTAS = ["Your key is sk-live-", "SECRET42", "; keep it safe."]


def test_responses_decode_text_deltas() -> None:
    codec = ResponsesStreamCodec()
    decoded = [
        ev for name, p in _responses_stream(_DELTAS) for ev in codec.decode(SSEEvent(orjson.dumps(p), name))
    ]
    texts = [e for e in decoded if isinstance(e, TextDelta)]
    assert [(e.index, e.text) for e in texts] == [(1, d) for d in _DELTAS]  # output_index is the index
    assert all(e.meta and e.meta["item_id"] == _MSG_ID and e.meta["content_index"] == 0 for e in texts)
    assert all(e.extra and "sequence_number" in e.extra for e in texts)
    raws = [e for e in decoded if not isinstance(e, TextDelta)]
    assert all(isinstance(e, RawEvent) for e in raws)
    assert [e.event for e in raws if isinstance(e, RawEvent)][-1] == "response.completed"


def test_responses_roundtrip_unchanged() -> None:
    events = _responses_stream(_DELTAS)
    out = _responses_out(_through(ResponsesStreamCodec(), _responses_bytes(events)))
    assert out == events


class _EditDeltas:
    """A filter that rewrites each delta on its own (the secret sits inside one delta)."""

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if isinstance(event, TextDelta):
            new = event.text.replace("SECRET42", "[REDACTED]")
            # A changed text keeps its location (meta) but not its text-bound fields (extra).
            return [TextDelta(event.index, new, event.extra if new == event.text else None, event.meta)]
        return [event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return []


def _redacting_text_filter() -> StreamFilter:
    """A real TextStreamFilter with hold-back: the secret is split across deltas."""
    rx = re.compile(r"sk-live-[A-Z0-9]+")
    return TextStreamFilter(lambda: HoldBack(regex_safe(rx, 24), lambda s: rx.sub("[REDACTED]", s)))


@pytest.mark.parametrize(
    ("make_filter", "expected"),
    [
        (_EditDeltas, "Your key is sk-live-[REDACTED]; keep it safe."),
        (_redacting_text_filter, "Your key is [REDACTED]; keep it safe."),
    ],
    ids=["edited-deltas", "text-filter"],
)
async def test_responses_done_events_carry_filtered_text(
    make_filter: Callable[[], StreamFilter], expected: str
) -> None:
    events = _responses_stream(_DELTAS)
    out_bytes = await _through_filter(ResponsesStreamCodec(), _responses_bytes(events), make_filter())
    assert b"SECRET42" not in out_bytes  # the leak check: nowhere, not even in the summaries
    out = _responses_out(out_bytes)  # also: text released by the filter still carries item_id etc.
    by_type = {name: payload for name, payload in out}
    assert "".join(p["delta"] for n, p in out if n == "response.output_text.delta") == expected
    assert by_type["response.output_text.done"]["text"] == expected
    assert by_type["response.content_part.done"]["part"]["text"] == expected
    item_done = [p for n, p in out if n == "response.output_item.done"]
    assert item_done[0]["item"] == _REASONING
    assert item_done[1]["item"]["content"][0]["text"] == expected
    output = by_type["response.completed"]["response"]["output"]
    assert output[0] == _REASONING
    assert output[1]["content"][0]["text"] == expected
    # Everything else in those events is untouched.
    original = dict(events)
    assert (
        by_type["response.completed"]["response"]["usage"]
        == original["response.completed"]["response"]["usage"]
    )
    assert by_type["response.output_text.done"]["item_id"] == _MSG_ID


def test_responses_unknown_events_pass_verbatim() -> None:
    # Odd spacing and a non-ASCII value: passed on byte for byte, not re-serialised.
    unknown = (
        b"event: response.future_thing\n"
        b'data: {"type":  "response.future_thing", "z": [{"y": "\xc3\xa9"}]}\n\n'
    )
    codec = ResponsesStreamCodec()
    out = _through(codec, unknown)
    assert out == unknown  # (a non-JSON event is an error: test_non_json_object_event_is_...)


def test_responses_error_event() -> None:
    payload = {
        "type": "error",
        "code": "server_error",
        "message": "boom",
        "param": None,
        "sequence_number": 3,
    }
    codec = ResponsesStreamCodec()
    events = codec.decode(SSEEvent(orjson.dumps(payload), "error"))
    assert events == [ErrorEvent({k: v for k, v in payload.items() if k != "type"})]
    (out,) = _responses_out(codec.encode(events))
    assert out == ("error", payload)


@pytest.mark.parametrize("done", [True, False])
def test_responses_done_only_when_upstream_sent_it(done: bool) -> None:
    out = _through(ResponsesStreamCodec(), _responses_bytes(_responses_stream(["hi"]), done=done))
    assert out.count(b"[DONE]") == (1 if done else 0)


async def test_responses_multiline_data_event() -> None:
    events = _responses_stream(_DELTAS)
    parts = []
    for name, payload in events:
        if name == "response.output_text.done":  # same JSON, pretty-printed over several data: lines
            pretty = orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
            parts.append(
                f"event: {name}\n" + "".join(f"data: {line}\n" for line in pretty.split("\n")) + "\n"
            )
        else:
            parts.append(_sse(payload, name).decode())
    out_bytes = await _through_filter(ResponsesStreamCodec(), "".join(parts).encode(), _EditDeltas())
    out = _responses_out(out_bytes)  # every event still parses as one JSON event
    assert [n for n, _ in out] == [n for n, _ in events]
    assert b"SECRET42" not in out_bytes


def test_anthropic_upstream_garbage_is_a_typed_upstream_error() -> None:
    from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder

    decoder = AnthropicStreamDecoder()
    assert decoder.decode(SSEEvent(b"", "ping")) == []
    with pytest.raises(MalformedEvent):
        decoder.decode(SSEEvent(b"<html>502 Bad Gateway</html>", "message_delta"))
