"""A test plugin that leaves every kind of effect a step can leave, in every hook.

Used to prove that the chain drops a shadow step's effects (issue 24.2) while keeping its
decisions: run it in shadow and nothing may escape; run it enforced and everything does (so
the shadow tests can fail).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from proxy.chain import Outcome, Plugin, PluginConfig, Reply, RequestContext, StateKey, StreamFilter
from proxy.models import ChatRequest, ChatResponse, StreamEvent, TextDelta

OWN: StateKey[list[str]] = StateKey("leaky.own")  # step-scoped: kept in shadow, for the step only
SHARED: StateKey[str] = StateKey("leaky.shared", shared=True)  # request-wide: dropped in shadow
DEADLINE = time.monotonic() + 1e6  # a deadline far away: enforced, it must not time out the request


class LeakyConfig(PluginConfig):
    type: Literal["leaky"] = "leaky"


class Leaky(Plugin[LeakyConfig]):
    """Writes headers, flags, state and request fields in each hook, and records a decision."""

    Config = LeakyConfig

    @staticmethod
    def leak(ctx: RequestContext, hook: str) -> None:
        ctx.response_headers[f"x-leak-{hook}"] = "1"
        flags = ctx.response_headers.get("x-sidecar-flags")
        ctx.response_headers["x-sidecar-flags"] = f"{flags},leaky" if flags else "leaky"
        ctx.upstream_headers[f"x-leak-up-{hook}"] = "1"
        ctx.set(SHARED, hook)
        own = ctx.get(OWN)
        if own is None:
            ctx.set(OWN, own := [])
        own.append(hook)
        ctx.tenant = "leaked-tenant"
        ctx.target = "leaked-target"
        ctx.deadline = DEADLINE
        ctx.record(f"leak_{hook}", "flag")

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        self.leak(ctx, "request")
        for slot in req.text_slots():
            slot.set("LEAKED")
        return None

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        self.leak(ctx, "response")
        for slot in resp.text_slots():
            slot.set("LEAKED")

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        self.leak(ctx, "open_stream")
        return _LeakyStream(ctx)

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        self.leak(ctx, "complete")
        # Its own state survived every hook (a shadow budget needs its booking here).
        ctx.record("own_state", "allow", detail={"hooks": list(ctx.get(OWN) or [])})


class _LeakyStream:
    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        Leaky.leak(self._ctx, "stream")
        if isinstance(event, TextDelta):
            return [TextDelta(event.index, "LEAKED", None, event.meta)]
        return [event]

    async def on_end(self) -> Sequence[StreamEvent]:
        Leaky.leak(self._ctx, "stream_end")
        return []
