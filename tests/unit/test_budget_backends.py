"""Budget arithmetic and the backend contract, for memory and Redis (fakeredis with Lua)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from proxy.budget.backends import Backend, MemoryBackend, SlotCheck, WindowCheck
from proxy.budget.redis_backend import RedisBackend
from proxy.budget.windows import estimate, format_duration, seconds_until_fits, seconds_until_reset


def test_sliding_estimate_weights_the_previous_window() -> None:
    assert estimate(prev=100, cur=10, now=60 * 10 + 15, window=60) == pytest.approx(100 * 0.75 + 10)
    assert estimate(prev=100, cur=0, now=60 * 10, window=60) == pytest.approx(100)


def test_seconds_until_fits() -> None:
    # limit 100, 90 used in this window, nothing before: 20 more fits when this window has
    # rolled over and decayed to 80: 60 - 0 (rest of window) + 60 * (1 - 80/90)
    wait = seconds_until_fits(prev=0, cur=90, now=600, window=60, limit=100, amount=20)
    assert wait == pytest.approx(60 + 60 * (1 - 80 / 90))
    assert seconds_until_fits(prev=0, cur=10, now=600, window=60, limit=100, amount=20) == 0
    assert seconds_until_fits(prev=0, cur=0, now=600, window=60, limit=100, amount=101) is None
    assert seconds_until_reset(cur=1, prev=0, now=630, window=60) == 90


@pytest.mark.parametrize(("seconds", "text"), [(0.12, "120ms"), (1, "1s"), (360, "6m0s"), (3723, "1h2m3s")])
def test_openai_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.fixture(params=["memory", "redis", "redis-per-limit"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """``redis-per-limit``: the Cluster protocol (one script per limit, give-back on refusal); the
    same contract must hold, so the same tests run on it (real clusters: tests/e2e/test_redis_*)."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    b = RedisBackend(client, per_limit=request.param == "redis-per-limit")
    yield b
    await client.flushall()
    await b.aclose()


def _w(key: str, limit: float, amount: float) -> WindowCheck:
    return WindowCheck(key, 60, limit, amount)


async def test_reserve_is_all_or_nothing(backend: Backend) -> None:
    ok = await backend.reserve([_w("a", 10, 4), _w("b", 5, 4)], [])
    assert ok.allowed and [s.cur for s in ok.states] == [4, 4]
    denied = await backend.reserve([_w("a", 10, 4), _w("b", 5, 4)], [])
    assert not denied.allowed and denied.denied_window == 1
    after = await backend.peek([_w("a", 10, 0), _w("b", 5, 0)])
    assert [s.cur for s in after] == [4, 4]  # the first limit was not charged by the denied call


async def test_adjust_corrects_the_charged_window(backend: Backend) -> None:
    res = await backend.reserve([_w("t", 100, 50)], [])
    await backend.adjust([(res.charges[0], -42.5)])
    (state,) = await backend.peek([_w("t", 100, 0)])
    assert state.cur == pytest.approx(7.5)
    assert state.remaining == pytest.approx(92.5)


async def test_concurrency_slots(backend: Backend) -> None:
    a, b, c = (SlotCheck("c", 2, lease, 30) for lease in ("r1", "r2", "r3"))
    assert (await backend.reserve([], [a])).allowed
    assert (await backend.reserve([], [b])).slot_counts == [2]
    denied = await backend.reserve([_w("x", 10, 1)], [c])
    assert not denied.allowed and denied.denied_slot == 0
    assert (await backend.peek([_w("x", 10, 0)]))[0].cur == 0  # nothing charged
    await backend.release([a])
    assert (await backend.reserve([], [c])).allowed
    assert await backend.peek_slots(["c"]) == [2]


async def test_expired_leases_come_back(backend: Backend) -> None:
    assert (await backend.reserve([], [SlotCheck("e", 1, "dead", 0.01)])).allowed
    import asyncio

    await asyncio.sleep(0.05)
    assert (await backend.reserve([], [SlotCheck("e", 1, "alive", 30)])).allowed


async def test_redis_keys_have_ttls() -> None:
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    b = RedisBackend(client, prefix="p:")
    await b.reserve([WindowCheck("k", 60, 10, 1)], [SlotCheck("s", 1, "l", 30)])
    keys = await client.keys("p:*")
    assert len(keys) == 2
    for key in keys:
        ttl = await client.pttl(key)
        assert 0 < ttl <= 120_000


async def test_redis_keys_of_one_limit_share_a_cluster_hash_tag() -> None:
    """One limit's window counters and lease set hash to one slot; another limit's need not."""
    from redis.crc import key_slot

    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    b = RedisBackend(client, prefix="p:", per_limit=True)
    res = await b.reserve([WindowCheck("@s/tpm:acme", 60, 10, 1)], [SlotCheck("@s/tpm:acme", 1, "l", 30)])
    await b.adjust([(res.charges[0], 1)])
    keys = await client.keys("p:*")
    assert len(keys) == 2 and all("{@s/tpm:acme}" in k for k in keys), keys
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_per_limit_refusal_gives_back_what_it_took() -> None:
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    b = RedisBackend(client, per_limit=True)
    denied = await b.reserve([_w("a", 10, 4), _w("b", 3, 4)], [SlotCheck("c", 5, "r1", 30)])
    assert not denied.allowed and denied.denied_window == 1
    assert [s.cur for s in denied.states] == [0, 0]  # as found, not as briefly charged
    assert [s.cur for s in await b.peek([_w("a", 10, 0), _w("b", 3, 0)])] == [0, 0]
    assert await b.peek_slots(["c"]) == [0]  # the lease taken on the way was released


def test_memory_backend_sweeps_old_counters() -> None:
    import asyncio

    now = [1000.0]
    b = MemoryBackend(clock=lambda: now[0], sweep_every=1)
    for i in range(50):
        asyncio.run(b.reserve([WindowCheck(f"k{i}", 1, 10, 1)], []))
    now[0] += 10
    asyncio.run(b.reserve([WindowCheck("fresh", 1, 10, 1)], []))
    assert b.size() == 1
