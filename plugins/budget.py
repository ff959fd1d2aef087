"""``budget``: request, token, dollar and concurrency limits, per tenant / key / user / model / route.

Lifecycle of one request:

1. ``on_request`` estimates prompt tokens (tiktoken, offline), reserves the completion budget
   (``max_tokens`` x ``n``, or ``default_max_tokens``), prices the worst case, and makes *one*
   atomic reservation across all its limits (all pass and are charged, or none is). A denial
   is a 429 with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; a cost or token limit
   may instead lower ``max_tokens`` to what still fits (``on_exceed: lower_max_tokens``).
2. The stream filter (only when token or cost limits exist) asks the provider for usage on
   streams and hides that chunk again if the client did not ask for it.
3. ``on_complete`` (always runs: success, error, client disconnect) releases concurrency slots
   and corrects every charge with the real usage: provider-reported usage when there is one,
   else the tokens of the text actually streamed; everything is refunded when the upstream
   failed before answering.

State lives in ``proxy.budget`` backends: in memory (default) or Redis (shared by replicas).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.budget.backends import (
    Backend,
    BackendUnavailable,
    Charge,
    MemoryBackend,
    Reservation,
    SlotCheck,
    WindowCheck,
)
from proxy.budget.explain import Demand, capped_wait, headers_for, refusal_message
from proxy.budget.report import usage_report
from proxy.budget.windows import WINDOWS, seconds_until_fits
from proxy.chain import (
    PASSTHROUGH_COST,
    Deps,
    Identity,
    Outcome,
    Plugin,
    PluginConfig,
    Reply,
    RequestContext,
    Secret,
    StateKey,
    StreamFilter,
    check_reference,
)
from proxy.chain.cached import CACHE_SERVED
from proxy.errors import RateLimited, Rejected
from proxy.models import ChatRequest, ChatResponse, Route, StreamEvent, TextDelta, Usage
from proxy.tokens import (
    count_chat_request,
    count_completion_reserve,
    count_text,
    preload_encodings,
    price_for_model,
)
from proxy.tokens.counting import body_chars, count_embedding_inputs
from proxy.tokens.pricing import Price

KeyPart = Literal["tenant", "api_key", "user", "model", "route"]
Measure = Literal["requests", "tokens", "input_tokens", "output_tokens", "cost_usd", "concurrent"]
TOKEN_MEASURES = frozenset({"tokens", "input_tokens", "output_tokens", "cost_usd"})
#: Above this many bytes of request (or characters of answer) tokens are counted in the CPU pool:
#: ~4 ms of BPE on the loop at most, about what a pool round trip would add to a small request.
OFFLOAD_CHARS = 32_768


class LimitSpec(BaseModel):
    """One limit: exactly one measure (requests, tokens, input_tokens, output_tokens, cost_usd or
    concurrent), a window (none for concurrent) and the key parts it is counted per."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique; used in keys, headers and decision records")
    key: tuple[KeyPart, ...] = Field(default=("tenant",), description="counted per these parts")
    window: Literal["second", "minute", "hour", "day", "month"] | None = Field(
        default=None, description="sliding window; month = 30 days; not used by concurrent"
    )
    requests: float | None = Field(default=None, gt=0, description="requests per window")
    tokens: float | None = Field(
        default=None,
        gt=0,
        description="input + output tokens per window (prompt estimate + max_tokens x n reserved, "
        "corrected to the reported usage after the call)",
    )
    input_tokens: float | None = Field(
        default=None, gt=0, description="prompt tokens only per window (estimated, then corrected)"
    )
    output_tokens: float | None = Field(
        default=None,
        gt=0,
        description="completion tokens only per window (max_tokens x n or default_max_tokens "
        "reserved, then corrected)",
    )
    cost_usd: float | None = Field(
        default=None, gt=0, description="USD per window, priced from prices / default_price"
    )
    concurrent: int | None = Field(default=None, gt=0, description="requests in flight at once")
    on_exceed: Literal["reject", "lower_max_tokens"] = Field(
        default="reject", description="lower_max_tokens: shrink the completion to what still fits"
    )

    @model_validator(mode="after")
    def _one_measure(self) -> LimitSpec:
        set_ = [
            m
            for m in ("requests", "tokens", "input_tokens", "output_tokens", "cost_usd", "concurrent")
            if getattr(self, m) is not None
        ]
        if len(set_) != 1:
            raise ValueError(
                f"limit {self.name!r} needs exactly one of requests, tokens, input_tokens, "
                "output_tokens, cost_usd, concurrent"
            )
        if self.measure == "concurrent":
            if self.window is not None:
                raise ValueError(f"limit {self.name!r}: concurrent limits take no window")
        elif self.window is None:
            raise ValueError(f"limit {self.name!r} needs a window (second, minute, hour, day, month)")
        if self.on_exceed == "lower_max_tokens" and self.measure not in (
            "tokens",
            "output_tokens",
            "cost_usd",
        ):
            raise ValueError(
                f"limit {self.name!r}: lower_max_tokens applies to tokens, output_tokens, cost_usd"
            )
        return self

    @property
    def measure(self) -> Measure:
        for m in ("requests", "tokens", "input_tokens", "output_tokens", "cost_usd", "concurrent"):
            if getattr(self, m) is not None:
                return m
        raise AssertionError("validated")

    @property
    def amount_limit(self) -> float:
        return float(getattr(self, self.measure))


