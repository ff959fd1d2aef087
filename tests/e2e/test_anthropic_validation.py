"""``/v1/messages`` with malformed bodies: a 400 in Anthropic's error format, never a 500 (issue 16).

The Anthropic SDK is the client (its typed parameters are bypassed with ``extra_body`` and casts,
as a buggy or hostile client would), so the assertions are on what that SDK raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.harness import SidecarHarness, sidecar_harness

OK_MESSAGES = [{"role": "user", "content": "hi"}]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarHarness]:
    with sidecar_harness(
        tmp_path_factory.mktemp("anthropic-validation"), "- type: blocklist\n  keywords: [x]\n"
    ) as hh:
        yield hh


# (what is wrong, the fields sent instead of the valid ones, the field the message must name)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("stop_sequences not a list", {"stop_sequences": 1}, "stop_sequences"),
    ("a stop sequence not a string", {"stop_sequences": ["a", 2]}, "stop_sequences"),
    ("a system block not an object", {"system": [1]}, "system.0"),
    ("system not text", {"system": 5}, "system"),
    ("a system block without text", {"system": [{"type": "text"}]}, "system.0.text"),
    ("tools not a list", {"tools": 1}, "tools"),
    ("a tool not an object", {"tools": ["t"]}, "tools.0"),
    ("a tool without a name", {"tools": [{"input_schema": {}}]}, "tools.0.name"),
    ("input_schema not an object", {"tools": [{"name": "t", "input_schema": 3}]}, "tools.0.input_schema"),
    ("tool_choice not an object", {"tool_choice": "auto"}, "tool_choice"),
    ("tool_choice tool without a name", {"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    (
        "an image source not an object",
        {"messages": [{"role": "user", "content": [{"type": "image", "source": 1}]}]},
        "messages.0.content.0.source",
    ),
    (
        "a base64 image without data",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}],
                }
            ]
        },
        "messages.0.content.0.source.data",
    ),
    ("a block not an object", {"messages": [{"role": "user", "content": [1]}]}, "messages.0.content.0"),
    (
        "a text block without text",
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content.0.text",
    ),
    (
        "an assistant text without text",
        {"messages": [*OK_MESSAGES, {"role": "assistant", "content": [{"type": "text", "text": None}]}]},
        "messages.1.content.0.text",
    ),
    (
        "tool_use input not an object",
        {
            "messages": [
                *OK_MESSAGES,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}],
                },
            ]
        },
        "messages.1.content.0.input",
    ),
    (
        "tool_result content not text",
        {
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 7}]}
            ]
        },
        "messages.0.content.0.content",
    ),
    (
        "a tool_result sub-block not an object",
        {
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": ["x"]}]}
            ]
        },
        "messages.0.content.0.content.0",
    ),
    ("a message not an object", {"messages": ["hi"]}, "messages.0"),
    ("an unknown role", {"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ("content neither text nor blocks", {"messages": [{"role": "user", "content": 3}]}, "messages.0.content"),
    ("max_tokens not an integer", {"max_tokens": "10"}, "max_tokens"),
    ("max_tokens a boolean", {"max_tokens": True}, "max_tokens"),
    ("temperature not a number", {"temperature": "hot"}, "temperature"),
    ("metadata not an object", {"metadata": 1}, "metadata"),
    ("metadata.user_id not a string", {"metadata": {"user_id": 5}}, "metadata.user_id"),
]


@pytest.mark.parametrize(("what", "fields", "param"), BAD, ids=[b[0] for b in BAD])
def test_malformed_messages_bodies_are_a_400_in_anthropic_format(
    h: SidecarHarness, what: str, fields: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 16, "messages": OK_MESSAGES, **fields}
    before = len(h.fake.requests)
    r = httpx.post(f"{h.base_url}/v1/messages", json=body, timeout=30)
    assert r.status_code == 400, (what, r.status_code, r.text)
    data = r.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == "invalid_request_error"
    assert data["error"]["message"].startswith(param), data
    assert len(h.fake.requests) == before  # refused before any upstream call


def test_the_anthropic_sdk_raises_bad_request_for_the_issue_cases(h: SidecarHarness) -> None:
    client = anthropic.Anthropic(base_url=h.base_url, api_key="sk-ant", max_retries=0)
    for extra in ({"stop_sequences": 1}, {"system": [1]}, {"tools": 1}):
        with pytest.raises(anthropic.BadRequestError) as err:
            client.messages.create(model="gpt-4o", max_tokens=16, messages=OK_MESSAGES, extra_body=extra)  # type: ignore[arg-type]
        assert err.value.status_code == 400
    image: Any = {"type": "image", "source": 1}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="gpt-4o", max_tokens=16, messages=[{"role": "user", "content": [image]}])
    # A valid request with every translated field still goes through.
    ok = client.messages.create(
        model="gpt-4o",
        max_tokens=16,
        system=[{"type": "text", "text": "be brief"}],
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}],  # type: ignore[list-item]
    )
    assert ok.content[0].type == "text"
