"""Both SDKs, both providers: OpenAI <-> Anthropic translation through a real sidecar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from proxy.demo.fake_scenario import FakeState, redact_credential
from proxy.demo.fake_upstream import fake_upstream_in_thread
from tests.harness import SidecarHarness, sidecar_harness

TOOL_SCENARIO = {
    "content": "checking",
    "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
    "chunk_size": 3,
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
REDACT = "- type: blocklist\n  patterns: ['sk-[a-z0-9]{10,}']\n  action: redact\n  max_match_chars: 40\n"


def _anthropic_policy(plugins: str = "  []\n") -> str:
    return (
        "version: 1\nupstreams:\n  claude:\n    base_url: {upstream}\n    provider: anthropic\n"
        "    api_key: sk-ant-policy\ndefault_upstream: claude\nplugins:\n" + plugins
    )


@pytest.fixture
def to_anthropic(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, policy=_anthropic_policy()) as h:
        yield h


def _scenario(**kw: object) -> dict[str, str]:
    return {"x-fake-scenario": json.dumps(kw)}


def test_openai_sdk_to_anthropic_upstream(to_anthropic: SidecarHarness) -> None:
    h = to_anthropic
    c = openai.OpenAI(base_url=h.v1, api_key="ignored", max_retries=0)
    r = c.chat.completions.create(
        model="claude-sonnet-4",
        max_tokens=50,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    assert r.choices[0].message.content == "Hello from the demo upstream. You said: hello"
    assert r.choices[0].finish_reason == "stop" and r.usage is not None and r.usage.total_tokens > 0
    seen = h.fake.requests[-1]
    assert seen.path == "/v1/messages"
    assert (
        seen.headers["x-api-key"] == redact_credential("sk-ant-policy")
        and "authorization" not in seen.headers
    )
    assert seen.json is not None and seen.json["system"] == "be brief" and seen.json["max_tokens"] == 50

    stream = c.chat.completions.create(
        model="claude-sonnet-4",
        messages=[{"role": "user", "content": "w?"}],
        tools=OPENAI_TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=_scenario(**TOOL_SCENARIO),
    )
    text, args, names, finish, usage = "", "", [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                names += [call.function.name] if call.function and call.function.name else []
                args += call.function.arguments or "" if call.function else ""
    assert text == "checking" and names == ["get_weather"] and json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls" and usage is not None
    sent = h.fake.requests[-1].json
    assert sent is not None and sent["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"


def test_anthropic_errors_become_openai_errors(to_anthropic: SidecarHarness) -> None:
    c = openai.OpenAI(base_url=to_anthropic.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(
            model="claude-sonnet-4",
            messages=[{"role": "user", "content": "x"}],
            extra_headers=_scenario(status=429),
        )
    assert info.value.body is not None and "scripted" in str(info.value.body)
    with pytest.raises(openai.BadRequestError) as bad:
        c.embeddings.create(model="claude-sonnet-4", input="x")
    assert bad.value.code == "unsupported_route"


def test_anthropic_sdk_through_the_chain_to_an_openai_upstream(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, REDACT) as h:
        c = anthropic.Anthropic(base_url=h.base_url, api_key="sk-ant-client", max_retries=0)
        m = c.messages.create(
            model="gpt-4o",
            max_tokens=64,
            system="be nice",
            messages=[{"role": "user", "content": "my key sk-abcdefghijklm"}],
        )
        assert m.content[0].type == "text"
        assert m.content[0].text == "Hello from the demo upstream. You said: my key [REDACTED]"
        assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0
        sent = h.fake.requests[-1]
        assert sent.path == "/v1/chat/completions" and sent.json is not None
        assert sent.json["messages"][0] == {"role": "system", "content": "be nice"}

        with c.messages.stream(
            model="gpt-4o",
            max_tokens=64,
            tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "weather sk-abcdefghijklm"}],
            extra_headers=_scenario(**TOOL_SCENARIO),
        ) as stream:
            final = stream.get_final_message()
        blocks = {b.type: b for b in final.content}
        assert blocks["text"].text == "checking"  # type: ignore[union-attr]
        assert blocks["tool_use"].name == "get_weather"  # type: ignore[union-attr]
        assert blocks["tool_use"].input == {"city": "Paris"}  # type: ignore[union-attr]
        assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0

        with pytest.raises(anthropic.BadRequestError) as info:
            c.messages.create(
                model="gpt-4o",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
                extra_body={"messages": "not a list"},
            )
        assert info.value.body["type"] == "error"  # type: ignore[index]


def test_anthropic_sdk_stream_rejected_mid_stream_gets_an_anthropic_error_event(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: blocklist\n  keywords: [forbidden]\n") as h:
        c = anthropic.Anthropic(base_url=h.base_url, api_key="x", max_retries=0)
        scenario = _scenario(content="a harmless start and then forbidden", chunk_size=4, chunk_delay=0.02)
        with (
            pytest.raises(anthropic.APIStatusError) as info,
            c.messages.stream(
                model="gpt-4o",
                max_tokens=64,
                messages=[{"role": "user", "content": "x"}],
                extra_headers=scenario,
            ) as stream,
        ):
            for _ in stream.text_stream:
                pass
        assert "blocked by policy" in str(info.value)


@pytest.fixture
def openai_backup() -> Iterator[tuple[str, FakeState]]:
    with fake_upstream_in_thread() as pair:
        yield pair


def test_fallback_from_openai_to_anthropic_with_streaming_tools(
    tmp_path: Path, openai_backup: tuple[str, FakeState]
) -> None:
    """Primary OpenAI target is down; the Anthropic target serves, translated both ways."""
    openai_url, openai_state = openai_backup
    policy = (
        f"version: 1\nupstreams:\n  openai:\n    base_url: {openai_url}\n"
        "  claude:\n    base_url: {upstream}\n    provider: anthropic\n    api_key: k\n"
        "default_upstream: openai\n"
        "routes:\n  - match: gpt-4o\n    targets: [openai, 'claude:claude-sonnet-4']\n"
        "plugins:\n  - {type: fallback}\n"
    )
    with sidecar_harness(tmp_path, policy=policy) as h:
        openai_state.push({"status": 503})
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        with c.chat.completions.with_streaming_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "w?"}],
            tools=OPENAI_TOOLS,  # type: ignore[arg-type]
            stream=True,
            extra_headers=_scenario(**TOOL_SCENARIO),
        ) as raw:
            assert raw.headers["x-sidecar-upstream"] == "claude"
            args = "".join(
                call.function.arguments or ""
                for chunk in raw.parse()
                for choice in chunk.choices
                for call in choice.delta.tool_calls or []
                if call.function
            )
        assert json.loads(args) == {"city": "Paris"}
        assert len(openai_state.requests) == 1 and h.fake.requests[-1].json["model"] == "claude-sonnet-4"  # type: ignore[index]

        # And back: the Anthropic SDK as client, fallback to the Anthropic target.
        openai_state.push({"status": 503})
        ac = anthropic.Anthropic(base_url=h.base_url, api_key="x", max_retries=0)
        m = ac.messages.create(model="gpt-4o", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
        assert m.content[0].text.endswith("You said: hi")  # type: ignore[union-attr]
