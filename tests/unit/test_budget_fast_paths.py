"""The budget step's per-request shortcuts (issue 17) give exactly what the long way gives.

Each shortcut is compared with the code it replaced (kept here as the reference) on generated
inputs: the memory backend's ``reserve`` (one window index and counter key per check), the
step's memoised price per model, and ``LimitSpec.measure`` (cached on the frozen model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.budget import BudgetConfig, BudgetPlugin
from plugins.budget.config import LimitSpec
from proxy.budget.backends import Charge, MemoryBackend, Reservation, SlotCheck, WindowCheck, counter_key
from proxy.budget.windows import WindowState, window_index
from proxy.chain import Deps
from proxy.chain.plugin import Resources
from proxy.tokens.pricing import DEFAULT_PRICES, Price, price_for_model

FAST = settings(max_examples=200, deadline=None)


class ReferenceBackend(MemoryBackend):
    """``MemoryBackend.reserve`` as it was before the shortcut (the reference; it reads the
    counters through ``MemoryBackend._states``, which ``estimate`` still uses unchanged)."""

    async def reserve(self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]) -> Reservation:
        now = self._clock()
        self._maybe_sweep(now)
        states = self._states(windows, now, [0.0] * len(windows))
        charges = [
            Charge(
                counter_key(c.key, c.window, window_index(now, c.window)),
                c.window,
                window_index(now, c.window),
            )
            for c in windows
        ]
        for i, (check, state) in enumerate(zip(windows, states, strict=True)):
            if state.used + check.amount > check.limit:
                return Reservation(False, states, charges, denied_window=i)
        counts = []
        for i, slot in enumerate(slots):
            holders = self._holders(slot.key, now)
            if slot.lease_id not in holders and len(holders) >= slot.limit:
                return Reservation(
                    False, states, charges, [len(self._holders(s.key, now)) for s in slots], denied_slot=i
                )
            counts.append(len(holders))
        for check, charge in zip(windows, charges, strict=True):
            self._add(charge.counter, check.amount, (charge.index + 2) * check.window, now)
        for i, slot in enumerate(slots):
            self._holders(slot.key, now)[slot.lease_id] = now + slot.ttl
            counts[i] = len(self._slots[slot.key])
        return Reservation(True, self._states(windows, now, [0.0] * len(windows)), charges, counts)


CHECK = st.builds(
    WindowCheck,
    st.sampled_from(["a", "b", "c"]),  # few keys: checks of one request may share a counter
    st.sampled_from([1, 60, 3600]),
    st.sampled_from([1.0, 5.0, 100.0, 1e9]),
    st.one_of(st.sampled_from([0.0, 1.0, 4.0]), st.floats(0, 200, allow_nan=False)),
)
STEP = st.tuples(
    st.lists(CHECK, max_size=4),
    st.lists(
        st.builds(
            SlotCheck,
            st.sampled_from(["s", "t"]),
            st.integers(1, 3),
            st.sampled_from(["r1", "r2", "r3"]),
            st.just(30.0),
        ),
        max_size=2,
    ),
    st.floats(0, 90, allow_nan=False),  # seconds the clock moves before this request
    st.booleans(),  # correct the charges afterwards (as on_complete does)
)


@FAST
@given(st.lists(STEP, min_size=1, max_size=25), st.floats(1e9, 2e9, allow_nan=False))
def test_memory_reserve_equals_the_reference(steps: list[tuple[Any, ...]], start: float) -> None:
    now = [start]
    new, ref = (
        MemoryBackend(clock=lambda: now[0], sweep_every=7),
        ReferenceBackend(clock=lambda: now[0], sweep_every=7),
    )

    async def run() -> None:
        for windows, slots, advance, correct in steps:
            now[0] += advance
            got, want = await new.reserve(windows, slots), await ref.reserve(windows, slots)
            assert got == want
            if correct and got.allowed:
                fixes = [(c, -w.amount / 2) for c, w in zip(got.charges, windows, strict=True)]
                await new.adjust(fixes)
                await ref.adjust(fixes)
            assert new._counters == ref._counters and new._slots == ref._slots

    asyncio.run(run())


MODELS = st.one_of(
    st.sampled_from(sorted(DEFAULT_PRICES)),
    st.sampled_from(sorted(DEFAULT_PRICES)).map(lambda m: m + "-2024-08-06"),
    st.sampled_from(["azure/gpt-4o", "openai:GPT-4o-mini", "o3-pro", "mine", "gpt-4o-realtime-preview"]),
    st.text(max_size=20),
)


@FAST
@given(st.lists(MODELS, min_size=1, max_size=40))
def test_memoised_price_equals_the_table_lookup(models: list[str]) -> None:
    from plugins.budget import plugin as budget_plugin

    step = _budget_step({"my-model": {"input": 1.0, "output": 2.0}, "gpt-4o": {"input": 9.0, "output": 9.0}})
    overrides = {"my-model": Price(input=1.0, output=2.0), "gpt-4o": Price(input=9.0, output=9.0)}
    for model in models + models:  # the second round is answered from the memo
        assert step._price(model) == price_for_model(model, overrides)
    assert len(step._price_memo) <= budget_plugin._PRICE_MEMO_MAX


def test_price_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.budget import plugin as budget_plugin

    monkeypatch.setattr(budget_plugin, "_PRICE_MEMO_MAX", 4)
    step = _budget_step({}, default_price={"input": 0.5, "output": 1.5})
    for i in range(10):
        assert step._price(f"unknown-{i}") == Price(input=0.5, output=1.5)  # the default price
        assert len(step._price_memo) <= 4
    assert step._price("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]


@pytest.mark.parametrize(
    "spec",
    [
        {"requests": 5, "window": "minute"},
        {"tokens": 5, "window": "hour"},
        {"input_tokens": 5, "window": "day"},
        {"output_tokens": 5, "window": "second"},
        {"cost_usd": 0.5, "window": "month"},
        {"concurrent": 3},
    ],
)
def test_cached_measure_is_the_field_set(spec: dict[str, object]) -> None:
    limit = LimitSpec.model_validate({"name": "x", **spec})
    field = next(k for k in spec if k != "window")
    assert limit.measure == field and limit.measure == field  # computed, then cached
    assert limit.amount_limit == float(spec[field])  # type: ignore[arg-type]
    # The cache is no field: equality, hashing and dumps see only the configuration.
    fresh = LimitSpec.model_validate({"name": "x", **spec})
    assert limit == fresh and hash(limit) == hash(fresh)
    assert "measure" not in limit.model_dump()


def _budget_step(prices: dict[str, dict[str, float]], **extra: object) -> BudgetPlugin:
    config = BudgetConfig.model_validate(
        {"limits": [{"name": "usd", "cost_usd": 100, "window": "day"}], "prices": prices, **extra}
    )
    return BudgetPlugin(config, Deps(Resources()))


KEY_PARTS = st.lists(
    st.sampled_from(["tenant", "api_key", "user", "model", "route"]), max_size=3, unique=True
)
PART_VALUES = st.dictionaries(
    st.sampled_from(["tenant", "api_key", "user", "model", "route"]), st.text(max_size=8), max_size=5
)


@FAST
@given(st.lists(KEY_PARTS, min_size=1, max_size=3), st.sampled_from([None, "shared"]), PART_VALUES)
def test_the_planned_counter_key_equals_limit_key(
    keys: list[list[str]], namespace: str | None, parts: dict[str, str]
) -> None:
    from plugins.budget.identity import limit_key

    limits = [{"name": f"l{i}", "requests": 10, "window": "minute", "key": k} for i, k in enumerate(keys)]
    config = BudgetConfig.model_validate(
        {"limits": limits, **({"namespace": namespace} if namespace else {})}
    )
    step = BudgetPlugin(config, Deps(Resources()))
    for limit in config.limits:
        assert step._key(limit, parts) == limit_key(config, limit, parts)


def _reference_headers(
    limits: Sequence[tuple[str, WindowState]], reset_override: float | None = None
) -> dict[str, str]:
    """``headers_for`` before it worked out each state's ``remaining`` once (the reference)."""
    from proxy.budget.explain import HEADER_KIND, _fmt, capped_reset
    from proxy.budget.windows import format_duration

    tightest: dict[str, tuple[float, WindowState]] = {}
    for measure, state in limits:
        kind = HEADER_KIND.get(measure, "tokens")
        ratio = state.remaining / state.limit if state.limit else 0.0
        if kind not in tightest or ratio < tightest[kind][0]:
            tightest[kind] = (ratio, state)
    headers = {}
    for kind, (_, state) in tightest.items():
        reset = capped_reset(state) if reset_override is None else reset_override
        headers[f"x-ratelimit-limit-{kind}"] = _fmt(kind, state.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = _fmt(kind, state.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset)
    return headers


STATE = st.builds(
    WindowState,
    st.floats(0, 1e6, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False),
    st.floats(1e9, 2e9, allow_nan=False),
    st.sampled_from([1, 60, 3600, 86400]),
    st.one_of(st.just(0.0), st.floats(0, 1e6, allow_nan=False)),
)
MEASURES = st.sampled_from(["requests", "tokens", "input_tokens", "output_tokens", "cost_usd"])


@FAST
@given(
    st.lists(st.tuples(MEASURES, STATE), max_size=5), st.one_of(st.none(), st.floats(0, 120, allow_nan=False))
)
def test_budget_headers_equal_the_reference(
    limits: list[tuple[str, WindowState]], reset: float | None
) -> None:
    from proxy.budget.explain import headers_for

    got = headers_for(limits, reset)
    want = _reference_headers(limits, reset)
    assert got == want and list(got) == list(want)  # same values, same order


def test_the_budget_gauge_reads_the_remaining_headers_and_skips_junk() -> None:
    """``Metrics.observe`` without ``contextlib.suppress`` still ignores a value that is no number."""
    from types import SimpleNamespace

    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.models.chat import Route
    from proxy.observability.config import MetricsConfig
    from proxy.observability.metrics import Metrics

    metrics = Metrics(SimpleNamespace())  # type: ignore[arg-type]
    ctx = RequestContext("r", Route.CHAT, {}, "rev", "gpt-4o")
    ctx.response_headers.update(
        {"x-ratelimit-remaining-requests": "41", "x-ratelimit-remaining-tokens": "junk", "x-other": "1"}
    )
    metrics.observe(SimpleNamespace(metrics=MetricsConfig()), ctx, Outcome(200, latency_ms=1.0))  # type: ignore[arg-type]
    samples = {
        s.labels["kind"]: s.value
        for m in metrics.budget.collect()
        for s in m.samples
        if s.name.endswith("remaining")
    }
    assert samples == {"requests": 41.0}  # "junk" made no series; usd was absent


@FAST
@given(STATE)
def test_the_inlined_window_estimate_equals_estimate(state: WindowState) -> None:
    from proxy.budget.windows import estimate

    assert state.used == estimate(state.prev, state.cur, state.now, state.window)
    assert state.remaining == max(0.0, state.limit - estimate(state.prev, state.cur, state.now, state.window))
