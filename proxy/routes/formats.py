"""How the client speaks: OpenAI (every ``/v1`` chain route) or Anthropic (``/v1/messages``).

The chain and the upstream side always speak OpenAI chat completions. A ``ClientFormat`` turns
the client's request into that, and the answer, stream and errors back into the client's own
shapes. For OpenAI clients everything is the identity, so their bytes can be piped untouched.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import orjson

from proxy.models.stream import StreamEvent
from proxy.policy.schema import Limits
from proxy.routes.validate_anthropic import validate_anthropic
from proxy.upstream.providers.anthropic import (
    anthropic_request_to_openai,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamEncoder


class StreamEncoder(Protocol):
    def encode(self, events: list[StreamEvent]) -> bytes: ...

    def encode_done(self) -> bytes: ...


class ClientFormat(Protocol):
    native: bool  # True: the client speaks the chain's format (bytes may be piped)

    def to_chain(self, body: dict[str, Any], limits: Limits) -> dict[str, Any]: ...

    def answer(self, status: int, data: bytes) -> bytes: ...

    def stream_encoder(self, model: str) -> StreamEncoder | None: ...


class OpenAIFormat:
    native = True

    def to_chain(self, body: dict[str, Any], limits: Limits) -> dict[str, Any]:
        return body

    def answer(self, status: int, data: bytes) -> bytes:
        return data

    def stream_encoder(self, model: str) -> StreamEncoder | None:
        return None  # the chat/responses codec encodes its own format


class AnthropicFormat:
    """Anthropic Messages API clients (the ``anthropic`` SDK) in front of the sidecar."""

    native = False

    def to_chain(self, body: dict[str, Any], limits: Limits) -> dict[str, Any]:
        validate_anthropic(body, limits)  # every shape the translator reads: a 400, never a 500
        chat = anthropic_request_to_openai(body)
        if body.get("stream"):
            chat["stream_options"] = {"include_usage": True}  # Anthropic streams always end with usage
        return chat

    def answer(self, status: int, data: bytes) -> bytes:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        if not isinstance(body, dict):
            return data
        if status >= 400:
            return orjson.dumps(openai_error_to_anthropic(body, status))
        return orjson.dumps(openai_response_to_anthropic(body))

    def stream_encoder(self, model: str) -> StreamEncoder | None:
        return AnthropicStreamEncoder(model, f"msg_{uuid.uuid4().hex[:24]}")


OPENAI = OpenAIFormat()
ANTHROPIC = AnthropicFormat()
