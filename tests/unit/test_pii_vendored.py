"""The vendored presidio recognisers (``presidio_rules``) are presidio's own, check for check.

The engine no longer imports presidio (its package loads spaCy and, when installed, torch), so
these tests hold the vendored copy to the real thing: same patterns, scores and context words
in the same order, the same answer from every checksum on every candidate the patterns find in
the shared PII dataset plus generated strings, and the same engine output, span for span, as an
engine built from presidio's live recogniser objects (what ``_predefined`` returned before).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii.engine import _predefined
from proxy.detectors.pii.iban_formats import REGEX_PER_COUNTRY
from proxy.detectors.pii.presidio_rules import PRESIDIO_VERSION, Recognizer
from proxy.detectors.pii.recognizers import FLAGS, RuleSet, build_rules
from tests.datasets import dataset_or_skip
from tests.unit.pii_tldextract_reference import offline_tldextract


def _presidio_recognizers() -> list[Any]:
    """presidio's English pattern recognisers, as the engine loaded them before vendoring."""
    from presidio_analyzer import RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, UrlRecognizer

    presidio_log = logging.getLogger("presidio-analyzer")
    presidio_log.setLevel(logging.ERROR)
    extract = offline_tldextract()

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    try:
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"])
    finally:
        presidio_log.setLevel(logging.WARNING)
    recs = [r for r in registry.recognizers if not isinstance(r, EmailRecognizer | UrlRecognizer)]
    return [*recs, OfflineEmailRecognizer()]


def _as_spec(rec: Any) -> Recognizer:
    """A live presidio recogniser as the engine's ``Recognizer`` (its bound checks)."""
    from presidio_analyzer import PatternRecognizer

    kind = type(rec)
    validate = rec.validate_result if kind.validate_result is not PatternRecognizer.validate_result else None
    invalidate = (
        rec.invalidate_result if kind.invalidate_result is not PatternRecognizer.invalidate_result else None
    )
    return Recognizer(
        rec.supported_entities[0],
        tuple((p.name, p.regex, p.score) for p in rec.patterns),
        tuple(rec.context or ()),
        validate,
        invalidate,
    )


@pytest.fixture(scope="module")
def live() -> list[Recognizer]:
    from presidio_analyzer import PatternRecognizer

    return [_as_spec(r) for r in _presidio_recognizers() if isinstance(r, PatternRecognizer)]


@pytest.fixture(scope="module")
def vendored() -> list[Recognizer]:
    return _predefined()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    data = json.loads((dataset_or_skip("pii") / "presidio_synth_dataset_v2.json").read_text())
    return [row["full_text"] for row in data]


def test_the_installed_presidio_is_the_vendored_release() -> None:
    from importlib.metadata import version

    assert version("presidio-analyzer") == PRESIDIO_VERSION  # else: re-check the copy, bump the version


def test_vendored_rules_are_presidios(live: list[Recognizer], vendored: list[Recognizer]) -> None:
    assert [(r.entity_type, r.patterns, r.context) for r in vendored] == [
        (r.entity_type, r.patterns, r.context) for r in live
    ]
    assert [(r.validate is None, r.invalidate is None) for r in vendored] == [
        (r.validate is None, r.invalidate is None) for r in live
    ]


def test_iban_formats_are_presidios() -> None:
    from presidio_analyzer.predefined_recognizers.generic.iban_patterns import regex_per_country

    assert list(REGEX_PER_COUNTRY.items()) == list(regex_per_country.items())


def _outcome(check: Callable[[str], Any], value: str, truthy: bool) -> tuple[str, Any]:
    try:
        result = check(value)
    except Exception as exc:  # both sides must fail the same way
        return "raised", type(exc)
    return "ok", bool(result) if truthy else result


def _assert_checks_agree(
    live: list[Recognizer], vendored: list[Recognizer], values: dict[int, set[str]]
) -> int:
    compared = 0
    for i, (old, new) in enumerate(zip(live, vendored, strict=True)):
        for value in sorted(values.get(i, ())):
            if old.validate is not None and new.validate is not None:
                # validate: True / False / None all matter (None: keep the pattern's score)
                assert _outcome(new.validate, value, False) == _outcome(old.validate, value, False), (
                    new.entity_type,
                    value,
                )
            if old.invalidate is not None and new.invalidate is not None:
                # invalidate: only its truth matters (presidio's IP check returns None for "valid")
                assert _outcome(new.invalidate, value, True) == _outcome(old.invalidate, value, True), (
                    new.entity_type,
                    value,
                )
            compared += 1
    return compared


