"""Format adapters: each client format parses, refuses and answers in its own shapes (24.5).

The end-to-end behaviour (real SDKs against a uvicorn sidecar) is in tests/e2e/test_openai_sdk.py
and tests/e2e/test_anthropic*.py; these pin the adapter contract the exchange relies on, and
that the request path itself stays free of per-format branches.
"""

from __future__ import annotations

import tokenize
from pathlib import Path

import orjson
import pytest

from proxy.chain.plugin import Reply
from proxy.errors import InvalidRequest
from proxy.models.chat import Route
from proxy.policy.schema import Limits
from proxy.routes.adapters import ADAPTERS, AnthropicAdapter, OpenAIAdapter
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec

ROUTES = Path(__file__).resolve().parents[2] / "proxy" / "routes"
LIMITS = Limits()


def test_every_chain_route_has_an_adapter() -> None:
    assert set(ADAPTERS) == set(Route) - {Route.PASSTHROUGH}
    assert isinstance(ADAPTERS[Route.MESSAGES], AnthropicAdapter)
    for route in (Route.CHAT, Route.RESPONSES, Route.EMBEDDINGS):
        adapter = ADAPTERS[route]
        assert isinstance(adapter, OpenAIAdapter) and adapter.native and adapter.chain_route is route


@pytest.mark.parametrize("route", list(ADAPTERS))
@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"[" * 300 + b"]" * 300, None)],
)
def test_bad_bodies_are_400s_for_every_format(route: Route, raw: bytes, code: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ADAPTERS[route].parse(raw, LIMITS)
    assert caught.value.status == 400
    if code is not None:
        assert caught.value.code == code


def test_openai_parse_keeps_the_raw_bytes_for_an_untouched_forward() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    req = ADAPTERS[Route.CHAT].parse(raw, LIMITS)
    assert req.raw == raw and req.model == "m" and req.route is Route.CHAT
    assert req.encode() == raw


def test_anthropic_parse_translates_to_chat_and_names_anthropic_fields_in_errors() -> None:
    adapter = ADAPTERS[Route.MESSAGES]
    body = {
        "model": "claude",
        "max_tokens": 10,
        "system": "be brief",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    req = adapter.parse(orjson.dumps(body), LIMITS)
    assert req.route is Route.MESSAGES and req.raw is None
    assert req.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert req.body["stream_options"] == {"include_usage": True}
    assert adapter.upstream_path == "/chat/completions" and adapter.chain_route is Route.CHAT

    bad = {**body, "stop_sequences": [1]}
    with pytest.raises(InvalidRequest) as caught:
        adapter.parse(orjson.dumps(bad), LIMITS)
    assert caught.value.param is not None and caught.value.param.startswith("stop_sequences")


def test_codecs_and_encoders_follow_the_format() -> None:
    assert isinstance(ADAPTERS[Route.RESPONSES].codec(), ResponsesStreamCodec)
    chat = ADAPTERS[Route.CHAT]
    codec = chat.codec()
    assert isinstance(codec, ChatStreamCodec)
    assert chat.stream_encoder("m", codec) is codec  # native: the relay may pipe bytes
    anthropic = ADAPTERS[Route.MESSAGES]
    assert anthropic.stream_encoder("m", anthropic.codec()) is not codec


def test_local_replies_in_each_format() -> None:
    reply = Reply(content="no", status=200)
    chat = ADAPTERS[Route.CHAT]
    req = chat.parse(b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}', LIMITS)
    data, media = chat.local(reply, req)
    assert media == "application/json"
    assert orjson.loads(data)["choices"][0]["message"]["content"] == "no"

    anthropic = ADAPTERS[Route.MESSAGES]
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    data, media = anthropic.local(reply, anthropic.parse(orjson.dumps(body), LIMITS))
    answer = orjson.loads(data)
    assert media == "application/json" and answer["type"] == "message"
    assert answer["content"][0]["text"] == "no"

    data, media = anthropic.local(reply, anthropic.parse(orjson.dumps({**body, "stream": True}), LIMITS))
    assert media == "text/event-stream"
    assert b"event: message_start" in data and b"event: message_stop" in data and b'"no"' in data


def test_the_request_path_has_no_per_format_branch() -> None:
    """What differs between formats is the adapter's: the exchange, the relay and the route
    object never ask which format the client speaks."""
    for name in ("pipeline.py", "exchange.py", "streaming.py", "records.py"):
        with (ROUTES / name).open("rb") as source:
            names = {t.string for t in tokenize.tokenize(source.readline) if t.type == tokenize.NAME}
        assert "MESSAGES" not in names, name
        assert not {n for n in names if "anthropic" in n.lower()}, name
