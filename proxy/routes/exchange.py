"""One request on a chain route, from the parsed body to the response: the ``Exchange``.

    request hooks -> upstream (wrapped) -> response hooks (whole body)
                                        or stream filters (per event, ``StreamRelay``)
    -> complete hooks, always (``Records.finish``, after the answer is sent)

Why an object: the per-request state (the pinned policy, ``ctx``, the request, the client's
format adapter, the response headers so far) used to be passed by hand between ``_run``,
``_local`` and ``_stream`` as 6-8 positional arguments. Like Starlette's per-request
responders, it is now the attributes of one short-lived object; the route object
(``ChainRoute``) stays one per process. Everything that differs between client formats is the
``adapter``'s (``proxy.routes.adapters``), and everything recorded about the request goes
through ``records`` (``proxy.routes.records``), so neither shows up here as a branch.

Hot-path rules: an untouched request is forwarded as the client's original bytes; a response
with no response hooks is not parsed; a stream with no filters is piped byte for byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome, Reply
from proxy.errors import UpstreamError
from proxy.models.chat import ChatRequest, ChatResponse
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.observability import capture
from proxy.observability import content as content_capture
from proxy.observability.capture_stream import open_capture
from proxy.observability.timing import peek_model, peek_usage
from proxy.policy.compiler import CompiledPolicy
from proxy.routes.adapters import FormatAdapter
from proxy.routes.common import Inbound, query_string, response_headers
from proxy.routes.records import Records, elapsed_ms
from proxy.routes.streaming import StreamRelay
from proxy.upstream.sse import DEFAULT_MAX_EVENT_BYTES


class Finish(BackgroundTask):
    """``BackgroundTask(records.finish, ...)`` without the per-request check of the callable.

    ``BackgroundTask.__init__`` asks ``inspect`` whether the function is a coroutine function
    on every request (a few microseconds); ``finish`` always is one.
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


class Exchange:
    """The per-request state and steps of one chain-route request (see the module doc)."""

    __slots__ = ("adapter", "ctx", "headers", "inbound", "policy", "records", "req", "request")

    def __init__(
        self,
        records: Records,
        request: Request,
        inbound: Inbound,
        adapter: FormatAdapter,
        policy: CompiledPolicy,
        ctx: RequestContext,
        req: ChatRequest,
        headers: dict[str, str],
    ) -> None:
        self.records = records
        self.request = request
        self.inbound = inbound
        self.adapter = adapter
        self.policy = policy
        self.ctx = ctx
        self.req = req
        self.headers = headers  # the sidecar's own response headers (request id, revision)

    async def run(self) -> Response:
        """Request hooks, then a local reply or the upstream call and its answer."""
        policy, ctx, req, chain = self.policy, self.ctx, self.req, self.policy.chain
        if chain.request_steps:
            reply = await chain.run_request(req, ctx)
            if reply is not None:
                return self._local(reply)
        ctx.model = req.model
        if policy.captures_content:
            self.records.capture(policy, ctx, content_capture.request_messages(req), output=False)
        upstream_request = UpstreamRequest(
            "POST",
            self.adapter.upstream_path,
            self.inbound.forward,
            req.encode(),
            query_string(self.request),
            self.adapter.chain_route,
            req.stream,
            req.model,
            candidates=policy.routes.plan(req.model),
            deadline=ctx.deadline,
        )
        upstream_request.target = upstream_request.candidates[0]
        resp = await chain.send(upstream_request, ctx)
        if req.stream and resp.status < 400 and "text/event-stream" in _content_type(resp.headers):
            return await self._stream(resp)
        return await self._whole(resp)

    def _answer_headers(self, resp: UpstreamResponse) -> dict[str, str]:
        ctx = self.ctx
        target = {"x-sidecar-upstream": ctx.target} if ctx.target else {}
        return response_headers(resp.headers, {**self.headers, **target, **ctx.response_headers})

    def _finish(self, outcome: Outcome) -> Finish:
        return Finish(self.records.finish, self.policy, self.ctx, outcome)

    async def _whole(self, resp: UpstreamResponse) -> Response:
        """A whole (non-streamed) answer: response hooks when there are any, else bounded peeks."""
        policy, ctx, records, chain = self.policy, self.ctx, self.records, self.policy.chain
        route = self.req.route
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
            if ctx.trace is not None or chain.complete_steps or records.access_log:
                ctx.response_model = peek_model(data)
        if policy.captures_content and resp.status < 400:
            records.capture(policy, ctx, content_capture.response_messages(data, route), output=True)
        if not self.adapter.native:
            data = self.adapter.answer(resp.status, data)
        headers = self._answer_headers(resp)
        if not records.needs_finish(policy, ctx):
            # Nothing to run after the answer: skip the background task (hot path of simple policies).
            records.sidecar.store.release(policy)
            return Response(data, status_code=resp.status, headers=headers)
        outcome = Outcome(resp.status, usage=usage, latency_ms=elapsed_ms(ctx))
        return Response(data, status_code=resp.status, headers=headers, background=self._finish(outcome))

    def _local(self, reply: Reply) -> Response:
        """A plugin answered locally: its reply in the client's format, no upstream call."""
        headers = {**self.headers, **self.ctx.response_headers, **reply.headers}
        data, media_type = self.adapter.local(reply, self.req)
        task = self._finish(Outcome(reply.status, latency_ms=elapsed_ms(self.ctx)))
        return Response(data, reply.status, headers, media_type=media_type, background=task)

    async def _stream(self, resp: UpstreamResponse) -> Response:
        """A streamed answer: hand it to a ``StreamRelay`` (filters only when steps have them)."""
        policy, ctx = self.policy, self.ctx
        pipeline = policy.chain.open_stream(ctx) if policy.chain.stream_steps else None
        codec = self.adapter.codec()
        upstream = policy.policy.upstreams.get(ctx.target or policy.policy.default_upstream)
        relay = StreamRelay(
            resp,
            ctx,
            codec,
            self.adapter.stream_encoder(ctx.model, codec),
            pipeline,
            upstream.max_event_bytes if upstream is not None else DEFAULT_MAX_EVENT_BYTES,
            open_capture(policy, ctx, self.adapter.chain_route) if policy.capture_on else None,
        )

        async def finish(outcome: Outcome) -> None:
            await self.records.finish(policy, ctx, outcome)

        def headers() -> dict[str, str]:
            return self._answer_headers(resp)

        return await relay.start(self.records.sidecar.live_streams, headers, finish)
