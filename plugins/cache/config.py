"""The ``cache`` step's configuration (its own module so the key and store code stay small)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from plugins.cache.semantic import SemanticConfig
from proxy.chain import PluginConfig, Secret
from proxy.chain.names import names_validator
from proxy.models.chat import Route
from proxy.redis import RedisOptions, parse

#: The routes whose answers are cached: chat completions, and Anthropic messages (the chain
#: sees them as chat completions). Responses API and embeddings are left alone for now.
CACHED_ROUTES: tuple[str, ...] = (Route.CHAT.value, Route.MESSAGES.value)


class CacheConfig(PluginConfig):
    """Replay stored answers to identical deterministic requests (place after budgets, before guards)."""

    type: Literal["cache"] = "cache"
    backend: Literal["memory", "redis"] = "memory"
    ttl: float = Field(default=300, gt=0, description="seconds an answer is served as fresh")
    route_ttls: Annotated[
        dict[str, Annotated[float, Field(gt=0)]],
        AfterValidator(names_validator(CACHED_ROUTES, "route")),
    ] = Field(default_factory=dict, description="per-route ttl overrides: chat.completions, messages")
    keep_stale: float = Field(
        default=3600,
        ge=0,
        description="seconds an expired answer is kept for the fallback step's cached tier",
    )
    deterministic_only: bool = Field(
        default=True, description="cache only requests with temperature 0 or a seed"
    )
    store_guarded: bool = Field(
        default=False,
        description="also store answers after an enforcing step redacted, flagged or blocked something",
    )
    replay_through_guards: bool = Field(
        default=False,
        description="hand a hit to the response guards as if the upstream sent it (default: the "
        "stored post-guard answer is sent as is)",
    )
    max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="memory backend: total size cap (LRU)"
    )
    max_entry_bytes: int = Field(default=1024 * 1024, ge=256, description="larger answers are not stored")
    redis_url: Secret | None = Field(
        default=None,
        description="redis://, rediss://, redis+sentinel://, redis+cluster:// (docs/deployment.md)",
    )
    redis: RedisOptions | None = Field(default=None, description="cluster, sentinel and TLS settings")
    redis_prefix: str = "sidecar:cache:"
    semantic: SemanticConfig | None = Field(
        default=None, description="optional: near-duplicate prompts (embeddings, cosine) hit too"
    )

    @model_validator(mode="after")
    def _check(self) -> CacheConfig:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend: redis needs redis_url")
        if self.redis_url is not None:
            parse(self.redis_url.get_secret_value(), self.redis)  # a URL that cannot work fails here
        return self

    def ttl_for(self, route: str) -> float:
        return self.route_ttls.get(route, self.ttl)
