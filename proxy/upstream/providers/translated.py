"""What every translating target (Anthropic, Gemini, Vertex, Bedrock) shares.

The chain above speaks OpenAI chat completions, so a target for another wire format translates
the request on the way out and hands back OpenAI bytes: a buffered answer is translated whole,
a stream frame by frame as it arrives (through the neutral events of ``proxy.models.stream``
and the OpenAI ``ChatStreamCodec``). The frame format differs per provider (SSE for Anthropic
and Gemini, AWS event-stream for Bedrock), so the stream takes a ``FrameDecoder`` that turns
raw bytes into events. ``TranslatedTarget`` is the one ``send`` they all run; a provider
supplies the URL, the headers, the request translation, the whole-answer translation and its
frame decoder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol

import orjson

from proxy.chain.context import RequestContext
from proxy.errors import InvalidRequest, UpstreamError, UpstreamUnavailable
from proxy.models.chat import Route
from proxy.models.stream import StreamEvent
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.upstream.client import HttpClient
from proxy.upstream.providers.openai import ChatStreamCodec
from proxy.upstream.settle import settled
from proxy.upstream.sse import SSEEvent, SSEParser

JSON_HEADER = ("content-type", "application/json")
_SSE_HEADER = ("content-type", "text/event-stream; charset=utf-8")
_DROP = frozenset({"content-type", "content-length"})


class FrameDecoder(Protocol):
    """Provider stream bytes -> events. ``done`` once the provider's stream properly ended."""

    @property
    def done(self) -> bool: ...

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...

    def flush(self) -> list[StreamEvent]: ...

    def openai_chunk_template(self) -> dict[str, Any] | None:
        """The chunks' ``id`` / ``created`` / ``model``; None while not known yet."""
        ...


class SSEDecoder(Protocol):
    """A provider's SSE events -> neutral events (Anthropic and Gemini streams)."""

    @property
    def done(self) -> bool: ...

    @property
    def message_id(self) -> str | None: ...

    def decode(self, sse: SSEEvent) -> list[StreamEvent]: ...

    def openai_chunk_template(self) -> dict[str, Any]: ...


class SSEFrames:
    """``FrameDecoder`` over SSE: the parser's events through the provider's decoder.

    ``wait_for_id``: no chunk template until the stream named its message (Anthropic's
    ``message_start``), so the chunks carry the provider's id rather than a made-up one.
    ``flush`` lets a decoder end what the stream left open (Gemini has no closing event).
    """

    def __init__(
        self,
        decoder: SSEDecoder,
        max_event_bytes: int,
        *,
        wait_for_id: bool = False,
        flush: Callable[[], list[StreamEvent]] | None = None,
    ) -> None:
        self._parser = SSEParser(max_event_bytes)
        self._decoder = decoder
        self._wait_for_id = wait_for_id
        self._flush = flush

    @property
    def done(self) -> bool:
        return self._decoder.done

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        return [ev for sse in self._parser.feed(chunk) for ev in self._decoder.decode(sse)]

    def flush(self) -> list[StreamEvent]:
        events = [ev for sse in self._parser.flush() for ev in self._decoder.decode(sse)]
        return events + self._flush() if self._flush is not None else events

    def openai_chunk_template(self) -> dict[str, Any] | None:
        if self._wait_for_id and self._decoder.message_id is None:
            return None
        return self._decoder.openai_chunk_template()


class TranslatedStream:
    """A provider stream in, OpenAI ``chat.completion.chunk`` SSE out, as the bytes arrive."""

    def __init__(self, resp: UpstreamResponse, decoder: FrameDecoder) -> None:
        self.status = resp.status
        self.headers = [(k, v) for k, v in resp.headers if k.lower() not in _DROP]
        self.headers.append(_SSE_HEADER)
        self._resp = resp
        self._decoder = decoder

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        encoder = ChatStreamCodec()
        async for chunk in self._resp.aiter_bytes():
            events = decoder.feed(chunk)
            if events:
                if encoder.template is None:
                    encoder.template = decoder.openai_chunk_template()
                yield encoder.encode(events)
        tail = decoder.flush()
        if tail and encoder.template is None:
            encoder.template = decoder.openai_chunk_template()
        out = encoder.encode(tail) if tail else b""
        encoder.done = decoder.done
        out += encoder.encode_done()
        if out:
            yield out

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._resp.aclose()


