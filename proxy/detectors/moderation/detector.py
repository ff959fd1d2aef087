"""``ModerationDetector``: the single, synchronous entry point a moderation policy plugin calls.

Why layered: the rules (``rules.py``) give explainable, high-precision hits on short texts and handle
leetspeak and benign idioms ("kill -9", "shoot a photo"); the classifier (``classifier.py``) generalises
to phrasings no rule names. Per category the layers are combined with a noisy-OR,
``1 - (1 - rules) * (1 - classifier)``, so either layer can raise the alarm alone and two weak signals
add up. A category is flagged when its combined score reaches that category's threshold.

Everything is immutable after construction: one detector can be shared by all request handlers and
threads. It is pure CPU work (a few hundred microseconds for 2 KB); call it from a worker thread if
event-loop latency matters for very large inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from proxy.detectors.injection.classifier import InjectionClassifier, ModelMeta
from proxy.detectors.model_file import read_model
from proxy.detectors.shared import ScanCache

from .classifier import ModerationClassifier
from .harmful_request import default as harmful_request_model
from .intent import intent_phrase, literal
from .rules import CATEGORIES, CLASSIFIER_CATEGORIES, RuleScanner

INTENT = "illicit"
INTENT_FILE = "intent_model.npz"
PHRASE_FIRES = 0.6  # every intent phrase (intent.py) fires on its own at the default threshold


def load_intent(path: Path) -> InjectionClassifier:
    """An n-gram intent model written by ``scripts/train_moderation_intent.py --write`` (the injection
    classifier's file format and scorer). None is shipped: trained on the request benchmarks it scores
    "how do I kill a Python process" like "how do I make a bomb" and generalised poorly across sources
    (README, "Content moderation"); pass one to ``ModerationDetector(intent=...)`` to try your own."""
    weights, meta = read_model(__package__ or "", INTENT_FILE, path)
    return InjectionClassifier(weights, ModelMeta.from_dict(meta))


_LAYERS = ("rules", "classifier", "combined")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-category decision thresholds (score >= threshold flags) for the combined score, plus the
    per-layer thresholds used for per-layer verdicts (reporting / evaluation)."""

    combined: Mapping[str, float]
    rules: Mapping[str, float]
    classifier: Mapping[str, float]

    def __post_init__(self) -> None:
        for layer in _LAYERS:
            values = getattr(self, layer)
            if set(values) != set(CATEGORIES):
                raise ValueError(f"{layer} thresholds must cover exactly {CATEGORIES}")
            for cat, value in values.items():
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"threshold {layer}[{cat}]={value} must be within [0, 1]")

    @classmethod
    def from_model(
        cls, classifier: ModerationClassifier, intent: InjectionClassifier | None = None, **overrides: float
    ) -> Thresholds:
        """The defaults chosen at training time; ``overrides`` replace combined thresholds by category
        name (``self_harm=0.3`` or ``**{"self-harm": 0.3}``). ``illicit`` takes the intent model's."""
        t = classifier.meta.thresholds
        own = float(intent.meta.thresholds.get("combined", 0.5)) if intent is not None else PHRASE_FIRES
        own = min(own, PHRASE_FIRES)  # an intent phrase fires alone, with or without a model

        def layer(name: str, default: float) -> dict[str, float]:
            out = {c: float(t.get(name, {}).get(c, default)) for c in CLASSIFIER_CATEGORIES}
            out[INTENT] = own
            return out

        combined = layer("combined", 0.5)
        for key, value in overrides.items():
            cat = key if key in combined else key.replace("__", "/").replace("_", "-")
            if cat not in combined:
                raise ValueError(f"unknown category {key!r}")
            combined[cat] = float(value)
        return cls(
            MappingProxyType(combined),
            MappingProxyType(layer("rules", 0.5)),
            MappingProxyType(layer("classifier", 0.5)),
        )


