"""``retry``: try again on transient failures, with exponential backoff and full jitter.

Only what may succeed on a second try is retried (timeouts, connection errors, 429, 5xx, a
broken answer), never a validation or policy error. ``Retry-After`` / ``retry-after-ms`` are
honoured; when the wait would pass the request's deadline (or ``max_retry_after``) it gives up
at once and returns the provider's answer. Answers are settled inside each attempt, so once
a stream's first byte has been handed on, nothing is retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from proxy.chain import PluginConfig, RequestContext, UpstreamPolicy
from proxy.chain.failures import classes_as_text, classify_exception, classify_response, retry_after
from proxy.chain.upstream import Upstream
from proxy.errors import UpstreamError
from proxy.models.upstream import UpstreamRequest, UpstreamResponse

Retryable = Literal["timeout", "connect", "bad_response", "429", "5xx"]


class RetryConfig(PluginConfig):
    """Retries of transient upstream failures (per target; put it inside fallback)."""

    type: Literal["retry"] = "retry"
    max_attempts: int = Field(default=3, ge=1, le=10, description="attempts in all, the first included")
    base_delay: float = Field(default=0.25, ge=0, description="seconds; doubled per attempt, full jitter")
    max_delay: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(default=30.0, ge=0, description="give up when asked to wait longer")
    retry_on: Annotated[tuple[Retryable, ...], BeforeValidator(classes_as_text)] = (
        "timeout",
        "connect",
        "bad_response",
        "429",
        "5xx",
    )


class RetryPlugin(UpstreamPolicy[RetryConfig]):
    Config = RetryConfig

    def wrap(self, inner: Upstream) -> Upstream:
        return _Retrying(inner, self.config)


class _Retrying:
    def __init__(self, inner: Upstream, config: RetryConfig) -> None:
        self._inner = inner
        self._cfg = config
        self._on = frozenset(config.retry_on)

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        cfg = self._cfg
        if not isinstance(request.body, (bytes, type(None))):
            return await self._inner.send(request, ctx)  # a streamed request body cannot be replayed
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._inner.send(request, ctx)
            except UpstreamError as exc:
                kind = classify_exception(exc)
                delay = self._delay(attempt, None)
                if kind not in self._on or not self._may_retry(attempt, delay, request):
                    raise
                self._record(ctx, attempt, kind, delay)
            else:
                kind = classify_response(resp)
                if kind is None or kind not in self._on:
                    return resp
                asked = retry_after(resp)
                if asked is not None and asked > cfg.max_retry_after:
                    return resp
                delay = self._delay(attempt, asked)
                if not self._may_retry(attempt, delay, request):
                    return resp
                await resp.aclose()
                self._record(ctx, attempt, kind, delay)
            await asyncio.sleep(delay)

    def _delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return asked
        return random.uniform(0, min(self._cfg.max_delay, self._cfg.base_delay * 2 ** (attempt - 1)))

    def _may_retry(self, attempt: int, delay: float, request: UpstreamRequest) -> bool:
        if attempt >= self._cfg.max_attempts:
            return False
        return request.deadline is None or time.monotonic() + delay < request.deadline

    @staticmethod
    def _record(ctx: RequestContext, attempt: int, kind: str | None, delay: float) -> None:
        ctx.record(
            "retry",
            "retry",
            detail={"attempt": attempt, "class": kind, "delay_s": round(delay, 3), "target": ctx.target},
        )
