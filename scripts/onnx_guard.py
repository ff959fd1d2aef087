"""The pieces of ``scripts/build_onnx_guard.py``: export a sentence encoder to ONNX, embed texts in
the serving windows, train a logistic head, and write a ``model: {onnx: DIR}`` directory.

Why a pooled encoder plus a linear head rather than a fine-tuned classifier: fine-tuning a
transformer on two shared CPU cores is out of reach, while an encoder's mean-pooled embedding is a
fixed feature vector a logistic head learns in seconds, so the leave-one-source-out evaluation can
retrain the head once per held-out source. The served graph is the encoder with the head appended
(``logits = [0, w.e + b]``), so ``proxy/detectors/onnx_classifier.py`` loads it like any other
classifier; the embeddings used for training come from that same loader (``OnnxTextClassifier.run``
on its ``windows``), so training and serving see the same token windows.

Only ``export_encoder`` needs PyTorch and ``transformers`` (training-time tools, never runtime
dependencies of the sidecar); everything else uses numpy, onnx and onnxruntime.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from proxy.detectors.onnx_classifier import OnnxTextClassifier  # noqa: E402

Floats = npt.NDArray[np.float64]
EMBEDDING = "embedding"  # the encoder graph's output: L2-normalised mean-pooled token states
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 128-token inputs; sentence-transformers use 256
STRIDE = 192  # windows overlap by 64 tokens, so a planted sentence is whole in at least one


# -- encoder -----------------------------------------------------------------------------------
def export_encoder(model_dir: Path, out: Path, *, opset: int = 17) -> None:
    """Export a BERT-style encoder (Hugging Face directory: config.json + weights) with mean pooling
    over the attention mask and L2 normalisation (all-MiniLM-L6-v2's sentence-transformers pipeline)
    to ``out``: inputs ``input_ids`` and ``attention_mask`` (int64 [batch, sequence]), output
    ``embedding`` (float [batch, hidden]). ``token_type_ids`` are zeros inside the graph (one
    sequence), so the loader needs to feed only what it already feeds."""
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(model_dir)).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            Pooled(),
            (ids, mask),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=[EMBEDDING],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                EMBEDDING: {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )


def encoder_dir(
    encoder_onnx: Path, tokenizer_json: Path, out: Path, max_tokens: int = MAX_TOKENS, stride: int = STRIDE
) -> Path:
    """A loader directory around the bare encoder (its "logits" are embeddings): the build script
    embeds through ``OnnxTextClassifier`` so the windows are the serving ones."""
    out.mkdir(parents=True, exist_ok=True)
    if encoder_onnx.resolve() != (out / "model.onnx").resolve():
        shutil.copyfile(encoder_onnx, out / "model.onnx")
    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    (out / "config.json").write_text(json.dumps({"max_tokens": max_tokens, "stride": stride}))
    return out


@dataclass
class Embedded:
    """Window embeddings of many texts, flat: rows ``offsets[i]:offsets[i + 1]`` are text i's."""

    vectors: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]

    def rows_of(self, texts: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(window rows, owning text of each) for the given text indices."""
        starts, ends = self.offsets[list(texts)], self.offsets[[t + 1 for t in texts]]
        owner = np.repeat(np.asarray(texts, dtype=np.int64), ends - starts)
        spans = [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends, strict=True)]
        rows = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
        return rows, owner


def embed(clf: OnnxTextClassifier, texts: Sequence[str], batch_tokens: int = 4096) -> Embedded:
    """Embed every serving window of every text, batching windows of similar length together (so
    padding stays small); deterministic and order-preserving."""
    wins: list[list[int]] = []
    counts = np.zeros(len(texts) + 1, dtype=np.int64)
    for i, t in enumerate(texts):
        w = clf.windows(t)
        wins.extend(w)
        counts[i + 1] = len(w)
    offsets = np.cumsum(counts)
    order = sorted(range(len(wins)), key=lambda k: len(wins[k]))
    out: npt.NDArray[np.float32] | None = None
    start = 0
    while start < len(order):
        width = len(wins[order[start]])
        end = start + 1
        while end < len(order) and (end - start + 1) * len(wins[order[end]]) <= max(batch_tokens, width):
            end += 1
        batch = order[start:end]
        vectors = clf.run([wins[k] for k in batch]).astype(np.float32)
        if out is None:
            out = np.zeros((len(wins), vectors.shape[1]), dtype=np.float32)
        out[batch] = vectors
        start = end
    return Embedded(out if out is not None else np.zeros((0, 0), dtype=np.float32), offsets)


# -- head --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """A logistic head on the embedding: ``P(positive) = sigmoid(weights . e + bias)``."""

    weights: Floats
    bias: float

    def logit(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return np.asarray(vectors, dtype=np.float64) @ self.weights + self.bias

    def text_scores(self, emb: Embedded, texts: Sequence[int]) -> Floats:
        """Each text's score as the loader computes it: the highest window's probability."""
        rows, owner = emb.rows_of(texts)
        probs = 1.0 / (1.0 + np.exp(-self.logit(emb.vectors[rows])))
        best = np.full(len(emb.offsets) - 1, -1.0)
        np.maximum.at(best, owner, probs)
        return best[np.asarray(texts, dtype=np.int64)]


def train_head(emb: Embedded, texts: Sequence[int], labels: Sequence[int], l2: float = 1.0) -> Head:
    """L2-regularised logistic regression by Newton steps (deterministic, exact to 1e-8) on the
    windows of ``texts``. Every window carries its text's label; a text's windows share one unit of
    weight, and the two classes weigh the same in total (sources are very unbalanced).

    Only the rows passed in are read: the leave-one-source-out caller passes the training sources."""
    rows, owner = emb.rows_of(texts)
    label_of = dict(zip(texts, labels, strict=True))
    y = np.array([label_of[int(o)] for o in owner], dtype=np.float64)
    per_text = np.diff(emb.offsets)[owner].astype(np.float64)
    w = 1.0 / per_text
    for cls in (0.0, 1.0):
        side = y == cls
        if side.any():
            w[side] *= 0.5 * len(texts) / w[side].sum()
    x = np.asarray(emb.vectors[rows], dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    beta = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (w * (p - y)) + reg * beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    weights = beta[:-1] / std  # fold the standardisation into the head
    return Head(weights, float(beta[-1] - weights @ mean))


# -- the served directory ----------------------------------------------------------------------
def attach_head(encoder_onnx: Path, head: Head, out: Path) -> None:
    """Append ``logits = [0, w . embedding + b]`` to the encoder graph and save it as ``out``: the
    loader's softmax of these two logits is the head's sigmoid."""
    model = onnx.load(str(encoder_onnx))
    graph = model.graph
    (embedding,) = [o for o in graph.output if o.name == EMBEDDING]
    matrix = np.zeros((len(head.weights), 2), dtype=np.float32)
    matrix[:, 1] = head.weights
    graph.initializer.extend(
        [
            numpy_helper.from_array(matrix, "guard_head_weights"),
            numpy_helper.from_array(np.array([0.0, head.bias], dtype=np.float32), "guard_head_bias"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("MatMul", [EMBEDDING, "guard_head_weights"], ["guard_head_linear"]),
            helper.make_node("Add", ["guard_head_linear", "guard_head_bias"], ["logits"]),
        ]
    )
    graph.output.remove(embedding)
    graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 2]))
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


def write_guard_dir(
    encoder_onnx: Path,
    tokenizer_json: Path,
    head: Head,
    out: Path,
    provenance: Mapping[str, object],
    max_tokens: int = MAX_TOKENS,
    stride: int = STRIDE,
) -> Path:
    """The ``model: {onnx: DIR}`` directory: model.onnx (encoder + head), tokenizer.json and a
    config.json naming the positive label, the windows (those the head was trained on) and where
    everything came from (the loader ignores keys it does not know)."""
    out.mkdir(parents=True, exist_ok=True)
    attach_head(encoder_onnx, head, out / "model.onnx")
    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    config = {
        "labels": ["benign", "positive"],
        "positive": "positive",
        "max_tokens": max_tokens,
        "stride": stride,
        "provenance": provenance,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def save_head(head: Head, path: Path, provenance: Mapping[str, object]) -> None:
    """The head alone (384 floats and a bias, JSON): small enough to commit with its provenance."""
    body = {"weights": [float(v) for v in head.weights], "bias": head.bias, "provenance": provenance}
    path.write_text(json.dumps(body, indent=1) + "\n")


def load_head(path: Path) -> Head:
    body = json.loads(path.read_text())
    return Head(np.asarray(body["weights"], dtype=np.float64), float(body["bias"]))
