"""Offline, layered prompt-injection detection.

Layers: ``normalise`` (undo Unicode and encoding obfuscation; ``decoders``), ``heuristics`` (rules kept
as data in ``rules.json``), ``classifier`` (hashed n-gram logistic regression embedded as ``model.npz``;
hashing in ``features``), combined by ``InjectionDetector``; ``indirect`` scores data (tool results,
retrieved documents) segment by segment for instructions planted there. Typical use::

    detector = InjectionDetector()          # build once, share across threads
    result = detector.scan(user_text)
    if result.is_injection: ...
"""

from .classifier import InjectionClassifier, ModelMeta
from .detector import DataText, InjectionDetector, InjectionResult, Thresholds
from .features import FeatureConfig, FeatureHasher
from .heuristics import HeuristicResult, HeuristicScanner, Rule, RuleMatch
from .indirect import IndirectDetector, IndirectResult
from .normalise import Confusables, DecodedSegment, NormalisedText, Normaliser, OffsetMap, normalise

__all__ = [
    "Confusables",
    "DataText",
    "DecodedSegment",
    "FeatureConfig",
    "FeatureHasher",
    "HeuristicResult",
    "HeuristicScanner",
    "IndirectDetector",
    "IndirectResult",
    "InjectionClassifier",
    "InjectionDetector",
    "InjectionResult",
    "ModelMeta",
    "NormalisedText",
    "Normaliser",
    "OffsetMap",
    "Rule",
    "RuleMatch",
    "Thresholds",
    "normalise",
]
