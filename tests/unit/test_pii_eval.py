"""scripts/eval_pii.py's scoring: presidio-research's span method and the older strict one."""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_pii.py"


@pytest.fixture(scope="module")
def ev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_pii", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _score(ev: ModuleType, text: str, gold: list[Any], pred: list[Any]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"credited": 0, "pred": 0, "tp": 0, "gold": 0})
    ev.SpanScorer().score(text, gold, pred, counts)
    return counts


def _span(text: str, value: str, etype: str) -> tuple[int, int, str]:
    start = text.index(value)
    return (start, start + len(value), etype)


def test_address_pieces_merge_into_one_gold_span(ev: ModuleType) -> None:
    """The dataset labels street / city / country separately; after the type map they are all
    LOCATION separated by punctuation and whitespace, so presidio-research merges them."""
    text = "Send it to 12 Main St, Springfield, Canada please"
    gold = [
        _span(text, "12 Main St", "LOCATION"),
        _span(text, "Springfield", "LOCATION"),
        _span(text, "Canada", "LOCATION"),
    ]
    pred = [_span(text, "12 Main St, Springfield, Canada", "LOCATION")]
    c = _score(ev, text, gold, pred)
    assert c["LOCATION"] == {"credited": 1, "pred": 1, "tp": 1, "gold": 1}
    strict = ev._match_strict(gold, pred, True)
    assert strict.count(("LOCATION", "tp")) == 0  # the old method: one FP, three misses


def test_predictions_merge_like_gold_spans(ev: ModuleType) -> None:
    text = "The Princess arrived at Ettelgem this morning from Belgium."
    gold = [_span(text, "Ettelgem", "LOCATION"), _span(text, "Belgium", "LOCATION")]
    pred = list(gold)
    c = _score(ev, text, gold, pred)
    # "this morning from" are skip words: one merged span on either side
    assert c["LOCATION"] == {"credited": 1, "pred": 1, "tp": 1, "gold": 1}


def test_wrong_type_is_a_miss_and_a_false_positive_but_counts_for_any_pii(ev: ModuleType) -> None:
    text = "Call Ann Lee today"
    gold = [_span(text, "Ann Lee", "PERSON")]
    pred = [_span(text, "Ann Lee", "ORGANIZATION")]
    c = _score(ev, text, gold, pred)
    assert c["PERSON"]["tp"] == 0 and c["PERSON"]["gold"] == 1
    assert c["ORGANIZATION"] == {"credited": 0, "pred": 1, "tp": 0, "gold": 0}
    assert c["ANY_PII"] == {"credited": 1, "pred": 1, "tp": 1, "gold": 1}


def test_low_overlap_is_not_a_match(ev: ModuleType) -> None:
    text = "Contact Anna Maria Kowalska Nowak now"
    gold = [_span(text, "Anna Maria Kowalska Nowak", "PERSON")]
    pred = [_span(text, "Anna", "PERSON")]
    c = _score(ev, text, gold, pred)
    assert c["PERSON"] == {"credited": 0, "pred": 1, "tp": 0, "gold": 1}


def test_f_beta(ev: ModuleType) -> None:
    p, r, f = ev._prf(1, 2, 1, 1)
    assert (p, r) == (0.5, 1.0)
    assert f == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))
