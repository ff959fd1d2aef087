"""Compile a validated policy into an immutable, ready-to-serve revision.

Everything expensive happens here, once per revision, never per request: plugin instances
(regexes, detectors, models), per-phase step tuples, the wrapped upstream. Resources keyed by
their configuration (HTTP pools, models) come from the shared ``Resources`` so an unchanged
upstream keeps its warm connection pool across reloads.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.auth.authenticator import Authenticator, build_authenticator
from proxy.chain.chain import Chain, Matcher, Step
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Deps, Plugin, PluginConfig, UpstreamPolicy
from proxy.chain.registry import Registry
from proxy.chain.upstream import Upstream
from proxy.errors import ConfigError
from proxy.models.upstream import UpstreamRequest, UpstreamResponse
from proxy.policy.observability import MetricsConfig
from proxy.policy.passthrough import PassthroughTable, passthrough_rules
from proxy.policy.promotion import PromotionBook, StepRollout
from proxy.policy.schema import PolicyBase
from proxy.upstream.client import HttpClient
from proxy.upstream.config import UpstreamConfig
from proxy.upstream.routing import RouteTable
from proxy.upstream.targets import AsgiTarget, Credentials, HttpTarget, Router


def revision_of(text: str) -> str:
    """Content hash: the same policy text always has the same revision."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class CompiledPolicy:
    revision: str
    source: str
    policy: PolicyBase
    chain: Chain
    plugins: list[Plugin[Any]]
    used_resources: set[str]
    routes: RouteTable
    passthrough: PassthroughTable
    loaded_at: float = field(default_factory=time.time)
    auth: Authenticator | None = None  # client authentication (``clients:``); None: open
    # Load-time warnings (``proxy/policy/lint.py``): probably-unintended, never fatal.
    warnings: list[str] = field(default_factory=list)
    in_flight: int = 0
    retired: bool = False
    # The observability settings the hot path reads, resolved once per revision.
    promotions: PromotionBook | None = None  # the store's book, when a step has promote:
    promoted: tuple[Step, ...] = field(init=False)
    promotion_keys: tuple[str, ...] = field(init=False)
    trace_ratio: float = field(init=False)
    trace_content: str = field(init=False)
    log_content: str = field(init=False)
    metrics: MetricsConfig = field(init=False)
    capture_on: bool = field(init=False)  # observability.capture: the routes keep the request body

    def __post_init__(self) -> None:
        # Promoted steps and their promotion-book keys: the request observer walks only these.
        self.promoted = tuple(s for s in self.chain.steps if isinstance(s.rollout, StepRollout))
        rollouts = [s.rollout for s in self.promoted]
        self.promotion_keys = tuple(r.key for r in rollouts if isinstance(r, StepRollout))
        obs = self.policy.observability
        self.trace_ratio = obs.tracing.sample_ratio
        self.trace_content = obs.tracing.content
        self.log_content = obs.logs.content
        self.metrics = obs.metrics
        self.capture_on = obs.capture.enabled

    @property
    def captures_content(self) -> bool:
        return self.trace_content != "none" or self.log_content != "none"

    @property
    def max_body_bytes(self) -> int:
        return self.policy.limits.max_body_bytes

    def passthrough_rules(self) -> list[dict[str, Any]]:
        """The configured pass-through rules (see ``proxy.policy.passthrough.passthrough_rules``)."""
        return passthrough_rules(self.policy.passthrough)

    def describe(self) -> dict[str, Any]:
        """What ``/admin/policy`` shows: never a key, a static header value or plugin secrets."""
        pt = self.policy.passthrough
        return {
            "revision": self.revision,
            "source": self.source,
            "loaded_at": self.loaded_at,
            "plugins": [
                {
                    "id": s.id,
                    "type": s.plugin.config.type,
                    "mode": s.mode,
                    "on_error": s.on_error,
                    **({"canary": s.canary} if s.canary is not None else {}),
                    **self._promotion_of(s),
                }
                for s in self.chain.steps
            ],
            "upstreams": {
                name: {
                    "base_url": u.base_url,
                    "provider": u.provider,
                    "auth": u.auth_mode,
                    "models": u.models,
                }
                for name, u in self.policy.upstreams.items()
            },
            "routes": [r.model_dump(mode="json") for r in self.policy.routes],
            "default_upstream": self.policy.default_upstream,
            **({"clients": self.auth.describe()} if self.auth is not None else {}),
            "passthrough": {
                "mode": pt.mode,
                "unlisted": pt.unlisted,
                "models": pt.models,
                "rules": self.passthrough_rules(),
            },
            "warnings": list(self.warnings),
        }

    def _promotion_of(self, step: Step) -> dict[str, Any]:
        if self.promotions is None or not isinstance(step.rollout, StepRollout):
            return {}
        [state] = self.promotions.snapshot((step.rollout.key,))
        return {"promote": state}

    async def aclose(self) -> None:
        for plugin in self.plugins:
            await plugin.aclose()


