"""The cold-cache measuring tools of issue 17 (``benchmarks/guard_profile.py --evict``,
``benchmarks/insitu_probe.py``).

Why these tests: a detector call costs 1.3-2.5x more inside the request path than in a tight
loop because the loop keeps its data in the CPU's L2 cache (see the README's Performance
section). The tools that show it must really empty the caches before each timed call, keep the
eviction outside the clock, and replay the recorded calls in the order they claim (interleaved
as in the request, or grouped per detector); if they silently did otherwise, the comparison
would be wrong. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import guard_profile  # type: ignore[import-not-found]  # benchmarks/ is not a package
import insitu_probe  # type: ignore[import-not-found]
import tickets  # type: ignore[import-not-found]


def test_evict_runs_before_every_timed_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_call = guard_profile.one_call

    async def one_call(app: Any, body: bytes, n: int) -> None:
        events.append("call")
        await real_call(app, body, n)

    monkeypatch.setattr(guard_profile, "one_call", one_call)
    monkeypatch.setattr(guard_profile, "evict_caches", lambda buffer: events.append(f"evict {len(buffer)}"))
    app = guard_profile.compile_policy([], tmp_path, "empty")
    sets = {"same": tickets.TicketSet(512, same=True)}
    result = asyncio.run(guard_profile.measure({"empty": app}, sets, calls=3, blocks=2, evict=bytes(4096)))
    assert result["same"]["empty"] > 0
    timed = events[events.index("evict 4096") :]  # the warm-up calls run without eviction
    assert timed == ["evict 4096", "call"] * 6


def test_without_evict_nothing_is_evicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evicted: list[int] = []
    monkeypatch.setattr(guard_profile, "evict_caches", lambda buffer: evicted.append(len(buffer)))
    app = guard_profile.compile_policy([], tmp_path, "empty")
    sets = {"same": tickets.TicketSet(512, same=True)}
    asyncio.run(guard_profile.measure({"empty": app}, sets, calls=2, blocks=1))
    assert evicted == []


def test_evict_caches_reads_a_zero_buffer() -> None:
    guard_profile.evict_caches(bytes(1 << 16))  # returns: the buffer holds no 1 to stop at


def _log(order: list[str]) -> list[Any]:
    def call(target: str) -> Any:
        return lambda self_, *args, **kwargs: order.append((target, args, kwargs))

    cache = type("ScanCache", (), {})()
    return [
        ("pii", call("pii"), None, ("text 1",), {}, 1),
        ("moderation", call("moderation"), None, ("text 1", cache), {}, 1),
        ("pii", call("pii"), None, ("text 2",), {"cache": cache}, 1),
        ("moderation", call("moderation"), None, ("text 2",), {}, 1),
    ]


def test_replay_keeps_the_request_order_when_interleaved() -> None:
    order: list[Any] = []
    times = insitu_probe.replay(_log(order), interleaved=True)
    assert [target for target, _, _ in order] == ["pii", "moderation", "pii", "moderation"]
    assert {target: len(t) for target, t in times.items()} == {"pii": 2, "moderation": 2}


def test_replay_grouped_runs_each_detector_back_to_back_without_the_request_cache() -> None:
    order: list[Any] = []
    insitu_probe.replay(_log(order), interleaved=False)
    assert order == [
        ("moderation", ("text 1", None), {}),
        ("moderation", ("text 2",), {}),
        ("pii", ("text 1",), {}),
        ("pii", ("text 2",), {"cache": None}),
    ]


def test_probe_records_only_while_on() -> None:
    class Detector:
        def scan(self, text: str) -> str:
            return text.upper()

    insitu_probe.Probe("toy", Detector, "scan")
    insitu_probe.Probe.log = []
    assert Detector().scan("off") == "OFF"
    insitu_probe.Probe.on = True
    try:
        assert Detector().scan("on") == "ON"
    finally:
        insitu_probe.Probe.on = False
    assert [(target, args) for target, _, _, args, _, _ in insitu_probe.Probe.log] == [("toy", ("on",))]
