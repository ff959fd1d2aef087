"""An Anthropic Messages API upstream behind the OpenAI-shaped chain.

The chain and the routes speak OpenAI chat completions; this target translates on the way out
(request -> Messages API) and on the way back (message, SSE stream and error envelopes ->
OpenAI shapes), so fallback from an OpenAI target to an Anthropic one and back is invisible to
the client. Only chat completions can be translated; other routes are refused with a 400.

Credentials: ``x-api-key`` (with ``auth: passthrough``, a client's ``Authorization: Bearer``
key is moved there, since OpenAI SDKs send it that way). ``anthropic-version`` defaults to
``2023-06-01``, which still accepts the sampling parameters; set another one in the
upstream's ``headers`` if you need it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from proxy.chain.context import RequestContext
from proxy.errors import InvalidRequest
from proxy.models.chat import Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.upstream.client import HttpClient
from proxy.upstream.providers.anthropic import (
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.settle import settled
from proxy.upstream.sse import DEFAULT_MAX_EVENT_BYTES, SSEParser
from proxy.upstream.targets import Credentials

ANTHROPIC_VERSION = "2023-06-01"
_JSON = ("content-type", "application/json")


class _TranslatedStream:
    """Anthropic SSE in, OpenAI ``chat.completion.chunk`` SSE out, as the bytes arrive."""

    def __init__(self, resp: UpstreamResponse, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event = max_event_bytes
        self.status = resp.status
        self.headers = [(k, v) for k, v in resp.headers if k.lower() != "content-type"]
        self.headers.append(("content-type", "text/event-stream; charset=utf-8"))
        self._resp = resp

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        parser = SSEParser(self._max_event)
        decoder = AnthropicStreamDecoder()
        encoder = ChatStreamCodec()
        async for chunk in self._resp.aiter_bytes():
            events = [ev for sse in parser.feed(chunk) for ev in decoder.decode(sse)]
            if events:
                if encoder.template is None and decoder.message_id is not None:
                    encoder.template = decoder.openai_chunk_template()
                yield encoder.encode(events)
        tail = [ev for sse in parser.flush() for ev in decoder.decode(sse)]
        out = encoder.encode(tail) if tail else b""
        encoder.done = decoder.done
        out += encoder.encode_done()
        if out:
            yield out

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._resp.aclose()


class AnthropicTarget:
    def __init__(
        self,
        name: str,
        base_url: str,
        client: HttpClient,
        credentials: Credentials,
        *,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.name = name
        self._max_response = max_response_bytes
        self._max_event = max_event_bytes
        self._url = base_url.rstrip("/") + "/messages"
        self._client = client
        self._credentials = credentials
        self._first_token = first_token_timeout

    def _headers(self, request: UpstreamRequest, ctx: RequestContext) -> list[tuple[str, str]]:
        headers = [
            (k, v) for k, v in request.headers if k.lower() not in ("content-type", "anthropic-version")
        ]
        if self._credentials.mode == "passthrough" and not any(k.lower() == "x-api-key" for k, _ in headers):
            bearer = next((v for k, v in headers if k.lower() == "authorization"), "")
            if bearer.lower().startswith("bearer "):
                headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
                headers.append(("x-api-key", bearer[7:].strip()))
        headers = self._credentials.apply(headers, ctx.upstream_headers)
        if not any(k == "anthropic-version" for k, _ in headers):
            headers.append(("anthropic-version", ANTHROPIC_VERSION))
        headers.append(_JSON)
        return headers

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        if request.route not in (Route.CHAT, Route.MESSAGES) or not isinstance(request.body, bytes):
            raise InvalidRequest(
                f"The {request.route.value} API is not available on an Anthropic upstream.",
                code="unsupported_route",
            )
        body = orjson.loads(request.body)
        model = request.target.model if request.target else request.model
        payload = orjson.dumps(openai_request_to_anthropic(body, model=model))
        headers = self._headers(request, ctx)
        resp = await settled(
            request,
            lambda: self._client.send("POST", self._url, headers, payload),
            self._first_token,
            self._max_response,
        )
        if isinstance(resp, BufferedResponse):
            return self._translate_whole(resp)
        return _TranslatedStream(resp, self._max_event)

    @staticmethod
    def _translate_whole(resp: BufferedResponse) -> BufferedResponse:
        headers = [(k, v) for k, v in resp.headers if k.lower() != "content-type"]
        headers.append(_JSON)
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return resp
        if not isinstance(data, dict):
            return resp
        translated = (
            anthropic_response_to_openai(data)
            if resp.status < 400
            else anthropic_error_to_openai(data, resp.status)
        )
        return BufferedResponse(resp.status, headers, orjson.dumps(translated))
