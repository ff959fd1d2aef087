"""The repair loop: an upstream wrapper that re-asks with the validator's errors, within bounds.

It is the only place that can ask the upstream again. It settles each attempt (non-stream body,
or the whole SSE stream with ``stream: buffer``), validates it, and re-sends the request with the
invalid answer and the validator's messages appended, at most ``max_repairs`` times, within the
request deadline and ``repair_token_budget``; every invalid attempt is a decision record. The
final verdict is left in ``ctx`` state (``Settled``) for the plugin's response hook / stream filter.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from proxy.chain import RequestContext
from proxy.contracts import Output, Verdict, evaluate, output_from_body, output_from_sse, repair_body
from proxy.errors import UpstreamTimeout
from proxy.models import Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from proxy.chain.upstream import Upstream

    from .plugin import SchemaPlugin

ROUTES = frozenset({Route.CHAT, Route.RESPONSES, Route.MESSAGES})


def _now() -> float:
    """``time.monotonic``; a seam so tests can move the clock past a deadline without sleeping."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class Settled:
    """The wrapper's verdict on the answer it hands on (``raw`` identifies that answer)."""

    raw: bytes
    verdict: Verdict
    attempts: int
    stream: bool


def _tokens(usage: dict[str, Any] | None) -> dict[str, int]:
    return {k: v for k, v in (usage or {}).items() if k.endswith("_tokens") and isinstance(v, int)}


class Repairing:
    """The repair loop (see module doc). One per revision; per-request state stays in locals."""

    def __init__(self, plugin: SchemaPlugin, inner: Upstream) -> None:
        self._plugin = plugin
        self._cfg = plugin.config
        self._inner = inner

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        plan = ctx.get(self._plugin.plan_key)
        if (
            plan is None
            or request.route not in ROUTES
            or (request.stream and self._cfg.stream != "buffer")
            or not isinstance(request.body, bytes)
        ):
            return await self._inner.send(request, ctx)
        route = Route.CHAT if request.route is Route.MESSAGES else request.route
        current, body_json = request, None
        spent: dict[str, int] = {}
        attempt = 0
        while True:
            attempt += 1
            resp = await self._inner.send(current, ctx)
            ctype = next((v for k, v in resp.headers if k.lower() == "content-type"), "")
            is_sse = "text/event-stream" in ctype
            if resp.status >= 400 or is_sse != request.stream:
                return resp  # an error, or not what we can assemble: later hooks see it as is
            data = await _read_all(resp, request.deadline)
            try:
                output = output_from_sse(data, route) if is_sse else _parse_output(data, route)
            except orjson.JSONDecodeError:
                return BufferedResponse(resp.status, resp.headers, data)
            verdict = evaluate(plan, output)
            for key, value in _tokens(output.usage).items():
                spent[key] = spent.get(key, 0) + value
            used = spent.get("total_tokens", 0) or output.total_tokens()
            stop = None if verdict.ok else self._stop_reason(attempt, used, request)
            if not verdict.ok and self._cfg.on_failure == "repair":  # each repair attempt is a record
                action = "repair" if stop is None else "stop"
                detail = {"attempt": attempt, "target": ctx.target, "tokens": used, **verdict.detail()}
                ctx.record("invalid_attempt", action, detail={**detail, **({"reason": stop} if stop else {})})
            if verdict.ok or stop is not None:
                if attempt > 1 and not is_sse:
                    data = _with_usage(data, spent)
                ctx.set(self._plugin.settled_key, Settled(data, verdict, attempt, is_sse))
                return BufferedResponse(resp.status, resp.headers, data)
            if body_json is None:
                body_json = orjson.loads(request.body)
            current = self._next(request, repair_body(body_json, route, output, verdict), attempt)

    def _stop_reason(self, attempt: int, used: int, request: UpstreamRequest) -> str | None:
        cfg = self._cfg
        if cfg.on_failure != "repair":
            return "policy"
        if attempt > cfg.max_repairs:
            return "max_repairs"
        if request.deadline is not None and _now() >= request.deadline:
            return "deadline"
        if cfg.repair_token_budget is not None and used >= cfg.repair_token_budget:
            return "token_budget"
        return None

    def _next(self, request: UpstreamRequest, body: bytes, attempt: int) -> UpstreamRequest:
        if self._cfg.repair_target == "next" and len(request.candidates) > 1:
            candidates = (
                request.candidates[attempt % len(request.candidates) :]
                + request.candidates[: attempt % len(request.candidates)]
            )
            return replace(request, body=body, candidates=candidates, target=candidates[0])
        return replace(request, body=body)


def _parse_output(data: bytes, route: Route) -> Output:
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise orjson.JSONDecodeError("not an object", "", 0)
    return output_from_body(parsed, route)


def _with_usage(data: bytes, spent: dict[str, int]) -> bytes:
    """Usage of every attempt, so budgets charge what the repairs really cost."""
    if not spent:
        return data
    body = orjson.loads(data)
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return data
    body["usage"] = {**usage, **spent}
    return orjson.dumps(body)


async def _read_all(resp: UpstreamResponse, deadline: float | None) -> bytes:
    """The whole answer (a stream included), within the request's deadline."""
    try:
        if deadline is None:
            return await resp.read()
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await resp.read()
    except TimeoutError:
        raise UpstreamTimeout("The request deadline was exceeded.", code="deadline_exceeded") from None
    finally:
        await resp.aclose()
