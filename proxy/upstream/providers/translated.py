"""What every translating target (Gemini, Vertex, Bedrock) shares: the answer, re-encoded.

The chain above speaks OpenAI chat completions, so a target for another wire format hands back
OpenAI bytes: a buffered answer is translated whole, a stream frame by frame as it arrives
(through the neutral events of ``proxy.models.stream`` and the OpenAI ``ChatStreamCodec``).
The frame format differs per provider (SSE for Gemini, AWS event-stream for Bedrock), so the
stream takes a ``FrameDecoder`` that turns raw bytes into events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from proxy.errors import UpstreamError
from proxy.models.stream import StreamEvent
from proxy.models.upstream import BufferedResponse, UpstreamResponse
from proxy.upstream.providers.openai import ChatStreamCodec

JSON_HEADER = ("content-type", "application/json")
_SSE_HEADER = ("content-type", "text/event-stream; charset=utf-8")
_DROP = frozenset({"content-type", "content-length"})


class FrameDecoder(Protocol):
    """Provider stream bytes -> events. ``done`` once the provider's stream properly ended."""

    @property
    def done(self) -> bool: ...

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...

    def flush(self) -> list[StreamEvent]: ...

    def openai_chunk_template(self) -> dict[str, Any]: ...


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
