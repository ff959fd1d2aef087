"""The OpenAI SDK through a real sidecar to a Bedrock Converse / ConverseStream fake.

The fake recomputes every request's SigV4 signature with botocore and frames streams in the
AWS binary event-stream format with both CRCs. The AWS credential chain is exercised with
environment variables, a shared credentials file and an IRSA-style web identity token file,
all created here; instance metadata is switched off so nothing leaves the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.demo.fake_scenario import FakeState
from proxy.demo.fake_upstream import fake_upstream_in_thread
from tests.e2e.cloud_fakes import AWS_REGION, FakeCloud, fake_cloud
from tests.e2e.test_gemini import TOOLS, collect
from tests.harness import SidecarHarness, sidecar_harness

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ACCESS, SECRET = "AKIAFAKEENVKEY", "env-secret"


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated AWS environment: no host config files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "aws"
    home.mkdir()
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    return home


@pytest.fixture
def cloud() -> Iterator[tuple[str, FakeCloud]]:
    with fake_cloud() as pair:
        yield pair


def bedrock_policy(url: str, plugins: str = "  []\n") -> str:
    return (
        f"version: 1\nupstreams:\n  bedrock:\n    base_url: {url}\n    provider: bedrock\n"
        f"    region: {AWS_REGION}\n    read_timeout: 5\ndefault_upstream: bedrock\n"
        f"routes:\n  - match: claude\n    targets: ['bedrock:{MODEL}']\nplugins:\n" + plugins
    )


@pytest.fixture
def bedrock(
    tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SidecarHarness, FakeCloud]]:
    url, state = cloud
    state.aws_keys[ACCESS] = (SECRET, None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with sidecar_harness(tmp_path, policy=bedrock_policy(url)) as h:
        yield h, state


def chat(h: SidecarHarness, text: str = "hi", **kw: Any) -> Any:
    c = openai.OpenAI(base_url=h.v1, api_key="client-key", max_retries=0)
    return c.chat.completions.create(model="claude", messages=[{"role": "user", "content": text}], **kw)


def test_converse_signed_with_env_credentials(bedrock: tuple[SidecarHarness, FakeCloud]) -> None:
    h, cloud = bedrock
    c = openai.OpenAI(base_url=h.v1, api_key="client-key", max_retries=0)
    r = c.chat.completions.create(
        model="claude",
        max_tokens=100,
        temperature=0.5,
        stop="END",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
    )
    assert r.choices[0].message.content == "You said: again" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (13, 5)
    seen = cloud.requests[-1]
    assert seen.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert "client-key" not in json.dumps(seen.headers)  # the client's key never reaches AWS
    assert seen.json["system"] == [{"text": "be brief"}]
    assert seen.json["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]}
    assert [m["role"] for m in seen.json["messages"]] == ["user", "assistant", "user"]


def test_converse_stream_text_and_tools(bedrock: tuple[SidecarHarness, FakeCloud]) -> None:
    h, cloud = bedrock
    cloud.push({"text": "streaming from bedrock", "chunk_size": 3})
    text, finish, calls, usage = collect(chat(h, stream=True, stream_options={"include_usage": True}))
    assert text == "streaming from bedrock" and finish == "stop" and not calls
    assert usage is not None and usage.total_tokens == 18
    assert cloud.requests[-1].path.endswith("/converse-stream")

    cloud.push({"text": "checking", "calls": [{"name": "get_weather", "args": {"city": "Paris"}}]})
    text, finish, calls, _ = collect(chat(h, "w?", stream=True, tools=TOOLS))
    assert text == "checking" and finish == "tool_calls"
    assert calls[0]["id"] == "tooluse_0" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    spec = cloud.requests[-1].json["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["name"] == "get_weather" and spec["inputSchema"]["json"]["required"] == ["city"]

    # The answer to the call goes back as toolUse / toolResult blocks.
    cloud.push({"calls": [{"name": "get_weather", "args": {"city": "Oslo"}}], "text": ""})
    r = chat(h, "w?", tools=TOOLS, tool_choice="required")
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {
        "city": "Oslo"
    }
    c = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0)
    r = c.chat.completions.create(
        model="claude",
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "w?"},
            r.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "12C"},
        ],
    )
    msgs = cloud.requests[-1].json["messages"]
    assert msgs[1]["content"][0]["toolUse"] == {
        "toolUseId": "tooluse_0",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    assert msgs[2]["content"][0]["toolResult"] == {"toolUseId": "tooluse_0", "content": [{"text": "12C"}]}
    assert cloud.requests[-2].json["toolConfig"]["toolChoice"] == {"any": {}}


def test_guardrail_and_errors(bedrock: tuple[SidecarHarness, FakeCloud]) -> None:
    h, cloud = bedrock
    cloud.push({"text": "", "stop": "guardrail_intervened"})
    assert chat(h).choices[0].finish_reason == "content_filter"
    cloud.push({"text": "abc", "stop": "guardrail_intervened"})
    assert collect(chat(h, stream=True))[1] == "content_filter"

    cloud.push({"status": 429, "error": "ThrottlingException", "message": "Too many requests"})
    with pytest.raises(openai.RateLimitError) as limited:
        chat(h)
    assert limited.value.code == "rate_limit_exceeded" and "Too many requests" in limited.value.message
    cloud.push(
        {"status": 400, "error": "ValidationException", "message": "Input is too long for requested model."}
    )
    with pytest.raises(openai.BadRequestError) as long:
        chat(h)
    assert long.value.code == "context_length_exceeded"
    cloud.push({"status": 408, "error": "ModelTimeoutException", "message": "Model has timed out"})
    with pytest.raises(openai.APIStatusError) as slow:
        chat(h)
    assert slow.value.status_code == 504

    # In-band: an exception message mid-stream, and a frame whose CRC does not match.
    cloud.push({"text": "part", "stream_exception": "throttlingException"})
    with pytest.raises(openai.APIError) as inband:
        collect(chat(h, stream=True))
    assert "scripted stream failure" in str(inband.value)
    cloud.push({"text": "bad crc", "corrupt": True})
    with pytest.raises(openai.APIError):
        collect(chat(h, stream=True))


def test_retry_then_fallback_from_openai_to_bedrock(
    tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = cloud
    state.aws_keys[ACCESS] = (SECRET, None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with fake_upstream_in_thread() as (openai_url, openai_state):
        policy = (
            f"version: 1\nupstreams:\n  openai:\n    base_url: {openai_url}\n"
            f"  bedrock:\n    base_url: {url}\n    provider: bedrock\n    region: {AWS_REGION}\n"
            "default_upstream: openai\n"
            f"routes:\n  - match: gpt-4o\n    targets: [openai, 'bedrock:{MODEL}']\n"
            "plugins:\n  - {type: fallback}\n"
            "  - {type: retry, max_attempts: 2, base_delay: 0.01, max_delay: 0.02}\n"
        )
        with sidecar_harness(tmp_path, policy=policy) as h:
            _fallback_checks(h, openai_state, state)


def _fallback_checks(h: SidecarHarness, openai_state: FakeState, state: FakeCloud) -> None:
    c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
    openai_state.push({"status": 503}, {"status": 503})
    state.push({"status": 503, "error": "ServiceUnavailableException"})  # bedrock's first try fails too
    with c.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "failover"}], stream=True
    ) as raw:
        assert raw.headers["x-sidecar-upstream"] == "bedrock"
        text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    assert text == "You said: failover"
    assert len(openai_state.requests) == 2 and len(state.requests) == 2


def _run_with(h: SidecarHarness) -> str:
    return str(chat(h, "creds").choices[0].message.content)


def test_shared_credentials_file(tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path) -> None:
    url, state = cloud
    state.aws_keys["AKIAFILEKEY"] = ("file-secret", "file-token")
    (aws_env / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAFILEKEY\naws_secret_access_key = file-secret\n"
        "aws_session_token = file-token\n"
    )
    with sidecar_harness(tmp_path, policy=bedrock_policy(url)) as h:
        assert _run_with(h) == "You said: creds"
        assert state.requests[-1].headers["x-amz-security-token"] == "file-token"


def test_web_identity_token_file(
    tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = cloud
    token = tmp_path / "token"
    token.write_text("eyJhbGciOi.fake.projected-service-account-token")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/sidecar")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"{url}/sts")
    with sidecar_harness(tmp_path, policy=bedrock_policy(url)) as h:
        assert _run_with(h) == "You said: creds"
        assert _run_with(h) == "You said: creds"
    assert len(state.sts_calls) == 1  # assumed once, reused until it nears expiry
    assert state.sts_calls[0]["WebIdentityToken"] == token.read_text()
    assert state.sts_calls[0]["RoleArn"] == "arn:aws:iam::123456789012:role/sidecar"
    assert state.requests[-1].headers["x-amz-security-token"] == "web-identity-session"


def test_no_credentials_is_a_clear_503(tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path) -> None:
    url, state = cloud
    with sidecar_harness(tmp_path, policy=bedrock_policy(url)) as h:
        with pytest.raises(openai.InternalServerError) as info:
            chat(h)
        assert info.value.status_code == 503 and info.value.code == "upstream_credentials_unavailable"
    assert state.requests == []


def test_a_wrong_secret_is_refused_by_the_signature_check(
    tmp_path: Path, cloud: tuple[str, FakeCloud], aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = cloud
    state.aws_keys[ACCESS] = (SECRET, None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with sidecar_harness(tmp_path, policy=bedrock_policy(url)) as h:
        with pytest.raises(openai.PermissionDeniedError) as info:
            chat(h)
        assert "SignatureDoesNotMatch" in info.value.message
