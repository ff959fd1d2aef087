"""The promotion book's state machine: stages, rollback on rate and on labels, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from plugins.blocklist import BlocklistConfig
from proxy.chain.promote import PromoteConfig
from proxy.errors import Rejected
from proxy.policy.promotion import PromotionBook, PromotionStateConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, n: float) -> None:
        self.now += n * 60


class Labels:
    """Injected review labels: (false positives, labelled) for any step."""

    def __init__(self) -> None:
        self.false_positives = 0
        self.labelled = 0
        self.asked: list[tuple[str, float]] = []

    def labelled_hits(self, step_id: str, since: float) -> tuple[int, int]:
        self.asked.append((step_id, since))
        return self.false_positives, self.labelled


PROMOTE = PromoteConfig(steps=(5, 25, 100), min_minutes=30, min_requests=100, max_block_rate=0.02)
CONFIG = BlocklistConfig(type="blocklist", id="words", keywords=["acme"], mode="shadow", promote=PROMOTE)


def _book(clock: Clock, labels: Labels | None = None) -> tuple[PromotionBook, str]:
    book = PromotionBook(clock, labels)
    return book, book.register("words", CONFIG, PROMOTE).key


def _traffic(book: PromotionBook, key: str, n: int, hits: int) -> list[str]:
    """``n`` requests of which ``hits`` the step acted on; returns the transitions' kinds."""
    moves = []
    for i in range(n):
        book.observe(key, i < hits)
        moves += [t.kind for t in book.tick((key,))]
    return moves


def test_promotes_through_every_stage_then_stays_enforced() -> None:
    clock = Clock()
    book, key = _book(clock)
    seen = []
    book.listeners.append(seen.append)
    assert book.percent(key) == 0
    for expected in (5, 25, 100):
        assert _traffic(book, key, 150, 1) == []  # enough requests, but not yet min_minutes
        clock.minutes(30)
        assert _traffic(book, key, 1, 0) == ["promote"]
        assert book.percent(key) == expected
    assert [(t.from_percent, t.to_percent) for t in seen] == [(0, 5), (5, 25), (25, 100)]
    assert seen[-1].status == "enforced" and book.transitions[("words", "promote")] == 3
    clock.minutes(60)
    assert _traffic(book, key, 200, 2) == [] and book.percent(key) == 100  # no stage beyond 100


def test_needs_min_requests_as_well_as_min_minutes() -> None:
    clock = Clock()
    book, key = _book(clock)
    clock.minutes(120)
    assert _traffic(book, key, 99, 0) == []
    assert _traffic(book, key, 1, 0) == ["promote"]


def test_rolls_back_to_shadow_when_the_block_rate_exceeds_its_bound() -> None:
    clock = Clock()
    book, key = _book(clock)
    clock.minutes(30)
    _traffic(book, key, 100, 0)
    assert book.percent(key) == 5
    # Injected false positives: the rule now acts on 10% of requests, bound 2%.
    moves = _traffic(book, key, 100, 10)
    assert moves == ["rollback"] and book.percent(key) == 0
    [row] = book.snapshot((key,))
    assert row["status"] == "rolled_back"
    assert "block rate 0.1000 > max_block_rate 0.02 over 100 requests" in book.history[-1]["reason"]
    clock.minutes(600)
    assert _traffic(book, key, 500, 0) == [] and book.percent(key) == 0  # stays rolled back


def test_a_shadow_stage_over_its_bound_does_not_advance() -> None:
    clock = Clock()
    book, key = _book(clock)
    _traffic(book, key, 100, 50)
    clock.minutes(30)
    assert _traffic(book, key, 1, 1) == [] and book.percent(key) == 0
    [row] = book.snapshot((key,))
    assert row["status"] == "shadow" and row["requests"] == 0  # a fresh window started
    _traffic(book, key, 100, 0)
    clock.minutes(30)
    assert _traffic(book, key, 1, 0) == ["promote"]


def test_rolls_back_on_labelled_false_positives() -> None:
    clock = Clock()
    labels = Labels()
    promote = PROMOTE.model_copy(update={"max_false_positive_rate": 0.1, "min_labels": 20})
    book = PromotionBook(clock, labels)
    key = book.register("words", CONFIG, promote).key
    clock.minutes(30)
    _traffic(book, key, 100, 0)
    assert book.percent(key) == 5
    labels.false_positives, labels.labelled = 5, 10  # too few labels to judge: no action
    assert _traffic(book, key, 10, 0) == []
    labels.false_positives, labels.labelled = 6, 20  # 30% of labelled hits were benign
    asked = len(labels.asked)
    assert _traffic(book, key, 5, 0) == []  # the label source is asked at most every 30 s ...
    assert len(labels.asked) == asked
    clock.minutes(1)
    assert _traffic(book, key, 1, 0) == ["rollback"]  # ... then it is, and the step rolls back
    assert book.history[-1]["extra"] == {"false_positive_rate": 0.3}
    assert labels.asked[-1] == ("words", 1_000_000.0)  # counted since the promotion started


