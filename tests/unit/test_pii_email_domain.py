"""The engine's e-mail validator (per-domain cache over ``public_suffix``) against tldextract
on the whole address.

``engine.email_validator`` answers from the part after the last ``@`` when the address holds
no ``/``, ``?`` or ``#``; it must give exactly ``bool(extract(address).fqdn)`` (what presidio's
e-mail recogniser was validated with before) on every string the e-mail pattern can match,
and on odd strings too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii.engine import email_validator
from proxy.detectors.pii.presidio_rules import EMAIL
from proxy.detectors.pii.public_suffix import split_host
from tests.unit.pii_tldextract_reference import offline_tldextract

_EXTRACT = offline_tldextract()

#: every character class of presidio's e-mail pattern, non-ASCII word characters, the URL
#: delimiters tldextract reads (``/ ? # : [ ] @``) and the dots it folds
_LOCAL = st.text(alphabet="ab.Z9_-+!#$%&'*/=?^`{|}~:[]@é\u3002", min_size=1, max_size=12)
_LABEL = st.text(alphabet="abcxyzé0-_\u3002\uff0e", min_size=1, max_size=8)
_SUFFIX = st.sampled_from(
    ["com", "org", "co.uk", "example", "invalid", "py", "xn--p1ai", "github.io", "COM", ""]
)
_ADDRESSES = st.builds(
    lambda local, labels, suffix: f"{local}@{'.'.join(labels)}" + (f".{suffix}" if suffix else ""),
    _LOCAL,
    st.lists(_LABEL, min_size=1, max_size=3),
    _SUFFIX,
)
_CASES = [
    "ann@example.com",
    "a.b.c@mail.example.co.uk",
    "x@localhost",
    "x@example.invalid",
    "a/b@example.com",
    "a?b@example.com",
    "a#b@example.com",
    "a//b@example.com",
    "http://x@example.com",
    "a@b@example.org",
    "ann@example.com.",
    "ann@EXAMPLE.COM",
    "ann@user.github.io",
    "ann@192.168.0.1",
    "ann@bücher.de",
    "ann@example\u3002com",
]


def _reference(text: str) -> bool:
    return bool(_EXTRACT(text).fqdn)


def _validator() -> Any:
    """The engine's validator: the per-domain cache over ``public_suffix.split_host``."""
    return email_validator(split_host)


def test_known_addresses_match_tldextract_on_the_whole_address() -> None:
    valid = _validator()
    answers = {text: valid(text) for text in _CASES}
    assert answers == {text: _reference(text) for text in _CASES}
    # the cases are not all one answer: both branches of the cache are exercised
    assert set(answers.values()) == {True, False}


@settings(max_examples=2000, deadline=None)
@given(_ADDRESSES)
def test_generated_addresses_match_tldextract_on_the_whole_address(text: str) -> None:
    assert _validator()(text) == _reference(text)


def test_pattern_matches_match_tldextract() -> None:
    """Every string presidio's e-mail pattern finds in a text of awkward addresses."""
    import re

    ((_, pattern, _),) = EMAIL.patterns
    text = " ".join([*_CASES, "mail me: a.b-c@x-y.example.org/path?q#f, or c/d@e.com"])
    found = [m.group(0) for m in re.finditer(pattern, text, re.IGNORECASE | re.DOTALL | re.MULTILINE)]
    assert len(found) > 10
    valid = _validator()
    assert [valid(f) for f in found] == [_reference(f) for f in found]


def test_cached_by_domain() -> None:
    """Two addresses at one domain cost one tldextract call (the point of the cache)."""
    calls: list[str] = []

    def extract(text: str) -> Any:
        calls.append(text)
        return _EXTRACT(text)

    valid = email_validator(extract)
    assert valid("ann.aaaab@example.org") and valid("bob.aaaac@example.org")
    assert calls == ["example.org"]
