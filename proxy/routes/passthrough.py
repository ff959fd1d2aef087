"""Every other ``/v1/*`` path: a decision of the policy, then forwarded as bytes.

Order of work for one request:

1. WebSocket upgrades are refused (403, recorded): the sidecar does not proxy realtime sessions.
2. The path is checked on the bytes the client sent (``proxy.routes.paths``): anything that
   could resolve outside the upstream's base path is a 400 ``invalid_path``.
3. ``passthrough:`` decides (``proxy.policy.passthrough``): a listed rule, the default model
   listing, open (the client brings its own key) or refused (403 ``passthrough_not_allowed``;
   recorded only, and forwarded, when the section is in shadow mode). Every outcome is a
   decision record of the ``passthrough`` step, so it shows in ``/admin/decisions``, the
   decision log and metrics.
4. A rule's steps run through the chain (``Chain.run_request_steps``): a budget step charges
   the rule's price; guards read the named JSON fields through a synthetic chat request, and
   pii redactions are written back into the body. Only then is a JSON body buffered (within
   ``limits.max_body_bytes``); otherwise the body, file uploads included, is streamed upstream.
   With ``observability.capture`` on, a guarded rule's JSON body is kept for the capture
   observer (``proxy.observability.capture``) with the steps' decisions and scores.
5. The answer is streamed back; the rule's complete hooks (budget commit or refund), decision
   records and request observers run when it ends.

Method, query string, headers (minus hop-by-hop ones, and billing / ambient headers when the
upstream holds the key: ``proxy.upstream.targets``), body, status and streaming are preserved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import orjson
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from proxy.auth.gate import admit, bind, caller_of
from proxy.chain.chain import Step
from proxy.chain.context import PASSTHROUGH_COST, ActiveStep, RequestContext
from proxy.chain.plugin import Outcome
from proxy.errors import InvalidRequest, PassthroughRefused, ProxyError, Rejected
from proxy.models.chat import ChatRequest, Route
from proxy.models.upstream import Candidate, UpstreamRequest, UpstreamResponse
from proxy.observability import capture
from proxy.policy.compiler import CompiledPolicy
from proxy.policy.passthrough import CompiledRule, PassthroughRule, Verdict
from proxy.routes.common import (
    check_json_media_type,
    choose_request_id,
    error_response,
    forward_headers,
    query_string,
    read_body,
    request_id,
    response_headers,
)
from proxy.routes.paths import passthrough_path
from proxy.runtime import Sidecar

log = logging.getLogger("policy_sidecar.access")

#: The step id pass-through decisions are recorded under.
STEP_ID = "passthrough"
_ENFORCE = ActiveStep(STEP_ID, "enforce")
_SHADOW = ActiveStep(STEP_ID, "shadow")
_RULES = {"rule": "allowed", "models": "models", "open": "passthrough", "refused": "not_allowed"}


def _record(ctx: RequestContext, name: str, action: str, mode: str = "enforce", **detail: Any) -> None:
    previous, ctx.active = ctx.active, (_SHADOW if mode == "shadow" else _ENFORCE)
    try:
        ctx.record(name, action, detail=detail)
    finally:
        ctx.active = previous


def _short(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


class _ClosingStream(StreamingResponse):
    """Streams the upstream answer, then closes it and finishes the request, even on disconnect."""

    def __init__(
        self, resp: UpstreamResponse, headers: dict[str, str], finish: Callable[[bool], Awaitable[None]]
    ) -> None:
        self._resp = resp
        self._finish = finish
        self._completed = False
        super().__init__(self._body(), status_code=resp.status, headers=headers)

    async def _body(self) -> AsyncIterator[bytes]:
        async for chunk in self._resp.aiter_bytes():
            yield chunk
        self._completed = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._resp.aclose()
                await self._finish(self._completed)


class _Finish(BackgroundTask):
    def __init__(self, func: Callable[[], Awaitable[None]]) -> None:
        self._call = func
        self.is_async = True

    async def __call__(self) -> None:
        await self._call()


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(
                f"Request body too large: the limit is {limit} bytes.", status=413, code="request_too_large"
            )
        if chunk:
            yield chunk


def field_request(
    body: dict[str, Any], fields: tuple[str, ...], model: str
) -> tuple[ChatRequest, list[tuple[str, int | None]]]:
    """A synthetic chat request whose user messages are the texts of ``fields`` (top level).

    Returns it with, per message, where its text came from (field, list index or None), for
    ``write_back``. Strings and lists of strings are read; other values are not text.
    """
    messages: list[dict[str, Any]] = []
    where: list[tuple[str, int | None]] = []
    for name in fields:
        value = body.get(name)
        if isinstance(value, str):
            messages.append({"role": "user", "content": value})
            where.append((name, None))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    messages.append({"role": "user", "content": item})
                    where.append((name, i))
    synthetic: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("user"), str):
        synthetic["user"] = body["user"]
    return ChatRequest(synthetic, Route.PASSTHROUGH), where


def write_back(req: ChatRequest, body: dict[str, Any], where: list[tuple[str, int | None]]) -> None:
    """Copy edited texts (pii redaction) from the synthetic request back into the real body."""
    for msg, (name, index) in zip(req.body.get("messages") or [], where, strict=False):
        text = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(text, str):
            continue
        if index is None:
            body[name] = text
        else:
            body[name][index] = text


def _multiplier(body: dict[str, Any], name: str | None) -> int:
    value = body.get(name) if name else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


class PassthroughRoute:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    async def handle(self, request: Request) -> Response:
        store = self.sidecar.store
        policy = store.acquire()
        rid = request_id(request)
        base = {"x-request-id": rid, "x-sidecar-revision": policy.revision}
        ctx = RequestContext(rid, Route.PASSTHROUGH, request.headers, policy.revision)
        done: list[Step] = []  # complete hooks to run at the end (the rule's steps that ran)
        handed_off = False
        try:
            resp = await self._forward(request, policy, ctx, done)
            headers = response_headers(resp.headers, {**base, **ctx.response_headers})
            if ctx.target:
                headers["x-sidecar-upstream"] = ctx.target
            handed_off = True

            async def finish(completed: bool) -> None:
                outcome = Outcome(resp.status, completed=completed, latency_ms=self._ms(ctx))
                await self._finish(policy, ctx, done, outcome)

            return _ClosingStream(resp, headers, finish)
        except ClientDisconnect:
            log.info("client disconnected before its request body arrived", extra={"request_id": rid})
            return Response(status_code=499)  # the finally block finishes the request (499)
        except Exception as exc:
            if not isinstance(exc, ProxyError):
                log.exception("unexpected error on pass-through %s", request.url.path)
            handed_off = True
            response = error_response(exc, {**base, **ctx.response_headers})
            status = exc.status if isinstance(exc, ProxyError) else 500
            outcome = Outcome(status, exc, latency_ms=self._ms(ctx))
            response.background = _Finish(lambda: self._finish(policy, ctx, done, outcome))
            return response
        finally:
            if not handed_off:  # cancelled (client went away) before a response existed
                with anyio.CancelScope(shield=True):
                    await self._finish(policy, ctx, done, Outcome(499, None, completed=False))

    async def _forward(
        self, request: Request, policy: CompiledPolicy, ctx: RequestContext, done: list[Step]
    ) -> UpstreamResponse:
        method = request.method
        # clients: 401/403 before anything else; the caller's sidecar credential is never forwarded.
        forward = forward_headers(request)
        caller = await admit(
            self.sidecar, policy, Route.PASSTHROUGH, request.headers, ctx.request_id, forward
        )
        request.state.caller = caller
        bind(ctx, caller)
        if request.headers.get("upgrade"):
            _record(ctx, "websocket", "block")
            raise PassthroughRefused(
                "Protocol upgrades (WebSocket, realtime) are not forwarded by the sidecar.",
                code="upgrade_not_allowed",
            )
        try:
            path, raw_path = passthrough_path(request.scope)
        except InvalidRequest:
            _record(ctx, "invalid_path", "block", method=method)
            raise
        verdict = policy.passthrough.decide(method, path)
        self._record_verdict(ctx, verdict, method, path)
        limit = policy.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InvalidRequest(
                f"Request body too large: the limit is {limit} bytes.", status=413, code="request_too_large"
            )
        has_body = method not in ("GET", "HEAD", "OPTIONS", "DELETE") or bool(declared and declared != "0")
        body: bytes | AsyncIterator[bytes] | None = _limited(request, limit) if has_body else None
        rule = verdict.rule
        if rule is not None and rule.steps:
            body = await self._apply_rule(request, policy, ctx, rule, body, done)
        cand = Candidate(verdict.upstream, "")
        upstream_request = UpstreamRequest(
            method,
            raw_path,
            forward,
            body,
            query_string(request),
            Route.PASSTHROUGH,
            candidates=(cand,),
            target=cand,
        )
        return await policy.chain.send(upstream_request, ctx)

    @staticmethod
    def _record_verdict(ctx: RequestContext, verdict: Verdict, method: str, path: str) -> None:
        detail: dict[str, Any] = {"method": method, "path": _short(path), "upstream": verdict.upstream}
        if verdict.kind == "rule" and verdict.rule is not None:
            detail["rule"] = verdict.rule.config.path
        if verdict.kind in ("open", "refused"):
            detail["auth"] = verdict.auth
        action = "block" if verdict.kind == "refused" else "allow"
        _record(ctx, _RULES[verdict.kind], action, verdict.mode, **detail)
        if verdict.kind == "refused" and verdict.mode == "enforce":
            raise PassthroughRefused(
                f"{method} /v1{_short(path)} is not allowed through the sidecar by its policy "
                "(the upstream uses the sidecar's key); ask the operator to list it under passthrough."
            )

    async def _apply_rule(
        self,
        request: Request,
        policy: CompiledPolicy,
        ctx: RequestContext,
        rule: CompiledRule,
        body: bytes | AsyncIterator[bytes] | None,
        done: list[Step],
    ) -> bytes | AsyncIterator[bytes] | None:
        """Run the rule's steps; returns the body to forward (edited JSON, or the stream as is)."""
        config: PassthroughRule = rule.config
        data: dict[str, Any] = {}
        raw: bytes | None = None
        if config.needs_json and body is not None:
            ctype = request.headers.get("content-type")
            try:
                check_json_media_type(ctype)
            except InvalidRequest:
                _record(ctx, "uninspectable_body", "block", config.mode, rule=config.path)
                if config.mode == "shadow":
                    return body  # the shadow rule cannot read it: recorded, forwarded as is
                raise InvalidRequest(
                    "This path's policy rule reads JSON fields of the body: send application/json.",
                    status=415,
                    code="unsupported_media_type",
                ) from None
            raw = await read_body(request, policy.max_body_bytes, request.headers.get("content-length"))
            try:
                parsed = orjson.loads(raw or b"{}")
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise InvalidRequest(
                    "We could not parse the JSON body of your request. Send a JSON object.",
                    code="invalid_json",
                )
            data = parsed
        model = data["model"] if isinstance(data.get("model"), str) else ""
        ctx.model = model
        if model:
            bind(ctx, caller_of(request))  # clients: 403 for a model the key may not use
        budget = config.budget
        if budget is not None:
            ctx.set(PASSTHROUGH_COST, budget.price_usd * _multiplier(data, budget.per_field))
        synthetic, where = field_request(data, config.fields, model)
        if raw is not None and policy.capture_on and rule.request_steps:
            # observability.capture: the JSON body a guard reads (already bounded by
            # limits.max_body_bytes), kept like a chain request's; the answer is not kept.
            capture.keep_request(policy, ctx, raw, path=config.path)
        done.extend(rule.complete_steps)  # before running: a later refusal must still refund
        reply = await policy.chain.run_request_steps(rule.request_steps, synthetic, ctx)
        if reply is not None:
            raise Rejected("The request was refused by the policy.")
        if raw is None:
            return body
        if synthetic.dirty:
            write_back(synthetic, data, where)
            return orjson.dumps(data)
        return raw

    @staticmethod
    def _ms(ctx: RequestContext) -> float:
        return (time.perf_counter() - ctx.started) * 1000

    async def _finish(
        self, policy: CompiledPolicy, ctx: RequestContext, done: list[Step], outcome: Outcome
    ) -> None:
        """Complete hooks of the rule's steps, decision records, observers, unpin. Never raises."""
        try:
            if done:
                await policy.chain.run_complete_steps(done, outcome, ctx)
            self.sidecar.publish(policy, ctx, outcome)
            if self.sidecar.settings.log_requests and log.isEnabledFor(logging.INFO):
                log.info("request", extra=self._access_fields(ctx, outcome))
        except Exception:
            log.exception("error while finishing a pass-through request")
        finally:
            self.sidecar.store.release(policy)

    @staticmethod
    def _access_fields(ctx: RequestContext, outcome: Outcome) -> dict[str, Any]:
        """The access log line, as the chain routes write it (ids, status, target, decisions)."""
        return {
            "request_id": ctx.request_id,
            "route": ctx.route.value,
            "status": outcome.status,
            "model": ctx.model or None,
            "tenant": ctx.tenant,
            "target": ctx.target,
            "revision": ctx.revision,
            "latency_ms": round(outcome.latency_ms, 2),
            "decisions": [
                {"plugin": d.plugin, "rule": d.rule, "action": d.action, "mode": d.mode}
                for d in ctx.decisions
            ],
            "cost_usd": ctx.cost_usd,
        }

    async def websocket(self, ws: WebSocket) -> None:
        """WebSocket scopes on /v1/* (realtime): refused with 403 and a decision record."""
        store = self.sidecar.store
        policy = store.acquire()
        rid = choose_request_id(ws.headers.get("x-request-id"))
        ctx = RequestContext(rid, Route.PASSTHROUGH, Headers(scope=ws.scope), policy.revision)
        _record(ctx, "websocket", "block", path=_short(ws.url.path))
        exc = PassthroughRefused(
            "WebSocket upgrades (realtime) are not forwarded by the sidecar.", code="websocket_not_allowed"
        )
        try:
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(error_response(exc, {"x-request-id": rid}))
            else:
                await ws.close(code=1008, reason="websocket_not_allowed")
        finally:
            await self._finish(policy, ctx, [], Outcome(403, exc, latency_ms=self._ms(ctx)))
