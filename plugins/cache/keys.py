"""Cache keys: what makes two requests "the same" for a cached answer, and nothing less.

The key hashes the canonical request body (sorted keys; ``stream``, ``stream_options``, ``user``
and ``metadata`` dropped, since they change the answer's framing or bookkeeping, not its
content), the caller's identity (verified key id and tenant, else a hash of the API key and the
tenant header), the route, the model (and a target an earlier step pinned), and the *policy
fingerprint*: a digest of every enforcing step that can change answers plus the upstreams and
routes, so the routing a request gets is part of the key without the lookup waiting for it. Adding a redaction
rule therefore changes every key: answers made under the old policy are never replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.chain import PluginConfig, RequestContext

#: Dropped from the body before hashing (framing and bookkeeping only).
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata"})

#: Step types that never change an answer's content: they admit, time, route or bill requests.
#: Every other enforcing step (guards, custom plugins) goes into the fingerprint, so an unknown
#: plugin is conservatively assumed to change answers.
ANSWER_NEUTRAL = frozenset(
    {"cache", "budget", "headers", "retry", "circuit_breaker", "timeout", "bulkhead", "idempotency"}
    | {"fallback"}
)


def policy_fingerprint(steps: Iterable[PluginConfig], routing: str) -> str:
    """Digest of the enforcing answer-changing steps (their full config) and the routing config.

    Shadow and off steps are left out: they never change an answer, and promoting one to
    ``enforce`` changes the fingerprint.
    """
    parts: list[Any] = [routing]
    for cfg in steps:
        if cfg.type in ANSWER_NEUTRAL or cfg.mode != "enforce":
            continue
        parts.append(cfg.model_dump(mode="json"))
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def canonical_body(body: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in body.items() if k not in _IGNORED}, option=orjson.OPT_SORT_KEYS)


def caller_identity(ctx: RequestContext) -> str:
    """Who asks: the verified key when ``clients:`` is on, else the credential headers + tenant."""
    if ctx.identity is not None:
        return f"id:{ctx.identity.key_id}|{ctx.identity.tenant or ''}"
    headers = ctx.headers
    parts = (headers.get("authorization", ""), headers.get("x-api-key", ""), ctx.tenant or "")
    return "hdr:" + "|".join(parts)


def cache_key(body: Mapping[str, Any], ctx: RequestContext, fingerprint: str) -> str:
    h = hashlib.sha256()
    for part in (fingerprint, ctx.route.value, ctx.model, ctx.target or "", caller_identity(ctx)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(canonical_body(body))
    return h.hexdigest()


def deterministic(body: Mapping[str, Any]) -> bool:
    """``temperature: 0`` or a ``seed``: the only requests whose answer is worth replaying by default."""
    temperature = body.get("temperature")
    zero = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0
    return zero or body.get("seed") is not None


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The request's ``Cache-Control`` directives the cache honours."""

    no_store: bool = False
    no_cache: bool = False
    max_age: float | None = None


def parse_cache_control(value: str | None) -> CacheControl:
    """``no-store`` (neither read nor write), ``no-cache`` (do not read), ``max-age=N`` (read if younger).

    Unknown directives and malformed values are ignored, as HTTP caches do.
    """
    if not value:
        return CacheControl()
    no_store = no_cache = False
    max_age: float | None = None
    for raw in value.split(","):
        name, _, arg = raw.strip().lower().partition("=")
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True
        elif name == "max-age":
            arg = arg.strip().strip('"')
            if arg.isdigit():
                max_age = float(arg)
    return CacheControl(no_store, no_cache, max_age)
