"""The moderation detector's outputs are identical to those recorded before the issue-17 speed-ups.

``moderation_outputs.py`` says what is hashed and from which texts; the committed digests were
computed with the code before the change (``python -m tests.unit.moderation_outputs --write``).
Every layer is compared separately so a mismatch says where it is.
"""

from __future__ import annotations

import json

import pytest

from proxy.detectors.moderation import ModerationDetector
from tests.datasets import dataset_or_skip
from tests.unit.moderation_outputs import DIGESTS, digests, sources

EXPECTED: dict[str, dict[str, str | int]] = json.loads(DIGESTS.read_text("utf-8"))


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    return sources(dataset_or_skip("moderation"))


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_outputs_match_the_recorded_digests(source: str, texts: dict[str, list[str]]) -> None:
    assert digests(texts[source], ModerationDetector()) == EXPECTED[source]


def test_every_source_is_recorded(texts: dict[str, list[str]]) -> None:
    assert sorted(texts) == sorted(EXPECTED)
