"""Budget state shared by replicas through Redis: one Lua call per check, TTLs on every key.

* ``reserve`` is one ``EVALSHA``: it reads every window counter and lease set of the request,
  decides, and charges all or nothing, atomically across replicas.
* Corrections and releases are one pipelined round trip each.
* Window counters expire two windows after their window starts; lease sets expire after the
  longest lease, and expired leases are purged on every check, so a crashed replica's
  concurrency slots come back by themselves.
* Redis down: short socket timeouts, then the backend is marked down for ``down_for`` seconds
  and every call fails at once with ``BackendUnavailable`` (the plugin applies fail-open or
  fail-closed), so no request waits on a dead Redis; after that it tries again (recovery).

Time comes from the replica's clock (keys are computed client-side so the script declares all
keys it touches); replicas are expected to be NTP-synced, and a skew of milliseconds only
shifts the window weighting by that much.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.budget.backends import BackendUnavailable, Charge, Reservation, SlotCheck, WindowCheck, counter_key
from proxy.budget.windows import WindowState, window_index

RESERVE = """
local nw = tonumber(ARGV[1])
local ns = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local out = {'1', '0', '0'}
local denied = false
for i = 1, nw do
  local b = 3 + (i - 1) * 4
  local window = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 2])
  local amount = tonumber(ARGV[b + 3])
  local start = tonumber(ARGV[b + 4])
  local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  out[#out + 1] = tostring(cur)
  out[#out + 1] = tostring(prev)
  if not denied and prev * (1 - (now - start) / window) + cur + amount > limit then
    denied = true
    out[1] = '0'
    out[2] = tostring(i)
  end
end
local sb = 3 + nw * 4
for j = 1, ns do
  local key = KEYS[2 * nw + j]
  local limit = tonumber(ARGV[sb + (j - 1) * 3 + 1])
  local lease = ARGV[sb + (j - 1) * 3 + 2]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local count = redis.call('ZCARD', key)
  out[#out + 1] = tostring(count)
  if not denied and count >= limit and not redis.call('ZSCORE', key, lease) then
    denied = true
    out[1] = '0'
    out[3] = tostring(j)
  end
end
if denied then return out end
for i = 1, nw do
  local b = 3 + (i - 1) * 4
  local window = tonumber(ARGV[b + 1])
  local amount = ARGV[b + 3]
  local start = tonumber(ARGV[b + 4])
  local key = KEYS[2 * i - 1]
  local v = redis.call('INCRBYFLOAT', key, amount)
  redis.call('PEXPIREAT', key, math.floor((start + 2 * window) * 1000))
  out[3 + 2 * i - 1] = v
end
for j = 1, ns do
  local key = KEYS[2 * nw + j]
  local ttl = tonumber(ARGV[sb + (j - 1) * 3 + 3])
  redis.call('ZADD', key, now + ttl, ARGV[sb + (j - 1) * 3 + 2])
  local pttl = redis.call('PTTL', key)
  if pttl < ttl * 1000 then redis.call('PEXPIRE', key, math.ceil(ttl * 1000)) end
  out[3 + 2 * nw + j] = tostring(redis.call('ZCARD', key))
end
return out
"""


class RedisBackend:
    def __init__(
        self,
        url: str,
        prefix: str = "sidecar:budget:",
        timeout: float = 0.1,
        down_for: float = 1.0,
        client: Any = None,
    ) -> None:
        # No socket_timeout: redis-py would wrap every send in asyncio.wait_for (an extra task per
        # call); the timeout is enforced once per call in ``_call`` instead.
        self._timeout = timeout
        self._redis: Any = client or aioredis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            decode_responses=True,
            health_check_interval=0,
        )
        self._prefix = prefix
        self._down_for = down_for
        self._down_until = 0.0
        self._script = self._redis.register_script(RESERVE)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, coro: Any) -> Any:
        if time.monotonic() < self._down_until:
            coro.close()
            raise BackendUnavailable("redis marked down after a recent failure")
        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._down_for
            raise BackendUnavailable(f"redis unavailable: {exc!r}") from exc

    async def reserve(self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]) -> Reservation:
        now = time.time()
        keys: list[str] = []
        args: list[Any] = [len(windows), len(slots), repr(now)]
        charges = []
        for c in windows:
            i = window_index(now, c.window)
            charge = Charge(counter_key(c.key, c.window, i), c.window, i)
            charges.append(charge)
            keys += [self._k(charge.counter), self._k(counter_key(c.key, c.window, i - 1))]
            args += [c.window, repr(float(c.limit)), repr(float(c.amount)), i * c.window]
        for s in slots:
            keys.append(self._k(f"{s.key}:slots"))
            args += [s.limit, s.lease_id, repr(float(s.ttl))]
        out = await self._call(self._script(keys=keys, args=args))
        allowed = out[0] == "1"
        states = [
            WindowState(float(out[4 + 2 * n]), float(out[3 + 2 * n]), now, c.window, c.limit)
            for n, c in enumerate(windows)
        ]
        counts = [int(float(v)) for v in out[3 + 2 * len(windows) :]]
        denied_w = int(out[1]) - 1 if out[1] != "0" else None
        denied_s = int(out[2]) - 1 if (not allowed and out[2] != "0") else None
        return Reservation(allowed, states, charges, counts, denied_w, denied_s)

    async def adjust(self, corrections: Sequence[tuple[Charge, float]]) -> None:
        todo = [(c, d) for c, d in corrections if d]
        if not todo:
            return
        pipe = self._redis.pipeline(transaction=False)
        for charge, delta in todo:
            pipe.incrbyfloat(self._k(charge.counter), delta)
            pipe.pexpireat(self._k(charge.counter), int((charge.index + 2) * charge.window * 1000))
        await self._call(pipe.execute())

    async def release(self, slots: Sequence[SlotCheck]) -> None:
        if not slots:
            return
        pipe = self._redis.pipeline(transaction=False)
        for s in slots:
            pipe.zrem(self._k(f"{s.key}:slots"), s.lease_id)
        await self._call(pipe.execute())

    async def peek(self, windows: Sequence[WindowCheck]) -> list[WindowState]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for c in windows:
            i = window_index(now, c.window)
            pipe.get(self._k(counter_key(c.key, c.window, i)))
            pipe.get(self._k(counter_key(c.key, c.window, i - 1)))
        values = await self._call(pipe.execute())
        return [
            WindowState(float(values[2 * n + 1] or 0), float(values[2 * n] or 0), now, c.window, c.limit)
            for n, c in enumerate(windows)
        ]

    async def peek_slots(self, keys: Sequence[str]) -> list[int]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(self._k(f"{key}:slots"), f"({now!r}", "+inf")
        return [int(v) for v in await self._call(pipe.execute())]

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._redis.ping()))
        except BackendUnavailable:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
