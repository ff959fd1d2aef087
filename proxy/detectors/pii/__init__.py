"""PII detection (presidio, offline), placeholder numbering and restore for the ``pii`` plugin."""

from proxy.detectors.pii.defaults import DEFAULT_ENTITIES
from proxy.detectors.pii.engine import (
    CustomRecognizer,
    NerMode,
    PatternSpec,
    PiiEngine,
    Span,
    engine_key,
    ner_module,
)
from proxy.detectors.pii.spans import (
    LITERAL,
    MAX_PLACEHOLDER,
    PLACEHOLDER_RX,
    literal_spans,
    placeholder,
    resolve,
    restore,
    splice,
    stream_split,
)
from proxy.detectors.pii.vault import Digester, MemoryVault, RedisVault, Vault, digest

__all__ = [
    "DEFAULT_ENTITIES",
    "LITERAL",
    "MAX_PLACEHOLDER",
    "PLACEHOLDER_RX",
    "CustomRecognizer",
    "Digester",
    "MemoryVault",
    "NerMode",
    "PatternSpec",
    "PiiEngine",
    "RedisVault",
    "Span",
    "Vault",
    "digest",
    "engine_key",
    "literal_spans",
    "ner_module",
    "placeholder",
    "resolve",
    "restore",
    "splice",
    "stream_split",
]
