"""``timeout``: a total deadline for getting an answer, shared by every attempt.

The deadline covers everything up to the answer (all retries, fallbacks and backoff sleeps,
and for streams the first chunk); a stream that has started is not cut off by it. Each attempt
gets only what is left, so a retry never outlives the request. A client may ask for a shorter
(or, up to ``max_client``, longer) budget with a header when the policy names one.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from proxy.chain import Plugin, PluginConfig, Reply, RequestContext
from proxy.models import ChatRequest


class TimeoutConfig(PluginConfig):
    """Total request deadline (seconds), optionally set per request by a client header."""

    type: Literal["timeout"] = "timeout"
    total: float = Field(default=60.0, gt=0, description="seconds until the answer starts")
    client_header: str | None = Field(default=None, description="e.g. x-request-timeout (seconds)")
    max_client: float = Field(default=600.0, gt=0, description="upper bound for the client's value")


class TimeoutPlugin(Plugin[TimeoutConfig]):
    Config = TimeoutConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        budget = self.config.total
        if self.config.client_header:
            raw = ctx.headers.get(self.config.client_header)
            try:
                asked = float(raw) if raw else None
            except ValueError:
                asked = None
            if asked is not None and asked > 0:
                budget = min(asked, self.config.max_client)
        deadline = time.monotonic() + budget
        ctx.deadline = deadline if ctx.deadline is None else min(ctx.deadline, deadline)
        return None
