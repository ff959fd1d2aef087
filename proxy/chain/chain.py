"""The compiled chain: per-phase step tuples, and the one place that applies mode / on_error / when.

Plugins only detect and act; this module decides what their actions mean:

* ``enforce``: the hook runs on the live request; a ``Rejected`` refuses it.
* ``shadow``: the hook runs on a *copy*; a rejection, an edit, a local reply or a crash
  becomes a "would have" decision record and the live request goes on untouched. The step's
  other effects (response and upstream headers, request-wide state, tenant / model / target /
  deadline) go to a scratch buffer that is dropped when the hook returns
  (``RequestContext.enter_step`` / ``leave_step``); its decisions and its own step-scoped state
  are kept. So a plugin never needs to know it runs in shadow, and cannot get shadow wrong.
* ``off``: the step is not compiled at all.
* ``canary: P`` (enforce steps): enforce on P percent of requests, shadow on the rest. The
  share is chosen by a hash of the request id, so every hook of one request agrees, and the
  decision records carry the mode actually used. A promoted step (``promote:``) has a
  ``rollout`` instead, whose percentage moves over time (``proxy.chain.promote``); a request
  reads it once, at its first hook of that step, so its hooks still agree.
* ``on_error``: ``fail_closed`` turns a crash into a ``PluginError`` (500);
  ``fail_open`` skips the step and records an ``error`` decision. A ``Rejected`` is a
  decision, never an error, so ``fail_open`` never swallows it.

Request hooks run in policy order; response hooks and stream filters in reverse order, so a
plugin that redacts on the way in restores on the way out (onion symmetry).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Match, Outcome, Plugin, Reply, StreamFilter
from proxy.chain.promote import Rollout
from proxy.chain.trace import HookRecord
from proxy.chain.upstream import Upstream
from proxy.errors import PluginError, ProxyError, Rejected
from proxy.models.chat import ChatRequest, ChatResponse
from proxy.models.stream import StreamEvent
from proxy.models.upstream import UpstreamRequest, UpstreamResponse

log = logging.getLogger("policy_sidecar.chain")

_IDLE = ActiveStep("sidecar", "enforce")


def _glob(patterns: tuple[str, ...] | None) -> re.Pattern[str] | None:
    if patterns is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


class Matcher:
    """A compiled ``when:`` clause; evaluated per request, so tenant set by earlier steps counts."""

    __slots__ = ("_models", "_routes", "_streaming", "_tenants")

    def __init__(self, match: Match) -> None:
        self._routes = frozenset(match.routes) if match.routes is not None else None
        self._models = _glob(match.models)
        self._tenants = _glob(match.tenants)
        self._streaming = match.streaming

    def matches(self, ctx: RequestContext) -> bool:
        if self._routes is not None and ctx.route.value not in self._routes:
            return False
        if self._models is not None and not self._models.match(ctx.model):
            return False
        if self._tenants is not None and not self._tenants.match(ctx.tenant or ""):
            return False
        return self._streaming is None or self._streaming == ctx.stream


@dataclass(frozen=True, slots=True)
class Step:
    """One plugin as placed in the policy: its instance plus how the chain must treat it."""

    id: str
    plugin: Plugin[Any]
    mode: str
    on_error: str
    when: Matcher | None
    active: ActiveStep
    canary: float | None = None  # percent of requests enforced; the rest run as shadow
    rollout: Rollout | None = None  # promote: a canary percentage that moves; None: fixed
    shadow_active: ActiveStep = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadow_active", ActiveStep(self.id, "shadow"))

    @property
    def shadow(self) -> bool:
        return self.mode == "shadow"

    def applies(self, ctx: RequestContext) -> bool:
        return self.when is None or self.when.matches(ctx)

    @property
    def split(self) -> bool:
        """True when the mode is chosen per request (a canary or a promotion)."""
        return self.canary is not None or self.rollout is not None

    def active_for(self, ctx: RequestContext) -> ActiveStep:
        """The mode this step runs in for this request (differs from ``mode`` only with a canary)."""
        if self.rollout is not None:
            return self.active if canary_bucket(ctx) < _pinned_percent(self, ctx) else self.shadow_active
        if self.canary is None:
            return self.active
        return self.active if canary_bucket(ctx) < self.canary else self.shadow_active


def _pinned_percent(step: Step, ctx: RequestContext) -> float:
    """A promoted step's percentage as this request first saw it (a stage change mid-request
    must not run its request hook in shadow and its response hook in enforce)."""
    pinned = ctx.rollouts
    if pinned is None:
        pinned = ctx.rollouts = {}
    percent = pinned.get(step.id)
    if percent is None:
        assert step.rollout is not None
        percent = pinned[step.id] = step.rollout.percent
    return percent


def canary_bucket(ctx: RequestContext) -> float:
    """A stable number in [0, 100) per request id: the request is in a P% canary when below P."""
    bucket = ctx.canary_bucket
    if bucket is None:
        digest = hashlib.blake2b(ctx.request_id.encode(), digest_size=4).digest()
        bucket = ctx.canary_bucket = int.from_bytes(digest, "big") % 10_000 / 100
    return bucket


def _already_blocked(step: Step, ctx: RequestContext) -> bool:
    return any(d.plugin == step.id and d.action in ("block", "limit") for d in ctx.decisions)


def _record_rejection(step: Step, exc: Rejected, ctx: RequestContext) -> None:
    if not _already_blocked(step, ctx):
        ctx.record(exc.code or "rejected", "block", detail={"status": exc.status})


def _copy_request(req: ChatRequest) -> ChatRequest:
    return ChatRequest(orjson.loads(orjson.dumps(req.body)), req.route)


def _copy_response(resp: ChatResponse) -> ChatResponse:
    return ChatResponse(orjson.loads(orjson.dumps(resp.body)), resp.route, None, resp.status)


class Chain:
    """Immutable per-revision chain. Built by the policy compiler, shared by all requests."""

    def __init__(self, steps: Sequence[Step], upstream: Upstream) -> None:
        from proxy.chain.plugin import overrides

        live = [s for s in steps if s.mode != "off"]
        self.steps = tuple(live)
        self.request_steps = tuple(s for s in live if overrides(s.plugin, "on_request"))
        self.response_steps = tuple(s for s in reversed(live) if overrides(s.plugin, "on_response"))
        self.stream_steps = tuple(s for s in reversed(live) if overrides(s.plugin, "open_stream"))
        self.complete_steps = tuple(s for s in live if overrides(s.plugin, "on_complete"))
        self.upstream = upstream

    # -- failure handling --------------------------------------------------------------
    def _crashed(
        self, step: Step, exc: Exception, ctx: RequestContext, hook: str, shadow: bool | None = None
    ) -> None:
        """Apply ``on_error``: raise for fail_closed, record and continue for fail_open/shadow."""
        log.error("plugin %s crashed in %s: %r", step.id, hook, exc, exc_info=exc)
        ctx.record("plugin_error", "error", detail={"hook": hook, "error": type(exc).__name__})
        if shadow is None:
            shadow = ctx.active.mode == "shadow"
        if step.on_error == "fail_closed" and not shadow:
            raise PluginError("A policy step failed while handling the request.", detail=repr(exc)) from exc

    async def _shadow_call(self, step: Step, call: Awaitable[Any], ctx: RequestContext, hook: str) -> None:
        try:
            result = await call
        except Rejected as exc:
            _record_rejection(step, exc, ctx)
        except ProxyError as exc:
            ctx.record(exc.code or "error", "error", detail={"hook": hook})
        except Exception as exc:
            self._crashed(step, exc, ctx, hook)
        else:
            if isinstance(result, Reply):
                ctx.record("local_reply", "reply")

    # -- phases ------------------------------------------------------------------------
    async def _run_step(
        self,
        step: Step,
        hook_fn: Callable[[Any, RequestContext], Awaitable[Any]],
        obj: Any,
        copy: Callable[[Any], Any],
        ctx: RequestContext,
        hook: str,
    ) -> Any:
        """One hook of one step, with mode and on_error applied (the only place that does so).

        When the request is traced (``ctx.trace``), the hook is timed and, if it did work, gets
        a child span afterwards (see ``RequestTrace.hook_done``); otherwise the only cost is the
        ``is None`` check.
        """
        active = step.active_for(ctx) if step.split else step.active
        scratch = ctx.enter_step(active)  # shadow: effects go to a scratch buffer, dropped below
        trace = ctx.trace
        if trace is not None:
            started = time.perf_counter_ns()
            before = len(ctx.decisions)
            was_dirty = getattr(obj, "dirty", False)
        result = "ok"
        try:
            if active.mode == "shadow":
                await self._shadow_call(step, hook_fn(copy(obj), ctx), ctx, hook)
                return None
            answer = await hook_fn(obj, ctx)
            if answer is not None:
                result = "reply"
            return answer
        except Rejected as exc:
            result = "rejected"
            _record_rejection(step, exc, ctx)
            raise
        except ProxyError:
            result = "error"
            raise
        except Exception as exc:
            result = "error"
            self._crashed(step, exc, ctx, hook)
            return None
        finally:
            ctx.leave_step(scratch)
            if trace is not None:
                if result == "ok" and getattr(obj, "dirty", False) != was_dirty:
                    result = "edited"
                done = len(ctx.decisions) - before
                trace.hook_done(
                    HookRecord(step.id, step.plugin.config.type, hook, active.mode, result, started, done)
                )

    async def run_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        return await self.run_request_steps(self.request_steps, req, ctx)

    async def run_request_steps(
        self, steps: Sequence[Step], req: ChatRequest, ctx: RequestContext
    ) -> Reply | None:
        """Request hooks of ``steps`` only (each implements ``on_request``), with the chain's rules.

        Pass-through rules run the steps they name through here, so mode, canary, ``when``,
        ``on_error`` and decision records are applied exactly as on the governed routes.
        """
        for step in steps:
            if not step.applies(ctx):
                continue
            reply = await self._run_step(step, step.plugin.on_request, req, _copy_request, ctx, "on_request")
            if reply is not None:
                ctx.active = step.active  # a reply only comes back from an enforcing run
                ctx.record("local_reply", "reply")
                ctx.active = _IDLE
                return reply  # type: ignore[no-any-return]
        return None

    async def run_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        for step in self.response_steps:
            if step.applies(ctx):
                await self._run_step(step, step.plugin.on_response, resp, _copy_response, ctx, "on_response")

    def open_stream(self, ctx: RequestContext) -> StreamPipeline | None:
        filters: list[tuple[Step, StreamFilter, ActiveStep]] = []
        for step in self.stream_steps:
            if not step.applies(ctx):
                continue
            active = step.active_for(ctx)
            scratch = ctx.enter_step(active)
            try:
                f = step.plugin.open_stream(ctx)
            except Exception as exc:
                self._crashed(step, exc, ctx, "open_stream")
                continue
            finally:
                ctx.leave_step(scratch)
            if f is not None:
                filters.append((step, f, active))
        return StreamPipeline(self, filters, ctx) if filters else None

    async def run_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        """Always runs; a crash here is logged and recorded, never raised (the answer is sent)."""
        await self.run_complete_steps(self.complete_steps, outcome, ctx)

    async def run_complete_steps(self, steps: Sequence[Step], outcome: Outcome, ctx: RequestContext) -> None:
        """Complete hooks of ``steps`` only (each implements ``on_complete``), never raising."""
        for step in steps:
            if not step.applies(ctx):
                continue
            scratch = ctx.enter_step(step.active_for(ctx))
            try:
                await step.plugin.on_complete(outcome, ctx)
            except Exception as exc:
                log.error("plugin %s crashed in on_complete: %r", step.id, exc, exc_info=exc)
                ctx.record("plugin_error", "error", detail={"hook": "on_complete"})
            finally:
                ctx.leave_step(scratch)

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return await self.upstream.send(request, ctx)


class StreamPipeline:
    """The per-request stack of stream filters (already in reverse policy order)."""

    def __init__(
        self, chain: Chain, filters: list[tuple[Step, StreamFilter, ActiveStep]], ctx: RequestContext
    ) -> None:
        self._chain = chain
        self._filters: list[tuple[Step, StreamFilter, ActiveStep] | None] = list(filters)
        self._ctx = ctx

    async def _through(self, i: int, events: Sequence[StreamEvent], end: bool) -> list[StreamEvent]:
        entry = self._filters[i]
        if entry is None:
            return list(events)
        step, flt, active = entry
        shadow = active.mode == "shadow"
        ctx = self._ctx
        scratch = ctx.enter_step(active)
        out: list[StreamEvent] = []
        try:
            for ev in events:
                out.extend(await flt.on_event(ev))
            if end:
                out.extend(await flt.on_end())
        except Rejected as exc:
            _record_rejection(step, exc, ctx)
            if shadow:
                self._filters[i] = None
                return list(events)
            raise
        except ProxyError:
            if shadow:
                self._filters[i] = None
                return list(events)
            raise
        except Exception as exc:
            self._filters[i] = None
            self._chain._crashed(step, exc, ctx, "stream", shadow)
            return list(events)
        finally:
            ctx.leave_step(scratch)
        # A shadow filter sees the stream but never changes it.
        return list(events) if shadow else out

    async def push(self, event: StreamEvent) -> list[StreamEvent]:
        events: list[StreamEvent] = [event]
        for i in range(len(self._filters)):
            events = await self._through(i, events, end=False)
            if not events:
                break
        return events

    async def end(self) -> list[StreamEvent]:
        """Flush every filter in order; what one flushes still passes through the later ones."""
        pending: list[StreamEvent] = []
        for i in range(len(self._filters)):
            pending = await self._through(i, pending, end=True)
        return pending
