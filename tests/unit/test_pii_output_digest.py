"""The PII pattern engine's output is what it was before the #17 work, span for span.

``data/pii_digests.json`` was recorded by ``tests/unit/pii_corpus.py`` at the base commit (presidio
imported, the rule loop before the plan, exact triggers, word-start context words, the narrowed
search fix); each source's digest covers every span, type, score (``repr``) and their order, for
the plugin's default scan and for every entity at threshold 0. On a mismatch, diff
``python -m tests.unit.pii_corpus --dump SOURCE`` here and at the base commit.
"""

from __future__ import annotations

import json

import pytest

from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus


@pytest.mark.parametrize("source", pii_corpus.SOURCES)
def test_engine_output_digest_is_unchanged(source: str) -> None:
    if source == "dataset":
        dataset_or_skip("pii")
    recorded = json.loads(pii_corpus.DIGESTS.read_text())
    assert pii_corpus.digest(source) == recorded[source], f"python -m tests.unit.pii_corpus --dump {source}"


def test_the_corpus_exercises_the_engine() -> None:
    """The digests would be worthless over empty outputs: most generated texts yield spans."""
    lines = [json.loads(line) for line in pii_corpus.outputs("generated")]
    with_spans = sum(1 for _, spans in lines if spans)
    assert with_spans > len(lines) * 0.8
    assert {t for _, spans in lines for _, _, t, _ in spans} >= {
        "CREDIT_CARD", "IBAN_CODE", "US_SSN", "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "UUID",
        "MAC_ADDRESS", "DATE_TIME", "CRYPTO", "PERSON", "ADDRESS",
    }  # fmt: skip