class PriceSpec(BaseModel):
    """A model's price in USD per million tokens (overrides the built-in table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="USD per 1M input tokens")
    output: float = Field(ge=0, description="USD per 1M output tokens")
    cached_input: float | None = Field(default=None, ge=0)


class BudgetConfig(PluginConfig):
    """Rate, token, cost and concurrency limits; in memory or shared through Redis."""

    type: Literal["budget"] = "budget"
    limits: tuple[LimitSpec, ...] = Field(min_length=1)
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Secret | None = Field(default=None, description="redis://host:6379/0; ${ENV} allowed")
    redis_prefix: str = "sidecar:budget:"
    redis_timeout_ms: int = Field(
        default=250,
        ge=1,
        le=5000,
        description="per Redis call; 250 ms rides out event-loop lag under load (100 ms failed open "
        "on 13% of calls in the saturated benchmark) while a dead Redis still costs little",
    )
    on_backend_error: Literal["fail_open", "fail_closed"] = Field(
        default="fail_open", description="when Redis is down: admit (recorded) or refuse with 503"
    )
    tenant_from: str = Field(
        default="context", description="context (set by an earlier step), header:<name>, api_key or user"
    )
    default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="output tokens reserved when the request sets no max_tokens / "
        "max_completion_tokens / max_output_tokens; lower it for small token limits",
    )
    min_max_tokens: int = Field(default=16, ge=1, description="lower_max_tokens never goes below this")
    prices: dict[str, PriceSpec] = Field(default_factory=dict, description="model prefix -> price")
    default_price: PriceSpec | None = Field(default=None, description="for models without a price")
    lease_ttl: float = Field(default=900, gt=0, description="seconds a concurrency slot survives a crash")
    headers: bool = Field(default=True, description="x-ratelimit-* headers on every answer")
    namespace: str = Field(
        default="",
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="prefix of every counter key: change it (e.g. when a shadow step starts to "
        "enforce) to start from zero; the old counters expire after their window",
    )

    @model_validator(mode="after")
    def _check(self) -> BudgetConfig:
        names = [lim.name for lim in self.limits]
        if len(set(names)) != len(names):
            raise ValueError("limit names must be unique")
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend: redis needs redis_url")
        if not self.tenant_from.startswith("header:"):
            known = ("context", "api_key", "user", "header:<name>")
            check_reference(self.tenant_from, known, "tenant_from", ("tenant_from",))
        return self


@dataclass
class _Booking:
    """What this request reserved, to be corrected in ``on_complete``."""

    checks: list[tuple[LimitSpec, WindowCheck]]
    charges: list[Charge]
    slots: list[SlotCheck]
    prompt_tokens: int
    completion_reserve: int
    price: Price | None
    wants_usage: bool
    fixed_cost: float | None = None  # pass-through: the rule's price; no tokens are counted
    defaulted: bool = False  # the reserve is default_max_tokens (the request set no output cap)
    streamed_text: list[str] = field(default_factory=list)
    response_text: str | None = None


BOOKING: StateKey[_Booking] = StateKey("budget.booking")
_NO_OVERRIDES: Mapping[str, float] = MappingProxyType({})


_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class BudgetPlugin(Plugin[BudgetConfig]):
    Config = BudgetConfig

    def __init__(self, config: BudgetConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        if config.backend == "redis" and config.redis_url is not None:
            url = config.redis_url.get_secret_value()
            timeout = config.redis_timeout_ms / 1000

            def make() -> Any:
                from proxy.budget.redis_backend import RedisBackend

                return RedisBackend(url, config.redis_prefix, timeout)

            key = f"budget:redis:{_hash_key(url)}:{config.redis_prefix}:{timeout}"
        else:
            make = MemoryBackend
            # Memory state is per step id, so a reload that keeps the step keeps the counts.
            key = f"budget:memory:{config.step_id}"
        self.backend: Backend = deps.resource(key, make)
        self._windowed = [lim for lim in config.limits if lim.measure != "concurrent"]
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

    # -- identity ----------------------------------------------------------------------
    def identity(
        self,
        headers: Mapping[str, str],
        body: Mapping[str, Any],
        ctx_tenant: str | None,
        verified: Identity | None = None,
    ) -> dict[str, str]:
        if verified is not None:  # clients: only the verified caller counts; headers are not trusted
            return {"tenant": verified.tenant, "api_key": verified.key_id, "user": verified.user or "none"}
        auth = headers.get("authorization") or headers.get("api-key") or headers.get("x-api-key") or ""
        # Hashing costs a few microseconds: only when a limit (or the tenant) is keyed on the key.
        api_key = _hash_key(auth.removeprefix("Bearer ").strip()) if auth and self._uses_api_key else "none"
        user = body.get("user") if isinstance(body.get("user"), str) else None
        source = self.config.tenant_from
        if source.startswith("header:"):
            tenant = headers.get(source[7:])
        elif source == "api_key":
            tenant = api_key if auth else None
        elif source == "user":
            tenant = user
        else:
            tenant = ctx_tenant
        return {"tenant": tenant or "anonymous", "api_key": api_key, "user": user or "none"}

    def _key(self, limit: LimitSpec, parts: Mapping[str, str]) -> str:
        key = limit.name + ":" + "|".join(parts.get(p, "-") for p in limit.key)
        return f"{self.config.namespace}/{key}" if self.config.namespace else key

    # -- amounts -------------------------------------------------------------------------
    def _price(self, model: str) -> Price | None:
        price = price_for_model(model, self._prices)
        if price is None and self.config.default_price is not None:
            p = self.config.default_price
            price = Price(input=p.input, output=p.output, cached_input=p.cached_input)
        return price

    @staticmethod
    def _amount(limit: LimitSpec, prompt: int, completion: int, price: Price | None) -> float:
        m = limit.measure
        if m == "requests":
            return 1.0
        if m == "tokens":
            return float(prompt + completion)
        if m == "input_tokens":
            return float(prompt)
        if m == "output_tokens":
            return float(completion)
        if price is None:
            return 0.0
        return (prompt * price.input + completion * price.output) / 1_000_000

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
                    WINDOWS[lim.window or "minute"],
                    overrides.get(lim.name, lim.amount_limit),
                    fixed_cost
                    if fixed_cost is not None and lim.measure == "cost_usd"
                    else self._amount(lim, prompt, completion, price),
                ),
            )
            for lim in self._windowed
        ]

    # -- hooks -----------------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        body = req.body
        parts = {
            **self.identity(ctx.headers, body, ctx.tenant, ctx.identity),
            "model": req.model,
            "route": req.route.value,
        }
        overrides = ctx.identity.budget if ctx.identity is not None else _NO_OVERRIDES
        # A pass-through request (files, images, audio...) has no tokens to count: it counts once
        # for requests, zero tokens, and the price its ``passthrough:`` rule set for cost_usd.
        fixed = (ctx.get(PASSTHROUGH_COST) or 0.0) if req.route is Route.PASSTHROUGH else None
        counts_tokens = self._counts_tokens and fixed is None
        prompt = await self._count_prompt(req) if counts_tokens else 0
        completion = 0
        defaulted = False
        if counts_tokens and req.route is not Route.EMBEDDINGS:
            completion = count_completion_reserve(body, self.config.default_max_tokens)
            defaulted = not any(_positive_int(body.get(k)) for k in _OUTPUT_CAPS)
        price = self._price(req.model) if fixed is None else None
        if fixed is None and price is None and any(lim.measure == "cost_usd" for lim in self._windowed):
            ctx.record("unpriced_model", "flag", detail={"model": req.model})
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
                lowered = self._lowered_completion(checks, result, prompt, completion, price, body)
                if lowered is not None:
                    completion, defaulted = lowered, False
                    self._set_max_tokens(req, lowered)
                    checks = self._checks(parts, prompt, completion, price, overrides)
                    result = await self.backend.reserve([c for _, c in checks], slots)
        except BackendUnavailable as exc:
            self._backend_down(ctx, exc)
            return None
        if not result.allowed:
            demand = Demand(0.0, prompt, completion, defaulted, self.config.default_max_tokens)
            self._deny(checks, slots, result, demand, ctx)
        wants_usage = self._ensure_stream_usage(req)
        booking = _Booking(
            checks, result.charges, slots, prompt, completion, price, wants_usage, fixed, defaulted
        )
        ctx.set(BOOKING, booking)
        if self.config.headers:
            ctx.response_headers.update(
                headers_for([(lim.measure, st) for (lim, _), st in zip(checks, result.states, strict=True)])
            )
        return None

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

    def _lowered_completion(
        self,
        checks: Sequence[tuple[LimitSpec, WindowCheck]],
        result: Reservation,
        prompt: int,
        completion: int,
        price: Price | None,
        body: Mapping[str, Any],
    ) -> int | None:
        """The largest completion every lowerable limit still allows, if it is worth asking for."""
        n = max(1, int(body.get("n") or 1)) if isinstance(body.get("n"), int) else 1
        best = completion
        for (lim, _), state in zip(checks, result.states, strict=True):
            if lim.on_exceed != "lower_max_tokens":
                if state.used + self._amount(lim, prompt, completion, price) > state.limit:
                    return None  # a limit that cannot be lowered refuses anyway
                continue
            room = state.remaining
            if lim.measure == "tokens":
                room -= prompt
            elif lim.measure == "cost_usd":
                if price is None or price.output == 0:
                    continue
                room = (room - prompt * price.input / 1_000_000) * 1_000_000 / price.output
            best = min(best, math.floor(room))
        per_choice = best // n
        if per_choice < self.config.min_max_tokens or best >= completion:
            return None
        return per_choice * n

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

    def _backend_down(self, ctx: RequestContext, exc: BackendUnavailable) -> None:
        if self.config.on_backend_error == "fail_open":
            ctx.record("backend_unavailable", "allow", detail={"error": type(exc).__name__})
            return None
        ctx.record("backend_unavailable", "block", detail={"error": type(exc).__name__})
        raise Rejected(
            "Budget state is unavailable; try again shortly.",
            status=503,
            code="budget_unavailable",
            headers={"retry-after": "1"},
        )

    def _deny(
        self,
        checks: Sequence[tuple[LimitSpec, WindowCheck]],
        slots: Sequence[SlotCheck],
        result: Reservation,
        demand: Demand,
        ctx: RequestContext,
    ) -> None:
        """Refuse with headers and a message that agree with the decision (see proxy.budget.explain)."""
        if result.denied_window is not None:
            lim, check = checks[result.denied_window]
            state = result.states[result.denied_window]
            wait = seconds_until_fits(
                state.prev, state.cur, state.now, state.window, check.limit, check.amount
            )
            demand = Demand(
                check.amount, demand.prompt, demand.completion, demand.defaulted, demand.default_max_tokens
            )
            detail = {"measure": lim.measure, "window": lim.window, "requested": check.amount}
            if demand.defaulted and lim.measure in TOKEN_MEASURES:
                detail["default_max_tokens"] = demand.default_max_tokens
            ctx.record(lim.name, "limit", detail=detail)
            message = refusal_message(lim.name, lim.measure, lim.window, state, demand, wait is None)
            if wait is None:
                raise Rejected(
                    message,
                    status=429,
                    code="request_exceeds_limit",
                    headers=headers_for([(lim.measure, state)]),
                )
            retry = max(capped_wait(wait, state), 1.0)
            raise RateLimited(message, retry_after=retry, headers=headers_for([(lim.measure, state)], retry))
        index = result.denied_slot or 0
        lim = self._concurrent[index]
        ctx.record(lim.name, "limit", detail={"measure": "concurrent"})
        raise RateLimited(
            f"Concurrency limit '{lim.name}' reached ({slots[index].limit} requests in flight at once).",
            retry_after=1.0,
            headers={
                "x-ratelimit-limit-concurrent": str(slots[index].limit),
                "x-ratelimit-remaining-concurrent": "0",
            },
        )

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        booking = ctx.get(BOOKING)
        if booking is not None and self._counts_tokens and not resp.usage:
            booking.response_text = "".join(s.text for s in resp.text_slots())

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        booking = ctx.get(BOOKING)
        if booking is None or not self._counts_tokens:
            return None
        return _UsageFilter(booking)

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
        parts: dict[str, str | None] = {
            p: query.get(p) for p in ("tenant", "api_key", "user", "model", "route")
        }
        parts["tenant"] = parts["tenant"] or "anonymous"
        try:
            return await usage_report(self.backend, self.config.limits, self._key, parts)
        except BackendUnavailable:
            return {"error": "budget state unavailable"}

    async def self_report(
        self, headers: Mapping[str, str], identity: Identity | None = None
    ) -> dict[str, Any] | None:
        """The caller's own usage, identified exactly as its requests are; other tenants never show."""
        ident = self.identity(headers, {}, None, identity)
        parts: dict[str, str | None] = {
            "api_key": ident["api_key"],
            "model": headers.get("x-model"),
            "route": None,
            "user": ident["user"] if identity is not None else None,
            "tenant": None if self.config.tenant_from == "context" and identity is None else ident["tenant"],
        }
        try:
            return await usage_report(self.backend, self.config.limits, self._key, parts)
        except BackendUnavailable:
            return {"error": "budget state unavailable"}

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
            corrections = self._corrections(booking, usage)
            if corrections:
                await self.backend.adjust(corrections)
        except BackendUnavailable as exc:
            ctx.record(
                "backend_unavailable", "error", detail={"hook": "on_complete", "error": type(exc).__name__}
            )

    async def _actual_usage(self, booking: _Booking, outcome: Outcome, model: str) -> tuple[int, int]:
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

    def _corrections(self, booking: _Booking, usage: tuple[int, int] | None) -> list[tuple[Charge, float]]:
        """Charge the real amounts; ``usage`` None means nothing was served: give everything back."""
        if usage is None:
            return [
                (charge, -check.amount)
                for (_, check), charge in zip(booking.checks, booking.charges, strict=True)
                if check.amount
            ]
        if booking.fixed_cost is not None:
            return []  # pass-through: charged exactly at reservation
        prompt, completion = usage
        out = []
        for (lim, check), charge in zip(booking.checks, booking.charges, strict=True):
            actual = self._amount(lim, prompt, int(completion), booking.price)
            if actual != check.amount:
                out.append((charge, actual - check.amount))
        return out


class _UsageFilter:
    """Collects streamed text (fallback count) and hides the usage chunk the client did not ask for."""

    __slots__ = ("_booking",)

    def __init__(self, booking: _Booking) -> None:
        self._booking = booking

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if isinstance(event, TextDelta):
            self._booking.streamed_text.append(event.text)
        elif isinstance(event, Usage) and not self._booking.wants_usage:
            return []
        return [event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return []
