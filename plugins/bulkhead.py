"""``bulkhead``: a concurrency limit per upstream, so one slow provider cannot starve the rest.

A call waits at most ``max_wait`` seconds for a slot, then fails with 503 ``bulkhead_full``
and ``Retry-After`` (a fallback step can route around it). A slot is held until the answer is
fully delivered (the end of a stream), since that is what occupies the provider's capacity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from proxy.chain import Deps, PluginConfig, RequestContext, UpstreamPolicy
from proxy.chain.upstream import Upstream
from proxy.errors import UpstreamUnavailable
from proxy.models.upstream import UpstreamRequest, UpstreamResponse


class BulkheadConfig(PluginConfig):
    """Per-upstream concurrency limit with a bounded queue."""

    type: Literal["bulkhead"] = "bulkhead"
    max_concurrent: int = Field(default=64, ge=1, description="calls in flight per upstream")
    max_wait: float = Field(default=1.0, ge=0, description="seconds to wait for a slot before a 503")


class BulkheadPlugin(UpstreamPolicy[BulkheadConfig]):
    Config = BulkheadConfig

    def __init__(self, config: BulkheadConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        key = f"bulkhead:{config.step_id}:{config.max_concurrent}"
        self.slots: dict[str, asyncio.Semaphore] = deps.resource(key, dict)

    def wrap(self, inner: Upstream) -> Upstream:
        return _Bulkhead(inner, self)


class _Releasing:
    """Gives the slot back when the answer is fully read or closed, exactly once."""

    def __init__(self, resp: UpstreamResponse, sem: asyncio.Semaphore) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self._resp = resp
        self._sem: asyncio.Semaphore | None = sem

    def _release(self) -> None:
        if self._sem is not None:
            self._sem.release()
            self._sem = None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.aiter_bytes():
                yield chunk
        finally:
            self._release()

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        finally:
            self._release()

    async def aclose(self) -> None:
        self._release()
        await self._resp.aclose()


class _Bulkhead:
    def __init__(self, inner: Upstream, plugin: BulkheadPlugin) -> None:
        self._inner = inner
        self._plugin = plugin

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        name = (
            request.target.upstream
            if request.target
            else (request.candidates[0].upstream if request.candidates else "default")
        )
        cfg = self._plugin.config
        sem = self._plugin.slots.get(name)
        if sem is None:
            sem = self._plugin.slots[name] = asyncio.Semaphore(cfg.max_concurrent)
        try:
            if sem.locked():  # only a full bulkhead pays for the timeout machinery
                async with asyncio.timeout(cfg.max_wait):
                    await sem.acquire()
            else:
                await sem.acquire()
        except TimeoutError:
            ctx.record("bulkhead_full", "limit", detail={"target": name})
            raise UpstreamUnavailable(
                "The upstream provider is at its concurrency limit.",
                code="bulkhead_full",
                headers={"retry-after": "1"},
            ) from None
        try:
            resp = await self._inner.send(request, ctx)
        except BaseException:
            sem.release()
            raise
        return _Releasing(resp, sem)
