"""A tiny ONNX text classifier and tokenizer built on the spot (no downloads) for the ONNX layer's tests.

The graph is ``Gather`` (an embedding table) then ``ReduceMax`` over the sequence: logits
``[1, 0]`` for ordinary words and ``[1, 5]`` once a "positive" word occurs, so the positive
probability is ~0.27 for ordinary text and ~0.98 with a positive word, in any window.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers


def build(directory: Path, words: Sequence[str], positive: Sequence[str], **config: object) -> Path:
    """Write model.onnx, tokenizer.json and config.json into ``directory``; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"[UNK]": 0, "[PAD]": 1}
    for w in [*words, *positive]:
        vocab.setdefault(w.lower(), len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    table = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(vocab), 1))
    for w in positive:
        table[vocab[w.lower()]] = [1.0, 5.0]
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input_ids"], ["vectors"]),
            helper.make_node("ReduceMax", ["vectors"], ["logits"], axes=[1], keepdims=0),
        ],
        "tiny_classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(table, "embedding")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))
    (directory / "config.json").write_text(
        json.dumps({"labels": ["safe", "unsafe"], "positive": "unsafe", **config})
    )
    return directory


def build_encoder(directory: Path, words: Sequence[str], dim: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """A tiny sentence *encoder* in the layout ``scripts/onnx_guard.py`` exports from MiniLM: inputs
    ``input_ids`` and ``attention_mask``, output ``embedding`` = the L2-normalised mean of the
    (seeded random) token vectors under the mask. Its tokenizer frames a text as ``[CLS] ... [SEP]``
    like BERT's, so the loader's special-token windows are exercised. Returns (encoder.onnx,
    tokenizer.json); the build script's head code turns it into a classifier directory."""
    from tokenizers import processors

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    table = np.random.default_rng(seed).normal(size=(len(vocab), dim)).astype(np.float32)
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "axes"], ["mask3"]),
            helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "one"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "one"], ["count"], keepdims=0),
            helper.make_node("Div", ["summed", "count"], ["mean"]),
            helper.make_node("LpNormalization", ["mean"], ["embedding"], axis=1, p=2),
        ],
        "tiny_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [
            numpy_helper.from_array(table, "table"),
            axes,
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "encoder.onnx"))
    return directory / "encoder.onnx", directory / "tokenizer.json"
