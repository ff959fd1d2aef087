"""Budget state shared by replicas through Redis: one server, Sentinel or Cluster; TTLs on every key.

Keys are designed for Redis Cluster slots: every key of one limit for one caller carries the same
hash tag (``<prefix>{<step scope>/<limit>:<caller>}:w60:<n>`` and ``...}:slots``), so a limit's
current and previous window counters and its lease set live in one slot and one Lua call can
read and charge them. Different limits live in different slots.

Two reservation protocols:

* **one server / Sentinel** (``per_limit=False``): ``reserve`` is one ``EVALSHA`` over every
  limit of the request: it reads every counter and lease set, decides, and charges all or
  nothing, atomically across replicas (exact).
* **Cluster** (``per_limit=True``): a script may only touch one slot, so every limit is
  reserved by its own atomic script (check and charge that limit only), all limits at once;
  when any refuses, the ones already taken are given back (counter decremented, lease removed).
  No limit is ever charged past its own limit by this, so it adds **no over-admission**; the
  price is that for the few milliseconds between a charge and its give-back, another request
  may see that limit fuller than it ends up and be refused (a transient *under*-admission,
  bounded by the requests in flight that are refused by another limit). The remaining
  over-admission in a cluster comes from failover (see docs/deployment.md): charges a primary
  acknowledged but had not replicated when it died are lost, and fail_open admits during the gap.

* Corrections and releases are one pipelined round trip each (per shard in a cluster).
* Window counters expire two windows after their window starts; lease sets expire after the
  longest lease, and expired leases are purged on every check, so a crashed replica's
  concurrency slots come back by themselves.
* Redis down: one deadline per call, then the backend is marked down for ``down_for`` seconds
  and every call fails at once with ``BackendUnavailable`` (the plugin applies fail-open or
  fail-closed), so no request waits on a dead Redis; after that it tries again, and the client
  (redis-py's Sentinel pool / cluster slot map) finds the new primary by itself.

Time comes from the replica's clock (keys are computed client-side so the script declares all
keys it touches); replicas are expected to be NTP-synced, and a skew of milliseconds only
shifts the window weighting by that much.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

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

# Cluster: one limit per call (its keys share one hash tag, so one slot).
RESERVE_WINDOW = """
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local start = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if prev * (1 - (now - start) / window) + cur + amount > limit then
  return {'0', tostring(cur), tostring(prev)}
end
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.floor((start + 2 * window) * 1000))
return {'1', v, tostring(prev)}
"""

RESERVE_SLOT = """
local limit = tonumber(ARGV[1])
local lease = ARGV[2]
local ttl = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit and not redis.call('ZSCORE', KEYS[1], lease) then
  return {'0', tostring(count)}
