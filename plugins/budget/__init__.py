"""``budget``: request, token, dollar and concurrency limits, per tenant / key / user / model / route.

Lifecycle of one request:

1. ``on_request`` estimates prompt tokens (tiktoken, offline), reserves the completion budget
   (``max_tokens`` x ``n``, or ``default_max_tokens``), prices the worst case, and reserves
   across all its limits, all or nothing (one atomic call; in a Redis Cluster one atomic call
   per limit with give-back on refusal, see ``proxy.budget.redis_backend``). A denial
   is a 429 with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; a cost or token limit
   may instead lower ``max_tokens`` to what still fits (``on_exceed: lower_max_tokens``).
2. The stream filter (only when token or cost limits exist) asks the provider for usage on
   streams and hides that chunk again if the client did not ask for it.
3. ``on_complete`` (always runs: success, error, client disconnect) releases concurrency slots
   and corrects every charge with the real usage: provider-reported usage when there is one,
   else the tokens of the text actually streamed; everything is refunded when the upstream
   failed before answering.

State lives in ``proxy.budget`` backends: in memory (default) or Redis (shared by replicas).

The package is split by role: ``config`` (the policy models), ``identity`` (who pays, and the
step-scoped counter keys), ``booking`` (reserve / correct arithmetic), ``refusal`` (429 / 503 and
their headers), ``report`` (usage read-outs), ``stream`` (the usage stream filter) and ``plugin``
(the hooks that tie them together).
"""

from plugins.budget.booking import BOOKING, Booking
from plugins.budget.config import TOKEN_MEASURES, BudgetConfig, LimitSpec, PriceSpec
from plugins.budget.plugin import OFFLOAD_CHARS, BudgetPlugin

__all__ = [
    "BOOKING",
    "OFFLOAD_CHARS",
    "TOKEN_MEASURES",
    "Booking",
    "BudgetConfig",
    "BudgetPlugin",
    "LimitSpec",
    "PriceSpec",
]
