"""The packaged harmful-request model: the n-gram layer of the ``illicit`` (intent) category.

Why a model on top of the intent phrases (``intent.py``): the phrases are English and list the acts
they know, so a request in Thai or Bengali, or one that names no listed act ("what household chemicals
make the most toxic gas"), passes. This model is trained on harmful *requests* from nine public sources
in eleven languages against everyday queries, CoCoNot's safe look-alikes and translated UI text
(``scripts/train_harmful_request.py``; model card ``MODEL_CARD_harmful_request.md``). Its character
n-grams need no tokenizer per language.

It is the injection classifier's model family and file format (hashed char 3-5 / word 1-2 grams,
one linear layer, ``.npz``), so scoring is one hash-and-gather of the text (120-150 µs per 2 KB
alone, more inside a scan: see the model card). It reads ``intent.literal(text)`` -- figurative
uses such as "kill the process" blanked -- as in training. The bias is shifted at training time so
that the threshold chosen on training data (<= 3% false positives on each benign source) scores
exactly 0.6, the ``illicit`` category's default: ``ModerationDetector`` needs no extra threshold,
and ``policy-sidecar calibrate`` sees one score.
"""

from __future__ import annotations

import threading
from pathlib import Path

from proxy.detectors.injection.classifier import InjectionClassifier, ModelMeta
from proxy.detectors.model_file import read_model

MODEL_FILE = "harmful_request_model.npz"

_LOCK = threading.Lock()
_DEFAULT: list[InjectionClassifier] = []


def load(path: Path | None = None) -> InjectionClassifier:
    """The model at ``path``, or the one shipped beside this module."""
    weights, meta = read_model(__package__ or "", MODEL_FILE, path)
    return InjectionClassifier(weights, ModelMeta.from_dict(meta))


def default() -> InjectionClassifier:
    """The packaged model, loaded once per process (immutable, so one instance serves every thread;
    the lock keeps concurrent policy compiles from loading it twice)."""
    with _LOCK:
        if not _DEFAULT:
            _DEFAULT.append(load())
        return _DEFAULT[0]
