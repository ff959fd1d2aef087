"""``InjectionDetector``: the single, synchronous entry point the policy plugin calls.

Why layered: normalisation undoes obfuscation, so both the rules and the classifier see what a model
would see; rules give explainable, high-precision hits on short texts; the classifier generalises to
persona/jailbreak prose that no rule names. The layers are combined with a noisy-OR,
``1 - (1 - heuristic) * (1 - classifier)``, so either layer can raise the alarm alone and two weak
signals add up.

Everything here is immutable after construction: one detector can be shared by all request handlers
and threads. It is pure CPU work (well under a millisecond for typical prompts); call it from a worker
thread if event-loop latency matters for very large inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from proxy.detectors.shared import ScanCache

from .classifier import InjectionClassifier
from .heuristics import HeuristicResult, HeuristicScanner, RuleMatch
from .multilingual import MultilingualLexicon
from .normalise import DecodedSegment, NormalisedText, Normaliser

_MIN_SEGMENT_CHARS = 16  # shorter decoded fragments carry too little signal for the classifier
# Flags of the folding steps of normalise.py: the text view is named after them ("text:homoglyph").
_CATEGORY = "override_multilingual"  # rule category of the multilingual phrases
_FOLDING = frozenset({"homoglyph", "nfkc", "diacritics", "invisible", "bidi", "tag_chars"})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds (score >= threshold means "injection") for each layer and the combination."""

    heuristics: float = 0.5
    classifier: float = 0.5
    combined: float = 0.5

    def __post_init__(self) -> None:
        for name in ("heuristics", "classifier", "combined"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold {name}={value} must be within [0, 1]")

    @classmethod
    def from_model(cls, classifier: InjectionClassifier) -> Thresholds:
        """The defaults chosen at training time (out-of-fold FPR target + benign-hard constraint)."""
        t = classifier.meta.thresholds
        default = cls()
        return cls(
            float(t.get("heuristics", default.heuristics)),
            float(t.get("classifier", default.classifier)),
            float(t.get("combined", default.combined)),
        )


@dataclass(frozen=True, slots=True)
class InjectionResult:
    """Per-layer evidence and verdicts for one text."""

    flags: frozenset[str]
    segments: tuple[DecodedSegment, ...]
    heuristics: HeuristicResult
    classifier_score: float
    combined_score: float
    verdicts: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    truncated: bool = False
    view: str = "text"
    """Which view of the input scored highest: "text" (the normalised text itself; "text:homoglyph" etc.
    when folding changed it) or the encoding of a decoded segment or de-obfuscated view ("leetspeak",
    "spaced_letters", "rot13", "base64", ...)."""

    @property
    def heuristic_score(self) -> float:
        return self.heuristics.score

    @property
    def is_injection(self) -> bool:
        """The verdict of the combined score -- the one to act on by default."""
        return self.verdicts.get("combined", False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary for logs and audit events (no decoded text: it may be sensitive)."""
        return {
            "flags": sorted(self.flags),
            "segments": [
                {"encoding": s.encoding, "span": list(s.span), "chars": len(s.text)} for s in self.segments
            ],
            "heuristic_score": self.heuristics.score,
            "rules": [
                {"id": m.rule_id, "span": list(m.span), "segment": m.segment} for m in self.heuristics.matches
            ],
            "classifier_score": round(self.classifier_score, 6),
            "combined_score": round(self.combined_score, 6),
            "verdicts": dict(self.verdicts),
            "truncated": self.truncated,
            "view": self.view,
        }


class InjectionDetector:
    """Normalise -> heuristics + classifier -> combined score and verdicts. Thread-safe, no I/O per call."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        scanner: HeuristicScanner | None = None,
        classifier: InjectionClassifier | None = None,
        max_chars: int = 65_536,
        lexicon: MultilingualLexicon | None = None,
        deobfuscate: bool = True,
    ) -> None:
        """``lexicon``: the multilingual override phrases (``MultilingualLexicon({})`` turns them off);
        ``deobfuscate``: score the leetspeak / spaced-letter / readable-rot13 views (``views.py``)."""
        self._scanner = scanner or HeuristicScanner.default()
        self._lexicon = lexicon or MultilingualLexicon.default()
        self._classifier = classifier or InjectionClassifier.default()
        self._deobfuscate = deobfuscate
        self._normaliser = Normaliser(
            rot13_probe=self._scanner.reveals_trigger,
            rot13_gate=self._scanner.may_reveal_trigger,
            deobfuscate=deobfuscate,
        )
        self.thresholds = thresholds or Thresholds.from_model(self._classifier)
        if max_chars < 1024:
            raise ValueError("max_chars must be at least 1024")
        self._max_chars = max_chars

    def with_thresholds(self, thresholds: Thresholds) -> InjectionDetector:
        """The same loaded layers with other thresholds (a policy may tune them per step)."""
        return InjectionDetector(
            thresholds,
            scanner=self._scanner,
            classifier=self._classifier,
            max_chars=self._max_chars,
            lexicon=self._lexicon,
            deobfuscate=self._deobfuscate,
        )

    def scan(self, text: str, cache: ScanCache | None = None) -> InjectionResult:
        """Score one text. Inputs beyond ``max_chars`` are scanned head and tail only (flagged ``truncated``):
        the rules cost a few ms per 8 KB in the worst case, so unbounded input would be a CPU lever.

        ``cache``: the request's ``ScanCache``; the folded text and n-gram hashes left there spare the
        moderation detector the same work on the same text."""
        truncated = len(text) > self._max_chars
        if truncated:
            half = self._max_chars // 2
            text = text[:half] + "\n" + text[-half:]
        normalised = self._normaliser(text)
        hashes = None
        if cache is not None:
            cache.folded[text] = normalised.text
            hashes = cache.hashes
        heuristics = self._with_lexicon(self._scanner.scan(normalised), normalised)
        classifier = self._classifier.score(normalised.text, hashes)
        per_view = [classifier]
        for segment in normalised.segments:
            if len(segment.text) >= _MIN_SEGMENT_CHARS:
                per_view.append(self._classifier.score(segment.text))
            else:
                per_view.append(0.0)
        classifier = max(per_view)
        combined = 1.0 - (1.0 - heuristics.score) * (1.0 - classifier)
        view = _best_view(normalised, heuristics, per_view)
        t = self.thresholds
        verdicts = MappingProxyType(
            {
                "heuristics": heuristics.score >= t.heuristics,
                "classifier": classifier >= t.classifier,
                "combined": combined >= t.combined,
            }
        )
        return InjectionResult(
            normalised.flags, normalised.segments, heuristics, classifier, combined, verdicts, truncated, view
        )

    def _with_lexicon(self, result: HeuristicResult, normalised: NormalisedText) -> HeuristicResult:
        """Add the multilingual override phrases (``multilingual.py``) to the rule layer's matches and
        score (same noisy-OR over distinct ids), matched on the normalised text, on the original when
        folding changed it (homoglyph folding can turn Cyrillic words into Latin look-alikes), and on
        every decoded segment / view (a German override in base64 or leetspeak)."""
        found: list[RuleMatch] = []
        seen: set[str] = set()
        for m in self._lexicon.scan(normalised.text):
            span = normalised.to_original(*m.span)
            found.append(_phrase_match(m.rule_id, m.weight, span, normalised.original))
            seen.add(m.rule_id)
        if normalised.text != normalised.original:
            for m in self._lexicon.scan(normalised.original):
                if m.rule_id not in seen:
                    found.append(_phrase_match(m.rule_id, m.weight, m.span, normalised.original))
        for index, segment in enumerate(normalised.segments):
            for m in self._lexicon.scan(segment.text):
                excerpt = segment.text[m.span[0] : m.span[1]][:80]
                found.append(RuleMatch(m.rule_id, _CATEGORY, m.weight, m.span, index, excerpt))
        if not found:
            return result
        matches = (*result.matches, *found)
        return HeuristicResult(_noisy_or(matches), matches)


def _phrase_match(rule_id: str, weight: float, span: tuple[int, int], original: str) -> RuleMatch:
    return RuleMatch(rule_id, _CATEGORY, weight, span, None, original[span[0] : span[1]][:80])


def _noisy_or(matches: tuple[RuleMatch, ...]) -> float:
    """``1 - prod(1 - weight)`` over distinct rule ids (as ``heuristics.py`` scores its own rules)."""
    miss = 1.0
    for w in {m.rule_id: m.weight for m in matches}.values():
        miss *= 1.0 - w
    return round(1.0 - miss, 6)


def _best_view(normalised: NormalisedText, heuristics: HeuristicResult, classifier: list[float]) -> str:
    """The view (the text itself, or a decoded segment / de-obfuscated view) whose own rules and
    classifier score combine highest; ties go to the text itself."""
    folded = sorted(normalised.flags & _FOLDING)
    text_view = "text" if not folded else "text:" + "+".join(folded)
    best, best_score = text_view, -1.0
    for index in range(len(classifier)):
        segment = None if index == 0 else index - 1
        own = tuple(m for m in heuristics.matches if m.segment == segment)
        score = 1.0 - (1.0 - _noisy_or(own)) * (1.0 - classifier[index])
        if score > best_score + 1e-9:
            best_score = score
            best = text_view if segment is None else normalised.segments[segment].encoding
    return best
