"""The shared halves of the provider translations (``providers/common.py``, ``translated.py``).

Why here and not only through each provider: these helpers now decide, for Anthropic, Gemini and
Bedrock at once, what OpenAI input is refused and how turns are merged; a change to one of them
must show up as a failing assertion on the helper itself, not only as a diff in one provider's
output. The three providers' own outputs stay pinned by their unit and e2e tests.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidRequest
from proxy.upstream.providers.anthropic import openai_request_to_anthropic
from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder
from proxy.upstream.providers.bedrock import openai_request_to_bedrock
from proxy.upstream.providers.common import (
    arguments_to_object,
    chat_messages,
    content_items,
    image_source,
    merge_turn,
    usage_with_cache,
)
from proxy.upstream.providers.gemini import openai_request_to_gemini
from proxy.upstream.providers.translated import SSEFrames, split_bearer


def _text(t: str) -> dict[str, Any]:
    return {"t": t}


def test_content_items_skips_empty_text_and_refuses_unknown_parts() -> None:
    parts = [
        {"type": "text", "text": "a"},
        {"type": "text", "text": ""},
        {"type": "refusal", "refusal": "no"},
    ]
    assert content_items(parts, "m", _text, {}) == [{"t": "a"}, {"t": "no"}]
    assert content_items("", "m", _text, {}) == []
    with pytest.raises(InvalidRequest) as err:
        content_items([{"type": "input_audio"}], "messages[0].content", _text, {})
    assert (err.value.param, err.value.code) == ("messages[0].content[0]", "unsupported_content")
    with pytest.raises(InvalidRequest) as err:
        content_items(42, "messages[0].content", _text, {})
    assert err.value.param == "messages[0].content"


def test_arguments_to_object_keeps_broken_json_visible() -> None:
    assert arguments_to_object('{"a": 1}') == {"a": 1}
    assert arguments_to_object("  ") == {}
    assert arguments_to_object("{oops") == {"_raw_arguments": "{oops"}
    assert arguments_to_object("[1]") == {"_raw_arguments": "[1]"}


def test_merge_turn_merges_same_role_and_skips_empty_unless_told() -> None:
    turns: list[dict[str, Any]] = []
    merge_turn(turns, "user", [{"x": 1}])
    merge_turn(turns, "user", [{"x": 2}])
    merge_turn(turns, "model", [], key="content")
    assert turns == [{"role": "user", "content": [{"x": 1}, {"x": 2}]}]
    merge_turn(turns, "assistant", [], skip_empty=False)
    assert turns[-1] == {"role": "assistant", "content": []}


def test_chat_messages_reads_developer_as_system_and_refuses_unknown_roles() -> None:
    walked = list(chat_messages([{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]))
    assert [(p, r) for p, r, _ in walked] == [("messages[0]", "system"), ("messages[1]", "user")]
    with pytest.raises(InvalidRequest) as err:
        list(chat_messages([{"role": "user"}, {"role": "function"}]))
    assert err.value.param == "messages[1].role"


@pytest.mark.parametrize(
    "translate", [openai_request_to_anthropic, openai_request_to_gemini, openai_request_to_bedrock]
)
def test_every_provider_refuses_the_same_unknown_role(translate: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "critic", "content": "x"}]}
    with pytest.raises(InvalidRequest) as err:
        translate(body)
    assert (err.value.param, err.value.code) == ("messages[1].role", "unsupported_content")


def test_image_source_splits_inline_images_and_refuses_non_base64_data() -> None:
    assert image_source({"image_url": {"url": "https://x/y.png"}}, "p") == ("https://x/y.png", None)
    assert image_source({"image_url": "data:image/png;base64,AAAA"}, "p")[1] == ("image/png", "AAAA")
    with pytest.raises(InvalidRequest):
        image_source({"image_url": {"url": "data:image/png,raw"}}, "p")
    with pytest.raises(InvalidRequest):
        image_source({"image_url": {}}, "p")


def test_usage_with_cache_counts_cache_reads_and_writes_as_prompt() -> None:
    assert usage_with_cache(10, 5, 3, 2) == {
        "prompt_tokens": 15,
        "completion_tokens": 5,
        "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert "prompt_tokens_details" not in usage_with_cache(1, 1, 0, 4)


def test_split_bearer_moves_only_a_bearer_key() -> None:
    rest, key = split_bearer([("Authorization", "Bearer  sk-1 "), ("x-other", "1")])
    assert (rest, key) == ([("x-other", "1")], "sk-1")
    rest, key = split_bearer([("authorization", "Basic abc")])
    assert (rest, key) == ([], None)


def test_sse_frames_wait_for_the_message_id_when_asked() -> None:
    frames = SSEFrames(AnthropicStreamDecoder(), 1 << 16, wait_for_id=True)
    assert frames.feed(b'event: ping\ndata: {"type": "ping"}\n\n') == []
    assert frames.openai_chunk_template() is None
    start = (
        b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_7", "model": "c"}}\n\n'
    )
    assert frames.feed(start)
    template = frames.openai_chunk_template()
    assert template is not None and template["id"] == "msg_7"
    assert not frames.done
