"""``cache``: a policy-aware response cache, and the stale answers of ``fallback``'s cached tier.

Place it after the admission steps (budgets, rate limits) and before the content guards::

    request:  budget -> cache (lookup) -> guards -> upstream
    response: guards -> cache (store)  -> budget

so the lookup uses the client's request, a hit still passes (and is charged zero tokens by)
the budgets, and what is stored is the answer *after* the guards ran. A hit is a local reply:
no provider call and, by default, no response guard runs again (``replay_through_guards: true``
hands it to them as if the upstream had sent it). Keys (``keys.py``) bind an answer to the
caller, the route, the model and target, and a fingerprint of the answer-changing policy.

Only deterministic requests (``temperature: 0`` or a ``seed``) by default, only complete 200
answers, and never an answer an enforcing guard changed (unless ``store_guarded``). The request's
``Cache-Control`` is honoured (``no-store``, ``no-cache``, ``max-age``); the answer carries
``x-sidecar-cache: hit|miss|stale|bypass`` and, from the cache, ``Age``.

Shadow mode needs nothing special: the chain runs the lookup on a copy, so a would-be hit is a
``hit`` decision stamped ``shadow`` (with the tokens and dollars it would have saved, counted
by the metrics and the live page) and the request goes upstream; answers are still stored.
A backend that does not answer fails open: a ``backend_unavailable`` record, and a miss.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import orjson

from plugins.cache.config import CACHED_ROUTES, CacheConfig
from plugins.cache.keys import (
    ANSWER_NEUTRAL,
    cache_key,
    deterministic,
    parse_cache_control,
    policy_fingerprint,
)
from plugins.cache.replay import Assembler, complete, text_only
from plugins.cache.semantic import SemanticIndex, embed, scope_of
from plugins.cache.store import CacheUnavailable, Entry, MemoryStore, RedisStore, Store, resource_key
from proxy.chain import Deps, Reply, RequestContext, StateKey, UpstreamPolicy
from proxy.chain.cached import CACHE_SERVED, STALE_SOURCE, Served, StaleSource
from proxy.chain.upstream import Upstream
from proxy.errors import ConfigError
from proxy.models.chat import ChatRequest, ChatResponse, Route
from proxy.models.completion_stream import completion_to_sse
from proxy.models.stream import StreamEvent
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.redis import parse
from proxy.tokens import cost_usd, price_for_model

HEADER = "x-sidecar-cache"
#: Actions of an enforcing step that mean "this answer is not what the provider said".
_GUARD_ACTIONS = frozenset({"redact", "block", "flag"})

KEY: StateKey[str] = StateKey("cache.key")
HIT: StateKey[BufferedResponse] = StateKey("cache.hit")  # replay_through_guards: the wrapper serves it
VECTOR: StateKey[tuple[str, list[float]]] = StateKey("cache.vector")  # semantic: (scope, prompt vector)


def _count(value: Any) -> int:
    """A token count from a provider's usage object; anything odd counts as 0 (it only feeds
    the savings figures, never a decision)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _as_upstream(body: dict[str, Any], stream: bool, include_usage: bool) -> BufferedResponse:
    """A stored answer as the upstream would have sent it (JSON, or SSE for a streamed request)."""
    if stream:
        return BufferedResponse(
            200, [("content-type", "text/event-stream")], completion_to_sse(body, include_usage)
        )
    return BufferedResponse(200, [("content-type", "application/json")], orjson.dumps(body))


def _check_placement(config: CacheConfig, deps: Deps) -> None:
    """Refuse an answer-changing step placed before the cache (unless hits replay through guards).

    Response hooks run in reverse order: such a step would change the answer *after* the cache
    stored it, and a hit (a local reply) would skip it: a redaction before the cache would be
    replayed unredacted, a PII restore would be replayed as placeholders.
    """
    if config.replay_through_guards:
        return
    for cfg in deps.steps:
        if cfg.step_id == config.step_id:
            return
        if cfg.mode == "enforce" and cfg.type not in ANSWER_NEUTRAL:
            raise ConfigError(
                f"cache step {config.step_id!r}: step {cfg.step_id!r} ({cfg.type}) can change answers "
                "and is placed before it, so hits would skip it; put the cache after the budgets and "
                "before the content guards, or set replay_through_guards: true"
            )


