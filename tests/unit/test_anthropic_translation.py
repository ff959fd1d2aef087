"""OpenAI chat <-> Anthropic Messages translation: requests, responses, streams, errors.

Outputs are checked against the official SDKs rather than hand-written shapes: the ``anthropic``
and ``openai`` request TypedDicts (fully drained, so every nested block is validated), their
response models, ``RawMessageStreamEvent`` for each streamed event, and the SDK clients
themselves on a mock transport, which parse the SSE framing exactly as a real client would.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from anthropic.types import Message
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
)
from openai.types.chat import ChatCompletion

from proxy.errors import InvalidRequest
from proxy.upstream.providers.anthropic import (
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    finish_reason_to_anthropic,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
    stop_reason_to_openai,
)
from tests.unit.anthropic_support import (
    _anthropic_client,
    _check_typed_dict,
    _openai_client,
    _valid_anthropic_request,
    _valid_openai_request,
)

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
