"""Gemini / Bedrock translation edge cases and the missing-extra startup error.

The wire paths are covered end to end in tests/e2e/test_gemini.py, test_vertex.py and
test_bedrock.py; these pin the corners a fake would rarely produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from proxy.chain.registry import default_registry
from proxy.errors import ConfigError, InvalidRequest
from proxy.models.stream import Finish, TextDelta, ToolCallDelta, Usage
from proxy.policy.store import PolicyStore
from proxy.upstream.providers.bedrock import (
    BedrockStreamDecoder,
    bedrock_error_to_openai,
    openai_request_to_bedrock,
)
from proxy.upstream.providers.gemini import (
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_request_to_gemini,
    usage_to_openai,
)
from proxy.upstream.providers.gemini_stream import GeminiStreamDecoder
from proxy.upstream.sse import SSEEvent

USER = [{"role": "user", "content": "hi"}]


def _sse(data: bytes) -> SSEEvent:
    return SSEEvent(data=data, event=None)


def test_gemini_prompt_blocked_and_thoughts_and_cached_usage() -> None:
    blocked = gemini_response_to_openai({"promptFeedback": {"blockReason": "SAFETY"}}, "gemini-2.0-flash")
    assert blocked["choices"][0]["finish_reason"] == "content_filter"
    answer = gemini_response_to_openai(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "thinking...", "thought": True}, {"text": "42"}]},
                    "finishReason": "STOP",
                }
            ]
        },
        "m",
    )
    assert answer["choices"][0]["message"]["content"] == "42"
    usage = usage_to_openai(
        {
            "promptTokenCount": 10,
            "candidatesTokenCount": 3,
            "thoughtsTokenCount": 5,
            "cachedContentTokenCount": 4,
        }
    )
    assert usage["completion_tokens"] == 8 and usage["prompt_tokens_details"] == {"cached_tokens": 4}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 5}


def test_gemini_errors_including_vertex_list_form() -> None:
    err = gemini_error_to_openai(
        [{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}], 429
    )
    assert err["error"] == {
        "message": "quota",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert gemini_error_to_openai(b"not json", 502)["error"]["type"] == "api_error"


def test_gemini_tool_message_needs_its_call() -> None:
    with pytest.raises(InvalidRequest) as info:
        openai_request_to_gemini({"messages": [*USER, {"role": "tool", "tool_call_id": "x", "content": "1"}]})
    assert info.value.param == "messages[1].tool_call_id"
    with pytest.raises(InvalidRequest):
        openai_request_to_gemini({"messages": USER, "tools": [{"type": "web_search"}]})


def test_gemini_stream_with_two_candidates_is_done_only_when_both_finish() -> None:
    dec = GeminiStreamDecoder("m")
    first = dec.decode(
        _sse(
            b'{"candidates": [{"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},'
            b' {"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]}}]}'
        )
    )
    assert not dec.done
    assert [type(e) for e in first] == [TextDelta, TextDelta, Finish, ToolCallDelta]
    call = first[3]
    assert isinstance(call, ToolCallDelta) and call.index == 1 and call.arguments == '{"x":1}'
    last = dec.decode(
        _sse(
            b'{"candidates": [{"index": 1, "finishReason": "STOP"}],'
            b' "usageMetadata": {"promptTokenCount": 2}}'
        )
    )
    assert last == [Finish(1, "tool_calls")] and dec.done
    assert dec.flush() == [Usage({"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2})]


def test_bedrock_request_corners() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    body = openai_request_to_bedrock(
        {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png}}]}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "none",
        }
    )
    assert body["messages"][0]["content"][0] == {
        "image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}
    }
    assert "toolConfig" not in body  # Converse has no "none" mode: the tools are left out
    with pytest.raises(InvalidRequest):
        openai_request_to_bedrock(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            }
        )
    with pytest.raises(InvalidRequest):
        openai_request_to_bedrock({"messages": USER, "n": 2})


def test_bedrock_errors_and_stream_exception() -> None:
    err = bedrock_error_to_openai(
        {"message": "slow down"}, 429, "ThrottlingException:http://internal.amazon.com/"
    )
    assert err["error"]["type"] == "rate_limit_error" and err["error"]["message"] == "slow down"
    long = bedrock_error_to_openai(
        {"message": "Input is too long for requested model."}, 400, "ValidationException"
    )
    assert long["error"]["code"] == "context_length_exceeded"
    dec = BedrockStreamDecoder("m")
    (event,) = dec.exception("modelStreamErrorException", {"message": "boom"})
    assert dec.done and event.error["message"] == "boom"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("provider", "module", "extra"),
    [("vertex", "google.auth", "vertex"), ("bedrock", "botocore.session", "bedrock")],
)
def test_a_missing_sdk_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    settings = "    project: p\n    location: l\n" if provider == "vertex" else "    region: us-east-1\n"
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nupstreams:\n  u:\n    base_url: https://example.com\n"
        f"    provider: {provider}\n{settings}"
        "default_upstream: u\nplugins: []\n"
    )
    with pytest.raises(ConfigError) as info:
        PolicyStore(path, default_registry()).load_initial()
    assert (
        f"pip install 'policy-sidecar[{extra}]'" in info.value.message and "upstreams.u" in info.value.message
    )
