"""Prometheus metrics: per-request counters and histograms, plus state read at scrape time.

Per-request series are updated once per finished request by ``Metrics.observe`` (a
``Sidecar.observers`` entry, called after complete hooks and decision records). State that
already lives somewhere (policy revision, reload counts, circuit states) is *read* when
``/metrics`` is scraped, so it costs nothing per request.

The per-request series are plain numbers in dicts keyed by label tuples (``RequestCounter``,
``RequestHistogram``), turned into Prometheus families only when scraped: updating them costs a
dict lookup and an addition, where ``prometheus_client``'s ``Counter`` / ``Histogram`` take a
lock per value (a histogram observation is two) and a ``.labels()`` lookup per series. They are
only ever updated from the event loop's thread (request observers run there), so no lock is
needed; a scrape, also on the loop, sees a consistent snapshot.

Label cardinality is bounded: ``model`` takes at most ``observability.metrics.max_models``
distinct values and ``tenant`` at most ``max_tenants`` (the rest become ``other``); tenants
are not labelled at all unless the policy says ``tenant_label: hashed`` or ``raw``. Plugin
ids, rules, actions, modes, routes and upstream names come from the policy and the code, so
they are bounded already. Each sidecar has its own registry (tests run several in one process).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from proxy.observability.timing import input_tokens, output_tokens

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.policy.compiler import CompiledPolicy
    from proxy.policy.observability import MetricsConfig
    from proxy.policy.store import PolicyStore

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
LAG = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
OTHER = "other"
_BUDGET_KINDS = ("requests", "tokens", "usd")
_BUDGET_HEADERS = tuple(f"x-ratelimit-remaining-{kind}" for kind in _BUDGET_KINDS)


class _Bounded:
    """Maps raw label values to at most ``cap`` distinct ones; later newcomers become ``other``."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str, cap: int) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= cap:
            return OTHER
        self._seen.add(value)
        return value


class _StateCollector(Collector):
    """Policy revision, reload results and circuit-breaker states, read at scrape time."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        store = self._store
        info = InfoMetricFamily("sidecar_policy", "the policy revision serving new requests")
        reloads = CounterMetricFamily("sidecar_policy_reloads", "policy reloads by result", labels=["result"])
        reloads.add_metric(["ok"], store.reloads_ok)
        reloads.add_metric(["failed"], store.reloads_failed)
        yield reloads
        last = GaugeMetricFamily(
            "sidecar_policy_last_reload_timestamp_seconds", "when the last reload (or load) happened"
        )
        if store.last_reload is not None:
            last.add_metric([], float(store.last_reload.get("at", 0.0)))
        yield last
        if not store.ready:
            yield info
            return
        policy = store.current
        info.add_metric([], {"revision": policy.revision, "source": policy.source})
        yield info
        circuits = GaugeMetricFamily(
            "sidecar_circuit_state",
            "circuit breaker state per step and target: 1 for the current state",
            labels=["plugin", "target", "state"],
        )
        for step in policy.chain.steps:
            states = getattr(step.plugin, "circuits", None)
            if not isinstance(states, dict):
                continue
            for target, circuit in list(states.items()):
                current = getattr(circuit, "state", "closed")
                for state in ("closed", "half_open", "open"):
                    circuits.add_metric([step.id, str(target), state], 1.0 if current == state else 0.0)
        yield circuits
        yield from _promotion_metrics(store)


def _promotion_metrics(store: PolicyStore) -> Iterator[Any]:
    """Staged promotion (``promote:``): each promoted step's canary percent, and its stage changes."""
    book = store.promotions
    percent = GaugeMetricFamily(
        "sidecar_promotion_percent",
        "promote: steps: percent of requests enforced now (0 = shadow or rolled back)",
        labels=["plugin", "status"],
    )
    for row in book.snapshot(store.current.promotion_keys):
        percent.add_metric([row["step"], row["status"]], float(row["percent"]))
    yield percent
    moves = CounterMetricFamily(
        "sidecar_promotion_transitions", "promotion stage changes by step and kind (promote, rollback)",
        labels=["plugin", "kind"],
    )  # fmt: skip
    for (step, kind), n in sorted(book.transitions.items()):
        moves.add_metric([step, kind], n)
    yield moves


