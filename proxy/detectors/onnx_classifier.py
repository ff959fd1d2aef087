"""Optional transformer layer: a local ONNX text classifier and its tokenizer (``model: {onnx: DIR}``).

Why optional and last: a transformer (a prompt-guard / DeBERTa injection classifier, a small safety
classifier) generalises better than n-grams but costs milliseconds to tens of milliseconds per
window on a CPU, so the plugins consult it only when the cheaper layers are unsure (their score in
``band``), always in the CPU pool (``Deps.run_cpu``), never on the event loop. Nothing is
downloaded: ``DIR`` holds files the operator put there (see docs/deployment.md):

- ``model.onnx``: inputs ``input_ids`` (and ``attention_mask`` if the graph declares it), int64
  ``[batch, sequence]``; first output: logits ``[batch, labels]``;
- ``tokenizer.json``: a Hugging Face ``tokenizers`` file (special tokens included by its post-processor);
- ``config.json`` (optional): ``{"positive": [index or label names], "labels": [...],
  "max_tokens": 512, "stride": 256}``; by default the positive class is the last label.

Long texts are scored in windows of ``max_tokens`` token ids (each next one starts ``stride`` content
tokens later) in one batch; the text's score is the highest window's probability of the positive labels. Each
window carries the tokenizer's special tokens (a BERT ``[CLS] ... [SEP]``), as the model saw them in
training, and the truncation/padding a ``tokenizer.json`` may carry (sentence-transformers ship
``max_length: 128`` with fixed padding) is switched off: it would silently drop everything past the
first 128 tokens, so a long document would never reach a second window. A graph whose first output
is a pooled embedding plus a linear head (``scripts/build_onnx_guard.py``) is just another
classifier here: its logits are ``[0, w.e + b]``. Needs the ``onnx`` extra (``pip install
'policy-sidecar[onnx]'``: onnxruntime, tokenizers).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

MAX_WINDOWS = 16  # beyond this many windows the head and tail windows are kept (bounded CPU)


class OnnxSpec(BaseModel):
    """``model:`` in the injection and moderation plugins: where the classifier is and when to ask it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    onnx: Path = Field(description="directory with model.onnx, tokenizer.json and optional config.json")
    band: tuple[float, float] = Field(default=(0.2, 0.8), description="scores in [low, high) ask the model")
    threshold: float = Field(default=0.5, ge=0, le=1, description="its positive probability that decides")
    threads: int = Field(default=1, ge=1, le=16, description="onnxruntime intra-op threads")


class OnnxUnavailable(RuntimeError):
    """The ``onnx`` extra is not installed, or the model directory is incomplete."""


@dataclass(frozen=True, slots=True)
class OnnxScore:
    score: float
    latency_ms: float
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "latency_ms": round(self.latency_ms, 3),
            "windows": self.windows,
        }


class OnnxTextClassifier:
    """Loaded once per directory; ``score`` is thread-safe (onnxruntime sessions are; the tokenizer is
    used under a lock because ``tokenizers`` objects are not documented as re-entrant)."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped]
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise OnnxUnavailable(
                "model.onnx needs the 'onnx' extra: pip install 'policy-sidecar[onnx]'"
            ) from exc
        model, tok = directory / "model.onnx", directory / "tokenizer.json"
        for path in (model, tok):
            if not path.is_file():
                raise OnnxUnavailable(f"{path} not found")
        config: dict[str, Any] = {}
        if (directory / "config.json").is_file():
            config = json.loads((directory / "config.json").read_text("utf-8"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        if "input_ids" not in self._inputs:
            raise OnnxUnavailable(f"{model}: the graph has no 'input_ids' input")
        self._tokenizer = Tokenizer.from_file(str(tok))
        self._tokenizer.no_truncation()  # windows below see the whole text ...
        self._tokenizer.no_padding()  # ... and ``run`` pads each batch to its longest window
        self._prefix, self._suffix = _special_frame(self._tokenizer)
        self._lock = threading.Lock()
        self.max_tokens = int(config.get("max_tokens", 512))
        room = self.max_tokens - len(self._prefix) - len(self._suffix)  # content ids per window
        stride = int(config.get("stride", self.max_tokens // 2))
        if not 0 < stride <= self.max_tokens or room <= 0:
            raise OnnxUnavailable("config.json: need 0 < stride <= max_tokens (and room for special tokens)")
        # a window's content is ``room`` ids; a stride past that would skip some (stride == max_tokens
        # meant "no overlap" before windows carried special tokens, and still does)
        self.stride = min(stride, room)
        self._room = room
        labels = [str(x) for x in config.get("labels", [])]
        positive = config.get("positive")
        self._positive: list[int] | None = None
        if positive is not None:
            items = positive if isinstance(positive, list) else [positive]
            self._positive = [labels.index(p) if isinstance(p, str) else int(p) for p in items]
        self.directory = directory

    def windows(self, text: str) -> list[list[int]]:
        """Token-id windows of at most ``max_tokens`` (special tokens included); the head and tail
        ones when there are too many."""
        with self._lock:
            ids = list(self._tokenizer.encode(text, add_special_tokens=False).ids)
        room, pre, post = self._room, self._prefix, self._suffix
        if len(ids) <= room:
            return [pre + ids + post]
        starts = list(range(0, len(ids) - room + self.stride, self.stride))
        if len(starts) > MAX_WINDOWS:
            half = MAX_WINDOWS // 2
            starts = starts[:half] + starts[-half:]
        return [pre + ids[s : s + room] + post for s in starts]

    def run(self, windows: list[list[int]]) -> npt.NDArray[np.float64]:
        """The graph's first output for a batch of token-id windows (padded with id 0, masked):
        logits for a classifier, pooled embeddings for an encoder (the build script embeds with it,
        so training sees exactly the windows serving does)."""
        wins = windows or [[]]
        width = max(1, max(len(w) for w in wins))
        ids = np.zeros((len(wins), width), dtype=np.int64)
        mask = np.zeros((len(wins), width), dtype=np.int64)
        for i, w in enumerate(wins):
            ids[i, : len(w)] = w
            mask[i, : len(w)] = 1
        feeds = {"input_ids": ids}
        if "attention_mask" in self._inputs:
            feeds["attention_mask"] = mask
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float64)

    def score(self, text: str) -> OnnxScore:
        """Probability of the positive labels (max over windows) and the wall time it took."""
        started = time.perf_counter()
        wins = self.windows(text) or [[]]
        probs = _softmax(self.run(wins))
        positive = self._positive if self._positive is not None else [probs.shape[1] - 1]
        score = float(probs[:, positive].sum(axis=1).max())
        return OnnxScore(score, (time.perf_counter() - started) * 1000, len(wins))


_LOADED: dict[tuple[str, int], OnnxTextClassifier] = {}
_LOADED_LOCK = threading.Lock()


def load(directory: Path, threads: int = 1) -> OnnxTextClassifier:
    """One classifier per directory and process (a session holds the weights: load once, share)."""
    key = (str(directory.resolve()), threads)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = OnnxTextClassifier(directory, threads=threads)
        return _LOADED[key]


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer's post-processor puts before and after one sequence (BERT:
    ``[CLS]`` / ``[SEP]``; none for a bare word-level tokenizer), found by encoding a probe word
    with and without them: each window gets the same frame as a whole short text."""
    probe = "a"
    bare = list(tokenizer.encode(probe, add_special_tokens=False).ids)
    full = list(tokenizer.encode(probe).ids)
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    return [], []


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
