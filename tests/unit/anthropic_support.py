"""Shared fixtures and validators for the Anthropic translation tests.

OpenAI chat <-> Anthropic Messages translation: requests, responses, streams, errors.

Outputs are checked against the official SDKs rather than hand-written shapes: the ``anthropic``
and ``openai`` request TypedDicts (fully drained, so every nested block is validated), their
response models, ``RawMessageStreamEvent`` for each streamed event, and the SDK clients
themselves on a mock transport, which parse the SSE framing exactly as a real client would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, RawMessageStreamEvent
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

from proxy.upstream.sse import SSEParser

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
