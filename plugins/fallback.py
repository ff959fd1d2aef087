"""``fallback``: when a target fails in a way another might not, try the next one.

Walks the request's candidates (from ``routes:``: ordered, or weighted first choice), trying
the next target only for the failure classes listed in ``triggers`` and while the deadline allows.
The serving target is in the ``x-sidecar-upstream`` header; each reroute is a decision record.
Answers are settled inside each attempt, so no fallback happens after a stream has started.

``cached: {max_stale: N}`` adds a last tier: when every target failed with a listed trigger, a
stale answer of the ``cache`` step (placed before this one) no more than N seconds past its
ttl is served, marked ``x-sidecar-cache: stale`` with its ``Age``, instead of the error.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from proxy.chain import PluginConfig, RequestContext, UpstreamPolicy
from proxy.chain.cached import STALE_SOURCE
from proxy.chain.failures import classes_as_text, classify_exception, classify_response
from proxy.chain.upstream import Upstream
from proxy.errors import UpstreamError
from proxy.models.upstream import UpstreamRequest, UpstreamResponse

Trigger = Literal[
    "timeout",
    "connect",
    "bad_response",
    "429",
    "5xx",
    "context_length",
    "content_policy",
    "circuit_open",
    "bulkhead_full",
]


class CachedTier(BaseModel):
    """The last tier: a stale answer of the ``cache`` step when every target failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_stale: float = Field(default=600, ge=0, description="seconds past the cache ttl an answer may be")


class FallbackConfig(PluginConfig):
    """Route around failing targets along the request's route (outermost wrapper)."""

    type: Literal["fallback"] = "fallback"
    # Not ``on``: YAML 1.1 reads a bare ``on`` key as the boolean true.
    triggers: Annotated[tuple[Trigger, ...], BeforeValidator(classes_as_text)] = (
        "timeout",
        "connect",
        "bad_response",
        "429",
        "5xx",
        "circuit_open",
        "bulkhead_full",
    )
    max_targets: int = Field(default=3, ge=1, description="targets tried at most, the first included")
    cached: CachedTier | None = Field(
        default=None,
        description="serve a stale cached answer when every target failed (needs a cache step before)",
    )


class FallbackPlugin(UpstreamPolicy[FallbackConfig]):
    Config = FallbackConfig

    def wrap(self, inner: Upstream) -> Upstream:
        return _Fallback(inner, self.config)


class _Fallback:
    def __init__(self, inner: Upstream, config: FallbackConfig) -> None:
        self._inner = inner
        self._on = frozenset(config.triggers)
        self._max = config.max_targets
        self._cached = config.cached

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        if self._cached is None:
            return await self._targets(request, ctx)
        try:
            resp = await self._targets(request, ctx)
        except UpstreamError as exc:
            kind = classify_exception(exc)
            if kind not in self._on:
                raise
            stale = await self._stale(ctx, kind)
            if stale is None:
                raise
            return stale
        kind = classify_response(resp)
        if kind is None or kind not in self._on:
            return resp
        stale = await self._stale(ctx, kind)
        if stale is None:
            return resp
        await resp.aclose()
        return stale

    async def _stale(self, ctx: RequestContext, kind: str) -> UpstreamResponse | None:
        """The cached tier: a stale answer from the cache step, or None (the failure stands)."""
        source = ctx.get(STALE_SOURCE)
        if source is None or self._cached is None:
            return None
        answer = await source(self._cached.max_stale, ctx)
        if answer is not None:
            ctx.record("fallback", "reroute", detail={"from": ctx.target or "", "to": "cache", "class": kind})
        return answer

    async def _targets(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        candidates = request.candidates[: self._max]
        if len(candidates) <= 1 or not isinstance(request.body, (bytes, type(None))):
            return await self._inner.send(request, ctx)
        for i, candidate in enumerate(candidates):
            last = i == len(candidates) - 1 or (
                request.deadline is not None and time.monotonic() >= request.deadline
            )
            attempt = request if candidate == request.target else replace(request, target=candidate)
            try:
                resp = await self._inner.send(attempt, ctx)
            except UpstreamError as exc:
                kind = classify_exception(exc)
                if last or kind not in self._on:
                    raise
            else:
                kind = classify_response(resp)
                if last or kind is None or kind not in self._on:
                    return resp
                await resp.aclose()
            nxt = candidates[i + 1]
            ctx.record(
                "fallback",
                "reroute",
                detail={"from": candidate.upstream, "to": nxt.upstream, "class": kind, "to_model": nxt.model},
            )
        raise AssertionError("unreachable: the last candidate always returns or raises")
