"""The ``budget`` plugin: the hooks, wired to the identity, booking, refusal and report modules.

See the package docstring for the lifecycle of one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from plugins.budget.booking import BOOKING, Booking, amount, corrections, lowered_completion
from plugins.budget.config import TOKEN_MEASURES, BudgetConfig, LimitSpec
from plugins.budget.identity import identify, key_scope
from plugins.budget.refusal import backend_down, deny
from plugins.budget.report import admin_usage, own_usage
from plugins.budget.stream import UsageFilter
from proxy.budget.backends import Backend, BackendUnavailable, MemoryBackend, SlotCheck, WindowCheck
from proxy.budget.explain import Demand, headers_for
from proxy.budget.windows import WINDOWS
from proxy.chain import (
    PASSTHROUGH_COST,
    Deps,
    Identity,
    Outcome,
    Plugin,
    Reply,
    RequestContext,
    StreamFilter,
)
from proxy.chain.cached import CACHE_SERVED
from proxy.models import ChatRequest, ChatResponse, Route
from proxy.redis import connect, parse, target_digest
from proxy.tokens import (
    count_chat_request,
    count_completion_reserve,
    count_text,
    preload_encodings,
    price_for_model,
)
from proxy.tokens.counting import body_chars, count_embedding_inputs
from proxy.tokens.pricing import Price

#: Above this many bytes of request (or characters of answer) tokens are counted in the CPU pool:
#: ~4 ms of BPE on the loop at most, about what a pool round trip would add to a small request.
OFFLOAD_CHARS = 32_768
_NO_OVERRIDES: Mapping[str, float] = MappingProxyType({})
_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
#: Distinct model names whose price a step remembers (names come from clients: bounded).
_PRICE_MEMO_MAX = 1024


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class BudgetPlugin(Plugin[BudgetConfig]):
    Config = BudgetConfig

    def __init__(self, config: BudgetConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        if config.backend == "redis" and config.redis_url is not None:
            target = parse(config.redis_url.get_secret_value(), config.redis)
            timeout = config.redis_timeout_ms / 1000

            def make() -> Any:
                from proxy.budget.redis_backend import RedisBackend

                # No socket timeout: the backend enforces one deadline per call instead.
                client = connect(target, connect_timeout=timeout, socket_timeout=None, decode_responses=True)
                return RedisBackend(client, config.redis_prefix, timeout, per_limit=target.cluster)

            key = f"budget:redis:{target_digest(target)}:{config.redis_prefix}:{timeout}"
        else:
            make = MemoryBackend
            # Memory state is per key scope (the step id, or a namespace steps share on purpose),
            # so a reload that keeps the step keeps the counts.
            key = f"budget:memory:{key_scope(config)}"
        self.backend: Backend = deps.resource(key, make)
        # Per limit name: the counter key's prefix and parts (``limit_key`` without redoing the
        # scope and the format on every request). Limit names are unique within a step.
        scope = key_scope(config)
        self._key_plan = {lim.name: (f"{scope}/{lim.name}:", lim.key) for lim in config.limits}
        self._windowed = [lim for lim in config.limits if lim.measure != "concurrent"]
        # Per windowed limit, what ``_checks`` reads on every request, worked out once (issue 17).
        self._window_plan = [
            (lim, lim.name, WINDOWS[lim.window or "minute"], lim.amount_limit, lim.measure == "cost_usd")
            for lim in self._windowed
        ]
        self._prices_cost = any(lim.measure == "cost_usd" for lim in self._windowed)
        self._concurrent = [lim for lim in config.limits if lim.measure == "concurrent"]
        self._counts_tokens = any(lim.measure in TOKEN_MEASURES for lim in config.limits)
        if self._counts_tokens:
            # Built once per process, here (policy load) rather than on the first request: building
            # the BPE tables holds the GIL for ~0.25 s, which stalled the event loop mid-traffic.
            preload_encodings()
        self._uses_api_key = config.tenant_from == "api_key" or any(
            "api_key" in lim.key for lim in config.limits
        )
        self._prices = {
            name: Price(input=p.input, output=p.output, cached_input=p.cached_input)
            for name, p in config.prices.items()
        }
        # model -> price: the table is fixed for the step's life and the longest-key search
        # (a regex per table key) cost more than counting a cached prompt (issue 17).
        self._price_memo: dict[str, Price | None] = {}

    # -- identity ----------------------------------------------------------------------
    def identity(
        self,
        headers: Mapping[str, str],
        body: Mapping[str, Any],
        ctx_tenant: str | None,
        verified: Identity | None = None,
    ) -> dict[str, str]:
        return identify(self.config, self._uses_api_key, headers, body, ctx_tenant, verified)

    def _key(self, limit: LimitSpec, parts: Mapping[str, str]) -> str:
        """``limit_key(self.config, limit, parts)``, from a prefix worked out once per limit."""
        prefix, key_parts = self._key_plan[limit.name]
        if len(key_parts) == 1:  # the usual case (``key: [tenant]``): no join
            return prefix + parts.get(key_parts[0], "-")
        return prefix + "|".join(parts.get(p, "-") for p in key_parts)

    # -- amounts -------------------------------------------------------------------------
    def _price(self, model: str) -> Price | None:
        try:
            return self._price_memo[model]
        except KeyError:
            pass
        price = self._lookup_price(model)
        if len(self._price_memo) >= _PRICE_MEMO_MAX:
            self._price_memo.clear()
        self._price_memo[model] = price
        return price

    def _lookup_price(self, model: str) -> Price | None:
        price = price_for_model(model, self._prices)
        if price is None and self.config.default_price is not None:
            p = self.config.default_price
            price = Price(input=p.input, output=p.output, cached_input=p.cached_input)
        return price

    def _checks(
        self,
        parts: Mapping[str, str],
        prompt: int,
        completion: int,
        price: Price | None,
        overrides: Mapping[str, float],
        fixed_cost: float | None = None,
    ) -> list[tuple[LimitSpec, WindowCheck]]:
        """``overrides``: a verified API key's own amounts, by limit name (``clients:`` keys file)."""
        return [
            (
                lim,
                WindowCheck(
                    self._key(lim, parts),
                    window,
                    overrides.get(name, limit) if overrides else limit,
                    fixed_cost
                    if fixed_cost is not None and is_cost
                    else amount(lim, prompt, completion, price),
                ),
            )
            for lim, name, window, limit, is_cost in self._window_plan
        ]

    # -- hooks -----------------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        body = req.body
        model, route = req.model, req.route
        parts = self.identity(ctx.headers, body, ctx.tenant, ctx.identity)
        parts["model"] = model
        parts["route"] = route.value
        overrides = ctx.identity.budget if ctx.identity is not None else _NO_OVERRIDES
        # A pass-through request (files, images, audio...) has no tokens to count: it counts once
        # for requests, zero tokens, and the price its ``passthrough:`` rule set for cost_usd.
        fixed = (ctx.get(PASSTHROUGH_COST) or 0.0) if route is Route.PASSTHROUGH else None
        counts_tokens = self._counts_tokens and fixed is None
        prompt = 0
        if counts_tokens:  # small prompts are counted here, without a coroutine (issue 17)
            prompt = self._count_small(req)
            if prompt < 0:
                prompt = await self._count_prompt(req)
        completion = 0
        defaulted = False
        if counts_tokens and route is not Route.EMBEDDINGS:
            completion = count_completion_reserve(body, self.config.default_max_tokens)
            defaulted = not any(_positive_int(body.get(k)) for k in _OUTPUT_CAPS)
        price = self._price(model) if fixed is None else None
        if fixed is None and price is None and self._prices_cost:
            ctx.record("unpriced_model", "flag", detail={"model": model})
        slots = [
            SlotCheck(
                self._key(lim, parts),
                int(overrides.get(lim.name, lim.concurrent or 0)),
                ctx.request_id,
                self.config.lease_ttl,
            )
            for lim in self._concurrent
        ]
        checks = self._checks(parts, prompt, completion, price, overrides, fixed)
        try:
            result = await self.backend.reserve([c for _, c in checks], slots)
            if not result.allowed and result.denied_window is not None and fixed is None:
                lowered = lowered_completion(
                    checks, result, prompt, completion, price, body, self.config.min_max_tokens
                )
                if lowered is not None:
                    completion, defaulted = lowered, False
                    self._set_max_tokens(req, lowered)
                    checks = self._checks(parts, prompt, completion, price, overrides)
                    result = await self.backend.reserve([c for _, c in checks], slots)
        except BackendUnavailable as exc:
            backend_down(ctx, exc, self.config.on_backend_error)
            return None
        if not result.allowed:
            demand = Demand(0.0, prompt, completion, defaulted, self.config.default_max_tokens)
            deny(checks, self._concurrent, slots, result, demand, ctx)
        wants_usage = self._ensure_stream_usage(req)
        booking = Booking(
            checks, result.charges, slots, prompt, completion, price, wants_usage, fixed, defaulted
        )
        ctx.set(BOOKING, booking)
        if self.config.headers:
            ctx.response_headers.update(
                headers_for([(lim.measure, st) for (lim, _), st in zip(checks, result.states, strict=True)])
            )
        return None

    @staticmethod
    def _count_small(req: ChatRequest) -> int:
        """Prompt tokens of a request small enough to count on the loop; -1 for a big one."""
        size = len(req.raw) if req.raw is not None else body_chars(req.body)
        if size > OFFLOAD_CHARS:
            return -1
        if req.route is Route.EMBEDDINGS:
            return count_embedding_inputs(req.body.get("input"), req.model)
        return count_chat_request(req.body, req.model)

    async def _count_prompt(self, req: ChatRequest) -> int:
        """Prompt tokens; a big request is counted in the CPU pool (tiktoken releases the GIL), so
        a multi-megabyte prompt never stalls the event loop (``/healthz`` answers meanwhile)."""
        body = req.body
        size = len(req.raw) if req.raw is not None else body_chars(body)
        if req.route is Route.EMBEDDINGS:
            inputs = body.get("input")
            if size <= OFFLOAD_CHARS:
                return count_embedding_inputs(inputs, req.model)
            return int(await self.deps.run_cpu(count_embedding_inputs, inputs, req.model))
        if size <= OFFLOAD_CHARS:
            return count_chat_request(body, req.model)
        return int(await self.deps.run_cpu(count_chat_request, body, req.model))

    @staticmethod
    def _set_max_tokens(req: ChatRequest, total: int) -> None:
        n = req.body.get("n") if isinstance(req.body.get("n"), int) else 1
        per_choice = max(1, total // max(1, n or 1))
        field_name = (
            "max_output_tokens"
            if req.route is Route.RESPONSES
            else ("max_completion_tokens" if "max_completion_tokens" in req.body else "max_tokens")
        )
        req.body[field_name] = per_choice
        req.dirty = True

    def _ensure_stream_usage(self, req: ChatRequest) -> bool:
        """Ask for usage on chat streams; returns whether the client asked for it itself."""
        if not (self._counts_tokens and req.stream and req.route is Route.CHAT):
            return True
        options = req.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return True
        req.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        req.dirty = True
        return False

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        booking = ctx.get(BOOKING)
        if booking is not None and self._counts_tokens and not resp.usage:
            booking.response_text = "".join(s.text for s in resp.text_slots())

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        booking = ctx.get(BOOKING)
        if booking is None or not self._counts_tokens:
            return None
        return UsageFilter(booking)

    async def not_ready(self) -> str | None:
        """Fail-closed on Redis: without Redis every request would be refused, so not ready."""
        if self.config.backend != "redis" or self.config.on_backend_error != "fail_closed":
            return None
        ping = getattr(self.backend, "ping", None)
        if ping is not None and not await ping():
            return f"{self.config.step_id}: Redis unreachable and on_backend_error is fail_closed"
        return None

    async def admin_report(self, query: Mapping[str, str]) -> dict[str, Any] | None:
        """Usage of any identity: ``?tenant=&api_key=<hash>&user=&model=&route=``."""
        return await admin_usage(self.backend, self.config, query)

    async def self_report(
        self, headers: Mapping[str, str], identity: Identity | None = None
    ) -> dict[str, Any] | None:
        """The caller's own usage, identified exactly as its requests are; other tenants never show."""
        ident = self.identity(headers, {}, None, identity)
        return await own_usage(self.backend, self.config, ident, headers, identity)

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        booking = ctx.get(BOOKING)
        if booking is None:
            return
        served = not (outcome.status >= 400 and not (outcome.streamed and outcome.output_text_chars))
        usage: tuple[int, int] | None = None
        if booking.fixed_cost is not None:
            # Pass-through: what was reserved is what it costs, or nothing when it failed.
            if served:
                usage = (0, 0)
                ctx.cost_usd = booking.fixed_cost
        elif served and ctx.get(CACHE_SERVED) is not None:
            # Answered from the cache: no provider tokens were used, nothing is charged.
            usage = (0, 0)
            ctx.usage = {"prompt_tokens": 0, "completion_tokens": 0}
            ctx.cost_usd = 0.0
            ctx.record("cache_hit", "allow", detail={"charged_tokens": 0})
        elif served:
            # Recorded on the request (access log, later metrics): what it used and cost.
            usage = prompt, completion = await self._actual_usage(booking, outcome, ctx.model)
            ctx.usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            if booking.price is not None:
                ctx.cost_usd = round(
                    (prompt * booking.price.input + completion * booking.price.output) / 1_000_000, 8
                )
        try:
            if booking.slots:
                await self.backend.release(booking.slots)
            fixes = corrections(booking, usage)
            if fixes:
                await self.backend.adjust(fixes)
        except BackendUnavailable as exc:
            ctx.record(
                "backend_unavailable", "error", detail={"hook": "on_complete", "error": type(exc).__name__}
            )

    async def _actual_usage(self, booking: Booking, outcome: Outcome, model: str) -> tuple[int, int]:
        """Provider-reported usage; else our prompt estimate and the tokens of the text delivered."""
        usage = outcome.usage
        prompt = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0) or booking.prompt_tokens
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if completion is None:
            text = (
                booking.response_text if booking.response_text is not None else "".join(booking.streamed_text)
            )
            if len(text) <= OFFLOAD_CHARS:
                completion = count_text(text, model) if text else 0
            else:
                completion = await self.deps.run_cpu(count_text, text, model)
        return prompt, int(completion)