def test_a_broken_label_source_never_blocks_promotion() -> None:
    class Broken:
        def labelled_hits(self, step_id: str, since: float) -> tuple[int, int]:
            raise RuntimeError("label store down")

    clock = Clock()
    promote = PROMOTE.model_copy(update={"max_false_positive_rate": 0.1})
    book = PromotionBook(clock, Broken())
    key = book.register("words", CONFIG, promote).key
    clock.minutes(30)
    assert _traffic(book, key, 100, 0) == ["promote"]


def test_state_continues_for_the_same_step_and_restarts_for_an_edited_one() -> None:
    clock = Clock()
    book, key = _book(clock)
    clock.minutes(30)
    _traffic(book, key, 100, 0)
    assert book.register("words", CONFIG, PROMOTE).percent == 5  # a reload: same step
    edited = CONFIG.model_copy(update={"keywords": ("acme", "globex")})
    assert book.register("words", edited, PROMOTE).percent == 0  # a new rule starts in shadow


def test_file_state_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    cfg = PromotionStateConfig(state="file", path="state.json")
    book = PromotionBook(clock)
    book.configure(cfg, str(tmp_path))
    key = book.register("words", CONFIG, PROMOTE).key
    clock.minutes(30)
    _traffic(book, key, 100, 0)
    assert (tmp_path / "state.json").exists()
    again = PromotionBook(clock)  # a new process
    again.configure(cfg, str(tmp_path))
    assert again.register("words", CONFIG, PROMOTE).percent == 5
    assert [h["kind"] for h in again.history] == ["promote"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": [25, 5]}, "must increase"),
        ({"steps": [0, 100]}, r"percentages in \(0, 100\]"),
        ({"steps": []}, "at least 1 item"),
        ({"steps": [5], "max_block_rate": 0}, "greater than 0"),
        ({"steps": [5], "stages": 3}, "Extra inputs"),
    ],
)
def test_bad_promote_configs(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PromoteConfig.model_validate(fields)


def test_promote_starts_from_shadow() -> None:
    with pytest.raises(ValidationError, match="promote starts from mode: shadow"):
        BlocklistConfig(type="blocklist", keywords=["x"], promote=PROMOTE)


def test_check_accepts_a_promoted_guard_and_refuses_a_promoted_wrapper(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.__main__ import main

    promote = "{steps: [10, 100], min_minutes: 60}"
    good = tmp_path / "good.yaml"
    good.write_text(
        f"version: 1\nplugins:\n  - {{type: blocklist, mode: shadow, keywords: [x], promote: {promote}}}\n"
    )
    assert main(["check", str(good)]) == 0
    assert "blocklist (shadow)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"version: 1\nplugins:\n  - {{type: retry, mode: shadow, promote: {promote}}}\n")
    assert main(["check", str(bad)]) == 1
    assert "promote applies to guard steps" in capsys.readouterr().err


def test_a_bad_state_url_is_a_clear_load_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.__main__ import main

    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\npromotion: {state: redis, redis_url: 'http://cache:6379'}\nplugins: []\n")
    assert main(["check", str(policy)]) == 1
    assert "p.yaml:2:38: promotion.redis_url: redis_url must start with redis://" in capsys.readouterr().err


class _Moving:
    """A rollout whose percentage the test moves."""

    def __init__(self) -> None:
        self.percent = 0.0


async def test_a_stage_change_mid_request_does_not_split_the_request() -> None:
    from proxy.chain.chain import Chain, Step
    from proxy.chain.context import ActiveStep, RequestContext
    from proxy.chain.plugin import Deps, Resources
    from proxy.models import ChatRequest, ChatResponse, Route
    from tests.unit.test_canary import Strict, StrictConfig, _NoUpstream

    rollout = _Moving()
    step = Step("strict", Strict(StrictConfig(), Deps(Resources())), "shadow", "fail_closed", None,
                ActiveStep("strict", "enforce"), None, rollout)  # fmt: skip
    chain = Chain([step], _NoUpstream())
    ctx = RequestContext("r-1", Route.CHAT, {}, "rev", "m")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    await chain.run_request(ChatRequest(body, Route.CHAT), ctx)  # 0%: shadow, not refused
    rollout.percent = 100  # promoted while the request is in flight
    await chain.run_response(ChatResponse({"choices": []}, Route.CHAT), ctx)
    assert [d.mode for d in ctx.decisions] == ["shadow", "shadow"]
    # The next request sees the new stage.
    ctx2 = RequestContext("r-2", Route.CHAT, {}, "rev", "m")
    with pytest.raises(Rejected):
        await chain.run_request(ChatRequest(body, Route.CHAT), ctx2)
