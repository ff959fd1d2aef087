"""OpenAI chat <-> Anthropic Messages translation: requests, responses, streams, errors.

Outputs are checked against the official SDKs rather than hand-written shapes: the ``anthropic``
and ``openai`` request TypedDicts (fully drained, so every nested block is validated), their
response models, ``RawMessageStreamEvent`` for each streamed event, and the SDK clients
themselves on a mock transport, which parse the SSE framing exactly as a real client would.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

from proxy.errors import InvalidRequest
from proxy.models.stream import ErrorEvent, Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.anthropic import (
    anthropic_error_to_openai,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    finish_reason_to_anthropic,
    openai_error_to_anthropic,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
    stop_reason_to_openai,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.sse import SSEParser, encode_event

# ================================================================ validation helpers

_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def _drain(value: Any) -> Any:
    """The SDK TypedDicts declare lists as ``Iterable``, which pydantic validates lazily."""
    if isinstance(value, dict):
        return {k: _drain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [_drain(v) for v in value]
    return value


def _check_typed_dict(schema: Any, body: dict[str, Any], legacy: frozenset[str] = frozenset()) -> None:
    unknown = set(body) - (schema.__required_keys__ | schema.__optional_keys__ | legacy)
    assert not unknown, f"fields the API does not define: {unknown}"
    # Lazily validated lists refer back into their adapter: it must outlive the draining.
    _drain(_adapter(schema).validate_python({k: v for k, v in body.items() if k not in legacy}))


@functools.cache
def _adapter(schema: Any) -> TypeAdapter[Any]:
    return TypeAdapter(schema)


# Sampling fields of anthropic-version 2023-06-01; the 2.x SDK (API 2026-10-21) no longer has them.
_ANTHROPIC_SAMPLING = frozenset({"temperature", "top_p", "top_k"})


def _valid_anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    schema = MessageCreateParamsStreaming if body.get("stream") else MessageCreateParamsNonStreaming
    _check_typed_dict(schema, body, _ANTHROPIC_SAMPLING)
    for key in ("temperature", "top_p"):
        assert key not in body or 0 <= body[key] <= 1
    return body


def _valid_openai_request(body: dict[str, Any]) -> dict[str, Any]:
    _check_typed_dict(
        CompletionCreateParamsStreaming if body.get("stream") else CompletionCreateParamsNonStreaming, body
    )
    return body


def _sse_payloads(stream: bytes) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    return [(ev.event, ev.data) for ev in parser.feed(stream) + parser.flush()]


def _anthropic_events(stream: bytes) -> list[dict[str, Any]]:
    """Parse an encoded Anthropic stream; every event must be one the SDK knows, named by its type."""
    events: list[dict[str, Any]] = []
    for name, data in _sse_payloads(stream):
        payload = orjson.loads(data)
        assert name == payload["type"]
        if name == "ping":  # documented keep-alive, not part of the SDK's event union
            continue
        if name == "error":
            ErrorResponse.model_validate(payload)
        else:
            _STREAM_EVENT.validate_python(payload)
        events.append(payload)
    return events


def _check_block_protocol(events: list[dict[str, Any]]) -> None:
    """message_start first, blocks numbered 0.. and started/stopped in order, message_stop last."""
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert [e["type"] for e in events].count("message_delta") == 1
    open_block: int | None = None
    next_index = 0
    for e in events[1:-1]:
        if e["type"] == "content_block_start":
            assert open_block is None and e["index"] == next_index
            open_block, next_index = e["index"], next_index + 1
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_block
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_block
            open_block = None
        elif e["type"] == "message_delta":
            assert open_block is None
    assert open_block is None


def _accumulate(events: list[dict[str, Any]]) -> Any:
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for e in events:
        snapshot = accumulate_event(
            event=_STREAM_EVENT.validate_python(e), current_snapshot=snapshot, json_bufs=bufs
        )
    return snapshot


Handler = Callable[[httpx2.Request], httpx2.Response]


def _anthropic_client(handler: Handler) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://proxy.test",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def _openai_client(handler: Handler) -> openai.OpenAI:
    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="k",
        base_url="http://proxy.test/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def _sse_response(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


# ================================================================ requests: OpenAI -> Anthropic

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
}


def _openai_request() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these two images."},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            },
            {"role": "assistant", "content": "A cat and a pixel."},
            {"role": "user", "content": "Weather in Paris and Oslo?", "name": "alice"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo","unit":"c"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "4C"}, {"type": "text", "text": ", rain"}],
            },
            {"role": "user", "content": "Summarise."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": WEATHER,
                    "strict": True,
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 512,
        "stop": "###",
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "user-42",
        "stream": False,
        # OpenAI-only: all dropped.
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 7,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "store": True,
        "metadata": {"tag": "x"},
        "service_tier": "auto",
        "reasoning_effort": "low",
    }


EXPECTED_ANTHROPIC = {
    "model": "gpt-4o",
    "max_tokens": 512,
    "system": "You are terse.",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these two images."},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ],
        },
        {"role": "assistant", "content": "A cat and a pixel."},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Oslo", "unit": "c"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "4C"}, {"type": "text", "text": ", rain"}],
                },
                {"type": "text", "text": "Summarise."},
            ],
        },
    ],
    "stop_sequences": ["###"],
    "temperature": 0.3,
    "top_p": 0.9,
    "metadata": {"user_id": "user-42"},
    "tools": [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stream": False,
}


def test_openai_request_to_anthropic_rich() -> None:
    out = openai_request_to_anthropic(_openai_request())
    assert out == EXPECTED_ANTHROPIC
    _valid_anthropic_request(out)


def test_openai_request_as_the_openai_sdk_sends_it() -> None:
    """The body the openai SDK really puts on the wire translates to the same request."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        reply = anthropic_response_to_openai(_anthropic_message(), created=1)
        return httpx2.Response(200, json=reply)

    client = _openai_client(handler)
    completion = client.chat.completions.create(**_openai_request())
    assert openai_request_to_anthropic(seen[0], model="claude-sonnet-4-5") == {
        **EXPECTED_ANTHROPIC,
        "model": "claude-sonnet-4-5",
    }
    assert completion.choices[0].finish_reason == "tool_calls"


