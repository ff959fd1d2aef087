"""``SIDECAR_SWITCH_INTERVAL``: parsed, validated and applied at server start (issue #17).

Why these tests: the setting only matters if ``serve`` really applies it before requests run, and a
value in the wrong unit (milliseconds given as seconds) must stop the start with a clear message
rather than make every thread switch take seconds. No timing is asserted here: the effect on
event-loop stalls is measured by ``benchmarks/loop_stall.py``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest

from proxy import server
from proxy.errors import ConfigError
from proxy.settings import SWITCH_INTERVAL_DEFAULT, Settings


@pytest.fixture(autouse=True)
def _restore_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDECAR_SWITCH_INTERVAL", raising=False)
    assert Settings.from_env().switch_interval == SWITCH_INTERVAL_DEFAULT
    assert 0 < SWITCH_INTERVAL_DEFAULT < 0.005  # shorter than Python's own 5 ms, or it does nothing


@pytest.mark.parametrize(
    ("raw", "expected"), [("0.0005", 0.0005), (" 0.002 ", 0.002), ("0", 0.0), ("", None)]
)
def test_parsed(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float | None) -> None:
    monkeypatch.setenv("SIDECAR_SWITCH_INTERVAL", raw)
    want = SWITCH_INTERVAL_DEFAULT if expected is None else expected
    assert Settings.from_env().switch_interval == want


@pytest.mark.parametrize("raw", ["fast", "-0.001", "nan", "inf", "1", "5ms"])
def test_invalid_rejected(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SIDECAR_SWITCH_INTERVAL", raw)
    with pytest.raises(ConfigError, match=r"SIDECAR_SWITCH_INTERVAL=.*expected.* seconds"):
        Settings.from_env()


def test_tune_switch_interval() -> None:
    sys.setswitchinterval(0.005)
    server.tune_switch_interval(0)  # 0: the interpreter's value stays
    assert sys.getswitchinterval() == pytest.approx(0.005)
    server.tune_switch_interval(0.0007)
    assert sys.getswitchinterval() == pytest.approx(0.0007)


class _Stop(Exception):
    pass


def test_serve_applies_it_before_the_sidecar_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_serve`` sets the interval at start: checked when it builds the sidecar (then stopped)."""
    seen: list[float] = []

    def build(*_: object) -> None:
        seen.append(sys.getswitchinterval())
        raise _Stop

    monkeypatch.setattr(server, "build_sidecar", build)
    sys.setswitchinterval(0.005)
    settings = Settings(gc_threshold=0, switch_interval=0.0006)  # gc 0: leave the collector alone
    with pytest.raises(_Stop):
        asyncio.run(server._serve(settings, []))
    assert seen == [pytest.approx(0.0006)]
