"""Offline, layered content moderation for the eight OpenAI moderation categories.

Layers: ``rules`` (blocklist terms, regex rules and a benign-context allow-list kept as data in
``rules.json``; leetspeak-tolerant, on top of the injection normaliser) and ``classifier`` (hashed n-gram
one-vs-rest logistic regression embedded as ``moderation_model.npz``, reusing the injection feature
hashing), combined per category by ``ModerationDetector``. Typical use::

    detector = ModerationDetector()          # build once, share across threads
    result = detector.scan(user_text)
    if result.flagged: ... result.flagged_categories ...
"""

from .classifier import ModelMeta, ModerationClassifier
from .detector import ModerationDetector, ModerationResult, RuleHitInfo, Thresholds
from .rules import (
    CATEGORIES,
    CLASSIFIER_CATEGORIES,
    CODES,
    Canonical,
    RuleHit,
    RuleResult,
    RuleScanner,
    canonicalise,
)

__all__ = [
    "CATEGORIES",
    "CLASSIFIER_CATEGORIES",
    "CODES",
    "Canonical",
    "ModelMeta",
    "ModerationClassifier",
    "ModerationDetector",
    "ModerationResult",
    "RuleHit",
    "RuleHitInfo",
    "RuleResult",
    "RuleScanner",
    "Thresholds",
    "canonicalise",
]