def test_system_and_developer_messages_are_hoisted_as_blocks() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Rule one."}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Rule two."},
        ],
    }
    out = openai_request_to_anthropic(body)
    assert out["system"] == [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    _valid_anthropic_request(out)


@pytest.mark.parametrize(
    ("fields", "kwargs", "expected"),
    [
        ({"max_completion_tokens": 100, "max_tokens": 200}, {}, 100),
        ({"max_tokens": 200}, {}, 200),
        ({}, {}, 4096),
        ({}, {"default_max_tokens": 777}, 777),
    ],
)
def test_max_tokens_is_always_set(fields: dict[str, Any], kwargs: dict[str, Any], expected: int) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    assert openai_request_to_anthropic(body, **kwargs)["max_tokens"] == expected


def test_sampling_fields() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1.6,
        "stop": ["a", "b"],
        "safety_identifier": "sid",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = openai_request_to_anthropic(body, model="claude-haiku-4-5")
    assert out == {
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1,  # clamped to Anthropic's range
        "stop_sequences": ["a", "b"],
        "metadata": {"user_id": "sid"},
        "stream": True,
    }
    _valid_anthropic_request(out)


def test_sampling_fields_can_be_left_out_for_new_api_versions() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.5}
    out = openai_request_to_anthropic(body, sampling=False)
    assert not {"temperature", "top_p"} & set(out)
    _check_typed_dict(MessageCreateParamsNonStreaming, out)  # no legacy fields allowed


TOOL_CHOICES = [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
]
TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "input_schema": WEATHER}]


@pytest.mark.parametrize(("openai_choice", "anthropic_choice"), TOOL_CHOICES)
def test_tool_choice_both_ways(openai_choice: Any, anthropic_choice: dict[str, Any]) -> None:
    o = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": TOOLS_OPENAI}
    a = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "tools": TOOLS_ANTHROPIC,
    }
    to_anthropic = openai_request_to_anthropic({**o, "tool_choice": openai_choice})
    assert to_anthropic["tool_choice"] == anthropic_choice
    assert to_anthropic["tools"] == TOOLS_ANTHROPIC
    _valid_anthropic_request(to_anthropic)
    to_openai = anthropic_request_to_openai({**a, "tool_choice": anthropic_choice})
    assert to_openai["tool_choice"] == openai_choice
    assert to_openai["tools"] == TOOLS_OPENAI
    assert "parallel_tool_calls" not in to_openai
    _valid_openai_request(to_openai)


