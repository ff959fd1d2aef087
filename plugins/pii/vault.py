"""Vault glue: the keyed secret, the placeholder vault of the configured backend, conversation keys.

The vault numbers each (entity type, value digest) per conversation, so the same value gets the
same placeholder across messages and turns; the conversation key binds that numbering to the
tenant and (by default) the client's key, so one client can never restore another's values.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii

from proxy.chain import Deps, RequestContext, StateKey
from proxy.detectors.pii import MemoryVault, RedisVault, Vault
from proxy.models import ChatRequest
from proxy.redis import connect, parse, target_digest

from .config import PiiConfig


@dataclass
class PiiState:
    """What one request's prompt held: the reverse mapping used to restore answers."""

    mapping: dict[str, str]  # placeholder -> original, only what this request's messages held
    values: set[str] = field(default_factory=set)  # every original value seen in the prompt


STATE: StateKey[PiiState] = StateKey("pii.state")


@dataclass(frozen=True)
class _Bytes:
    value: bytes


def secret_of(config: PiiConfig, deps: Deps) -> bytes:
    """The key for hash tokens and digests: configured, or one random key per process."""
    if config.secret is not None:
        return config.secret.get_secret_value().encode()
    held: _Bytes = deps.resource("pii-process-secret", lambda: _Bytes(os.urandom(32)))
    return held.value


def vault_of(config: PiiConfig, deps: Deps) -> Vault:
    """The shared vault of the configured backend (one per URL, prefix and TTL)."""
    if config.backend == "redis" and config.redis_url is not None:
        target, prefix = parse(config.redis_url.get_secret_value(), config.redis), config.redis_prefix
        timeout = config.redis_timeout_ms / 1000
        vkey = f"pii-vault:redis:{target_digest(target)}:{prefix}:{config.ttl}"
        redis: Vault = deps.resource(
            vkey,
            lambda: RedisVault(
                connect(target, connect_timeout=timeout, socket_timeout=timeout), config.ttl, prefix
            ),
        )
        return redis
    memory: Vault = deps.resource(f"pii-vault:memory:{config.ttl}", lambda: MemoryVault(config.ttl))
    return memory


def conversation_key(
    config: PiiConfig, secret: bytes, req: ChatRequest, ctx: RequestContext, first_user: str | None = None
) -> str:
    """The keyed id of this request's conversation: header (or first user message), tenant, client.

    ``first_user``: the first user text of ``req.text_slots()`` when the caller already walked
    them (``on_request`` has), so the walk is not repeated; None walks them here.
    """
    conv = ctx.headers.get(config.conversation_header)
    if not conv:
        if first_user is None:
            first_user = next((s.text for s in req.text_slots() if s.role == "user"), "")
        conv = "first:" + hashlib.sha256(first_user.encode()).hexdigest()
    who = ""
    if config.bind_to_api_key and ctx.identity is not None:
        who = "id:" + ctx.identity.key_id  # clients: the verified key, stable across token refreshes
    elif config.bind_to_api_key:
        h = ctx.headers
        raw = h.get("authorization") or h.get("api-key") or h.get("x-api-key")
        who = hashlib.sha256((raw or "").encode()).hexdigest()
    # one-shot C HMAC: the same hex digest as ``hmac.new(...).hexdigest()``, no HMAC object built
    return hmac.digest(secret, json_string_list((ctx.tenant or "", who, conv)).encode(), "sha256").hex()


def json_string_list(items: Sequence[str]) -> str:
    """``json.dumps(list(items))`` for strings (default separators, ASCII escapes), without the
    encoder's set-up: the keyed blob of ``conversation_key``, which Redis vault numbering
    depends on across releases. tests/unit/test_pii_conversation_key.py compares them."""
    return "[" + ", ".join(map(encode_basestring_ascii, items)) + "]"
