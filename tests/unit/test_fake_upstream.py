"""Tests of the scriptable fake OpenAI upstream.

Most tests talk to the ASGI app in-process (fast, no sockets); the SDK tests use a real uvicorn
server in a background thread because the point is that the official ``openai`` client parses
what the fake sends, and faults like dropped connections only exist on real sockets.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from pydantic import ValidationError

from proxy.demo.fake_scenario import embedding_vector
from proxy.demo.fake_upstream import (
    DroppedConnection,
    FakeState,
    Scenario,
    build_fake_upstream,
    fake_upstream_in_thread,
)

DEFAULT_PREFIX = "Hello from the demo upstream. You said: "
USER_X: Any = [{"role": "user", "content": "x"}]


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
async def client(state: FakeState) -> AsyncIterator[httpx.AsyncClient]:
    app = build_fake_upstream(state)
    assert app.state.fake is state
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as c:
        yield c


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, FakeState]]:
    with fake_upstream_in_thread() as (url, fake_state):
        yield url, fake_state


@pytest.fixture
def sdk(server: tuple[str, FakeState]) -> Iterator[tuple[openai.OpenAI, FakeState]]:
    url, fake_state = server
    fake_state.reset()
    with openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=10) as c:
        yield c, fake_state


def chat_body(text: str = "hi there", **extra: Any) -> dict[str, Any]:
    return {"model": "demo-model", "messages": [{"role": "user", "content": text}], **extra}


def sse_payloads(raw: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in raw.split("\n") if line.startswith("data: ")]


# -- chat completions -----------------------------------------------------------------------------


async def test_chat_non_stream_default_reply(client: httpx.AsyncClient) -> None:
    body = chat_body(n=2)
    body["messages"].insert(0, {"role": "system", "content": "be nice"})
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-fake-")
    assert data["model"] == "demo-model"
    assert data["system_fingerprint"]
    assert [c["index"] for c in data["choices"]] == [0, 1]
    for choice in data["choices"]:
        assert choice["message"]["role"] == "assistant"
        assert choice["message"]["content"] == DEFAULT_PREFIX + "hi there"
        assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["prompt_tokens"] == 4  # "be nice" + "hi there"
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_chat_stream_reconstructs_non_stream_content(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/chat/completions", json=chat_body())).json()
    expected = plain["choices"][0]["message"]["content"]

    body = chat_body(stream=True, stream_options={"include_usage": True})
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == expected
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert all(len(c["choices"][0]["delta"]["content"]) <= 4 for c in content_chunks)
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_chat_stream_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    chunks = [json.loads(p) for p in sse_payloads(r.text)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


async def test_template_list_content_and_literal_braces(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(content='{"json": true} {model} <- {last_user}', chunk_size=50))
    parts = [
        {"type": "text", "text": "part one"},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "two"},
    ]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.json()["choices"][0]["message"]["content"] == '{"json": true} gpt-4o-mini <- part one two'


async def test_chat_tool_calls_non_stream(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push({"tool_calls": [{"name": "lookup", "arguments": '{"q": 1}'}]})
    choice = (await client.post("/v1/chat/completions", json=chat_body())).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "lookup", "arguments": '{"q": 1}'}


def test_sdk_chat_and_tool_call_streaming(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    msgs: Any = [{"role": "user", "content": "weather?"}]
    reply = client.chat.completions.create(model="demo-model", messages=msgs)
    assert reply.choices[0].message.content == DEFAULT_PREFIX + "weather?"

    args = '{"city": "Paris", "unit": "celsius"}'
    fake.push({"tool_calls": [{"name": "get_weather", "arguments": args}, {"name": "noop"}], "chunk_size": 5})
    with client.chat.completions.stream(model="demo-model", messages=msgs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", args), ("noop", "{}")]
    assert len({c.id for c in calls}) == 2


# -- responses API --------------------------------------------------------------------------------


def test_sdk_responses_non_stream(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, _ = sdk
    items: Any = [{"role": "user", "content": [{"type": "input_text", "text": "from parts"}]}]
    resp = client.responses.create(model="demo-model", input=items)
    assert resp.object == "response"
    assert resp.id.startswith("resp_fake")
    assert resp.status == "completed"
    assert resp.model == "demo-model"
    assert resp.output_text == DEFAULT_PREFIX + "from parts"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


def test_sdk_responses_stream(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, _ = sdk
    events = list(client.responses.create(model="demo-model", input="stream me", stream=True))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    text = "".join(d.delta for d in deltas)
    assert text == DEFAULT_PREFIX + "stream me"
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == text
    assert {d.item_id for d in deltas} == {done.response.output[0].id}

    # The SDK's accumulating helper validates item identities across events.
    with client.responses.stream(model="demo-model", input="again") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == DEFAULT_PREFIX + "again"


def test_sdk_responses_stream_function_call(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    fake.push({"tool_calls": [{"name": "search", "arguments": '{"q": "fake"}'}]})
    with client.responses.stream(model="demo-model", input="go") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    (item,) = final.output
    assert item.type == "function_call"
    assert (item.name, item.arguments) == ("search", '{"q": "fake"}')


# -- embeddings and models ------------------------------------------------------------------------


def test_sdk_embeddings_base64_matches_float(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert fake.requests[-1].json["encoding_format"] == "base64"  # the SDK's default
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == embedding_vector("alpha")
    assert result.data[1].embedding == embedding_vector("beta")
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 2

    floats = client.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == embedding_vector("alpha")


async def test_embeddings_base64_wire_format(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": "e", "input": "x", "encoding_format": "base64"})
    (item,) = r.json()["data"]
    raw = base64.b64decode(item["embedding"])
    assert list(struct.unpack("<8f", raw)) == embedding_vector("x")


async def test_models_list(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(status=500))
    data = (await client.get("/v1/models")).json()
    assert data["object"] == "list"
    ids = [m["id"] for m in data["data"]]
    assert "demo-model" in ids and "gpt-4o-mini" in ids
    assert state.pending == 1  # /v1/models never consumes a scripted answer


# -- scripting and faults -------------------------------------------------------------------------


async def test_queued_429_with_retry_after_then_default(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(status=429, retry_after=1.5, retry_after_ms=1500), Scenario(status=503))
    r1 = await client.post("/v1/chat/completions", json=chat_body())
    assert r1.status_code == 429
    assert r1.headers["retry-after"] == "1.5"
    assert r1.headers["retry-after-ms"] == "1500"
    error = r1.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "rate_limit_exceeded"
    r2 = await client.post("/v1/embeddings", json={"model": "e", "input": "x"})
    assert r2.status_code == 503
    assert r2.json()["error"]["type"] == "server_error"
    r3 = await client.post("/v1/chat/completions", json=chat_body())
    assert r3.status_code == 200
    assert state.pending == 0


def test_sdk_sees_rate_limit_error(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    fake.push({"status": 429, "retry_after": 2})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "2"


async def test_header_directive_and_queue_priority(client: httpx.AsyncClient, state: FakeState) -> None:
    headers = {"x-fake-scenario": json.dumps({"content": "from header", "finish_reason": "length"})}
    r = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    choice = r.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("from header", "length")

    state.push(Scenario(content="from queue"))
    r = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    assert r.json()["choices"][0]["message"]["content"] == "from queue"

    r = await client.post("/v1/chat/completions", json=chat_body(), headers={"x-fake-scenario": "{nope"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    bogus = {"x-fake-scenario": '{"bogus": 1}'}
    r = await client.post("/v1/chat/completions", json=chat_body(), headers=bogus)
    assert r.status_code == 400


async def test_invalid_json_body_is_400(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(content="kept"))
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
        r = await client.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400, path
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert state.pending == 1  # a rejected request does not eat the script


def test_sdk_stream_drop_after_chunks(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    fake.push(Scenario(drop_after_chunks=3))
    received: list[str] = []
    stream = client.chat.completions.create(model="m", messages=USER_X, stream=True)
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Hell", "o fr"]  # role chunk + two content chunks, then the drop


def test_sdk_non_stream_drop(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    fake.push({"drop_after_chunks": 0})
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    # The server survives the drop and answers normally afterwards.
    assert client.models.list().data


async def test_drop_raises_inside_app(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(drop_after_chunks=2))
    with pytest.raises(DroppedConnection):
        await client.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})


async def test_malformed_json_non_stream(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(malformed="json"))
    r = await client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200
    assert r.content.startswith(b'{"id":"chatcmpl-fake-')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)


async def test_malformed_sse_mid_stream(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(malformed="sse"))
    r = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    payloads = payloads[:-1]
    bad = []
    for i, p in enumerate(payloads):
        try:
            json.loads(p)
        except ValueError:
            bad.append(i)
    assert len(bad) == 1
    assert 0 < bad[0] < len(payloads) - 1


def test_sdk_malformed_sse_raises(sdk: tuple[openai.OpenAI, FakeState]) -> None:
    client, fake = sdk
    fake.push({"malformed": "sse"})
    stream = client.chat.completions.create(model="m", messages=USER_X, stream=True)
    with pytest.raises(ValueError):
        list(stream)


async def test_delays(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(delay=0.2), Scenario(first_token_delay=0.1, chunk_delay=0.01, chunk_size=20))
    start = time.monotonic()
    r = await client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    r = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert r.text.endswith("data: [DONE]\n\n")
    assert time.monotonic() - start >= 0.1


async def test_raw_body(client: httpx.AsyncClient, state: FakeState) -> None:
    state.push(Scenario(status=502, raw_body="<html>bad gateway</html>", content_type="text/html"))
    r = await client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == "<html>bad gateway</html>"


def test_scenario_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Scenario.model_validate({"stauts": 500})
    with pytest.raises(ValidationError):
        Scenario(malformed="xml")  # type: ignore[arg-type]


# -- recording, echo and control endpoints --------------------------------------------------------


async def test_request_recording(client: httpx.AsyncClient, state: FakeState) -> None:
    await client.post("/v1/chat/completions?trace=1", json=chat_body(), headers={"X-Custom": "Value"})
    await client.post("/v1/embeddings", content=b"\xff\xfe", headers={"content-type": "application/json"})
    first, second = state.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "trace=1")
    assert first.headers["x-custom"] == "Value"
    assert first.json == chat_body()
    assert orjson.loads(first.body) == chat_body()
    assert second.json is None and second.body == b"\xff\xfe"

    listed = (await client.get("/_fake/requests")).json()
    assert [r["path"] for r in listed] == ["/v1/chat/completions", "/v1/embeddings"]
    assert listed[1]["body"] == "\ufffd\ufffd"
    assert len(state.requests) == 2  # control endpoints are not recorded


async def test_control_endpoints(client: httpx.AsyncClient, state: FakeState) -> None:
    r = await client.post("/_fake/script", json=[{"status": 500}, {"content": "second"}])
    assert r.json() == {"queued": 2, "pending": 2}
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 500
    r = await client.post("/v1/chat/completions", json=chat_body())
    assert r.json()["choices"][0]["message"]["content"] == "second"

    assert (await client.post("/_fake/script", json=[{"nope": 1}])).status_code == 400
    await client.post("/_fake/script", json=[{"status": 500}])
    await client.post("/_fake/reset")
    assert state.pending == 0 and len(state.requests) == 0
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200


async def test_echo_passthrough(client: httpx.AsyncClient, state: FakeState) -> None:
    r = await client.put("/v1/files/abc?x=1", content=b"payload", headers={"x-fake-status": "201"})
    assert r.status_code == 201
    assert r.headers["x-fake-echo"] == "1"
    data = r.json()
    assert (data["method"], data["path"], data["query"]) == ("PUT", "/v1/files/abc", "x=1")
    assert data["body"] == "payload"
    assert data["headers"]["x-fake-status"] == "201"
    assert state.requests[-1].path == "/v1/files/abc"

    r = await client.get("/v1/chat/completions")  # wrong method on a model path: echoed, not 405
    assert r.headers["x-fake-echo"] == "1"

    r = await client.get("/v1/stream-me", headers={"x-fake-stream": "3"})
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "line 0\nline 1\nline 2\n"


def test_echo_streams_over_real_socket(server: tuple[str, FakeState]) -> None:
    url, _ = server
    with httpx.Client() as c, c.stream("GET", f"{url}/anything", headers={"x-fake-stream": "5"}) as r:
        lines = list(r.iter_lines())
    assert lines == [f"line {i}" for i in range(5)]
