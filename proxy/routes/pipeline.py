"""The request lifecycle for chain routes (chat completions, responses, embeddings).

    read + validate -> pin revision -> request hooks -> upstream (wrapped)
        -> response hooks (whole body)  or  stream filters (per event)
        -> complete hooks, always (after the answer is sent)

Hot-path rules: an untouched request is forwarded as the client's original bytes; a response
with no response hooks is not parsed; a stream with no filters is piped byte for byte with no
SSE parsing and no buffering.

Streams: the first chunk is pulled before response headers go out, so a rejection or an
upstream failure that happens before any byte reached the client is still a proper HTTP
error (and later a retry or fallback may still act). After that, failures end the stream with
an in-band error event in the client's wire format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio
import orjson
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.auth.gate import admit, bind
from proxy.chain.chain import StreamPipeline
from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome, Reply
from proxy.errors import InvalidRequest, ProxyError, StreamAborted, UpstreamError, error_event_payload
from proxy.models.chat import ChatRequest, ChatResponse, Route
from proxy.models.stream import ErrorEvent, Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.observability import capture
from proxy.observability import content as content_capture
from proxy.observability.timing import carries_token, peek_model, peek_usage
from proxy.policy.compiler import CompiledPolicy
from proxy.routes.common import (
    Inbound,
    check_json_media_type,
    choose_request_id,
    error_response,
    query_string,
    read_body,
    response_headers,
)
from proxy.routes.formats import ANTHROPIC, OPENAI, ClientFormat, StreamEncoder
from proxy.routes.replies import reply_body, reply_stream
from proxy.routes.validate import check_depth, validate_body
from proxy.runtime import Sidecar
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec
from proxy.upstream.sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent, SSEParser
from proxy.upstream.stream_end import EndWatch, incomplete_stream

log = logging.getLogger("policy_sidecar.access")

UPSTREAM_PATHS = {
    Route.CHAT: "/chat/completions",
    Route.MESSAGES: "/chat/completions",  # translated: the chain and upstream side speak OpenAI chat
    Route.RESPONSES: "/responses",
    Route.EMBEDDINGS: "/embeddings",
}


class _StreamState:
    __slots__ = ("chars", "completed", "error", "task", "usage", "was_cut")

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.completed = False
        self.chars = 0
        self.task: asyncio.Task[Any] | None = None  # the task sending this stream
        self.was_cut = False

    def cut(self) -> None:
        """Shutdown: interrupt the stream where it waits; it then ends with an in-band error."""
        if self.task is not None and not self.was_cut:
            self.was_cut = True
            self.task.cancel()


def _shutting_down() -> StreamAborted:
    return StreamAborted(
        "The sidecar is shutting down; the stream was cut before it finished. Retry the request.",
        status=503,
        code="server_shutting_down",
    )


class _FinalizingStream(StreamingResponse):
    """A streaming response that always finalises (complete hooks, release), even on disconnect."""

    def __init__(
        self, body: AsyncIterator[bytes], status: int, headers: dict[str, str], on_start: Any, finalize: Any
    ) -> None:
        super().__init__(body, status_code=status, headers=headers)
        self._on_start = on_start
        self._finalize = finalize
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._on_start()
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._body, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self._finalize()


class _Finish(BackgroundTask):
    """``BackgroundTask(ChainRoute._finish, ...)`` without the per-request check of the callable.

    ``BackgroundTask.__init__`` asks ``inspect`` whether the function is a coroutine function
    on every request (a few microseconds); ``_finish`` always is one.
    """

    def __init__(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._func = func
        self._args = args
        self.is_async = True

    async def __call__(self) -> None:
        await self._func(*self._args)


def _content_type(headers: list[tuple[str, str]]) -> str:
    """The first Content-Type value; only looked up for streamed requests (the rest never ask)."""
    for k, v in headers:
        if k.lower() == "content-type":
            return v
    return ""


def _max_event_bytes(policy: CompiledPolicy, ctx: RequestContext) -> int:
    """The answering upstream's ``max_event_bytes`` (what the SSE parser of this stream allows)."""
    upstream = policy.policy.upstreams.get(ctx.target or policy.policy.default_upstream)
    return upstream.max_event_bytes if upstream is not None else DEFAULT_MAX_EVENT_BYTES


