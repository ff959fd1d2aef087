"""The upstream interface: one method, so wrappers compose like httpx transports.

``Upstream`` lives in the chain layer, not in ``proxy.models``, because its contract includes
the per-request ``RequestContext``; the models stay below the chain and import nothing of it.
What crosses the boundary (``UpstreamRequest``, ``UpstreamResponse``) stays in
``proxy.models.upstream``. Wrappers (retry, circuit breaker, fallback, timeout) take an inner
``Upstream`` and are one themselves.
"""

from __future__ import annotations

from typing import Protocol

from proxy.chain.context import RequestContext
from proxy.models.upstream import UpstreamRequest, UpstreamResponse


class Upstream(Protocol):
    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse: ...
