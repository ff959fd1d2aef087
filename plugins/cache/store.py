"""Where cached answers live: a bounded in-process LRU, or Redis shared by every replica.

An entry is the post-guard answer as a chat completion body plus the wall-clock time it was
stored. Freshness (``ttl``, the client's ``max-age``) is decided by the reader from that time,
so one entry serves as fresh, and later as stale for the fallback step's cached tier until
``ttl + keep_stale`` when the backend forgets it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from proxy.redis import Target, connect, target_digest


class CacheUnavailable(Exception):
    """The backend did not answer (Redis down or slow): the cache fails open, with a record."""


@dataclass(frozen=True, slots=True)
class Entry:
    body: dict[str, Any]
    stored_at: float  # time.time()

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.stored_at)

    def dumps(self) -> bytes:
        return orjson.dumps({"b": self.body, "t": self.stored_at})

    @classmethod
    def loads(cls, raw: bytes | str) -> Entry | None:
        """The entry, or None for bytes that are not one (a foreign key under our prefix, a
        half-written value): treated as a miss, never as an error for the client."""
        try:
            data = orjson.loads(raw)
            entry = cls(data["b"], float(data["t"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return entry if isinstance(entry.body, dict) else None


class Store(Protocol):
    async def get(self, key: str) -> Entry | None: ...

    async def put(self, key: str, entry: Entry, keep: float) -> None: ...  # keep: seconds to retain


class MemoryStore:
    """LRU bounded by total bytes; entries past their retention are dropped when met."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (raw, forget_at)
        self._bytes = 0
        self._max = max_bytes

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: str) -> None:
        raw, _ = self._items.pop(key)
        self._bytes -= len(raw)

    async def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.time():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return Entry.loads(item[0])

    async def put(self, key: str, entry: Entry, keep: float) -> None:
        raw = entry.dumps()
        if len(raw) > self._max:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (raw, entry.stored_at + keep)
        self._bytes += len(raw)
        while self._bytes > self._max:
            self._drop(next(iter(self._items)))


#: Short Redis deadlines: a cache must never make a request slower than the provider it saves.
REDIS_TIMEOUT = 0.5


class RedisStore:
    """Entries as plain keys with a TTL of ``ttl + keep_stale`` (Redis forgets them itself)."""

    def __init__(self, target: Target, prefix: str) -> None:
        # proxy.redis: one Redis, Sentinel or Cluster client, TLS included, as every Redis step.
        self._redis: Any = connect(target, connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        self._prefix = prefix

    async def get(self, key: str) -> Entry | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except Exception as exc:  # redis errors, timeouts, refused connections
            raise CacheUnavailable(type(exc).__name__) from exc
        return Entry.loads(raw) if raw else None

    async def put(self, key: str, entry: Entry, keep: float) -> None:
        try:
            await self._redis.set(self._prefix + key, entry.dumps(), px=max(1, int(keep * 1000)))
        except Exception as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


def resource_key(target: Target, prefix: str) -> str:
    """Shared-resource key of a Redis store: the target's digest (never the URL: it may hold a password)."""
    return f"cache:redis:{target_digest(target)}:{prefix}"