def translate_whole(
    resp: BufferedResponse,
    ok: Callable[[Any], dict[str, Any]],
    error: Callable[[Any, int], dict[str, Any]],
) -> BufferedResponse:
    """A buffered answer -> the OpenAI body for the same status (a non-JSON error body is kept)."""
    headers = [(k, v) for k, v in resp.headers if k.lower() not in _DROP]
    headers.append(JSON_HEADER)
    try:
        data = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        if resp.status < 400:
            raise UpstreamError(
                "The upstream provider sent an invalid response.", detail=f"status {resp.status}, not JSON"
            ) from None
        data = {}
    translated = ok(data) if resp.status < 400 else error(data, resp.status)
    return BufferedResponse(resp.status, headers, orjson.dumps(translated))


def credentials_unavailable(message: str, detail: str) -> UpstreamUnavailable:
    """The 503 of a cloud upstream whose credentials (ADC, AWS chain) cannot be had: the
    client's request was fine, and fallback may still reach another upstream."""
    return UpstreamUnavailable(message, code="upstream_credentials_unavailable", detail=detail)


def split_bearer(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str | None]:
    """The headers without ``Authorization``, and the key it carried as ``Bearer`` (else None).

    With ``auth: passthrough`` an OpenAI SDK sends the provider key as a bearer token; providers
    that want it in their own header (``x-api-key``, ``x-goog-api-key``) get it moved there.
    """
    bearer = next((v for k, v in headers if k.lower() == "authorization"), "")
    rest = [(k, v) for k, v in headers if k.lower() != "authorization"]
    return rest, bearer[7:].strip() if bearer.lower().startswith("bearer ") else None


class TranslatedTarget(ABC):
    """An upstream that speaks another wire format: one ``send`` for every such provider.

    Only chat completions can be translated (the Messages route arrives here already in OpenAI
    form); anything else is refused with a 400 naming the provider.
    """

    #: The provider, as it reads in "not available on {provider} upstream".
    provider: ClassVar[str]

    def __init__(
        self,
        name: str,
        client: HttpClient,
        *,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self._first_token = first_token_timeout
        self._max_response = max_response_bytes

    @abstractmethod
    def url(self, model: str, stream: bool) -> str: ...

    @abstractmethod
    def translate_request(self, body: dict[str, Any], model: str) -> dict[str, Any]: ...

    @abstractmethod
    async def headers(
        self, request: UpstreamRequest, ctx: RequestContext, url: str, payload: bytes
    ) -> list[tuple[str, str]]: ...

    @abstractmethod
    def translate_answer(self, resp: BufferedResponse, model: str) -> BufferedResponse: ...

    @abstractmethod
    def frames(self, model: str) -> FrameDecoder: ...

    async def post(self, url: str, headers: list[tuple[str, str]], payload: bytes) -> UpstreamResponse:
        return await self._client.send("POST", url, headers, payload)

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        if request.route not in (Route.CHAT, Route.MESSAGES) or not isinstance(request.body, bytes):
            raise InvalidRequest(
                f"The {request.route.value} API is not available on {self.provider} upstream.",
                code="unsupported_route",
            )
        model = request.target.model if request.target else request.model
        payload = orjson.dumps(self.translate_request(orjson.loads(request.body), model))
        url = self.url(model, request.stream)
        headers = await self.headers(request, ctx, url, payload)
        resp = await settled(
            request, lambda: self.post(url, headers, payload), self._first_token, self._max_response
        )
        if isinstance(resp, BufferedResponse):
            return self.translate_answer(resp, model)
        return TranslatedStream(resp, self.frames(model))
