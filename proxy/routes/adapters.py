"""Format adapters: what differs between the client wire formats, in one object per format.

The chain and the upstream side always speak OpenAI chat completions (or the OpenAI route the
client called). An adapter is everything the request pipeline must know about the client's
own format, so the pipeline (``proxy.routes.exchange``) has no ``if anthropic`` branch:

- ``parse``: the raw body -> a validated ``ChatRequest`` the chain can run (JSON, nesting depth,
  the route's shape checks; for Anthropic, its own checks and the translation to chat);
- ``upstream_path`` / ``chain_route``: where the (translated) request goes upstream;
- ``answer``: an upstream (or error) JSON body -> the client's shape;
- ``codec`` / ``stream_encoder``: how upstream SSE is decoded and how events go back out;
- ``local``: a plugin's local ``Reply`` as the client's JSON or stream.

For OpenAI clients everything is the identity (``native``), so their bytes can be piped
untouched. One adapter instance per route and process (they hold no per-request state).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import orjson

from proxy.chain.plugin import Reply
from proxy.errors import InvalidRequest
from proxy.models.chat import ChatRequest, Route
from proxy.models.stream import Finish, StreamEvent, TextDelta
from proxy.models.validate import check_depth, validate_body
from proxy.policy.schema import Limits
from proxy.routes.replies import reply_body, reply_stream
from proxy.routes.validate_anthropic import validate_anthropic
from proxy.upstream.providers.anthropic import (
    anthropic_request_to_openai,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamEncoder
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec

JSON = "application/json"
SSE = "text/event-stream"

StreamCodec = ChatStreamCodec | ResponsesStreamCodec


class StreamEncoder(Protocol):
    def encode(self, events: list[StreamEvent]) -> bytes: ...

    def encode_done(self) -> bytes: ...


class FormatAdapter(Protocol):
    """The client-format half of a chain route (see the module doc)."""

    route: Route  # what the client called
    chain_route: Route  # what the chain and the upstream see
    upstream_path: str
    native: bool  # True: the client speaks the chain's format (bytes may be piped)

    def parse(self, raw: bytes | None, limits: Limits) -> ChatRequest: ...

    def answer(self, status: int, data: bytes) -> bytes: ...

    def codec(self) -> StreamCodec: ...

    def stream_encoder(self, model: str, codec: StreamCodec) -> StreamEncoder: ...

    def local(self, reply: Reply, req: ChatRequest) -> tuple[bytes, str]: ...


def _decode(raw: bytes | None, limits: Limits) -> Any:
    """The JSON body, refused with a 400 (never a 500) when it is not JSON or nested too deep."""
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send valid JSON.", code="invalid_json"
        ) from None
    check_depth(raw, body, limits.max_json_depth)
    return body


_UPSTREAM_PATHS = {
    Route.CHAT: "/chat/completions",
    Route.RESPONSES: "/responses",
    Route.EMBEDDINGS: "/embeddings",
}


class OpenAIAdapter:
    """OpenAI clients on ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/embeddings``."""

    native = True

    def __init__(self, route: Route) -> None:
        self.route = self.chain_route = route
        self.upstream_path = _UPSTREAM_PATHS[route]

    def parse(self, raw: bytes | None, limits: Limits) -> ChatRequest:
        body = validate_body(self.route, _decode(raw, limits), limits)
        return ChatRequest(body, self.route, raw)  # raw kept: an untouched body is forwarded as is

    def answer(self, status: int, data: bytes) -> bytes:
        return data

    def codec(self) -> StreamCodec:
        return ResponsesStreamCodec() if self.route is Route.RESPONSES else ChatStreamCodec()

    def stream_encoder(self, model: str, codec: StreamCodec) -> StreamEncoder:
        return codec  # the upstream codec encodes its own format back

    def local(self, reply: Reply, req: ChatRequest) -> tuple[bytes, str]:
        if req.stream and reply.status < 400:
            return reply_stream(reply, self.route, req.model), SSE
        return orjson.dumps(reply_body(reply, self.route, req.model)), JSON


class AnthropicAdapter:
    """Anthropic Messages API clients (the ``anthropic`` SDK) on ``/v1/messages``."""

    native = False
    route = Route.MESSAGES
    chain_route = Route.CHAT  # translated: the chain and upstream side speak OpenAI chat
    upstream_path = "/chat/completions"

    def parse(self, raw: bytes | None, limits: Limits) -> ChatRequest:
        body = _decode(raw, limits)
        validate_body(Route.MESSAGES, body, limits)  # model present, stream a boolean
        validate_anthropic(body, limits)  # every shape the translator reads: a 400, never a 500
        chat = anthropic_request_to_openai(body)
        if body.get("stream"):
            chat["stream_options"] = {"include_usage": True}  # Anthropic streams always end with usage
        validate_body(Route.CHAT, chat, limits)
        return ChatRequest(chat, Route.MESSAGES, None)  # no raw bytes: the chat body is re-encoded

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

    def codec(self) -> StreamCodec:
        return ChatStreamCodec()

    def stream_encoder(self, model: str, codec: StreamCodec) -> StreamEncoder:
        return AnthropicStreamEncoder(model, f"msg_{uuid.uuid4().hex[:24]}")

    def local(self, reply: Reply, req: ChatRequest) -> tuple[bytes, str]:
        body = reply_body(reply, Route.CHAT, req.model)
        if req.stream and reply.status < 400:
            text = (body.get("choices") or [{}])[0].get("message", {}).get("content") or ""
            encoder = self.stream_encoder(req.model, self.codec())
            events: list[StreamEvent] = [TextDelta(0, text), Finish(0, "stop")]
            return encoder.encode(events) + encoder.encode_done(), SSE
        return self.answer(reply.status, orjson.dumps(body)), JSON


ADAPTERS: dict[Route, FormatAdapter] = {
    Route.CHAT: OpenAIAdapter(Route.CHAT),
    Route.RESPONSES: OpenAIAdapter(Route.RESPONSES),
    Route.EMBEDDINGS: OpenAIAdapter(Route.EMBEDDINGS),
    Route.MESSAGES: AnthropicAdapter(),
}
