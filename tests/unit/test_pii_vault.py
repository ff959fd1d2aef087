"""Placeholder numbering: memory (TTL, bounded) and Redis (fakeredis with Lua) behave the same."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import MemoryVault, RedisVault, Vault, digest


@settings(max_examples=300, deadline=None)
@given(secret=st.binary(max_size=80), entity=st.text(max_size=20), value=st.text(max_size=60))
def test_digest_is_the_hmac_sha256_hexdigest_it_always_was(secret: bytes, entity: str, value: str) -> None:
    """The one-shot ``hmac.digest`` path gives the digests existing vaults (Redis) already hold."""
    try:
        message = f"{entity}\x00{value}".encode()
    except UnicodeEncodeError:  # lone surrogates: both paths raise the same error
        with pytest.raises(UnicodeEncodeError):
            digest(secret, entity, value)
        return
    assert digest(secret, entity, value) == hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def _vaults() -> list[Vault]:
    return [MemoryVault(60), RedisVault(fakeredis.FakeAsyncRedis(), 60)]


@pytest.mark.parametrize("index", [0, 1], ids=["memory", "redis"])
async def test_same_value_same_number_distinct_values_distinct_numbers(index: int) -> None:
    vault = _vaults()[index]
    a, b = digest(b"k", "EMAIL_ADDRESS", "a@x.co"), digest(b"k", "EMAIL_ADDRESS", "b@x.co")
    p = digest(b"k", "PERSON", "Ann")
    assert await vault.assign("c1", [("EMAIL_ADDRESS", a), ("PERSON", p)]) == [1, 1]
    assert await vault.assign("c1", [("EMAIL_ADDRESS", b), ("EMAIL_ADDRESS", a)]) == [2, 1]
    assert await vault.assign("c2", [("EMAIL_ADDRESS", b)]) == [1]  # per conversation
    results = await asyncio.gather(
        *(vault.assign("c3", [("X", digest(b"k", "X", str(i)))]) for i in range(50))
    )
    assert sorted(r[0] for r in results) == list(range(1, 51))
    await vault.aclose()


async def test_memory_vault_expires_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    vault = MemoryVault(ttl=10, max_conversations=3)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    await vault.assign("c1", [("X", "d1")])
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert await vault.assign("c1", [("X", "d2")]) == [1]  # expired: numbering starts over
    for i in range(5):
        await vault.assign(f"k{i}", [("X", "d")])
    assert len(vault) == 3


async def test_memory_vault_is_bounded_by_numbered_values_not_only_conversations() -> None:
    """Long prompts number many values per conversation: the value bound evicts the oldest
    conversations (the count held stays exact), and an evicted one numbers from 1 again."""
    vault = MemoryVault(ttl=60, max_conversations=1000, max_values=25)
    for c in range(5):
        assert await vault.assign(f"c{c}", [("X", f"d{i}") for i in range(10)]) == list(range(1, 11))
    assert len(vault) == 2 and vault.values == 20  # c3 and c4: a third would exceed 25
    assert await vault.assign("c4", [("X", "d3"), ("X", "new")]) == [4, 11]  # kept: same numbers
    assert await vault.assign("c0", [("X", "d5")]) == [1]  # evicted: numbering starts over
    assert vault.values == sum(len(conv.numbers) for conv in vault._convs.values())
    big = [("X", f"v{i}") for i in range(40)]  # one turn above the bound alone is still answered
    assert await vault.assign("huge", big) == list(range(1, 41))
    assert len(vault) == 1 and vault.values == 40


async def test_redis_vault_sets_a_ttl_and_stores_no_values() -> None:
    client = fakeredis.FakeAsyncRedis()
    vault = RedisVault(client, 120, prefix="p:")
    await vault.assign("conv", [("EMAIL_ADDRESS", digest(b"k", "EMAIL_ADDRESS", "a@x.co"))])
    assert 0 < await client.ttl("p:conv") <= 120
    stored = await client.hgetall("p:conv")
    assert not any(b"a@x.co" in k or b"a@x.co" in v for k, v in stored.items())


def test_conversation_key_is_the_documented_hmac() -> None:
    """The key names the conversation's numbering in a shared (Redis) vault, so it must not change
    across releases: HMAC-SHA256 (hex) of the JSON ``[tenant, who, conversation]``."""
    import json

    from plugins.pii.config import PiiConfig
    from plugins.pii.vault import conversation_key
    from proxy.chain import RequestContext
    from proxy.models.chat import ChatRequest, Route

    config = PiiConfig(ner="off", bind_to_api_key=False)
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, Route.CHAT)
    ctx = RequestContext("r", Route.CHAT, {"x-conversation-id": "c1"}, "rev", "gpt-4o")
    ctx.tenant = "acme"
    blob = json.dumps(["acme", "", "c1"]).encode()
    assert (
        conversation_key(config, b"secret", req, ctx) == hmac.new(b"secret", blob, hashlib.sha256).hexdigest()
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.text(max_size=20), st.text(max_size=60))
def test_digester_equals_digest(secret: bytes, entity_type: str, value: str) -> None:
    """The keyed-once digester gives the vault's digests exactly (placeholders keep their numbers)."""
    from proxy.detectors.pii import Digester

    digester = Digester(secret)
    assert digester(entity_type, value) == digest(secret, entity_type, value)
    assert digester(entity_type, value + "x") == digest(secret, entity_type, value + "x")  # reusable


def test_digester_without_openssl_objects_gives_the_same_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback (``hmac.new``'s object, no ``_hashlib``) and the OpenSSL object agree."""
    import sys

    from proxy.detectors.pii import Digester

    fast = Digester(b"k" * 40)
    assert type(fast._keyed).__module__ == "_hashlib"  # the C object is the one in use here
    monkeypatch.setitem(sys.modules, "_hashlib", None)  # ``from _hashlib import ...`` fails
    slow = Digester(b"k" * 40)
    assert type(slow._keyed).__module__ == "hmac"
    for value in ["ann@example.com", "", "é\x00x" * 50]:
        assert (
            slow("EMAIL_ADDRESS", value)
            == fast("EMAIL_ADDRESS", value)
            == digest(b"k" * 40, "EMAIL_ADDRESS", value)
        )
