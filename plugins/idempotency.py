"""``idempotency``: a request repeated with the same ``Idempotency-Key`` reaches the provider once.

The first request with a key claims it; its answer (a JSON body, or a whole SSE stream) is
stored for ``ttl`` seconds and replayed to any repeat, marked ``idempotent-replayed: true``.
A repeat that arrives while the first is still running waits for it (up to ``wait`` seconds,
then 409). Keys are scoped per caller (a hash of its API key and tenant header) and route, so
two clients never see each other's answers; reusing a key with a different body is a 422.
A failed first attempt (5xx, connection error, a stream cut short) releases the key, so the
client's retry can really retry. Put this step first among the upstream wrappers.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
from pydantic import Field, model_validator

from proxy.chain import Deps, PluginConfig, RequestContext, Secret, UpstreamPolicy
from proxy.chain.upstream import Upstream
from proxy.errors import InvalidRequest
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.redis import RedisOptions, connect, parse, target_digest

_REPLAYED = ("idempotent-replayed", "true")


class IdempotencyConfig(PluginConfig):
    """Replay stored answers for repeated Idempotency-Key requests (first upstream wrapper)."""

    type: Literal["idempotency"] = "idempotency"
    header: str = "idempotency-key"
    ttl: float = Field(default=86400, gt=0, description="seconds an answer is kept")
    wait: float = Field(default=60, ge=0, description="seconds a concurrent repeat waits for the first")
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Secret | None = Field(
        default=None,
        description="redis://, rediss://, redis+sentinel://, redis+cluster:// (docs/deployment.md)",
    )
    redis: RedisOptions | None = Field(default=None, description="cluster, sentinel and TLS settings")
    redis_prefix: str = "sidecar:idem:"
    redis_timeout_ms: int = Field(
        default=500, ge=1, le=5000, description="connect and read timeout per Redis call (milliseconds)"
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="larger answers are not stored")

    @model_validator(mode="after")
    def _check(self) -> IdempotencyConfig:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend: redis needs redis_url")
        if self.redis_url is not None:
            parse(self.redis_url.get_secret_value(), self.redis)  # a URL that cannot work fails here
        return self


@dataclass
class Stored:
    fingerprint: str
    done: bool
    status: int = 0
    headers: list[tuple[str, str]] | None = None
    body: bytes = b""

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "f": self.fingerprint,
                "d": self.done,
                "s": self.status,
                "h": self.headers,
                "b": self.body.decode("latin-1"),
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Stored:
        d = orjson.loads(raw)
        return cls(d["f"], d["d"], d["s"], [tuple(h) for h in d["h"] or []], d["b"].encode("latin-1"))


class Store(Protocol):
    async def claim(self, key: str, entry: Stored, ttl: float) -> Stored | None: ...  # None: claimed by us

    async def get(self, key: str) -> Stored | None: ...

    async def put(self, key: str, entry: Stored, ttl: float) -> None: ...

    async def release(self, key: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._items: dict[str, tuple[Stored, float]] = {}

    def _live(self, key: str) -> Stored | None:
        item = self._items.get(key)
        if item is None or item[1] <= time.monotonic():
            self._items.pop(key, None)
            return None
        return item[0]

    async def claim(self, key: str, entry: Stored, ttl: float) -> Stored | None:
        if len(self._items) > 10_000:
            for k in [k for k, (_, exp) in self._items.items() if exp <= time.monotonic()]:
                del self._items[k]
        existing = self._live(key)
        if existing is not None:
            return existing
        self._items[key] = (entry, time.monotonic() + ttl)
        return None

    async def get(self, key: str) -> Stored | None:
        return self._live(key)

    async def put(self, key: str, entry: Stored, ttl: float) -> None:
        self._items[key] = (entry, time.monotonic() + ttl)

    async def release(self, key: str) -> None:
        self._items.pop(key, None)


class RedisStore:
    """One key per idempotency key (single-key commands: fine on one server, Sentinel or Cluster)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis: Any = client
        self._prefix = prefix

    async def claim(self, key: str, entry: Stored, ttl: float) -> Stored | None:
        if await self._redis.set(self._prefix + key, entry.dumps(), nx=True, px=int(ttl * 1000)):
            return None
        raw = await self._redis.get(self._prefix + key)
        return Stored.loads(raw) if raw else await self.claim(key, entry, ttl)

    async def get(self, key: str) -> Stored | None:
        raw = await self._redis.get(self._prefix + key)
        return Stored.loads(raw) if raw else None

    async def put(self, key: str, entry: Stored, ttl: float) -> None:
        await self._redis.set(self._prefix + key, entry.dumps(), px=int(ttl * 1000))

    async def release(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def aclose(self) -> None:
        await self._redis.aclose()


class IdempotencyPlugin(UpstreamPolicy[IdempotencyConfig]):
    Config = IdempotencyConfig

    def __init__(self, config: IdempotencyConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        if config.backend == "redis" and config.redis_url is not None:
            target = parse(config.redis_url.get_secret_value(), config.redis)
            timeout = config.redis_timeout_ms / 1000
            self.store: Store = deps.resource(
                f"idempotency:redis:{target_digest(target)}:{config.redis_prefix}:{timeout}",
                lambda: RedisStore(
                    connect(target, connect_timeout=timeout, socket_timeout=timeout), config.redis_prefix
                ),
            )
        else:
            self.store = deps.resource(f"idempotency:memory:{config.step_id}", MemoryStore)

    def wrap(self, inner: Upstream) -> Upstream:
        return _Idempotent(inner, self)


def _scope(request: UpstreamRequest, ctx: RequestContext, key: str) -> str:
    headers = ctx.headers
    caller = "|".join((headers.get("authorization", ""), headers.get("x-api-key", ""), ctx.tenant or ""))
    return hashlib.sha256(f"{caller}\0{request.route.value}\0{key}".encode()).hexdigest()


class _Idempotent:
    def __init__(self, inner: Upstream, plugin: IdempotencyPlugin) -> None:
        self._inner = inner
        self._cfg = plugin.config
        self._store = plugin.store

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        key = ctx.headers.get(self._cfg.header)
        if not key or not isinstance(request.body, (bytes, type(None))):
            return await self._inner.send(request, ctx)
        scoped = _scope(request, ctx, key)
        fingerprint = hashlib.sha256(request.body or b"").hexdigest()
        for _ in range(3):
            existing = await self._store.claim(scoped, Stored(fingerprint, False), self._cfg.wait + 60)
            if existing is None:
                break  # ours: this request is the one that runs
            replay = await self._replay(scoped, existing, fingerprint, ctx)
            if replay is not None:
                return replay
        else:
            raise InvalidRequest(
                "A request with this Idempotency-Key keeps failing.",
                status=409,
                code="idempotency_key_in_progress",
            )
        try:
            resp = await self._inner.send(request, ctx)
        except BaseException:
            await self._store.release(scoped)
            raise
        if resp.status >= 500 or resp.status == 429:
            await self._store.release(scoped)
            return resp
        if isinstance(resp, BufferedResponse):
            await self._save(scoped, fingerprint, resp.status, resp.headers, resp.body)
            return resp
        return _Recording(resp, self, scoped, fingerprint)

    async def _save(
        self, scoped: str, fingerprint: str, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        if len(body) > self._cfg.max_body_bytes:
            await self._store.release(scoped)
            return
        await self._store.put(scoped, Stored(fingerprint, True, status, headers, body), self._cfg.ttl)

    async def _replay(
        self, scoped: str, entry: Stored, fingerprint: str, ctx: RequestContext
    ) -> UpstreamResponse | None:
        """The stored answer, after waiting for it; None when the first attempt gave the key up."""
        if entry.fingerprint != fingerprint:
            raise InvalidRequest(
                "This Idempotency-Key was already used with a different request body.",
                status=422,
                code="idempotency_key_reused",
            )
        deadline = time.monotonic() + self._cfg.wait
        while not entry.done:
            if time.monotonic() >= deadline:
                raise InvalidRequest(
                    "A request with this Idempotency-Key is still in progress.",
                    status=409,
                    code="idempotency_key_in_progress",
                )
            await asyncio.sleep(0.05)
            current = await self._store.get(scoped)
            if current is None:  # the first attempt failed and released the key: this one may run
                return None
            entry = current
        ctx.record("idempotent_replay", "reply")
        return BufferedResponse(entry.status, [*(entry.headers or []), _REPLAYED], entry.body)


class _Recording:
    """Passes a stream through and stores it whole once it completed normally."""

    def __init__(self, resp: UpstreamResponse, owner: _Idempotent, scoped: str, fingerprint: str) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self._resp = resp
        self._owner = owner
        self._scoped = scoped
        self._fingerprint = fingerprint
        self._settled = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        chunks: list[bytes] = []
        try:
            async for chunk in self._resp.aiter_bytes():
                chunks.append(chunk)
                yield chunk
        except BaseException:
            self._settled = True
            await self._owner._store.release(self._scoped)
            raise
        self._settled = True
        await self._owner._save(self._scoped, self._fingerprint, self.status, self.headers, b"".join(chunks))

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        if not self._settled:  # closed before the end (client went away): let a retry run
            self._settled = True
            await self._owner._store.release(self._scoped)
        await self._resp.aclose()