class CachePlugin(UpstreamPolicy[CacheConfig]):
    Config = CacheConfig

    def __init__(self, config: CacheConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        _check_placement(config, deps)
        self.fingerprint = policy_fingerprint(deps.steps, deps.routing)
        if config.backend == "redis" and config.redis_url is not None:
            target, prefix = parse(config.redis_url.get_secret_value(), config.redis), config.redis_prefix
            self.store: Store = deps.resource(
                resource_key(target, prefix), lambda: RedisStore(target, prefix)
            )
        else:
            self.store = deps.resource(
                f"cache:memory:{config.step_id}:{config.max_bytes}", lambda: MemoryStore(config.max_bytes)
            )
        sem = config.semantic
        if sem is not None:
            self.embeddings = deps.json_http(f"cache-embeddings:{sem.url}", sem.timeout)
            self.index: SemanticIndex = deps.resource(
                f"cache:semantic:{config.step_id}:{self.fingerprint}:{sem.max_entries}",
                lambda: SemanticIndex(sem.max_entries),
            )

    # -- request: lookup -------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        cfg = self.config
        if ctx.route.value not in CACHED_ROUTES:
            return None
        control = parse_cache_control(ctx.headers.get("cache-control"))
        if control.no_store or (cfg.deterministic_only and not deterministic(req.body)):
            ctx.response_headers[HEADER] = "bypass"
            return None
        key = cache_key(req.body, ctx, self.fingerprint)
        ctx.set(KEY, key)
        source: StaleSource = partial(self._stale, key, ctx.route, req.stream, _include_usage(req.body))
        ctx.set(STALE_SOURCE, source)
        if control.no_cache:  # do not read; the fresh answer is stored
            ctx.response_headers[HEADER] = "bypass"
            return None
        entry = await self._get(key, ctx)
        if entry is not None:
            age = entry.age()
            limit = cfg.ttl_for(ctx.route.value)
            fresh = age <= limit and (control.max_age is None or age <= control.max_age)
            # The Anthropic stream replay of a local reply carries one text choice only.
            if fresh and self._replayable(entry, req, ctx):
                return self._hit(entry, age, req, ctx)
        if cfg.semantic is not None:
            near = await self._semantic(req, ctx, control.max_age)
            if near is not None:
                return self._hit(
                    near[0], near[0].age(), req, ctx, "semantic_hit", {"similarity": round(near[1], 4)}
                )
        ctx.response_headers[HEADER] = "miss"
        return None

    @staticmethod
    def _replayable(entry: Entry, req: ChatRequest, ctx: RequestContext) -> bool:
        # The Anthropic stream replay of a local reply carries one text choice only.
        return not (ctx.route is Route.MESSAGES and req.stream and not text_only(entry.body))

    async def _semantic(
        self, req: ChatRequest, ctx: RequestContext, max_age: float | None
    ) -> tuple[Entry, float] | None:
        """The fresh answer to the closest prompt in this request's scope, with its similarity."""
        sem = self.config.semantic
        assert sem is not None
        text = "\n".join(slot.text for slot in req.text_slots())
        try:
            vector = await embed(self.embeddings, sem, text)
        except Exception as exc:  # transport errors, timeouts, undecodable answers: a miss
            vector = None
            ctx.record("embeddings_unavailable", "error", detail={"error": type(exc).__name__})
        if vector is None:
            return None
        scope = scope_of(req.body, ctx, self.fingerprint)
        ctx.set(VECTOR, (scope, vector))
        best = self.index.nearest(scope, vector)
        if best is None or best[1] < sem.threshold:
            return None
        entry = await self._get(best[0], ctx)
        if entry is None:
            return None
        age = entry.age()
        fresh = age <= self.config.ttl_for(ctx.route.value) and (max_age is None or age <= max_age)
        return (entry, best[1]) if fresh and self._replayable(entry, req, ctx) else None

    def _hit(
        self,
        entry: Entry,
        age: float,
        req: ChatRequest,
        ctx: RequestContext,
        rule: str = "hit",
        extra: dict[str, Any] | None = None,
    ) -> Reply | None:
        served = self._served(entry, age, stale=False)
        ctx.record(rule, "reply", detail={**self._saving(served, ctx.model), **(extra or {})})
        ctx.set(CACHE_SERVED, served)
        headers = {HEADER: "hit", "age": str(int(age))}
        ctx.response_headers.update(headers)
        if self.config.replay_through_guards:
            ctx.set(HIT, _as_upstream(entry.body, req.stream, _include_usage(req.body)))
            return None
        sse = (
            completion_to_sse(entry.body, _include_usage(req.body))
            if req.stream and ctx.route is Route.CHAT
            else None
        )
        return Reply(body=entry.body, headers=headers, stream=sse)

    @staticmethod
    def _served(entry: Entry, age: float, *, stale: bool) -> Served:
        raw = entry.body.get("usage")
        usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        return Served(age, prompt, completion, stale)

    @staticmethod
    def _saving(served: Served, model: str) -> dict[str, Any]:
        price = price_for_model(model)
        usd = cost_usd(price, served.prompt_tokens, served.completion_tokens) if price is not None else 0.0
        return {
            "age_s": round(served.age, 3),
            "saved_prompt_tokens": served.prompt_tokens,
            "saved_completion_tokens": served.completion_tokens,
            "saved_usd": round(usd, 8),
        }

    async def _get(self, key: str, ctx: RequestContext) -> Entry | None:
        try:
            return await self.store.get(key)
        except CacheUnavailable as exc:
            ctx.record("backend_unavailable", "error", detail={"op": "get", "error": str(exc)})
            return None

    async def _stale(
        self, key: str, route: Route, stream: bool, include_usage: bool, max_stale: float, ctx: RequestContext
    ) -> BufferedResponse | None:
        """For ``fallback``'s cached tier: the answer if no staler than ``max_stale`` past its ttl."""
        entry = await self._get(key, ctx)
        if entry is None:
            return None
        age = entry.age()
        if age - self.config.ttl_for(route.value) > max_stale:
            return None
        served = self._served(entry, age, stale=True)
        ctx.set(CACHE_SERVED, served)
        ctx.record("stale", "reply", detail=self._saving(served, ctx.model))
        ctx.response_headers.update({HEADER: "stale", "age": str(int(age))})
        return _as_upstream(entry.body, stream, include_usage)

    # -- response: store -------------------------------------------------------------------
    def _storable(self, ctx: RequestContext, dirty: bool) -> bool:
        if ctx.get(CACHE_SERVED) is not None:  # a hit or a stale answer: never stored again
            return False
        if self.config.store_guarded:
            return True
        me = ctx.active.plugin_id
        return not dirty and not any(
            d.mode == "enforce" and d.action in _GUARD_ACTIONS and d.plugin != me for d in ctx.decisions
        )

    async def _put(self, key: str, body: dict[str, Any], ctx: RequestContext) -> None:
        entry = Entry(body, time.time())
        if len(orjson.dumps(body)) > self.config.max_entry_bytes:
            return
        keep = self.config.ttl_for(ctx.route.value) + self.config.keep_stale
        try:
            await self.store.put(key, entry, keep)
        except CacheUnavailable as exc:
            ctx.record("backend_unavailable", "error", detail={"op": "put", "error": str(exc)})
            return
        vector = ctx.get(VECTOR)
        if vector is not None:
            self.index.add(vector[0], vector[1], key)

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        key = ctx.get(KEY)
        if key is None or resp.status != 200 or not complete(resp.body):
            return
        if self._storable(ctx, resp.dirty):
            await self._put(key, resp.body, ctx)

    def open_stream(self, ctx: RequestContext) -> _Collector | None:
        key = ctx.get(KEY)
        return _Collector(self, key, ctx) if key is not None else None

    async def admin_report(self, query: Mapping[str, str]) -> dict[str, Any] | None:
        """``GET /admin/plugins/{id}``: backend, this revision's policy fingerprint, memory use."""
        report: dict[str, Any] = {"backend": self.config.backend, "fingerprint": self.fingerprint}
        if isinstance(self.store, MemoryStore):
            report |= {"entries": len(self.store), "bytes": self.store.size_bytes}
        return report

    # -- upstream: replay through the guards -------------------------------------------------
    def wrap(self, inner: Upstream) -> Upstream:
        return _HitUpstream(inner) if self.config.replay_through_guards else inner


class _Collector:
    """Sees the stream after the guards; stores the whole answer once it ended normally."""

    def __init__(self, plugin: CachePlugin, key: str, ctx: RequestContext) -> None:
        self._plugin = plugin
        self._key = key
        self._ctx = ctx
        self._asm = Assembler()

    async def on_event(self, event: StreamEvent) -> list[StreamEvent]:
        self._asm.see(event)
        return [event]

    async def on_end(self) -> list[StreamEvent]:
        ctx = self._ctx
        if self._plugin._storable(ctx, dirty=False):
            body = self._asm.body(ctx.response_model or ctx.model)
            if body is not None:
                await self._plugin._put(self._key, body, ctx)
        return []


class _HitUpstream:
    """``replay_through_guards``: answers a hit found by the lookup instead of the provider."""

    def __init__(self, inner: Upstream) -> None:
        self._inner = inner

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        hit = ctx.get(HIT)
        if hit is None:
            return await self._inner.send(request, ctx)
        return hit
