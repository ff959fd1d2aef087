"""The verified caller of a request, as client authentication (``clients:``) established it.

It lives in ``proxy.chain`` so plugins (budget, PII, headers) can read it without importing
the authentication package: when ``ctx.identity`` is set, it is the only source of the tenant,
user and key identity, and request headers such as ``x-tenant-id`` are no longer trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the tenant and user budgets and ``when`` key on, and a stable key id.

    ``key_id`` names the credential, never its secret: the ``id`` of an API key entry, or
    ``jwt:<subject>`` for a bearer token. ``budget`` maps a budget limit name to the amount this
    caller gets instead of the policy's (an API key entry's ``budget:`` overrides).
    """

    kind: Literal["key", "jwt"]
    key_id: str
    tenant: str
    user: str | None = None
    budget: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
