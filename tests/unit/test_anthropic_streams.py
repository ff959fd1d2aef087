"""OpenAI chat <-> Anthropic Messages translation: requests, responses, streams, errors.

Outputs are checked against the official SDKs rather than hand-written shapes: the ``anthropic``
and ``openai`` request TypedDicts (fully drained, so every nested block is validated), their
response models, ``RawMessageStreamEvent`` for each streamed event, and the SDK clients
themselves on a mock transport, which parse the SSE framing exactly as a real client would.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import ErrorResponse, Message
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from proxy.models.stream import ErrorEvent, Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.anthropic import (
    anthropic_error_to_openai,
    openai_error_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.sse import SSEParser, encode_event
from tests.unit.anthropic_support import (
    _accumulate,
    _anthropic_client,
    _anthropic_events,
    _check_block_protocol,
    _openai_client,
    _sse_payloads,
    _sse_response,
)

# ================================================================ streams: Anthropic -> OpenAI


def _a(payload: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(payload), payload["type"])


def _anthropic_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _a({"type": "content_block_delta", "index": index, "delta": delta})


# Recorded shape of a real tool-use stream (ids and counts from Anthropic's docs), cache hit included.
ANTHROPIC_STREAM = b"".join(
    [
        _a(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 472,
                        "output_tokens": 2,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 128,
                    },
                    "content": [],
                    "stop_reason": None,
                },
            }
        ),
        _a({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        b'event: ping\ndata: {"type": "ping"}\n\n',
        _anthropic_delta(0, {"type": "text_delta", "text": "Okay, let me check"}),
        _anthropic_delta(0, {"type": "text_delta", "text": " the weather in San Francisco."}),
        _a({"type": "content_block_stop", "index": 0}),
        _a(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "name": "get_weather",
                    "input": {},
                },
            }
        ),
        _anthropic_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        _anthropic_delta(1, {"type": "input_json_delta", "partial_json": '{"location":'}),
        _anthropic_delta(1, {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"'}),
        _anthropic_delta(1, {"type": "input_json_delta", "partial_json": ', "unit": "fahrenheit"}'}),
        _a({"type": "content_block_stop", "index": 1}),
        _a(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 89},
            }
        ),
        _a({"type": "message_stop"}),
    ]
)
FINAL_ARGS = '{"location": "San Francisco, CA", "unit": "fahrenheit"}'


def test_recorded_anthropic_stream_events_are_sdk_valid() -> None:
    events = _anthropic_events(ANTHROPIC_STREAM)
    _check_block_protocol([e for e in events if e["type"] != "ping"])


def _decode_all(stream: bytes, net: int = 11) -> tuple[AnthropicStreamDecoder, list[StreamEvent]]:
    dec = AnthropicStreamDecoder()
    parser = SSEParser()
    events: list[StreamEvent] = []
    for i in range(0, len(stream), net):
        events.extend(ev for sse in parser.feed(stream[i : i + net]) for ev in dec.decode(sse))
    events.extend(ev for sse in parser.flush() for ev in dec.decode(sse))
    return dec, events


def test_anthropic_stream_decodes_to_neutral_events() -> None:
    dec, events = _decode_all(ANTHROPIC_STREAM)
    assert events == [
        TextDelta(0, "", {"delta": {"role": "assistant"}}),
        TextDelta(0, "Okay, let me check"),
        TextDelta(0, " the weather in San Francisco."),
        ToolCallDelta(0, 0, "", "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ToolCallDelta(0, 0, '{"location":'),
        ToolCallDelta(0, 0, ' "San Francisco, CA"'),
        ToolCallDelta(0, 0, ', "unit": "fahrenheit"}'),
        Finish(0, "tool_calls"),
        Usage(
            {
                "prompt_tokens": 600,
                "completion_tokens": 89,
                "total_tokens": 689,
                "prompt_tokens_details": {"cached_tokens": 128},
            }
        ),
    ]
    assert dec.message_id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert dec.model == "claude-sonnet-4-5-20250929"
    assert dec.done


def _anthropic_to_openai_stream(stream: bytes, net: int = 11) -> bytes:
    """What an OpenAI route over an Anthropic upstream does: decode, re-encode as chunks, [DONE]."""
    dec = AnthropicStreamDecoder()
    codec = ChatStreamCodec()
    parser = SSEParser()
    out: list[bytes] = []
    for i in range(0, len(stream), net):
        events = [ev for sse in parser.feed(stream[i : i + net]) for ev in dec.decode(sse)]
        if codec.template is None and dec.message_id is not None:
            codec.template = dec.openai_chunk_template(created=1700000000)
        out.append(codec.encode(events))
    out.append(codec.encode([ev for sse in parser.flush() for ev in dec.decode(sse)]))
    codec.done = dec.done
    return b"".join(out) + codec.encode_done()


def test_anthropic_stream_to_openai_chunks_with_the_openai_sdk() -> None:
    wire = _anthropic_to_openai_stream(ANTHROPIC_STREAM)
    payloads = [data for _, data in _sse_payloads(wire)]
    assert payloads[-1] == b"[DONE]"
    for data in payloads[:-1]:
        chunk = ChatCompletionChunk.model_validate_json(data)
        assert chunk.id == "msg_014p7gG3wDgGV9EUtLvnow3U"
        assert chunk.model == "claude-sonnet-4-5-20250929"

    client = _openai_client(lambda _: _sse_response(wire))
    with client.chat.completions.stream(
        model="claude", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Okay, let me check the weather in San Francisco."
    (call,) = choice.message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "get_weather",
        FINAL_ARGS,
    )
    assert choice.finish_reason == "tool_calls"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (
        600,
        89,
        689,
    )
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 128


def test_decoder_error_and_ignored_events() -> None:
    stream = b"".join(
        [
            _a(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "model": "c",
                        "usage": {"input_tokens": 5, "output_tokens": 1},
                    },
                }
            ),
            _a(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                }
            ),
            _anthropic_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
            _anthropic_delta(0, {"type": "signature_delta", "signature": "c2ln"}),
            _a({"type": "content_block_stop", "index": 0}),
            b'event: ping\ndata: {"type": "ping"}\n\n',
            _a({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]
    )
    dec, events = _decode_all(stream)
    assert events == [
        TextDelta(0, "", {"delta": {"role": "assistant"}}),
        ErrorEvent({"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}),
    ]
    assert not dec.done


def test_decoder_message_delta_usage_overrides_start() -> None:
    """message_delta usage is cumulative: a field it sends replaces the message_start value."""
    dec = AnthropicStreamDecoder()
    start = {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 5}}}
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens"},
        "usage": {"output_tokens": 7, "input_tokens": 9, "cache_read_input_tokens": None},
    }
    events = [ev for p in (start, delta) for sse in SSEParser().feed(_a(p)) for ev in dec.decode(sse)]
    assert events[1:] == [
        Finish(0, "length"),
        Usage({"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}),
    ]


# ================================================================ streams: OpenAI -> Anthropic


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": choices,
        "usage": usage,
    }


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return _chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return _delta({"tool_calls": [call]})


OPENAI_CHUNKS = [
    _delta({"role": "assistant", "content": "", "refusal": None}),
    _delta({"content": "Checking"}),
    _delta({"content": " both cities."}),
    _call(0, "", "call_a", "get_weather"),
    _call(0, '{"ci'),
    _call(0, 'ty": "Paris"}'),
    _call(1, "", "call_b", "get_weather"),
    _call(1, '{"city": "Oslo"}'),
    _delta({}, "tool_calls"),
    _chunk(
        [],
        {
            "prompt_tokens": 120,
            "completion_tokens": 40,
            "total_tokens": 160,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    ),
]
OPENAI_STREAM = b"".join(encode_event(orjson.dumps(c)) for c in OPENAI_CHUNKS) + b"data: [DONE]\n\n"


def _openai_to_anthropic_stream(stream: bytes, net: int = 13) -> bytes:
    """What a Messages route over an OpenAI upstream does: decode chunks, encode Anthropic SSE."""
    codec = ChatStreamCodec()
    enc = AnthropicStreamEncoder("gpt-4o-2024-08-06", "msg_test")
    parser = SSEParser()
    out = [
        enc.encode([ev for sse in parser.feed(stream[i : i + net]) for ev in codec.decode(sse)])
        for i in range(0, len(stream), net)
    ]
    out.append(enc.encode([ev for sse in parser.flush() for ev in codec.decode(sse)]))
    return b"".join(out) + enc.encode_done()


def test_openai_stream_to_anthropic_events() -> None:
    for chunk in OPENAI_CHUNKS:
        ChatCompletionChunk.model_validate(chunk)
    events = _anthropic_events(_openai_to_anthropic_stream(OPENAI_STREAM))
    _check_block_protocol(events)
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    message = _accumulate(events)
    assert message.id == "msg_test"
    assert message.model == "gpt-4o-2024-08-06"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Checking both cities."
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Oslo"}),
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (56, 40)
    assert message.usage.cache_read_input_tokens == 64


def test_openai_stream_to_anthropic_with_the_anthropic_sdk() -> None:
    wire = _openai_to_anthropic_stream(OPENAI_STREAM, net=5)
    client = _anthropic_client(lambda _: _sse_response(wire))
    texts: list[str] = []
    with client.messages.stream(
        model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as s:
        texts.extend(s.text_stream)
        final = s.get_final_message()
    assert "".join(texts) == "Checking both cities."
    assert final.stop_reason == "tool_use"
    assert [getattr(b, "input", None) for b in final.content] == [None, {"city": "Paris"}, {"city": "Oslo"}]
    assert final.usage.output_tokens == 40


def _encode(events: list[StreamEvent], enc: AnthropicStreamEncoder | None = None) -> list[dict[str, Any]]:
    enc = enc or AnthropicStreamEncoder("m")
    return _anthropic_events(enc.encode(events) + enc.encode_done())


def test_finish_waits_for_usage_so_one_message_delta_carries_both() -> None:
    enc = AnthropicStreamEncoder("m")
    first = _anthropic_events(enc.encode([TextDelta(0, "hi"), Finish(0, "length")]))
    assert [e["type"] for e in first] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    (delta,) = _anthropic_events(enc.encode([Usage({"prompt_tokens": 11, "completion_tokens": 3})]))
    assert delta == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {
            "output_tokens": 3,
            "input_tokens": 11,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    assert _anthropic_events(enc.encode_done()) == [{"type": "message_stop"}]
    assert enc.encode_done() == b""


def test_finish_without_usage_is_flushed_at_done() -> None:
    events = _encode([TextDelta(0, "hi"), Finish(0, "stop")])
    _check_block_protocol(events)
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 0},
    }


def test_usage_first_lands_in_message_start() -> None:
    events = _encode(
        [Usage({"prompt_tokens": 9, "completion_tokens": 0}), TextDelta(0, "x"), Finish(0, "stop")]
    )
    assert events[0]["message"]["usage"]["input_tokens"] == 9
    assert events[0]["message"]["id"].startswith("msg_")
    Message.model_validate(events[0]["message"])


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    events = _encode(
        [
            ToolCallDelta(0, 0, '{"a":1}', "call_x", "f"),
            TextDelta(0, "after"),
            TextDelta(1, "other choice: dropped"),
            RawEvent(b'data: {"prompt_filter_results": []}\n\n'),
            Finish(0, "tool_calls"),
        ]
    )
    _check_block_protocol(events)
    message = _accumulate(events)
    assert [b.type for b in message.content] == ["tool_use", "text"]
    assert message.content[0].input == {"a": 1}
    assert message.content[1].text == "after"


def test_empty_stream_is_still_a_valid_message() -> None:
    events = _encode([])
    _check_block_protocol(events)
    assert events[-2]["delta"]["stop_reason"] is None
    assert _accumulate(events).content == []


def test_error_event_ends_the_stream() -> None:
    enc = AnthropicStreamEncoder("m", "msg_x")
    raw = enc.encode(
        [
            TextDelta(0, "par"),
            ErrorEvent({"message": "upstream died", "type": "server_error", "param": None, "code": None}),
            TextDelta(0, "tial"),
        ]
    )
    events = _anthropic_events(raw)
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "upstream died"}}
    assert [e["type"] for e in events].count("content_block_delta") == 1
    assert enc.encode_done() == b""


def test_openai_in_band_error_from_the_codec() -> None:
    stream = _delta({"content": "x"}) | {}
    wire = encode_event(orjson.dumps(stream)) + encode_event(
        orjson.dumps(
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
        )
    )
    events = _anthropic_events(_openai_to_anthropic_stream(wire))
    assert events[-1]["error"] == {"type": "rate_limit_error", "message": "Rate limit reached"}


_CHUNKED_TEXT = st.lists(st.text(max_size=12), max_size=15)


@settings(max_examples=150, deadline=None)
@given(_CHUNKED_TEXT, st.lists(st.integers(1, 4), max_size=20))
def test_any_chunking_of_text_survives_encoding(chunks: list[str], batch_sizes: list[int]) -> None:
    """However text is split into deltas, and deltas into encode() calls, the text is intact."""
    events: list[StreamEvent] = [TextDelta(0, c) for c in chunks]
    events += [Finish(0, "stop"), Usage({"prompt_tokens": 1, "completion_tokens": len(chunks)})]
    enc = AnthropicStreamEncoder("m")
    out: list[bytes] = []
    i = 0
    for size in [*batch_sizes, len(events)]:
        out.append(enc.encode(events[i : i + size]))
        i += size
    parsed = _anthropic_events(b"".join(out) + enc.encode_done())
    _check_block_protocol(parsed)
    text = "".join(
        e["delta"]["text"]
        for e in parsed
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )
    assert text == "".join(chunks)
    blocks = [e for e in parsed if e["type"] == "content_block_start"]
    assert len(blocks) == (1 if text else 0)
    assert parsed[-2]["delta"]["stop_reason"] == "end_turn"


# ================================================================ error envelopes

ERROR_STATUSES = [
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (402, "billing_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (413, "request_too_large"),
    (429, "rate_limit_error"),
    (500, "api_error"),
    (502, "api_error"),
    (503, "overloaded_error"),
    (504, "timeout_error"),
    (529, "overloaded_error"),
    (422, "invalid_request_error"),
]


@pytest.mark.parametrize(("status", "anthropic_type"), ERROR_STATUSES)
def test_openai_error_to_anthropic(status: int, anthropic_type: str) -> None:
    body = {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": "x"}}
    out = openai_error_to_anthropic(body, status)
    assert out == {"type": "error", "error": {"type": anthropic_type, "message": "boom"}}
    if anthropic_type != "request_too_large":  # documented by Anthropic, not (yet) in the SDK union
        ErrorResponse.model_validate(out)


@pytest.mark.parametrize(("status", "anthropic_type"), ERROR_STATUSES)
def test_anthropic_error_to_openai(status: int, anthropic_type: str) -> None:
    body = {"type": "error", "error": {"type": anthropic_type, "message": "boom"}, "request_id": "req_1"}
    out = anthropic_error_to_openai(body, status)
    assert out == {"error": {"message": "boom", "type": anthropic_type, "param": None, "code": None}}
    # and back: the status decides the type, so the round trip is exact
    assert openai_error_to_anthropic(out, status) == {k: v for k, v in body.items() if k != "request_id"}


def test_error_envelopes_without_details() -> None:
    assert anthropic_error_to_openai({}, 429)["error"]["type"] == "rate_limit_error"
    assert anthropic_error_to_openai({"detail": "gateway"}, 502)["error"]["message"]
    assert openai_error_to_anthropic({}, 500)["error"] == {
        "type": "api_error",
        "message": "Upstream error (api_error).",
    }
    # no status table entry: the OpenAI type or code is used
    assert openai_error_to_anthropic({"error": {"message": "m", "type": "server_error"}}, 599)["error"][
        "type"
    ] == ("api_error")


def test_anthropic_sdk_raises_the_mapped_error() -> None:
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    client = _anthropic_client(lambda _: httpx2.Response(429, json=openai_error_to_anthropic(body, 429)))
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": body["error"]["message"]},
    }
