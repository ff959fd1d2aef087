"""Review labels in the capture store drive a staged promotion's false-positive bound."""

from __future__ import annotations

from pathlib import Path

import orjson

from plugins.blocklist import BlocklistConfig
from proxy.chain.promote import PromoteConfig
from proxy.observability import capture_store
from proxy.observability.capture_labels import CaptureLabels, count_labelled_hits
from proxy.policy.promotion import PromotionBook

START = 1_000_000.0


def _hit(rid: str, ts: float, plugin: str = "words", action: str = "block") -> dict[str, object]:
    return {
        "id": rid,
        "ts": ts,
        "route": "chat.completions",
        "decisions": [{"plugin": plugin, "rule": "keyword", "action": action, "mode": "shadow"}],
        "request": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
    }


def _store(root: Path, records: list[dict[str, object]], labels: list[dict[str, object]]) -> None:
    for record in records:
        capture_store.append(root, orjson.dumps(record), 1 << 20)
    capture_store.append_labels(root, [capture_store.check_label_event(e) for e in labels])


def test_counts_only_the_steps_labelled_hits_since_the_promotion_started(tmp_path: Path) -> None:
    _store(
        tmp_path,
        [
            _hit("a", START + 1),  # hit, labelled benign -> false positive
            _hit("b", START + 2),  # hit, labelled correct for this rule
            _hit("c", START + 3),  # hit, unlabelled -> not counted
            _hit("d", START - 5),  # before the promotion started
            _hit("e", START + 4, plugin="other"),  # another step's hit
            _hit("f", START + 5, action="allow"),  # the step let it through: not a hit
        ],
        [
            {"id": "a", "label": "benign"},
            {"id": "b", "labels": {"words/keyword": True}},
            {"id": "d", "label": "benign"},
            {"id": "e", "label": "benign"},
            {"id": "f", "label": "benign"},
        ],
    )
    records, labels = capture_store.read_records(tmp_path), capture_store.read_labels(tmp_path)
    assert count_labelled_hits(records, labels, "words", START) == (1, 2)
    assert count_labelled_hits(records, labels, "words", START - 10) == (2, 3)
    assert count_labelled_hits(records, labels, "other", START) == (1, 1)


def test_the_book_gets_the_last_finished_count_and_never_waits(tmp_path: Path) -> None:
    _store(tmp_path, [_hit("a", START + 1)], [{"id": "a", "label": "benign"}])
    source = CaptureLabels(tmp_path)
    assert source.labelled_hits("words", START) == (0, 0)  # first ask: nothing counted yet
    worker = source._worker
    assert worker is not None
    worker.join(timeout=10)
    assert source.labelled_hits("words", START) == (1, 1)


def test_reviewers_marking_hits_benign_roll_a_promotion_back(tmp_path: Path) -> None:
    now = [START]
    promote = PromoteConfig(
        steps=(5, 25, 100), min_minutes=30, min_requests=10, max_block_rate=0.5,
        max_false_positive_rate=0.1, min_labels=4,
    )  # fmt: skip
    config = BlocklistConfig(type="blocklist", id="words", keywords=["acme"], mode="shadow", promote=promote)
    source = CaptureLabels(tmp_path)
    book = PromotionBook(lambda: now[0], source)
    key = book.register("words", config, promote).key
    now[0] += 31 * 60
    for _ in range(10):
        book.observe(key, False)
        book.tick((key,))
    assert book.percent(key) == 5

    hits = [_hit(f"r{i}", START + 60 + i) for i in range(4)]
    _store(tmp_path, hits, [{"id": f"r{i}", "labels": {"words/keyword": i >= 2}} for i in range(4)])
    source.refresh()  # what the worker thread does between asks
    now[0] += 60  # past the book's label refresh interval
    book.observe(key, False)
    moves = [t.kind for t in book.tick((key,))]
    assert moves == ["rollback"]
    assert book.history[-1]["extra"] == {"false_positive_rate": 0.5}
