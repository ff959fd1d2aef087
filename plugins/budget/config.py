"""The ``budget`` step's configuration: limits, prices, backend and identity source.

Kept apart from the plugin so the policy schema (docs, JSON Schema) and the report/identity
helpers can import the models without the request path.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.chain import PluginConfig, Secret, check_reference
from proxy.redis import RedisOptions, parse

KeyPart = Literal["tenant", "api_key", "user", "model", "route"]
Measure = Literal["requests", "tokens", "input_tokens", "output_tokens", "cost_usd", "concurrent"]
TOKEN_MEASURES = frozenset({"tokens", "input_tokens", "output_tokens", "cost_usd"})


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

    @cached_property
    def measure(self) -> Measure:
        """The one measure set; cached (the model is frozen): it is read several times per request
        and scanning six fields each time showed in the budget step's profile (issue 17). Pydantic
        keeps cached properties out of equality, hashing and dumps."""
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
    redis_url: Secret | None = Field(
        default=None,
        description="redis://host:6379/0, rediss:// (TLS), redis+sentinel://s1:26379,s2:26379/<master>, "
        "redis+cluster://n1:7000,n2:7001; ${ENV} allowed (docs/deployment.md)",
    )
    redis: RedisOptions | None = Field(default=None, description="cluster, sentinel and TLS settings")
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
        "enforce) to start from zero; the old counters expire after their window. Empty: the "
        "step id scopes the keys, so two budget steps never share counters; steps that set the "
        "same namespace deliberately share them (in memory and in Redis)",
    )

    @model_validator(mode="after")
    def _check(self) -> BudgetConfig:
        names = [lim.name for lim in self.limits]
        if len(set(names)) != len(names):
            raise ValueError("limit names must be unique")
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend: redis needs redis_url")
        if self.redis_url is not None:
            parse(self.redis_url.get_secret_value(), self.redis)  # a URL that cannot work fails here
        if not self.tenant_from.startswith("header:"):
            known = ("context", "api_key", "user", "header:<name>")
            check_reference(self.tenant_from, known, "tenant_from", ("tenant_from",))
        return self
