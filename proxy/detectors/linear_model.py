"""The embedded linear classifiers' shared parts: packaged-model loading and long-text windowing.

The injection and moderation classifiers are the same kind of model (hashed n-grams, a linear
layer, weights in a packaged ``.npz`` with a JSON meta record, ``proxy.detectors.model_file``) and
score long texts the same way (half-overlapping windows, the maximum kept, so a harmful paragraph
in a long benign document is not diluted away). Both used to carry their own copy of the meta
parsing, the loader and the window arithmetic; they now use these.

Scores are unchanged bit for bit (tests/unit/test_linear_model.py compares them with the former
per-classifier code on dataset samples); what changed is that moderation's windows now go through
the request's shared hash cache like every other text.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import numpy as np
import numpy.typing as npt

from proxy.detectors.model_file import read_model

if TYPE_CHECKING:
    from proxy.detectors.injection.features import FeatureConfig


def feature_config(feats: Mapping[str, Any]) -> FeatureConfig:
    """The ``features`` record of a model's meta; refuses a model trained with other feature code."""
    # Imported here: the classifiers import this module while their packages initialise.
    from proxy.detectors.injection.features import FEATURE_VERSION, FeatureConfig

    if feats.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"model feature_version {feats.get('feature_version')} != code {FEATURE_VERSION}")
    char_k, word_k = (int(k) for k in feats["smoothing"])
    return FeatureConfig(
        int(feats["bits"]),
        tuple(int(n) for n in feats["char_ngrams"]),
        tuple(int(n) for n in feats["word_ngrams"]),
        int(feats["window"]),
        (char_k, word_k),
    )


class PackagedModel(ABC):
    """Mixin: ``load`` (a file, or the one shipped next to the subclass) and ``default`` (once per process).

    A subclass names its ``MODEL_FILE``, takes ``(weights, meta)`` in ``__init__`` and parses the
    meta record in ``parse_meta``."""

    MODEL_FILE: ClassVar[str]

    @abstractmethod
    def __init__(self, weights: npt.NDArray[np.floating[Any]], meta: Any) -> None:
        """A subclass keeps the weights and its parsed meta record."""

    @classmethod
    @abstractmethod
    def parse_meta(cls, raw: Mapping[str, Any]) -> Any:
        """The subclass's typed view of the model file's meta record."""

    @classmethod
    def load(cls, path: Path | None = None) -> Self:
        package = cls.__module__.rpartition(".")[0]  # the model file ships beside the classifier
        weights, meta = read_model(package, cls.MODEL_FILE, path)
        return cls(weights, cls.parse_meta(meta))

    @classmethod
    def default(cls) -> Self:
        """The packaged model, loaded once per process and class (immutable, so sharing it is safe)."""
        with _DEFAULTS_LOCK:  # policy compiles run in worker threads: load once, not once per thread
            model = _DEFAULTS.get(cls)
            if model is None:
                model = _DEFAULTS[cls] = cls.load()
        return cast(Self, model)


_DEFAULTS: dict[type[PackagedModel], PackagedModel] = {}
_DEFAULTS_LOCK = threading.Lock()


def window_starts(length: int, span: int) -> range:
    """Starts of the half-overlapping windows of ``span`` characters covering ``length`` characters.

    Every character lies in at least one window, and the last window ends at or past the end."""
    stride = span // 2
    return range(0, length - stride, stride)


def windowed_max(text: str, span: int, score: Callable[[str], Sequence[float]]) -> list[float]:
    """Per output column, the maximum of ``score`` over ``text``'s windows (``text`` longer than ``span``)."""
    best: list[float] | None = None
    for start in window_starts(len(text), span):
        values = score(text[start : start + span])
        best = list(values) if best is None else [max(b, v) for b, v in zip(best, values, strict=True)]
    assert best is not None, "windowed_max needs a text longer than half a window"
    return best
