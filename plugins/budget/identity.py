"""Who a request counts against, and the key of each limit for that caller.

The identity comes from a verified ``clients:`` key when there is one (headers are then not
trusted), else from the step's ``tenant_from`` source. Keys are scoped to the step: a step's
``namespace`` when it sets one (steps that share a namespace share counters on purpose), else
its step id, so two budget steps with the same limit names never touch each other's counters,
in memory or in a Redis shared by both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from plugins.budget.config import BudgetConfig, LimitSpec
from proxy.chain import Identity


def hash_key(value: str) -> str:
    """A short, stable digest: API keys never appear in counter keys, headers or reports."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def key_scope(config: BudgetConfig) -> str:
    """``namespace`` if set, else ``@<step id>`` (``@`` is not allowed in a namespace: no clash)."""
    return config.namespace or f"@{config.step_id}"


def limit_key(config: BudgetConfig, limit: LimitSpec, parts: Mapping[str, str]) -> str:
    """``<scope>/<limit>:<part>|<part>``: one counter family per step, limit and caller."""
    return f"{key_scope(config)}/{limit.name}:" + "|".join(parts.get(p, "-") for p in limit.key)


def identify(
    config: BudgetConfig,
    uses_api_key: bool,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    ctx_tenant: str | None,
    verified: Identity | None = None,
) -> dict[str, str]:
    """Tenant, hashed API key and user of a request, as the limits' ``key`` parts use them."""
    if verified is not None:  # clients: only the verified caller counts; headers are not trusted
        return {"tenant": verified.tenant, "api_key": verified.key_id, "user": verified.user or "none"}
    auth = headers.get("authorization") or headers.get("api-key") or headers.get("x-api-key") or ""
    # Hashing costs a few microseconds: only when a limit (or the tenant) is keyed on the key.
    api_key = hash_key(auth.removeprefix("Bearer ").strip()) if auth and uses_api_key else "none"
    user = body.get("user") if isinstance(body.get("user"), str) else None
    source = config.tenant_from
    if source.startswith("header:"):
        tenant = headers.get(source[7:])
    elif source == "api_key":
        tenant = api_key if auth else None
    elif source == "user":
        tenant = user
    else:
        tenant = ctx_tenant
    return {"tenant": tenant or "anonymous", "api_key": api_key, "user": user or "none"}
