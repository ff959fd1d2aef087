"""What the response cache shares with the steps that must know about it (fallback, budgets).

Plugins import only ``proxy.chain``, never each other, so the ``cache`` step and the steps that
react to it meet here, through two request-wide state keys:

* ``CACHE_SERVED``: the answer of this request came from the cache (a hit, or a stale answer the
  ``fallback`` cached tier served). A budget step charges it no provider tokens; the cache does
  not store it again. Set only by an enforcing step: a shadow cache's write is dropped with the
  rest of its effects, so a would-be hit is never charged as free.
* ``STALE_SOURCE``: set by the ``cache`` step on a cacheable request; the ``fallback`` cached tier
  calls it when every target failed, to get a stale answer no older than ``max_stale``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from proxy.chain.context import RequestContext, StateKey
from proxy.models.upstream import BufferedResponse


@dataclass(frozen=True, slots=True)
class Served:
    """An answer served from the cache: how old it is and the provider usage it saved."""

    age: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stale: bool = False


#: ``(max_stale seconds, ctx) -> a stale answer as the upstream would send it, or None``.
StaleSource = Callable[[float, RequestContext], Awaitable[BufferedResponse | None]]

CACHE_SERVED: StateKey[Served] = StateKey("cache.served", shared=True)
STALE_SOURCE: StateKey[StaleSource] = StateKey("cache.stale_source", shared=True)
