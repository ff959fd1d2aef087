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
from .indirect import IndirectDetector, IndirectResult
from .multilingual import MultilingualLexicon
from .normalise import DecodedSegment, NormalisedText, Normaliser

_MIN_SEGMENT_CHARS = 16  # shorter decoded fragments carry too little signal for the classifier
# Flags of the folding steps of normalise.py: the text view is named after them ("text:homoglyph").
_CATEGORY = "override_multilingual"  # rule category of the multilingual phrases
_FOLDING = frozenset({"homoglyph", "nfkc", "diacritics", "invisible", "bidi", "tag_chars"})
# A user's message is read as "a request around a document" (indirect path) from this size on;
# shorter messages are the request itself, and the direct layers judge them.
_DOC_MIN_CHARS, _DOC_MIN_SEGMENTS = 160, 3


class DataText(str):
    """A text that arrived as *data* (a tool result, a retrieved document named by ``scan.names``,
    content between ``scan.delimiters``): the indirect path reads all of it as a document, where a
    user's message has its own request as its first and last segment. A ``str`` subclass so that it
    travels through ``scan_all`` and the scan cache unchanged."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds (score >= threshold means "injection") for each layer and the combination."""

    heuristics: float = 0.5
    classifier: float = 0.5
    combined: float = 0.5
    indirect: float = 0.8
    """Threshold of the indirect path's own score (``indirect.py``); a document at or above it is an
    injection, and its score enters ``combined`` rescaled so that this threshold meets ``combined``'s."""

    def __post_init__(self) -> None:
        for name in ("heuristics", "classifier", "combined", "indirect"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold {name}={value} must be within [0, 1]")

    @classmethod
    def from_model(
        cls, classifier: InjectionClassifier, indirect: IndirectDetector | None = None
    ) -> Thresholds:
        """The defaults chosen at training time (out-of-fold FPR target + benign-hard constraint)."""
        t = classifier.meta.thresholds
        default = cls()
        return cls(
            float(t.get("heuristics", default.heuristics)),
            float(t.get("classifier", default.classifier)),
            float(t.get("combined", default.combined)),
            indirect.threshold if indirect is not None else default.indirect,
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
    indirect: IndirectResult | None = None
    """The indirect path's evidence (None: the text was neither data nor a document-sized message)."""
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
            "indirect": self.indirect.to_dict() if self.indirect is not None else None,
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
        indirect: IndirectDetector | bool | None = True,
    ) -> None:
        """``lexicon``: the multilingual override phrases (``MultilingualLexicon({})`` turns them off);
        ``deobfuscate``: score the leetspeak / spaced-letter / readable-rot13 views (``views.py``);
        ``indirect``: the indirect-injection path (``True``: the packaged model, ``False``: off)."""
        self._scanner = scanner or HeuristicScanner.default()
        self._lexicon = lexicon or MultilingualLexicon.default()
        self._classifier = classifier or InjectionClassifier.default()
        self._deobfuscate = deobfuscate
        if indirect is True:
            indirect = IndirectDetector.default()
        self._indirect: IndirectDetector | None = indirect or None
        self._normaliser = Normaliser(
            rot13_probe=self._scanner.reveals_trigger,
            rot13_gate=self._scanner.may_reveal_trigger,
            deobfuscate=deobfuscate,
        )
        self.thresholds = thresholds or Thresholds.from_model(self._classifier, self._indirect)
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
            indirect=self._indirect or False,
        )

    def scan(self, text: str, cache: ScanCache | None = None) -> InjectionResult:
        """Score one text. Inputs beyond ``max_chars`` are scanned head and tail only (flagged ``truncated``):
        the rules cost a few ms per 8 KB in the worst case, so unbounded input would be a CPU lever.

        ``cache``: the request's ``ScanCache``; the folded text and n-gram hashes left there spare the
        moderation detector the same work on the same text."""
        as_data = isinstance(text, DataText)
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
        # A view or decoded segment that repeats a text already scored gets that score (the score is
        # a function of the text alone): nested decodings and views often coincide.
        scored = {normalised.text: classifier}
        for segment in normalised.segments:
            if len(segment.text) >= _MIN_SEGMENT_CHARS:
                score = scored.get(segment.text)
                if score is None:
                    score = scored[segment.text] = self._classifier.score(segment.text)
                per_view.append(score)
            else:
                per_view.append(0.0)
        classifier = max(per_view)
        combined = 1.0 - (1.0 - heuristics.score) * (1.0 - classifier)
        view = _best_view(normalised, heuristics, per_view)
        t = self.thresholds
        indirect = self._scan_indirect(text, normalised, as_data)
        indirect_hit = indirect is not None and indirect.score >= t.indirect
        if indirect is not None:
            rescaled = _rescale(indirect.score, t.indirect, t.combined)
            if rescaled > combined:
                combined, view = rescaled, "indirect"
            if indirect_hit and indirect.span is not None:  # a span for ``neutralise`` and the record
                a, b = indirect.span
                excerpt = normalised.original[a:b][:80]
                marker = RuleMatch("indirect.segment", "indirect", 0.0, (a, b), None, excerpt)
                heuristics = HeuristicResult(heuristics.score, (*heuristics.matches, marker))
        verdicts = MappingProxyType(
            {
                "heuristics": heuristics.score >= t.heuristics,
                "classifier": classifier >= t.classifier,
                "indirect": indirect_hit,
                "combined": combined >= t.combined or indirect_hit,
            }
        )
        return InjectionResult(
            normalised.flags,
            normalised.segments,
            heuristics,
            classifier,
            combined,
            verdicts,
            truncated,
            indirect,
            view,
        )

    def _scan_indirect(self, text: str, normalised: NormalisedText, as_data: bool) -> IndirectResult | None:
        """The indirect path on data (``DataText``) and on document-sized user messages. It reads the
        normalised text when folding kept its length (homoglyphs and zero-width characters undone, span
        offsets still valid), else the original."""
        if self._indirect is None:
            return None
        if not as_data and (
            len(text) < _DOC_MIN_CHARS or text.count("\n") + text.count(". ") < _DOC_MIN_SEGMENTS - 1
        ):
            return None
        source = normalised.text if len(normalised.text) == len(normalised.original) else normalised.original
        return self._indirect.scan(source, as_data=as_data)

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
    if len(classifier) == 1:
        return text_view  # no other view (most texts): the loop below would pick the text itself
    best, best_score = text_view, -1.0
    for index in range(len(classifier)):
        segment = None if index == 0 else index - 1
        own = tuple(m for m in heuristics.matches if m.segment == segment)
        score = 1.0 - (1.0 - _noisy_or(own)) * (1.0 - classifier[index])
        if score > best_score + 1e-9:
            best_score = score
            best = text_view if segment is None else normalised.segments[segment].encoding
    return best


def _rescale(score: float, own: float, target: float) -> float:
    """Map the indirect score onto the combined scale, piecewise linearly, so that its own threshold
    lands on the combined threshold: one score per text for calibration and the judge band."""
    if score < own:
        return score * target / own if own > 0 else target
    return target + (score - own) * (1.0 - target) / (1.0 - own) if own < 1 else 1.0