end
redis.call('ZADD', KEYS[1], now + ttl, lease)
local pttl = redis.call('PTTL', KEYS[1])
if pttl < ttl * 1000 then redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000)) end
return {'1', tostring(redis.call('ZCARD', KEYS[1]))}
"""


def tagged(key: str) -> str:
    """``{key}``: the Cluster hash tag that keeps every key of one limit and caller in one slot."""
    return "{" + key + "}"


class RedisBackend:
    """``client``: a redis-py asyncio client from :func:`proxy.redis.connect` (decoded replies);
    ``per_limit``: the Cluster protocol (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        prefix: str = "sidecar:budget:",
        timeout: float = 0.1,
        down_for: float = 1.0,
        per_limit: bool = False,
    ) -> None:
        # The client has no socket timeout: redis-py would wrap every send in asyncio.wait_for (an
        # extra task per call); the timeout is enforced once per call in ``_call`` instead.
        self._timeout = timeout
        self._redis: Any = client
        self._prefix = prefix
        self._down_for = down_for
        self._down_until = 0.0
        self._per_limit = per_limit
        self._script = self._redis.register_script(RESERVE)
        self._started = not per_limit
        self._start_lock = asyncio.Lock()

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def _start(self) -> None:
        """Cluster: learn the slot map once, with its own deadline, before the first command.

        Without it, the first burst of requests all time out together while the client connects
        to every node (and a deadline cancelling the discovery half-way helps nobody)."""
        async with self._start_lock:
            if not self._started:
                async with asyncio.timeout(max(self._timeout, 2.0)):
                    await self._redis.initialize()
                self._started = True

    async def _call(self, coro: Any) -> Any:
        if time.monotonic() < self._down_until:
            coro.close()
            raise BackendUnavailable("redis marked down after a recent failure")
        if not self._started:
            try:
                await self._start()
            except (RedisError, OSError, TimeoutError) as exc:
                coro.close()
                self._down_until = time.monotonic() + self._down_for
                raise BackendUnavailable(f"redis cluster unreachable: {exc!r}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._down_for
            raise BackendUnavailable(f"redis unavailable: {exc!r}") from exc

    def _slots_key(self, key: str) -> str:
        return self._k(f"{tagged(key)}:slots")

    async def reserve(self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]) -> Reservation:
        if self._per_limit:
            reservation: Reservation = await self._call(self._reserve_per_limit(windows, slots))
            return reservation
        now = time.time()
        keys: list[str] = []
        args: list[Any] = [len(windows), len(slots), repr(now)]
        charges = []
        for c in windows:
            i = window_index(now, c.window)
            charge = Charge(counter_key(tagged(c.key), c.window, i), c.window, i)
            charges.append(charge)
            keys += [self._k(charge.counter), self._k(counter_key(tagged(c.key), c.window, i - 1))]
            args += [c.window, repr(float(c.limit)), repr(float(c.amount)), i * c.window]
        for s in slots:
            keys.append(self._slots_key(s.key))
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

    async def _reserve_per_limit(
        self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]
    ) -> Reservation:
        """Cluster: every limit checked and charged by its own script, all at once; on any refusal
        the ones taken are given back, so the request is charged nothing (see module docstring)."""
        now = time.time()
        calls = []
        charges = []
        for c in windows:
            i = window_index(now, c.window)
            charge = Charge(counter_key(tagged(c.key), c.window, i), c.window, i)
            charges.append(charge)
            keys = [self._k(charge.counter), self._k(counter_key(tagged(c.key), c.window, i - 1))]
            args = [c.window, repr(float(c.limit)), repr(float(c.amount)), i * c.window, repr(now)]
            # EVAL, not EVALSHA: a replica promoted by a failover may not have the script cached,
            # and the ~0.5 KB body costs less than a NOSCRIPT round trip on every new primary.
            calls.append(self._redis.eval(RESERVE_WINDOW, len(keys), *keys, *args))
        for s in slots:
            args = [s.limit, s.lease_id, repr(float(s.ttl)), repr(now)]
            calls.append(self._redis.eval(RESERVE_SLOT, 1, self._slots_key(s.key), *args))
        outs = await asyncio.gather(*calls)
        w_outs, s_outs = outs[: len(windows)], outs[len(windows) :]
        denied_w = next((n for n, o in enumerate(w_outs) if o[0] != "1"), None)
        denied_s = next((n for n, o in enumerate(s_outs) if o[0] != "1"), None)
        allowed = denied_w is None and denied_s is None
        states = []
        for c, o in zip(windows, w_outs, strict=True):
            cur = float(o[1])
            if not allowed and o[0] == "1":
                cur -= c.amount  # as found: this charge is given back below
            states.append(WindowState(float(o[2]), cur, now, c.window, c.limit))
        counts = [int(float(o[1])) for o in s_outs]
        if not allowed:
            taken_w = [
                (ch, -c.amount) for ch, c, o in zip(charges, windows, w_outs, strict=True) if o[0] == "1"
            ]
            taken_s = [s for s, o in zip(slots, s_outs, strict=True) if o[0] == "1"]
            await asyncio.gather(self._adjust(taken_w), self._release(taken_s))
        return Reservation(allowed, states, charges, counts, denied_w, denied_s)

    async def adjust(self, corrections: Sequence[tuple[Charge, float]]) -> None:
        await self._call(self._adjust(corrections))

    async def _adjust(self, corrections: Sequence[tuple[Charge, float]]) -> None:
        todo = [(c, d) for c, d in corrections if d]
        if not todo:
            return
        pipe = self._redis.pipeline(transaction=False)
        for charge, delta in todo:
            pipe.incrbyfloat(self._k(charge.counter), delta)
            pipe.pexpireat(self._k(charge.counter), int((charge.index + 2) * charge.window * 1000))
        await pipe.execute()

    async def release(self, slots: Sequence[SlotCheck]) -> None:
        await self._call(self._release(slots))

    async def _release(self, slots: Sequence[SlotCheck]) -> None:
        if not slots:
            return
        pipe = self._redis.pipeline(transaction=False)
        for s in slots:
            pipe.zrem(self._slots_key(s.key), s.lease_id)
        await pipe.execute()

    async def peek(self, windows: Sequence[WindowCheck]) -> list[WindowState]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for c in windows:
            i = window_index(now, c.window)
            pipe.get(self._k(counter_key(tagged(c.key), c.window, i)))
            pipe.get(self._k(counter_key(tagged(c.key), c.window, i - 1)))
        values = await self._call(pipe.execute())
        return [
            WindowState(float(values[2 * n + 1] or 0), float(values[2 * n] or 0), now, c.window, c.limit)
            for n, c in enumerate(windows)
        ]

    async def peek_slots(self, keys: Sequence[str]) -> list[int]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(self._slots_key(key), f"({now!r}", "+inf")
        return [int(v) for v in await self._call(pipe.execute())]

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._redis.ping()))
        except BackendUnavailable:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
