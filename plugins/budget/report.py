"""Glue between the budget step and the usage read-outs (``proxy.budget.report``).

Operators read any identity (``GET /admin/plugins/<id>?tenant=...``); a caller reads only its own
usage (``/sidecar/budget``), identified exactly as its requests are, so other tenants never show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins.budget.config import BudgetConfig, LimitSpec
from plugins.budget.identity import limit_key
from proxy.budget.backends import Backend, BackendUnavailable
from proxy.budget.report import usage_report
from proxy.chain import Identity

_PARTS = ("tenant", "api_key", "user", "model", "route")


async def _report(backend: Backend, config: BudgetConfig, parts: Mapping[str, str | None]) -> dict[str, Any]:
    def key(limit: LimitSpec, known: Mapping[str, str]) -> str:
        return limit_key(config, limit, known)

    try:
        return await usage_report(backend, config.limits, key, parts)
    except BackendUnavailable:
        return {"error": "budget state unavailable"}


async def admin_usage(backend: Backend, config: BudgetConfig, query: Mapping[str, str]) -> dict[str, Any]:
    """Usage of any identity: ``?tenant=&api_key=<hash>&user=&model=&route=``."""
    parts: dict[str, str | None] = {p: query.get(p) for p in _PARTS}
    parts["tenant"] = parts["tenant"] or "anonymous"
    return await _report(backend, config, parts)


async def own_usage(
    backend: Backend,
    config: BudgetConfig,
    ident: Mapping[str, str],
    headers: Mapping[str, str],
    verified: Identity | None,
) -> dict[str, Any]:
    """The caller's usage; ``ident`` is what ``identify`` made of the caller's headers."""
    parts: dict[str, str | None] = {
        "api_key": ident["api_key"],
        "model": headers.get("x-model"),
        "route": None,
        "user": ident["user"] if verified is not None else None,
        "tenant": None if config.tenant_from == "context" and verified is None else ident["tenant"],
    }
    return await _report(backend, config, parts)