def _candidates(recs: list[Recognizer], texts: list[str]) -> dict[int, set[str]]:
    """Every match of every pattern of the checked recognisers (with presidio's flags), plus
    each with its separators stripped and upper-cased: the values the checks really see."""
    out: dict[int, set[str]] = {}
    for i, rec in enumerate(recs):
        if rec.validate is None and rec.invalidate is None:
            continue
        found = out.setdefault(i, set())
        for _, rx, _ in rec.patterns:
            compiled = regex.compile(rx, FLAGS)
            for text in texts:
                for m in compiled.finditer(text):
                    found.add(m.group(0))
        found |= {v.replace(" ", "").upper() for v in found}
    return out


def test_checks_agree_on_every_dataset_candidate(
    live: list[Recognizer], vendored: list[Recognizer], texts: list[str]
) -> None:
    samples = [
        "4111 1111 1111 1111", "4111-1111-1111-1112", "5500 0000 0000 0004", "DE89370400440532013000",
        "GB29 NWBK 6016 1331 9268 19", "gb29nwbk60161331926819", "DE89 3704 0044 0532 0130 01",
        "XX89370400440532013000", "943 476 5919", "943 476 5918", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyX", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "BB1388567", "AB1234563", "078-05-1120", "123-45-6789",
        "219-09-9999", "219 09 9999", "219-09 9999", "000-12-3456", "666-12-3456", "111-11-1111",
        "192.168.10.24", "300.1.1.1", "::1", "fe80::1%eth0", "2001:db8::/32", "::ffff:10.0.0.1",
        "00:1A:2B:3C:4D:5E", "FF:FF:FF:FF:FF:FF", "0000.0000.0000", "001a.2b3c.4d5e",
        "123e4567-e89b-12d3-a456-426614174000", "00000000-0000-0000-0000-000000000000",
        "123e4567-e89b-02d3-a456-426614174000", "123e4567-e89b-12d3-c456-426614174000",
        "ann@example.com", "ann@example.invalid", "", "1", "bc1", "-", " ",
    ]  # fmt: skip
    values = _candidates(live, [*texts, " ".join(samples)])
    for i in values:
        values[i] |= set(samples)
    assert _assert_checks_agree(live, vendored, values) > 500


CHECK_TEXT = st.text(alphabet="0123456789 -.:ABCDEFGHJKLMNPQRSTUVWXYZabcdefxyzq1@", max_size=40)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(CHECK_TEXT, min_size=1, max_size=8))
def test_checks_agree_on_generated_strings(
    live: list[Recognizer], vendored: list[Recognizer], values: list[str]
) -> None:
    every = {i: set(values) for i, r in enumerate(live) if r.validate is not None or r.invalidate is not None}
    _assert_checks_agree(live, vendored, every)


@pytest.fixture(scope="module")
def engines(live: list[Recognizer]) -> tuple[PiiEngine, RuleSet]:
    engine = PiiEngine("off")
    reference = RuleSet(build_rules(live))
    engine.prepare(None)
    reference.prepare(None)
    return engine, reference


def _spans(rules: RuleSet, text: str) -> list[tuple[int, int, str, float]]:
    return [(h.start, h.end, h.entity_type, h.score) for h in rules.scan(text, None, 0.0)]


def test_engine_output_equals_the_presidio_built_engine_on_the_dataset(
    engines: tuple[PiiEngine, RuleSet], texts: list[str]
) -> None:
    engine, reference = engines
    found = 0
    for text in texts:
        spans = _spans(engine._rules, text)
        assert spans == _spans(reference, text), text
        found += len(spans)
    assert found > 1000


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(
            ["4111 1111 1111 1111", "DE89370400440532013000", "192.168.1.1", "ann@example.com", "219-09-9999",
             "card", "iban", "ssn", "ip", " ", "\n", "943 476 5919", "2024-03-18", "12/31/2023", "A1234567",
             "00:1A:2B:3C:4D:5E", "123e4567-e89b-12d3-a456-426614174000", "x", "9", "-", "."]
        ),
        max_size=25,
    ).map("".join)
)  # fmt: skip
def test_engine_output_equals_the_presidio_built_engine_on_generated_texts(
    engines: tuple[PiiEngine, RuleSet], text: str
) -> None:
    engine, reference = engines
    assert _spans(engine._rules, text) == _spans(reference, text)


def test_a_patterns_only_engine_never_imports_presidio_or_spacy() -> None:
    code = (
        "import sys; from proxy.detectors.pii import PiiEngine; "
        "e = PiiEngine('off'); e.prepare(None); e.analyze('mail ann@example.com', None, 0.4); "
        "heavy = ('presidio_analyzer', 'spacy', 'torch', 'transformers'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