def _codec(route: Route) -> ChatStreamCodec | ResponsesStreamCodec:
    return ResponsesStreamCodec() if route is Route.RESPONSES else ChatStreamCodec()


class ChainRoute:
    """One instance per process; everything per request lives in locals and ``ctx``."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        telemetry = sidecar.telemetry
        self._tracing = telemetry.tracing if telemetry is not None and telemetry.tracing.enabled else None

    async def handle(self, request: Request, route: Route) -> Response:
        store = self.sidecar.store
        policy = store.acquire()
        inbound = Inbound(request)
        rid = choose_request_id(inbound.request_id)
        base_headers = {"x-request-id": rid, "x-sidecar-revision": policy.revision}
        ctx: RequestContext | None = None
        handed_off = False
        fmt = ANTHROPIC if route is Route.MESSAGES else OPENAI
        try:
            # clients: 401 / 403 before the body is read; strips the credential from inbound.forward
            caller = await admit(self.sidecar, policy, route, request.headers, rid, inbound.forward)
            raw: bytes | None = await read_body(request, policy.max_body_bytes, inbound.content_length)
            check_json_media_type(inbound.content_type)
            try:
                body = orjson.loads(raw or b"")
            except orjson.JSONDecodeError:
                raise InvalidRequest(
                    "We could not parse the JSON body of your request. Send valid JSON.", code="invalid_json"
                ) from None
            limits = policy.policy.limits
            check_depth(raw, body, limits.max_json_depth)
            if not fmt.native:
                validate_body(route, body, limits)  # model present, stream a boolean
                body, raw = fmt.to_chain(body, limits), None
            validate_body(Route.CHAT if route is Route.MESSAGES else route, body, limits)
            ctx = RequestContext(
                rid, route, request.headers, policy.revision, body["model"], stream=bool(body.get("stream"))
            )
            bind(ctx, caller)  # verified tenant/user/key on ctx; 403 for a model the key may not use
            if policy.capture_on:  # observability.capture: the body as it arrived, before any hook
                capture.keep_request(policy, ctx, raw if raw is not None else orjson.dumps(body))
            if self._tracing is not None:
                self._tracing.begin(ctx, request.headers, policy, body)
            response = await self._run(
                request, inbound, route, policy, ctx, ChatRequest(body, route, raw), base_headers, fmt
            )
            handed_off = True
            return response
        except ProxyError as exc:
            handed_off = True
            outcome = Outcome(exc.status, exc, latency_ms=self._ms(ctx))
            return self._error(exc, policy, ctx, outcome, base_headers, fmt)
        except ClientDisconnect:
            # Not an error of ours: one line, no traceback. Nobody reads the answer; ``finally``
            # finishes the request as a 499 (client closed request).
            log.info("client disconnected before its request body arrived", extra={"request_id": rid})
            return Response(status_code=499)
        except Exception as exc:
            log.exception("unexpected error on %s", route.value)
            handed_off = True
            return self._error(exc, policy, ctx, Outcome(500, exc), base_headers, fmt)
        finally:
            if not handed_off:  # cancelled (client went away) before a response existed
                with anyio.CancelScope(shield=True):
                    await self._finish(policy, ctx, Outcome(499, None, completed=False))

    @staticmethod
    def _ms(ctx: RequestContext | None) -> float:
        return (time.perf_counter() - ctx.started) * 1000 if ctx else 0.0

    def _error(
        self,
        exc: BaseException,
        policy: CompiledPolicy,
        ctx: RequestContext | None,
        outcome: Outcome,
        base_headers: dict[str, str],
        fmt: ClientFormat,
    ) -> Response:
        extra = {**base_headers, **(ctx.response_headers if ctx else {})}
        response = error_response(exc, extra, fmt.answer)
        response.background = _Finish(self._finish, policy, ctx, outcome)
        return response

    async def _finish(self, policy: CompiledPolicy, ctx: RequestContext | None, outcome: Outcome) -> None:
        """Complete hooks, decision records, access log, unpin the revision. Never raises."""
        try:
            if ctx is not None:
                if policy.chain.complete_steps:
                    await policy.chain.run_complete(outcome, ctx)
                self.sidecar.publish(policy, ctx, outcome)
                if self._access_log:
                    log.info("request", extra=self._access_fields(policy, ctx, outcome))
        except Exception:
            log.exception("error while finishing a request")
        finally:
            self.sidecar.store.release(policy)

    def _access_fields(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> dict[str, Any]:
        """The access log line: ids, revision, target, timings and a decision summary; never text.

        Prompt and completion text appear only with ``observability.logs.content: redacted``,
        and then only after ``content.redact`` masked emails, digits and key-like tokens.
        """
        fields: dict[str, Any] = {
            "request_id": ctx.request_id,
            "route": ctx.route.value,
            "status": outcome.status,
            "model": ctx.model,
            "response_model": ctx.response_model or None,
            "tenant": ctx.tenant,
            "target": ctx.target,
            "revision": ctx.revision,
            "stream": ctx.stream,
            "latency_ms": round(self._ms(ctx), 2),
            "upstream_ms": round(ctx.upstream_s * 1000, 2),
            "attempts": ctx.attempts,
            "decisions": [
                {"plugin": d.plugin, "rule": d.rule, "action": d.action, "mode": d.mode}
                for d in ctx.decisions
            ],
            "usage": ctx.usage or outcome.usage or None,
            "cost_usd": ctx.cost_usd,
        }
        if ctx.identity is not None:  # clients: the verified key (its id, never the key) and user
            fields["client"], fields["user"] = ctx.identity.key_id, ctx.identity.user
        if ctx.first_token_at is not None:
            fields["ttft_ms"] = round((ctx.first_token_at - ctx.started) * 1000, 2)
        if ctx.trace is not None:
            fields["trace_id"] = ctx.trace.trace_id
        if policy.log_content == "redacted":
            for key in ("input", "output"):
                messages = ctx.state.get(f"observability.{key}")
                if messages is not None:
                    fields[f"content_{key}"] = content_capture.render(messages, "redacted")
        return fields

    async def _run(
        self,
        request: Request,
        inbound: Inbound,
        route: Route,
        policy: CompiledPolicy,
        ctx: RequestContext,
        req: ChatRequest,
        base_headers: dict[str, str],
        fmt: ClientFormat,
    ) -> Response:
        chain = policy.chain
        if chain.request_steps:
            reply = await chain.run_request(req, ctx)
            if reply is not None:
                return self._local(reply, route, req, policy, ctx, base_headers, fmt)
        ctx.model = req.model
        if policy.captures_content:
            self._capture(policy, ctx, content_capture.request_messages(req), output=False)
        upstream_request = UpstreamRequest(
            "POST",
            UPSTREAM_PATHS[route],
            inbound.forward,
            req.encode(),
            query_string(request),
            Route.CHAT if route is Route.MESSAGES else route,
            req.stream,
            req.model,
            candidates=policy.routes.plan(req.model),
            deadline=ctx.deadline,
        )
        upstream_request.target = upstream_request.candidates[0]
        resp = await chain.send(upstream_request, ctx)
        if req.stream and resp.status < 400 and "text/event-stream" in _content_type(resp.headers):
            return await self._stream(resp, route, policy, ctx, base_headers, fmt)
        if type(resp) is BufferedResponse:  # what HTTP targets settle a whole answer into
            data = resp.body
        else:
            try:
                data = await resp.read()
            finally:
                await resp.aclose()
        usage: dict[str, Any] = {}
        if policy.capture_on and resp.status < 400:
            capture.keep_answer(policy, ctx, data)
        if resp.status < 400 and chain.response_steps:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise UpstreamError("The upstream provider returned a body the policy could not inspect.")
            wrapped = ChatResponse(parsed, route, data, resp.status)
            await chain.run_response(wrapped, ctx)
            data = wrapped.encode()
            usage = wrapped.usage
            ctx.response_model = wrapped.model or None
        elif resp.status < 400 and (ctx.trace is not None or policy.metrics.enabled):
            # Bounded scans, not a parse. The answering model is only read by the request span,
            # the access log and complete hooks: without them, skip looking for it.
            usage = peek_usage(data)
            if ctx.trace is not None or chain.complete_steps or self._access_log:
                ctx.response_model = peek_model(data)
        if policy.captures_content and resp.status < 400:
            self._capture(policy, ctx, content_capture.response_messages(data, route), output=True)
        if not fmt.native:
            data = fmt.answer(resp.status, data)
        headers = response_headers(
            resp.headers, {**base_headers, **self._target(ctx), **ctx.response_headers}
        )
        if not self._needs_finish(policy, ctx):
            # Nothing to run after the answer: skip the background task (hot path of simple policies).
            self.sidecar.store.release(policy)
            return Response(data, status_code=resp.status, headers=headers)
        outcome = Outcome(resp.status, usage=usage, latency_ms=self._ms(ctx))
        return Response(
            data,
            status_code=resp.status,
            headers=headers,
            background=_Finish(self._finish, policy, ctx, outcome),
        )

    @property
    def _access_log(self) -> bool:
        return self.sidecar.settings.log_requests and log.isEnabledFor(logging.INFO)

    def _needs_finish(self, policy: CompiledPolicy, ctx: RequestContext) -> bool:
        return bool(
            policy.chain.complete_steps or ctx.decisions or self.sidecar.observers or self._access_log
        )

    @staticmethod
    def _capture(
        policy: CompiledPolicy, ctx: RequestContext, messages: list[dict[str, str]], *, output: bool
    ) -> None:
        """Keep prompt / completion text for the span and the access log, only as the policy asks."""
        trace = ctx.trace
        if trace is not None and policy.trace_content != "none":
            if output:
                trace.output_messages = messages
            else:
                trace.input_messages = messages
        if policy.log_content != "none":
            ctx.state["observability.output" if output else "observability.input"] = messages

    @staticmethod
    def _target(ctx: RequestContext) -> dict[str, str]:
        return {"x-sidecar-upstream": ctx.target} if ctx.target else {}

    def _local(
        self,
        reply: Reply,
        route: Route,
        req: ChatRequest,
        policy: CompiledPolicy,
        ctx: RequestContext,
        base_headers: dict[str, str],
        fmt: ClientFormat,
    ) -> Response:
        headers = {**base_headers, **ctx.response_headers, **reply.headers}
        outcome = Outcome(reply.status, latency_ms=self._ms(ctx))
        task = _Finish(self._finish, policy, ctx, outcome)
        encoder = fmt.stream_encoder(req.model)
        if encoder is not None:
            body = reply_body(reply, Route.CHAT, req.model)
            if req.stream and reply.status < 400:
                text = (body.get("choices") or [{}])[0].get("message", {}).get("content") or ""
                events: list[StreamEvent] = [TextDelta(0, text), Finish(0, "stop")]
                data = encoder.encode(events) + encoder.encode_done()
                return Response(data, reply.status, headers, media_type="text/event-stream", background=task)
            data = fmt.answer(reply.status, orjson.dumps(body))
            return Response(data, reply.status, headers, media_type="application/json", background=task)
        if req.stream and reply.status < 400:
            return Response(
                reply_stream(reply, route, req.model),
                reply.status,
                headers,
                media_type="text/event-stream",
                background=task,
            )
        return Response(
            orjson.dumps(reply_body(reply, route, req.model)),
            reply.status,
            headers,
            media_type="application/json",
            background=task,
        )

    async def _stream(
        self,
        resp: UpstreamResponse,
        route: Route,
        policy: CompiledPolicy,
        ctx: RequestContext,
        base_headers: dict[str, str],
        fmt: ClientFormat,
    ) -> Response:
        pipeline = policy.chain.open_stream(ctx) if policy.chain.stream_steps else None
        state = _StreamState()
        codec = _codec(route)
        encoder = fmt.stream_encoder(ctx.model) or codec
        body = self._stream_body(resp, pipeline, codec, encoder, ctx, state, _max_event_bytes(policy, ctx))
        try:
            first = await body.__anext__()
        except StopAsyncIteration:
            first = b""
        except BaseException:
            await body.aclose()
            raise

        async def chunks() -> AsyncIterator[bytes]:
            # The task that sends the stream (Starlette may use a child task for it): the one a
            # shutdown cut must interrupt (``_StreamState.cut``).
            state.task = asyncio.current_task()
            live = self.sidecar.live_streams
            live.add(state)
            try:
                if first:
                    yield first
                async for chunk in body:
                    yield chunk
            finally:
                live.discard(state)

        def started() -> None:
            ctx.first_byte_sent = True

        async def finalize() -> None:
            await body.aclose()
            error = state.error
            status = error.status if isinstance(error, ProxyError) else resp.status
            outcome = Outcome(
                status,
                error,
                usage=state.usage,
                streamed=True,
                completed=state.completed,
                latency_ms=self._ms(ctx),
                output_text_chars=state.chars,
            )
            await self._finish(policy, ctx, outcome)

        headers = response_headers(
            resp.headers, {**base_headers, **self._target(ctx), **ctx.response_headers}
        )
        return _FinalizingStream(chunks(), resp.status, headers, started, finalize)

    @staticmethod
    def _first_chunk(ctx: RequestContext, chunk: bytes, token: bool) -> None:
        """Until the first output token went out: note the answering model and, then, the time."""
        if ctx.response_model is None:
            ctx.response_model = peek_model(chunk) or ""
        if token:
            ctx.first_token_at = time.perf_counter()

    @staticmethod
    async def _decode(
        sses: Iterable[SSEEvent],
        codec: ChatStreamCodec | ResponsesStreamCodec,
        pipeline: StreamPipeline | None,
        state: _StreamState,
    ) -> list[StreamEvent]:
        """SSE events -> stream events -> filters, with the usage and text accounting.

        The one decode loop: both the chunks as they arrive and the parser's flush at the end go
        through it, so an event that only comes out at flush (no blank line after the last one)
        is counted like any other (its usage reaches the budgets).
        """
        out: list[StreamEvent] = []
        for sse in sses:
            for ev in codec.decode(sse):
                if isinstance(ev, Usage):
                    state.usage = dict(ev.data)
                elif isinstance(ev, TextDelta):
                    state.chars += len(ev.text)
                out.extend(await pipeline.push(ev) if pipeline else [ev])
        return out

    async def _stream_body(
        self,
        resp: UpstreamResponse,
        pipeline: StreamPipeline | None,
        codec: ChatStreamCodec | ResponsesStreamCodec,
        encoder: StreamEncoder,
        ctx: RequestContext,
        state: _StreamState,
        max_event_bytes: int,
    ) -> AsyncGenerator[bytes, None]:
        """Upstream SSE -> events (``codec``) -> filters -> client format (``encoder``).

        With no filters and a client that speaks the upstream's format, bytes are piped as is.
        While it is sent the stream is in ``sidecar.live_streams``, so a shutdown can end it
        cleanly (``_StreamState.cut``) before the grace deadline cancels it mid-body.
        """
        try:
            if pipeline is None and encoder is codec:
                prev = last = b""
                end = EndWatch(ctx.route)
                async for chunk in resp.aiter_bytes():
                    if ctx.first_token_at is None:
                        self._first_chunk(ctx, chunk, carries_token(chunk))
                    prev, last = last, chunk
                    end.see(chunk)
                    yield chunk
                if not state.usage:  # for metrics: the usage event is at the stream's end
                    state.usage = peek_usage(prev + last)
                if not end.ended:
                    raise incomplete_stream()
            else:
                parser = SSEParser(max_event_bytes)
                async for chunk in resp.aiter_bytes():
                    out = await self._decode(parser.feed(chunk), codec, pipeline, state)
                    if ctx.first_token_at is None:
                        self._first_chunk(
                            ctx, chunk, any(isinstance(e, (TextDelta, ToolCallDelta)) for e in out)
                        )
                    if out:
                        yield encoder.encode(out)
                out = await self._decode(parser.flush(), codec, pipeline, state)
                if not codec.ended:
                    if out:  # what did arrive (filtered) goes out before the in-band error
                        yield encoder.encode(out)
                    raise incomplete_stream()
                if pipeline:
                    out.extend(await pipeline.end())
                # The client format's own end marker ([DONE] only if upstream sent it, for OpenAI).
                tail = encoder.encode(out) + encoder.encode_done()
                if tail:
                    yield tail
            state.completed = True
        except ProxyError as exc:
            if not ctx.first_byte_sent:
                raise
            state.error = exc
            log.warning("stream %s aborted after first byte: %s", ctx.request_id, exc.detail or exc.message)
            yield encoder.encode([ErrorEvent(error_event_payload(exc))])
        except asyncio.CancelledError:
            if not state.was_cut or state.task is None:
                raise
            # Cut by the shutdown (not a client disconnect): take the cancellation back and
            # finish the stream properly, with the error event, while the server still waits.
            state.task.uncancel()
            cut = _shutting_down()
            state.error = cut
            log.warning("stream %s cut by the shutdown grace deadline", ctx.request_id)
            yield encoder.encode([ErrorEvent(error_event_payload(cut))])
        finally:
            await resp.aclose()