def test_parallel_tool_calls_false() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": False}
    with_tools = openai_request_to_anthropic({**base, "tools": TOOLS_OPENAI})
    assert with_tools["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    # Anthropic's "none" choice has no such flag, and without tools there is nothing to limit.
    assert openai_request_to_anthropic({**base, "tools": TOOLS_OPENAI, "tool_choice": "none"})[
        "tool_choice"
    ] == {"type": "none"}
    assert "tool_choice" not in openai_request_to_anthropic(base)


def test_broken_tool_arguments_are_passed_on_not_lost() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": '}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
                ],
            }
        ],
    }
    blocks = openai_request_to_anthropic(body)["messages"][0]["content"]
    assert [b["input"] for b in blocks] == [{"_raw_arguments": '{"a": '}, {}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_untranslatable_openai_requests_are_refused(body: dict[str, Any], param: str) -> None:
    full = {"model": "m", "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(InvalidRequest) as err:
        openai_request_to_anthropic(full)
    assert err.value.status == 400
    assert err.value.param == param


def test_pdf_file_part_becomes_a_document_and_back() -> None:
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    }
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [part, {"type": "text", "text": "sum up"}]}],
    }
    out = openai_request_to_anthropic(body)
    assert out["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    _valid_anthropic_request(out)
    back = anthropic_request_to_openai(out)["messages"][0]["content"][0]
    assert back == {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}


# ================================================================ requests: Anthropic -> OpenAI


def _anthropic_request() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Use metric units."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.jpg"}},
                    {"type": "text", "text": "Where is this, and what's the weather?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Fjord, so Norway.", "signature": "c2ln"},
                    {"type": "text", "text": "Looks like Oslo."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
                    {
                        "type": "tool_use",
                        "id": "toolu_02",
                        "name": "get_weather",
                        "input": {"city": "Bergen"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "4C, rain"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "is_error": True,
                        "content": [{"type": "text", "text": "station offline"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": WEATHER,
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.8,
        "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }


EXPECTED_OPENAI = {
    "model": "claude-sonnet-4-5",
    "messages": [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "You are a weather bot."},
                {"type": "text", "text": "Use metric units."},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg"}},
                {"type": "text", "text": "Where is this, and what's the weather?"},
            ],
        },
        {
            "role": "assistant",
            "content": "Looks like Oslo.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "4C, rain"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "station offline"},
        {"role": "user", "content": "And tomorrow?"},
    ],
    "max_completion_tokens": 1024,
    "stop": ["END"],
    "temperature": 0.2,
    "top_p": 0.8,
    "user": "u-1",
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER},
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_anthropic_request_to_openai_rich() -> None:
    out = anthropic_request_to_openai(_anthropic_request())
    assert out == EXPECTED_OPENAI
    _valid_openai_request(out)


def test_tool_result_images_move_to_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/screen.png"}}
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "shot"}, image],
                    }
                ],
            }
        ],
    }
    assert anthropic_request_to_openai(body)["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "shot"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/screen.png"}}],
        },
    ]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "x"}]}
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_untranslatable_anthropic_requests_are_refused(patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(InvalidRequest) as err:
        anthropic_request_to_openai(body)
    assert err.value.param == param


# ================================================================ round trips


def _meaning(body: dict[str, Any]) -> dict[str, Any]:
    """What the model sees: tool arguments compared as JSON, lone text parts as strings."""
    out: dict[str, Any] = json.loads(json.dumps(body))
    for msg in out["messages"]:
        for call in msg.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        content = msg.get("content")
        if isinstance(content, list) and len(content) == 1 and content[0]["type"] == "text":
            msg["content"] = content[0]["text"]
        for part in content if isinstance(content, list) else ():
            if part["type"] == "image_url":
                part["image_url"].pop("detail", None)
        msg.pop("name", None)
    for tool in out.get("tools") or ():
        tool["function"].pop("strict", None)
    return out


def test_openai_anthropic_openai_round_trip_keeps_meaning() -> None:
    original = _openai_request()
    back = anthropic_request_to_openai(openai_request_to_anthropic(original))
    _valid_openai_request(back)
    kept = {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "user",
        "stream",
    }
    expected = _meaning({k: v for k, v in original.items() if k in kept})
    expected["max_completion_tokens"] = original["max_completion_tokens"]
    expected["stop"] = [original["stop"]]
    assert _meaning(back) == expected


def test_anthropic_openai_anthropic_round_trip_keeps_meaning() -> None:
    original = _anthropic_request()
    back = openai_request_to_anthropic(anthropic_request_to_openai(original))
    _valid_anthropic_request(back)
    expected = json.loads(json.dumps(original))
    expected.pop("top_k")
    for block in expected["system"]:
        block.pop("cache_control", None)
    expected["tools"][0].pop("cache_control")
    expected["messages"][1]["content"].pop(0)  # thinking
    result = expected["messages"][2]["content"][1]
    result.pop("is_error")
    result["content"] = "station offline"
    assert back == expected


# ================================================================ responses


def _anthropic_message(**patch: Any) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "text", "text": "Let me check "},
            {"type": "text", "text": "the weather."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "get_weather",
                "input": {"city": "Oslo", "unit": "c"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "output_tokens": 30,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 50,
        },
        **patch,
    }


