"""The live page's per-minute ring buffers, driven by a fake clock (no waiting for real minutes)."""

from __future__ import annotations

from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Outcome
from proxy.models.chat import Route
from proxy.observability.live import LiveStats


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000 * 60.0

    def __call__(self) -> float:
        return self.now


def _request(live: LiveStats, status: int, *decisions: tuple[str, str, str, str]) -> None:
    ctx = RequestContext("r", Route.CHAT, {}, "rev", "m")
    for plugin, rule, mode, action in decisions:
        ctx.active = ActiveStep(plugin, mode)
        ctx.record(rule, action)
    live(None, ctx, Outcome(status))  # type: ignore[arg-type]  # the policy is not read


def test_counts_per_minute_and_per_rule_mode_and_action() -> None:
    clock = Clock()
    live = LiveStats(minutes=3, clock=clock)
    _request(live, 200, ("inj", "prompt_injection", "shadow", "block"))
    _request(live, 400, ("words", "request_match", "enforce", "block"))
    clock.now += 60
    _request(
        live,
        200,
        ("inj", "prompt_injection", "shadow", "block"),
        ("inj", "prompt_injection", "shadow", "flag"),
    )
    _request(live, 502)
    snap = live.snapshot()
    assert [(m["requests"], m["errors"], m["refused"]) for m in snap["minutes"]] == [
        (0, 0, 0),
        (2, 0, 1),
        (2, 1, 0),
    ]
    rules = {(r["plugin"], r["rule"]): r for r in snap["rules"]}
    inj = rules[("inj", "prompt_injection")]
    assert inj["shadow"] == {"block": 2, "flag": 1} and inj["enforce"] == {}
    assert inj["shadow_per_minute"] == [0, 1, 2]
    assert rules[("words", "request_match")]["enforce"] == {"block": 1}


def test_old_minutes_leave_the_window_and_slots_are_reused() -> None:
    clock = Clock()
    live = LiveStats(minutes=3, clock=clock)
    _request(live, 200, ("inj", "prompt_injection", "shadow", "block"))
    clock.now += 3 * 60  # the same ring slot, three minutes later
    assert live.snapshot()["rules"] == []
    _request(live, 200)
    assert [m["requests"] for m in live.snapshot()["minutes"]] == [0, 0, 1]
    clock.now += 10 * 60
    assert [m["requests"] for m in live.snapshot()["minutes"]] == [0, 0, 0]
