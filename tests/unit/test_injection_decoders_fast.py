"""The decoders' run finders give exactly the spans of the regexes they stand in for (issue #17).

``find_hex`` and ``find_b64`` find the maximal base64 / hex runs of an ASCII text on its
class-mapped bytes instead of with ``_B64_RUN`` / ``_HEX_RUN``; here the regexes are the
reference, on generated texts built to hit the edges (runs of exactly 15, 16 and 17 characters,
padding of one to three ``=``, runs glued to letters, at both ends of the text, non-ASCII text).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.injection import decoders

# Hex digits, other base64 characters, padding, separators and one non-ASCII letter.
ALPHABET = "0123456789abcdefABCDEFxyzXYZ+/_-= .,:\n\u00e9"
RUNS = st.sampled_from(
    ["a" * 15, "b" * 16, "c" * 17, "aGVsbG8gd29ybGQgdGhpcyBpcw==", "68656c6c6f20776f726c64"]
)


def reference_hex(text: str) -> list[tuple[int, int]]:
    """``find_hex`` as it was: the four patterns in order, the first two kept when isolated."""
    out = [
        m.span()
        for p in (decoders._HEX_RUN, decoders._HEX_SEP)
        for m in p.finditer(text)
        if decoders._isolated(text, *m.span())
    ]
    return out + [m.span() for p in (decoders._HEX_ESC, decoders._HEX_0X) for m in p.finditer(text)]


def reference_b64(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in decoders._B64_RUN.finditer(text)]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(st.text(ALPHABET, max_size=24), RUNS), max_size=12).map("".join))
def test_run_finders_equal_the_regexes(text: str) -> None:
    assert list(decoders.find_hex(text)) == reference_hex(text)
    assert list(decoders.find_b64(text)) == reference_b64(text)


def test_run_finders_on_known_cases() -> None:
    cases = {
        "x" + "a" * 16: ([], [(0, 17)]),
        "a" * 16 + "===": ([(0, 16)], [(0, 18)]),
        "see umbrella-freight today": ([], [(4, 20)]),
        "\u00e9" + "b" * 20: ([], [(1, 21)]),  # glued to a letter: no hex run
        "a" * 15 + " " + "f" * 16: ([(16, 32)], [(16, 32)]),
    }
    for text, (hex_spans, b64_spans) in cases.items():
        assert list(decoders.find_hex(text)) == hex_spans == reference_hex(text), text
        assert list(decoders.find_b64(text)) == b64_spans == reference_b64(text), text


def _reference_kinds(text: str) -> int:
    """``encoded_kinds``' bits computed with the decoders' own tests."""
    raw = text.encode("utf-8", "surrogatepass")
    return (
        ("%" in text)
        | ("\\x" in text) << 1
        | ("0x" in text) << 2
        | (decoders._B64_MIN in raw.translate(decoders._B64_CLASS)) << 3
        | (decoders._HEX_RUN.search(text) is not None) << 4
        | (decoders._HEX_SEP_MIN in raw.translate(decoders._HEX_SEP_CLASS)) << 5
    )


KIND_ALPHABET = ALPHABET + "%\\x0"


@settings(max_examples=800, deadline=None)
@given(st.lists(st.one_of(st.text(KIND_ALPHABET, max_size=24), RUNS), max_size=12).map("".join))
def test_applicable_finders_find_every_span(text: str) -> None:
    kernel = decoders._kernel
    if kernel is not None:
        assert kernel.encoded_kinds(text) == _reference_kinds(text)
    everything = [(name, list(finder(text))) for name, finder, _ in decoders.FINDERS]
    chosen = {name for name, _, _ in decoders.applicable(text)}
    assert [(name, spans) for name, spans in everything if spans] == [
        (name, spans) for name, spans in everything if spans and name in chosen
    ]
    assert [f[0] for f in decoders.applicable(text)] == [f[0] for f in decoders.FINDERS if f[0] in chosen]


@pytest.mark.skipif(
    decoders._kernel is None,
    reason="without the compiled kernel every finder runs (test_injection_kernel.py checks that)",
)
def test_applicable_finders_on_examples() -> None:
    assert decoders.applicable("plain prose") == ()
    assert [f[0] for f in decoders.applicable("see umbrella-freight today")] == ["base64"]
    assert [f[0] for f in decoders.applicable("68656c6c6f20776f726c64 and 50%")] == ["hex", "base64", "url"]
    assert [f[0] for f in decoders.applicable("0x41 0x42")] == ["hex"]