def test_anthropic_response_to_openai() -> None:
    message = _anthropic_message()
    Message.model_validate(message)
    out = anthropic_response_to_openai(message, created=1700000000)
    completion = ChatCompletion.model_validate(out)
    assert completion.id == message["id"]
    assert completion.created == 1700000000
    assert completion.model == message["model"]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check the weather."
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id == "toolu_01A"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo", "unit": "c"}
    assert out["usage"] == {
        "prompt_tokens": 170,  # OpenAI counts cached prompt tokens inside prompt_tokens
        "completion_tokens": 30,
        "total_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 50},
    }


def test_tool_only_response_has_null_content() -> None:
    message = _anthropic_message(content=[{"type": "tool_use", "id": "t", "name": "f", "input": {}}])
    msg = ChatCompletion.model_validate(anthropic_response_to_openai(message)).choices[0].message
    assert msg.content is None
    assert msg.tool_calls is not None
    (call,) = msg.tool_calls
    assert call.type == "function" and call.function.arguments == "{}"


def _openai_completion(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AB12",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Checking.", "refusal": None, **message},
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 40,
            "total_tokens": 160,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_1",
    }


def test_openai_response_to_anthropic() -> None:
    calls = [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        }
    ]
    body = _openai_completion(tool_calls=calls)
    ChatCompletion.model_validate(body)
    out = openai_response_to_anthropic(body)
    message = Message.model_validate(out)
    assert message.id == "msg_chatcmpl-AB12"
    assert message.model == "gpt-4o-2024-08-06"
    assert message.stop_reason == "tool_use"
    assert message.stop_sequence is None
    assert out["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert out["usage"] == {
        "input_tokens": 56,
        "output_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
    }


def test_openai_refusal_becomes_anthropic_refusal() -> None:
    out = openai_response_to_anthropic(_openai_completion(content=None, refusal="I can't help with that."))
    message = Message.model_validate(out)
    assert message.stop_reason == "refusal"
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_response_round_trip_through_openai() -> None:
    """Anthropic -> OpenAI -> Anthropic: same blocks (texts merged), reason and token totals."""
    original = _anthropic_message()
    back = openai_response_to_anthropic(anthropic_response_to_openai(original))
    Message.model_validate(back)
    assert back["content"] == [{"type": "text", "text": "Let me check the weather."}, original["content"][2]]
    assert back["stop_reason"] == "tool_use"
    assert back["id"] == original["id"]
    # Cache writes fold into input_tokens (OpenAI has no such charge); the total is the same.
    assert back["usage"] == {
        "input_tokens": 120,
        "output_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 50,
    }


def test_inbound_anthropic_sdk_round_trip() -> None:
    """A client on the Anthropic SDK: its request goes out as OpenAI, the OpenAI answer comes back."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        upstream = _valid_openai_request(anthropic_request_to_openai(json.loads(request.content)))
        assert upstream["messages"][-1] == {"role": "user", "content": "weather in Rome?"}
        calls = [{"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
        return httpx2.Response(200, json=openai_response_to_anthropic(_openai_completion(tool_calls=calls)))

    client = _anthropic_client(handler)
    message = client.messages.create(
        model="claude-via-proxy",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "weather in Rome?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.usage.input_tokens == 56


@pytest.mark.parametrize(
    ("anthropic_reason", "openai_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, None),
    ],
)
def test_stop_reason_to_openai(anthropic_reason: str | None, openai_reason: str | None) -> None:
    assert stop_reason_to_openai(anthropic_reason) == openai_reason


@pytest.mark.parametrize(
    ("openai_reason", "anthropic_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, None),
    ],
)
def test_finish_reason_to_anthropic(openai_reason: str | None, anthropic_reason: str | None) -> None:
    assert finish_reason_to_anthropic(openai_reason) == anthropic_reason


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
