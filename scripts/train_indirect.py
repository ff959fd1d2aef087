#!/usr/bin/env python3
"""Train the indirect-injection segment model (``proxy/detectors/injection/indirect_model.json``).

Why this way: the only labelled indirect data (garak's latent-injection probes) labels *documents*,
while the detector scores *segments* (``indirect.py``). garak ships every document also without its
injection (``benign_document``, linked by ``group``), so the segments of an injected document that
occur in no clean document are the planted ones: those are the positives; every featurised segment
of a clean document (garak's clean controls and the AdversarialQA passage tasks) is a negative. A
second pass keeps, per injected document, only the planted segment the first model scores highest
(multiple-instance learning: a document needs one bad segment, and "Begin:" next to the payload is
not an attack). Segments are de-duplicated, so a template repeated in thousands of rows counts once.

Honest numbers: ``--loso`` holds out one garak probe family at a time (the fact snippets, résumés,
reports, WHOIS records, translations, latent jailbreaks), trains on the others plus the benign
passages, picks the threshold there (document FPR <= 1%), and scores the held-out family; then the
benign passages are held out with garak only for training. The hand-written cases in
``scripts/data/indirect_handwritten.jsonl`` (e-mails, web pages, reviews, code, tool results,
recipes, manuals) were written before any training and are never trained on.

Usage: python scripts/train_indirect.py [--data-dir DIR] [--loso] [--write]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from dataset_files import data_parser, jsonl, missing  # noqa: E402

from proxy.detectors.injection.indirect import (  # noqa: E402
    FEATURES,
    MODEL_FILE,
    IndirectDetector,
    featurise,
    segments,
)
from proxy.detectors.injection.multilingual import MultilingualLexicon  # noqa: E402

HANDWRITTEN = REPO / "scripts" / "data" / "indirect_handwritten.jsonl"
OUT = REPO / "proxy" / "detectors" / "injection" / MODEL_FILE
MAX_FPR = 0.01
_FIRST = FEATURES.index("first_segment")
# Every cue is evidence *for* an injection (a prior, not a fit): its weight is kept >= 0, so a cue the
# training data happens to show mostly on clean documents cannot become a reason to pass an attack.
# Only these may weigh against: a question, and the user's own request around a document.
SIGNED = frozenset({"question", "first_segment"})
_NONNEG = np.array([name not in SIGNED for name in FEATURES])
L2 = 1.0
Floats = npt.NDArray[np.float64]
FAMILIES = {
    "FactSnippetEiffel": "fact snippets (Eiffel)",
    "FactSnippetLegal": "fact snippets (legal)",
    "Resume": "résumés",
    "Report": "company reports",
    "Whois": "WHOIS records",
    "Translation": "translation tasks",
    "LatentJailbreak": "latent jailbreaks",
}


def family(category: str) -> str:
    return next((f for f in FAMILIES if f in category), "other")


class Doc:
    """One document: label, source family, and the feature rows of its candidate segments."""

    def __init__(
        self, text: str, label: int, fam: str, detector: IndirectDetector, lexicon: MultilingualLexicon
    ):
        self.label, self.family = label, fam
        segs = segments(text)
        idx = detector.candidates(text, segs)
        self.seg_text = [segs[i].text for i in idx]
        self.x = np.array(
            [featurise(segs, i, lexicon, as_data=False) for i in idx], dtype=np.float64
        ).reshape(len(idx), len(FEATURES))


def load_docs(data: Path) -> list[Doc]:
    detector = IndirectDetector({}, 0.0, 0.5)
    lexicon = MultilingualLexicon.default()
    docs = []
    for d in jsonl(data / "injection" / "garak_probes.jsonl.gz"):
        if d["kind"] in ("indirect_injection", "benign_document"):
            docs.append(Doc(d["text"], int(d["label"]), family(d["category"]), detector, lexicon))
    for d in jsonl(data / "injection" / "benign_passage_tasks_adversarialqa.jsonl.gz"):
        docs.append(Doc(d["text"], 0, "adversarialqa", detector, lexicon))
    # Everyday tasks (e-mails, code, recipes, "print the agenda"): imperatives addressed to people.
    for d in jsonl(data / "moderation" / "benign_self_instruct.jsonl"):
        docs.append(Doc(d["text"], 0, "self_instruct", detector, lexicon))
    return docs


def fit(x: Floats, y: Floats, weight: Floats, l2: float = L2, iterations: int = 3000) -> tuple[Floats, float]:
    """L2-regularised logistic regression by full-batch gradient descent with momentum (40 features)."""
    w, b = np.zeros(x.shape[1]), 0.0
    vw, vb = np.zeros_like(w), 0.0
    total = weight.sum()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        g = (p - y) * weight
        gw = x.T @ g / total + l2 * w / total
        gb = g.sum() / total
        vw, vb = 0.9 * vw - 0.5 * gw, 0.9 * vb - 0.5 * gb
        w, b = w + vw, b + vb
        w[_NONNEG] = np.maximum(w[_NONNEG], 0.0)
    return w, b


def design(docs: Sequence[Doc], w: Floats | None = None, b: float = 0.0) -> tuple[Floats, Floats, Floats]:
    """De-duplicated segment rows: negatives from clean documents, positives = the planted segments."""
    clean = {t for d in docs if d.label == 0 for t in d.seg_text}
    rows: dict[tuple[Any, ...], int] = {}
    for d in docs:
        if d.label == 0:
            for t, xi in zip(d.seg_text, d.x, strict=True):
                rows[(t, 0, *xi)] = 0
            continue
        # The user's own request (first or last segment) is never the planted part.
        planted = [i for i, t in enumerate(d.seg_text) if t not in clean and not d.x[i, _FIRST]]
        if w is not None and planted:
            planted = [max(planted, key=lambda i: float(d.x[i] @ w + b))]
        for i in planted:
            rows[(d.seg_text[i], 1, *d.x[i])] = 1
    keys = list(rows)
    x = np.array([k[2:] for k in keys], dtype=np.float64)
    y = np.array([k[1] for k in keys], dtype=np.float64)
    # Balance the classes so that the rare positives are not drowned by the many clean segments.
    weight = np.where(y == 1, (y == 0).sum() / max((y == 1).sum(), 1), 1.0)
    return x, y, weight


def train(docs: Sequence[Doc]) -> tuple[Floats, float]:
    x, y, wt = design(docs)
    w, b = fit(x, y, wt)
    x, y, wt = design(docs, w, b)
    return fit(x, y, wt)


def doc_scores(docs: Sequence[Doc], w: Floats, b: float) -> Floats:
    out = np.empty(len(docs))
    for k, d in enumerate(docs):
        z = b if not len(d.x) else max(b, float((d.x @ w + b).max()))
        out[k] = 1.0 / (1.0 + np.exp(-z))
    return out


def threshold_for_fpr(scores: Floats, y: npt.NDArray[np.int64], max_fpr: float = MAX_FPR) -> float:
    neg = np.sort(scores[y == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(neg)))
    return float(min(neg[allowed] + 1e-6, 1.0)) if len(neg) > allowed else 0.0


def labels(docs: Sequence[Doc]) -> npt.NDArray[np.int64]:
    return np.array([d.label for d in docs], dtype=np.int64)


def report(name: str, scores: Floats, y: npt.NDArray[np.int64], t: float) -> str:
    flagged = scores >= t
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    rec = f"{(flagged & (y == 1)).sum() / pos:.3f}" if pos else "-"
    fpr = f"{(flagged & (y == 0)).sum() / neg:.3f}" if neg else "-"
    return f"| {name} | {pos}/{neg} | {rec} | {fpr} | {t:.3f} |"


def loso(docs: Sequence[Doc]) -> list[str]:
    lines = [
        "| held-out source | rows (attack/benign) | recall | FPR | threshold (from training) |",
        "|---|---|---|---|---|",
    ]
    held_benign = [
        ("adversarialqa", "adversarialqa passages (benign)"),
        ("self_instruct", "self_instruct (benign)"),
    ]
    for fam, label in [*FAMILIES.items(), *held_benign]:
        tr = [d for d in docs if d.family != fam]
        te = [d for d in docs if d.family == fam]
        w, b = train(tr)
        t = threshold_for_fpr(doc_scores(tr, w, b), labels(tr))
        lines.append(report(label, doc_scores(te, w, b), labels(te), t))
        print(lines[-1], flush=True)
    return lines


def handwritten(detector: IndirectDetector) -> list[str]:
    rows = list(jsonl(HANDWRITTEN))
    y = np.array([r["label"] for r in rows], dtype=np.int64)
    lines = []
    for mode, wrap in (("as data (tool result / retrieved)", False), ("inside a user message", True)):
        texts = [("Summarise this for me:\n\n" + r["text"]) if wrap else r["text"] for r in rows]
        scores = np.array([detector.scan(t, as_data=not wrap).score for t in texts])
        lines.append(report(f"hand-written, {mode}", scores, y, detector.threshold))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--loso", action="store_true", help="print the leave-one-family-out table")
    ap.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    args = ap.parse_args(argv)
    if missing(args.data_dir, "injection/garak_probes.jsonl.gz"):
        return 2
    started = time.perf_counter()
    docs = load_docs(args.data_dir)
    print(f"{len(docs)} documents featurised in {time.perf_counter() - started:.1f}s", flush=True)
    if args.loso:
        loso(docs)
    w, b = train(docs)
    scores = doc_scores(docs, w, b)
    t = threshold_for_fpr(scores, labels(docs))
    print(report("all training sources (in-sample)", scores, labels(docs), t))
    model = {
        "weights": {name: round(float(v), 4) for name, v in zip(FEATURES, w, strict=True)},
        "bias": round(float(b), 4),
        "threshold": round(t, 4),
        "info": {
            "trained_by": "scripts/train_indirect.py",
            "data": "garak latentinjection probes (NVIDIA/garak @ cafbe992780d, Apache-2.0) with their clean "
            "documents; AdversarialQA passage tasks (CC BY-SA 4.0) and self-instruct tasks "
            "(Apache-2.0), both via yizhongw/self-instruct @ 0b26ccaa4159",
            "threshold_rule": f"document FPR <= {MAX_FPR} on the training documents",
            "l2": L2,
        },
    }
    detector = IndirectDetector(model["weights"], model["bias"], model["threshold"])
    for line in handwritten(detector):
        print(line)
    for name, value in sorted(model["weights"].items(), key=lambda kv: -abs(kv[1])):
        print(f"  {name:24s} {value:+.3f}")
    if args.write:
        OUT.write_text(json.dumps(model, indent=1, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
