"""A streamed answer on its way to the client: one ``StreamRelay`` per streamed request.

    upstream SSE -> events (the adapter's codec) -> stream filters -> client format (encoder)

With no filters and a client that speaks the upstream's format, bytes are piped as is (no SSE
parsing, no buffering). The first chunk is pulled before response headers go out (``start``),
so a rejection or upstream failure before any byte reached the client is still a proper HTTP
error; after that, failures end the stream with an in-band error event in the client's format.

The relay's attributes are what ``_stream`` / ``_stream_body`` used to pass each other by hand
(usage, text count, error, completion, the sending task); while it is sent it sits in
``sidecar.live_streams``, so a shutdown can end it cleanly (``cut``) before the grace deadline
cancels it mid-body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.chain.chain import StreamPipeline
from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome
from proxy.errors import ProxyError, StreamAborted, error_event_payload
from proxy.models.stream import ErrorEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.models.upstream import UpstreamResponse
from proxy.observability.capture_stream import StreamCapture, keep_stream
from proxy.observability.timing import carries_token, peek_model, peek_usage
from proxy.routes.adapters import StreamCodec, StreamEncoder
from proxy.routes.records import elapsed_ms
from proxy.runtime import LiveStream
from proxy.upstream.sse import SSEEvent, SSEParser
from proxy.upstream.stream_end import EndWatch, incomplete_stream

log = logging.getLogger("policy_sidecar.access")


def _shutting_down() -> StreamAborted:
    return StreamAborted(
        "The sidecar is shutting down; the stream was cut before it finished. Retry the request.",
        status=503,
        code="server_shutting_down",
    )


class _RelayResponse(StreamingResponse):
    """The streamed answer as a plain ASGI response: always finalises, even on disconnect.

    Starlette's ``StreamingResponse`` is kept for its headers, not for sending (issue 17: the
    streamed row's cost). Its ``__call__`` runs every stream in an anyio task group, a child
    task sending and the parent waiting for a disconnect, and pulls the body through one more
    async generator; here the request's own task sends, straight from the relay, and only the
    disconnect watch is a (plain asyncio) child task. The behaviour is Starlette's: a client
    that disconnects ends the stream where it waits (the upstream read is cancelled), and under
    ASGI 2.4 servers, which raise on a send to a closed connection instead, that error becomes a
    ``ClientDisconnect``. The relay is in ``live`` while its body is sent, so a shutdown can
    ``cut`` it (``StreamRelay.task`` is this task).
    """

    def __init__(
        self,
        relay: StreamRelay,
        first: bytes,
        headers: dict[str, str],
        live: set[LiveStream],
        finalize: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(relay.body, status_code=relay.resp.status, headers=headers)
        self._relay = relay
        self._first = first
        self._live = live
        self._finalize = finalize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = self._relay
        relay.ctx.first_byte_sent = True
        try:
            spec = scope.get("asgi", {}).get("spec_version", "2.0")
            if tuple(map(int, spec.split("."))) >= (2, 4):
                try:
                    await self._send_body(send)
                except OSError:
                    raise ClientDisconnect() from None
            else:
                await self._send_watching(receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finalize()

    async def _send_watching(self, receive: Receive, send: Send) -> None:
        """Send the body while a child task waits for the client to disconnect."""
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self._send_body(send)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # our own cancellation: the client left, the stream just ends
        finally:
            watcher.cancel()

    async def _send_body(self, send: Send) -> None:
        relay, first = self._relay, self._first
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # The task that sends the stream: the one a shutdown cut must interrupt.
        relay.task = asyncio.current_task()
        self._live.add(relay)
        try:
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in relay.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._live.discard(relay)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class StreamRelay:
    """The state of one streamed answer (see the module doc)."""

    __slots__ = (
        "_body",
        "capture",
        "chars",
        "codec",
        "completed",
        "ctx",
        "encoder",
        "error",
        "max_event_bytes",
        "pipeline",
        "resp",
        "task",
        "usage",
        "was_cut",
    )

    def __init__(
        self,
        resp: UpstreamResponse,
        ctx: RequestContext,
        codec: StreamCodec,
        encoder: StreamEncoder,
        pipeline: StreamPipeline | None,
        max_event_bytes: int,
        capture: StreamCapture | None = None,
    ) -> None:
        self.resp = resp
        self.capture = capture  # observability.capture with responses: joins the answer's events
        self.ctx = ctx
        self.codec = codec
        self.encoder = encoder
        self.pipeline = pipeline
        self.max_event_bytes = max_event_bytes
        self.usage: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.completed = False
        self.chars = 0
        self.task: asyncio.Task[Any] | None = None  # the task sending this stream
        self.was_cut = False
        self._body = self._relay()

    def cut(self) -> None:
        """Shutdown: interrupt the stream where it waits; it then ends with an in-band error."""
        if self.task is not None and not self.was_cut:
            self.was_cut = True
            self.task.cancel()

    async def start(
        self,
        live: set[LiveStream],
        headers: Callable[[], dict[str, str]],
        finish: Callable[[Outcome], Awaitable[None]],
    ) -> Response:
        """Pull the first chunk (errors before it are still HTTP errors), then the response.

        ``headers`` is called only after that chunk: a filter that decided on it (a buffering
        schema step flagging the answer) may have added response headers.
        """
        body = self._body
        try:
            first = await body.__anext__()
        except StopAsyncIteration:
            first = b""
        except BaseException:
            await body.aclose()
            raise

        async def finalize() -> None:
            await body.aclose()
            if self.capture is not None and self.resp.status < 400:
                keep_stream(self.ctx, self.capture, self.completed)
            error = self.error
            outcome = Outcome(
                error.status if isinstance(error, ProxyError) else self.resp.status,
                error,
                usage=self.usage,
                streamed=True,
                completed=self.completed,
                latency_ms=elapsed_ms(self.ctx),
                output_text_chars=self.chars,
            )
            await finish(outcome)

        return _RelayResponse(self, first, headers(), live, finalize)

    @property
    def body(self) -> AsyncGenerator[bytes, None]:
        """The rest of the body for the client, after the chunk ``start`` pulled."""
        return self._body

    def _first_chunk(self, chunk: bytes, token: bool) -> None:
        """Until the first output token went out: note the answering model and, then, the time."""
        ctx = self.ctx
        if ctx.response_model is None:
            ctx.response_model = peek_model(chunk) or ""
        if token:
            ctx.first_token_at = time.perf_counter()

    async def _decode(self, sses: Iterable[SSEEvent]) -> list[StreamEvent]:
        """SSE events -> stream events -> filters, with the usage and text accounting.

        The one decode loop: both the chunks as they arrive and the parser's flush at the end go
        through it, so an event that only comes out at flush (no blank line after the last one)
        is counted like any other (its usage reaches the budgets).
        """
        pipeline, cap = self.pipeline, self.capture
        out: list[StreamEvent] = []
        for sse in sses:
            for ev in self.codec.decode(sse):
                if cap is not None:
                    cap.feed(ev)
                if isinstance(ev, Usage):
                    self.usage = dict(ev.data)
                elif isinstance(ev, TextDelta):
                    self.chars += len(ev.text)
                out.extend(await pipeline.push(ev) if pipeline else [ev])
        return out

    def _capture_side(self, parser: SSEParser, chunk: bytes | None) -> SSEParser | None:
        """Piped stream, capture on: decode a copy of the bytes for the capture only (``None``
        flushes). The client's bytes never depend on it: a failure drops this answer's capture."""
        cap = self.capture
        if cap is None:
            return None
        try:
            for sse in parser.feed(chunk) if chunk is not None else parser.flush():
                for ev in self.codec.decode(sse):
                    cap.feed(ev)
        except Exception:
            log.debug("stream %s: answer not captured (undecodable)", self.ctx.request_id)
            self.capture = None
            return None
        return parser

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        """The body sent to the client: piped bytes, or decoded, filtered and re-encoded events."""
        resp, ctx, encoder = self.resp, self.ctx, self.encoder
        try:
            if self.pipeline is None and encoder is self.codec:
                prev = last = b""
                end = EndWatch(ctx.route)
                side = SSEParser(self.max_event_bytes) if self.capture is not None else None
                async for chunk in resp.aiter_bytes():
                    if ctx.first_token_at is None:
                        self._first_chunk(chunk, carries_token(chunk))
                    prev, last = last, chunk
                    end.see(chunk)
                    if side is not None:
                        side = self._capture_side(side, chunk)
                    yield chunk
                if side is not None:
                    self._capture_side(side, None)
                if not self.usage:  # for metrics: the usage event is at the stream's end
                    self.usage = peek_usage(prev + last)
                if not end.ended:
                    raise incomplete_stream()
            else:
                parser = SSEParser(self.max_event_bytes)
                async for chunk in resp.aiter_bytes():
                    out = await self._decode(parser.feed(chunk))
                    if ctx.first_token_at is None:
                        self._first_chunk(chunk, any(isinstance(e, (TextDelta, ToolCallDelta)) for e in out))
                    if out:
                        yield encoder.encode(out)
                out = await self._decode(parser.flush())
                if not self.codec.ended:
                    if out:  # what did arrive (filtered) goes out before the in-band error
                        yield encoder.encode(out)
                    raise incomplete_stream()
                if self.pipeline:
                    out.extend(await self.pipeline.end())
                # The client format's own end marker ([DONE] only if upstream sent it, for OpenAI).
                tail = encoder.encode(out) + encoder.encode_done()
                if tail:
                    yield tail
            self.completed = True
        except ProxyError as exc:
            if not ctx.first_byte_sent:
                raise
            self.error = exc
            log.warning("stream %s aborted after first byte: %s", ctx.request_id, exc.detail or exc.message)
            yield encoder.encode([ErrorEvent(error_event_payload(exc))])
        except asyncio.CancelledError:
            if not self.was_cut or self.task is None:
                raise
            # Cut by the shutdown (not a client disconnect): take the cancellation back and
            # finish the stream properly, with the error event, while the server still waits.
            self.task.uncancel()
            cut = _shutting_down()
            self.error = cut
            log.warning("stream %s cut by the shutdown grace deadline", ctx.request_id)
            yield encoder.encode([ErrorEvent(error_event_payload(cut))])
        finally:
            await resp.aclose()