@dataclass(frozen=True, slots=True)
class RuleHitInfo:
    """A rule hit without the matched text (which may be sensitive): id, categories, weight, span in the
    canonical text (lower-cased, leet-folded; equal to original offsets unless the input was folded)."""

    rule_id: str
    categories: tuple[str, ...]
    weight: float
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """Per-category scores for each layer and the combination, and the verdicts."""

    rule_scores: Mapping[str, float]
    classifier_scores: Mapping[str, float]
    combined_scores: Mapping[str, float]
    flagged_categories: tuple[str, ...]
    rule_hits: tuple[RuleHitInfo, ...]
    allowed_rules: tuple[str, ...]
    truncated: bool = False

    @property
    def flagged(self) -> bool:
        """True when any category is flagged -- the verdict to act on by default."""
        return bool(self.flagged_categories)

    @property
    def max_score(self) -> float:
        return max(self.combined_scores.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary for logs and audit events (no raw or matched text)."""
        return {
            "flagged": self.flagged,
            "categories": list(self.flagged_categories),
            "scores": {
                c: {
                    "rules": round(self.rule_scores[c], 6),
                    "classifier": round(self.classifier_scores[c], 6),
                    "combined": round(self.combined_scores[c], 6),
                }
                for c in CATEGORIES
            },
            "rules": [
                {"id": h.rule_id, "categories": list(h.categories), "span": list(h.span)}
                for h in self.rule_hits
            ],
            "allowed": list(self.allowed_rules),
            "truncated": self.truncated,
        }


class ModerationDetector:
    """Rules + classifier -> per-category combined scores and flagged categories. Thread-safe, no I/O."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        scanner: RuleScanner | None = None,
        classifier: ModerationClassifier | None = None,
        max_chars: int = 65_536,
        intent: InjectionClassifier | None = None,
        harmful_request: bool = False,
    ) -> None:
        """``intent``: an n-gram model for the ``illicit`` category (``load_intent``); without one that
        category is scored by the intent phrases (``intent.py``) alone. ``harmful_request=True`` uses
        the packaged harmful-request model (``harmful_request.py``): opt-in, because on benign sources
        it was not trained on it flags 5-15% (its model card)."""
        self._scanner = scanner or RuleScanner.default()
        self._classifier = classifier or ModerationClassifier.default()
        self._intent = intent or (harmful_request_model() if harmful_request else None)
        self.thresholds = thresholds or Thresholds.from_model(self._classifier, self._intent)
        if max_chars < 1024:
            raise ValueError("max_chars must be at least 1024")
        self._max_chars = max_chars
        self._limits_of: tuple[Thresholds, tuple[float, ...]] | None = None

    def _limits(self) -> tuple[float, ...]:
        """The combined thresholds in CATEGORIES order, for the ``thresholds`` set now (it is a public
        attribute: a caller may replace it after construction)."""
        known = self._limits_of
        if known is None or known[0] is not self.thresholds:
            t = self.thresholds.combined
            known = self._limits_of = (self.thresholds, tuple(t[c] for c in CATEGORIES))
        return known[1]

    def scan(self, text: str, cache: ScanCache | None = None) -> ModerationResult:
        """Score one text. Inputs beyond ``max_chars`` are scanned head and tail only (``truncated``).

        ``cache``: the request's ``ScanCache``; reuses the injection detector's folding and n-gram
        hashing of the same text (leaving no hashes of its own: ``ModerationClassifier._half_sums``)."""
        truncated = len(text) > self._max_chars
        if truncated:
            half = self._max_chars // 2
            text = text[:half] + "\n" + text[-half:]
        rules = self._scanner.scan(text, cache.folded if cache is not None else None)
        hashes = cache.hashes if cache is not None else None
        cls = self._classifier.score_list(rules.classifier_text, hashes)
        rule_scores = rules.scores
        # ``literal`` (figurative uses blanked) only for a reader that needs it: without an intent model
        # the phrases compute it themselves, only when a stem is present (most texts: ~9 µs per 2 KB saved).
        blanked = literal(text) if self._intent is not None and len(text) <= 8192 else None
        phrase = intent_phrase(text, blanked)
        if phrase is not None:  # the intent phrases are the rule layer of ``illicit``
            rule_scores = MappingProxyType({**rule_scores, INTENT: phrase.score})
        # Intent reads the text with figurative uses blanked ("kill time" is not a request to kill).
        cls.append(self._intent.score(blanked or literal(text)) if self._intent is not None else 0.0)
        # Lists in CATEGORIES order, zipped: the same values and dict order as per-category lookups
        # in the mappings, at about half the ~6 µs those took per scan.
        rule_values = map(rule_scores.__getitem__, CATEGORIES)
        values = [1.0 - (1.0 - r) * (1.0 - c) for r, c in zip(rule_values, cls, strict=True)]
        classifier_scores = dict(zip(CATEGORIES, cls, strict=True))
        combined = dict(zip(CATEGORIES, values, strict=True))
        flagged = tuple(
            [c for c, v, limit in zip(CATEGORIES, values, self._limits(), strict=True) if v >= limit]
        )
        hits = tuple(RuleHitInfo(h.rule_id, h.categories, h.weight, h.span) for h in rules.hits)
        allowed = tuple(dict.fromkeys(rule_id for rule_id, _ in rules.allowed))
        return ModerationResult(
            rule_scores,
            MappingProxyType(classifier_scores),
            MappingProxyType(combined),
            flagged,
            hits,
            allowed,
            truncated,
        )