def _upstream_key(cfg: UpstreamConfig) -> str:
    return f"http:{cfg.base_url}|{cfg.connect_timeout}|{cfg.read_timeout}|{cfg.max_connections}"


def _build_target(name: str, cfg: UpstreamConfig, deps: Deps) -> Upstream:
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    header = cfg.auth_header
    scheme = cfg.auth_scheme
    if cfg.provider == "azure" and "auth_header" not in cfg.model_fields_set:
        header, scheme = "api-key", ""
    if cfg.provider == "anthropic" and "auth_header" not in cfg.model_fields_set:
        header, scheme = "x-api-key", ""
    creds = Credentials(cfg.auth_mode, key, header, scheme, cfg.headers)
    if cfg.base_url == "builtin:demo":
        from proxy.demo.fake_upstream import build_demo_upstream

        app = deps.resource("builtin:demo", build_demo_upstream)
        return AsgiTarget(name, app, creds, max_response_bytes=cfg.max_response_bytes)
    client = deps.resource(
        _upstream_key(cfg),
        lambda: HttpClient(
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            max_connections=cfg.max_connections,
        ),
    )
    if cfg.provider in ("gemini", "vertex", "bedrock"):
        from proxy.upstream.providers.cloud import build_cloud_target

        return build_cloud_target(name, cfg, client)
    if cfg.provider == "anthropic":
        from proxy.upstream.anthropic_target import AnthropicTarget

        return AnthropicTarget(
            name,
            cfg.base_url,
            client,
            creds,
            first_token_timeout=cfg.first_token_timeout,
            max_response_bytes=cfg.max_response_bytes,
            max_event_bytes=cfg.max_event_bytes,
        )
    return HttpTarget(
        name,
        cfg.base_url,
        client,
        creds,
        azure_api_version=cfg.api_version if cfg.provider == "azure" else None,
        first_token_timeout=cfg.first_token_timeout,
        max_response_bytes=cfg.max_response_bytes,
    )


class _WhenGate:
    """Applies an upstream wrapper only to requests its ``when:`` matches."""

    def __init__(self, matcher: Matcher, wrapped: Upstream, inner: Upstream) -> None:
        self._matcher = matcher
        self._wrapped = wrapped
        self._inner = inner

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        target = self._wrapped if self._matcher.matches(ctx) else self._inner
        return await target.send(request, ctx)


class _CanaryGate:
    """Applies an upstream wrapper only to the requests its step's ``canary`` enforces on.

    A wrapper has no shadow form (it acts on the call itself), so outside the canary share the
    call simply goes to the inner upstream.
    """

    def __init__(self, step: Step, wrapped: Upstream, inner: Upstream) -> None:
        self._step = step
        self._wrapped = wrapped
        self._inner = inner

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        enforced = self._step.active_for(ctx).mode == "enforce"
        return await (self._wrapped if enforced else self._inner).send(request, ctx)