class RequestCounter(Collector):
    """A counter family updated per request without locks; exposed as ``<name>_total``.

    Same exposition as ``prometheus_client.Counter`` (``_total`` and ``_created`` samples);
    ``inc`` takes the label values as one tuple, in ``labels`` order.
    """

    def __init__(self, name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[tuple[str, ...], list[float]] = {}  # labels -> [value, created]
        registry.register(self)

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        self.series(key)[0] += amount

    def series(self, key: tuple[str, ...]) -> list[float]:
        """The ``[value, created]`` cell of one series, created (at zero) on first use."""
        value = self.values.get(key)
        if value is None:
            value = self.values[key] = [0.0, time.time()]
        return value

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.doc, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, (value, created) in list(self.values.items()):
            family.add_metric(key, value, created=created)
        yield family


class RequestHistogram(Collector):
    """A histogram family updated per request without locks (same exposition as ``Histogram``).

    Each series keeps a count per bucket (not cumulative: one increment per observation, found
    by bisection) plus the sum; the cumulative ``le`` buckets are computed at scrape time.
    """

    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        # labels -> [count per bucket (len(bounds) + 1, the last is +Inf)..., sum, created]
        self.values: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def observe(self, key: tuple[str, ...], amount: float) -> None:
        self.observe_into(self.series(key), amount)

    def series(self, key: tuple[str, ...]) -> list[float]:
        """The cells of one series (see ``values``), created (empty) on first use."""
        value = self.values.get(key)
        if value is None:
            value = self.values[key] = [0.0] * (len(self.bounds) + 2) + [time.time()]
        return value

    def observe_into(self, value: list[float], amount: float) -> None:
        value[bisect_left(self.bounds, amount)] += 1  # the first bucket with amount <= le
        value[-2] += amount

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.doc, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        n = len(self._le)
        for key, value in list(self.values.items()):
            buckets: list[tuple[str, float]] = []
            total = 0.0
            for le, count in zip(self._le, value[:n], strict=True):
                total += count
                buckets.append((le, total))
            family.add_metric(key, buckets, value[-2])
            family.samples.append(
                Sample(f"{self.name}_created", dict(zip(self.labels, key, strict=True)), value[-1])
            )
        yield family


class _Hot:
    """The series one kind of request updates, resolved once and then reused.

    Keyed by the raw values their labels come from (route, status, model, target, stream,
    tenant): a repeat request finds its label values and its series' cells with one dict lookup
    instead of a bounded-label check, a label tuple and a lookup per series. Series are still
    created at their first observation (``None`` until then), so exposition and ``_created``
    times do not change.
    """

    __slots__ = (
        "attempts", "duration", "model", "overhead", "requests", "route", "target", "tenant",
        "tokens_in", "tokens_out", "upstream",
    )  # fmt: skip

    def __init__(
        self, route: str, model: str, target: str, requests: list[float], duration: list[float]
    ) -> None:
        self.route, self.model, self.target = route, model, target
        self.requests = requests
        self.duration = duration
        self.attempts: list[float] | None = None
        self.upstream: list[float] | None = None
        self.overhead: list[float] | None = None
        self.tokens_in: list[float] | None = None
        self.tokens_out: list[float] | None = None
        self.tenant: str | None = None


#: Bound on ``Metrics._hot``: its keys hold raw model names and tenants (client-chosen).
_HOT_MAX = 4096


class Metrics:
    """The sidecar's Prometheus registry and its per-request update."""

    def __init__(self, store: PolicyStore) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = RequestCounter(
            "sidecar_requests", "requests by route, status, model and serving target",
            ["route", "status", "model", "target"], r,
        )  # fmt: skip
        self.duration = RequestHistogram(
            "sidecar_request_duration_seconds", "total time from request to the answer's end",
            ["route", "stream"], LATENCY, r,
        )  # fmt: skip
        self.upstream = RequestHistogram(
            "sidecar_upstream_duration_seconds",
            "time inside upstream attempts, retries included (streams: until the first chunk)",
            ["target"], LATENCY, r,
        )  # fmt: skip
        self.overhead = RequestHistogram(
            "sidecar_overhead_seconds",
            "non-streamed requests: total time minus time inside upstream attempts (backoff included)",
            ["route"], OVERHEAD, r,
        )  # fmt: skip
        self.ttft = RequestHistogram(
            "sidecar_time_to_first_token_seconds", "streams: request start to the first output token sent",
            ["route", "model"], LATENCY, r,
        )  # fmt: skip
        self.tpot = RequestHistogram(
            "sidecar_time_per_output_token_seconds", "streams: time per output token after the first",
            ["route", "model"], PER_TOKEN, r,
        )  # fmt: skip
        self.tokens = RequestCounter(
            "sidecar_tokens", "tokens by tenant, model and type (input, output), as the provider reported",
            ["tenant", "model", "type"], r,
        )  # fmt: skip
        self.cost = RequestCounter(
            "sidecar_cost_usd", "priced cost (set by a budget step) by tenant and model",
            ["tenant", "model"], r,
        )  # fmt: skip
        self.decisions = RequestCounter(
            "sidecar_decisions", "decision records by plugin, rule, action and mode (enforce / shadow)",
            ["plugin", "rule", "action", "mode"], r,
        )  # fmt: skip
        self.cache_tokens = RequestCounter(
            "sidecar_cache_saved_tokens", "provider tokens a cache hit saved (shadow: would have saved)",
            ["plugin", "mode"], r,
        )  # fmt: skip
        self.cache_usd = RequestCounter(
            "sidecar_cache_saved_usd", "list-price dollars a cache hit saved (shadow: would have saved)",
            ["plugin", "mode"], r,
        )  # fmt: skip
        self.attempts = RequestCounter(
            "sidecar_upstream_attempts", "upstream attempts (first tries, retries and fallbacks)",
            ["route"], r,
        )  # fmt: skip
        self.retries = RequestCounter("sidecar_retries", "retries by target", ["target"], r)
        self.fallbacks = RequestCounter(
            "sidecar_fallbacks", "reroutes to the next target", ["from_target", "to_target"], r
        )
        self.budget = Gauge(
            "sidecar_budget_remaining",
            "budget left in the tightest limit per kind, as last reported to the tenant",
            ["kind", "tenant"], registry=r,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "sidecar_event_loop_lag_seconds", "how late a periodic timer fired on the event loop",
            buckets=LAG, registry=r,
        )  # fmt: skip
        self.loop_lag_last = Gauge(
            "sidecar_event_loop_lag_last_seconds", "the latest event-loop lag sample", registry=r
        )
        r.register(_StateCollector(store))
        self._models = _Bounded()
        self._tenants = _Bounded()
        self._hashed: dict[str, str] = {}
        self._budget: dict[tuple[str, str], Any] = {}
        self._hot: dict[tuple[Any, ...], _Hot] = {}
        self._hot_cfg: MetricsConfig | None = None  # the settings _hot was resolved under

    def _tenant(self, tenant: str | None, cfg: MetricsConfig) -> str:
        if cfg.tenant_label == "none" or not tenant:
            return ""
        if cfg.tenant_label == "hashed":
            hashed = self._hashed.get(tenant)
            if hashed is None:
                hashed = hashlib.sha256(tenant.encode()).hexdigest()[:8]
                if len(self._hashed) < 100_000:
                    self._hashed[tenant] = hashed
            tenant = hashed
        return self._tenants(tenant[:100], cfg.max_tenants)

    def _resolve(self, key: tuple[Any, ...], cfg: MetricsConfig) -> _Hot:
        if cfg is not self._hot_cfg or len(self._hot) >= _HOT_MAX:
            # Another revision's settings (label caps may differ), or too many distinct keys.
            self._hot.clear()
            self._hot_cfg = cfg
        route_, status, model_, target_, stream, _tenant = key
        route, model, target = route_.value, self._models(model_[:100], cfg.max_models), target_ or ""
        requests = self.requests.series((route, str(status), model, target))
        duration = self.duration.series((route, "true" if stream else "false"))
        hot = self._hot[key] = _Hot(route, model, target, requests, duration)
        return hot

    def observe(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        """Update the per-request series for one finished request (a ``Sidecar.observers`` entry)."""
        cfg = policy.metrics
        if not cfg.enabled:
            return
        key = (ctx.route, outcome.status, ctx.model, ctx.target, ctx.stream, ctx.tenant)
        hot = self._hot.get(key) if cfg is self._hot_cfg else None
        if hot is None:
            hot = self._resolve(key, cfg)
        route, model, target = hot.route, hot.model, hot.target
        hot.requests[0] += 1
        total = outcome.latency_ms / 1000
        self.duration.observe_into(hot.duration, total)
        if ctx.attempts:
            if hot.attempts is None or hot.upstream is None:
                hot.attempts = self.attempts.series((route,))
                hot.upstream = self.upstream.series((target,))
            hot.attempts[0] += ctx.attempts
            self.upstream.observe_into(hot.upstream, ctx.upstream_s)
            if not ctx.stream:
                if hot.overhead is None:
                    hot.overhead = self.overhead.series((route,))
                self.overhead.observe_into(hot.overhead, max(0.0, total - ctx.upstream_s))
        usage = outcome.usage or ctx.usage
        tokens_out = output_tokens(usage)
        if ctx.first_token_at is not None:
            ttft = ctx.first_token_at - ctx.started
            self.ttft.observe((route, model), ttft)
            if tokens_out and tokens_out > 1:
                self.tpot.observe((route, model), max(0.0, total - ttft) / (tokens_out - 1))
        tokens_in = input_tokens(usage)
        if tokens_in or tokens_out or ctx.cost_usd:
            tenant = hot.tenant
            if tenant is None:
                tenant = hot.tenant = self._tenant(ctx.tenant, cfg)
            if tokens_in:
                if hot.tokens_in is None:
                    hot.tokens_in = self.tokens.series((tenant, model, "input"))
                hot.tokens_in[0] += tokens_in
            if tokens_out:
                if hot.tokens_out is None:
                    hot.tokens_out = self.tokens.series((tenant, model, "output"))
                hot.tokens_out[0] += tokens_out
            if ctx.cost_usd:
                self.cost.inc((tenant, model), ctx.cost_usd)
        for d in ctx.decisions:
            self.decisions.inc((d.plugin, d.rule, d.action, d.mode))
            if d.rule == "retry":
                self.retries.inc((str(d.detail.get("target") or ""),))
            elif d.rule == "fallback":
                self.fallbacks.inc((str(d.detail.get("from", "")), str(d.detail.get("to", ""))))
            elif "saved_prompt_tokens" in d.detail:  # a cache hit (or stale answer): what it saved
                saved = d.detail["saved_prompt_tokens"] + d.detail.get("saved_completion_tokens", 0)
                self.cache_tokens.inc((d.plugin, d.mode), saved)
                self.cache_usd.inc((d.plugin, d.mode), d.detail.get("saved_usd", 0.0))
        headers = ctx.response_headers
        if headers and not headers.keys().isdisjoint(_BUDGET_HEADERS):
            tenant = self._tenant(ctx.tenant, cfg)
            for kind, name in zip(_BUDGET_KINDS, _BUDGET_HEADERS, strict=True):
                value = headers.get(name)
                if value is None:
                    continue
                try:
                    remaining = float(value)  # before the series exists: junk creates none
                except ValueError:
                    continue
                gauge = self._budget.get((kind, tenant))
                if gauge is None:
                    gauge = self._budget[kind, tenant] = self.budget.labels(kind, tenant)
                gauge.set(remaining)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def watch_loop_lag(self, interval: float = 0.25) -> None:
        """Forever: sleep ``interval`` and record how much later than asked the loop woke us."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - asked - interval)
            self.loop_lag.observe(lag)
            self.loop_lag_last.set(lag)


def metrics_route(metrics: Metrics) -> HttpRoute:
    """``GET /metrics`` in the Prometheus text format."""

    async def endpoint(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return HttpRoute("/metrics", endpoint, methods=["GET"])