class _Stamped:
    """Runs a wrapper with its step marked active, so its decision records carry its id."""

    def __init__(self, active: ActiveStep, wrapped: Upstream) -> None:
        self._active = active
        self._wrapped = wrapped

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        previous = ctx.active
        scratch = ctx.enter_step(self._active)  # always enforcing: wrappers have no shadow form
        try:
            return await self._wrapped.send(request, ctx)
        finally:
            ctx.leave_step(scratch, previous)


def _routing_digest(policy: PolicyBase) -> str:
    """Digest of the upstreams, routes and default upstream (secrets masked by ``model_dump``)."""
    data = {
        "upstreams": {name: u.model_dump(mode="json") for name, u in policy.upstreams.items()},
        "routes": [r.model_dump(mode="json") for r in policy.routes],
        "default": policy.default_upstream,
    }
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def compile_policy(
    policy: PolicyBase,
    revision: str,
    source: str,
    registry: Registry,
    deps: Deps,
    promotions: PromotionBook | None = None,
) -> CompiledPolicy:
    """``promotions``: the store's book (kept across reloads); without one, promoted steps start
    from shadow in a fresh book (``check``, ``replay``)."""
    targets = {name: _build_target(name, cfg, deps) for name, cfg in policy.upstreams.items()}
    try:
        table = RouteTable(policy.routes, dict(policy.upstreams), policy.default_upstream)
    except ValueError as exc:
        raise ConfigError(f"routes: {exc}") from exc
    router = Router(targets, table, {name: cfg.provider for name, cfg in policy.upstreams.items()})
    upstream: Upstream = router

    steps: list[Step] = []
    plugins: list[Plugin[Any]] = []
    configured = False
    plugin_configs: list[PluginConfig] = list(getattr(policy, "plugins", []))
    deps.steps = tuple(plugin_configs)
    deps.routing = _routing_digest(policy)
    for i, config in enumerate(plugin_configs):
        if config.mode == "off":
            continue
        cls = registry.get(config.type)
        try:
            plugin = cls(config, deps)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"plugins[{i}] ({config.step_id}): could not be built: {exc}") from exc
        plugins.append(plugin)
        matcher = Matcher(config.when) if config.when is not None else None
        active_mode, rollout = config.mode, None
        if config.promote is not None:
            if isinstance(plugin, UpstreamPolicy):
                raise ConfigError(
                    f"plugins[{i}] ({config.step_id}): promote applies to guard steps; an upstream "
                    "wrapper has no shadow form to start from"
                )
            if promotions is None:
                promotions = PromotionBook()
            if not configured:
                promotions.configure(policy.promotion, deps.policy_dir)
                configured = True
            # Still mode: shadow as configured, but its enforcing side is live on a moving
            # canary share: 0% (all shadow) until promoted.
            active_mode, rollout = "enforce", promotions.register(config.step_id, config, config.promote)
        steps.append(
            Step(
                config.step_id,
                plugin,
                config.mode,
                config.on_error,
                matcher,
                ActiveStep(config.step_id, active_mode),
                config.canary,
                rollout,
            )
        )

    # Upstream wrappers: the first declared is the outermost. Shadow wrappers are not applied:
    # a wrapper acts on the call itself, there is nothing to "would have" without acting.
    for step in reversed(steps):
        if isinstance(step.plugin, UpstreamPolicy) and step.mode == "enforce":
            wrapped: Upstream = _Stamped(step.active, step.plugin.wrap(upstream))
            if step.canary is not None:
                wrapped = _CanaryGate(step, wrapped, upstream)
            upstream = _WhenGate(step.when, wrapped, upstream) if step.when is not None else wrapped

    auth = build_authenticator(policy.clients, deps)
    passthrough = PassthroughTable(
        policy.passthrough,
        {name: cfg.auth_mode for name, cfg in policy.upstreams.items()},
        policy.default_upstream,
        steps,
    )
    return CompiledPolicy(
        revision,
        source,
        policy,
        Chain(steps, upstream),
        plugins,
        set(deps.used_resources),
        table,
        passthrough,
        auth=auth,
        promotions=promotions,
    )
