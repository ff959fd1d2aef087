#!/usr/bin/env python3
"""Evaluate the moderation detector on the held-out part of the OpenAI set and on benign-hard prompts.

Why separate from training: the held-out rows (``split_openai`` in train_moderation.py, ~40%, seeded
hash, stratified) are only ever scored here, so these numbers are an honest estimate for this data
distribution. Prints markdown tables: per-category and overall (any-category) precision / recall / F1
for the rules, the classifier and the combined score at the default thresholds; a threshold sweep
(one threshold for all categories); the false-positive rate on ``benign_hard.txt`` (in-sample: it sets
the thresholds) and on ``scripts/data/moderation_benign_holdout.txt`` (out-of-sample over-blocking: benign
prompts that look dangerous or are just everyday, never used for training or thresholds); and latency.

Reference point (not a target): an LLM self-check prompt reached overall F1 0.62 on the full OpenAI set
(NeMo Guardrails evaluation docs).

The leave-one-source-out section also prints the opt-in harmful-request model's table
(``train_harmful_request.loso_report``: per source, per MultiJail language, in-distribution; ~30 min,
``--no-harmful-request`` skips it).

Usage: python scripts/eval_moderation.py [--data-dir DIR] [--model PATH]
(exits non-zero if the dataset is absent; ``--model`` scores a model file other than the packaged one,
e.g. a candidate trained with ``train_moderation.py --out-dir``, without replacing the shipped weights)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import loso  # noqa: E402
from loso_sources import moderation_corpus  # noqa: E402
from train_moderation import (  # noqa: E402
    DAVIDSON_FILE,
    DEFAULT_DATA_DIR,
    FEATURES,
    OPENAI_FILE,
    any_label,
    build_design,
    canonical_texts,
    fit,
    load_benign_hard,
    load_openai,
    noisy_or,
    rule_scores,
    split_openai,
)

from proxy.detectors.injection.features import FeatureHasher  # noqa: E402
from proxy.detectors.moderation import CODES, ModerationDetector, ModerationResult  # noqa: E402
from proxy.detectors.moderation.classifier import ModerationClassifier  # noqa: E402
from proxy.detectors.moderation.rules import CLASSIFIER_CATEGORIES as CATEGORIES  # noqa: E402

LAYERS = ("rules", "classifier", "combined")
HOLDOUT_FILE = REPO / "scripts" / "data" / "moderation_benign_holdout.txt"
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CARD_NOTE = (
    "Written by `{script} --write-card`: read this before the in-distribution numbers below. Each row "
    "retrains this model family without the held-out source; the threshold is chosen on the training "
    "sources only. The packaged column is this model at its default thresholds: rows from its own "
    "training data are in-sample for it."
)
CARD = REPO / "proxy" / "detectors" / "moderation" / "MODEL_CARD.md"
Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]


def prf(flagged: npt.NDArray[np.bool_] | np.bool_, y: Labels) -> tuple[float, float, float, int, int, int]:
    """Precision, recall, F1, TP, FP, FN on rows with a known label (y >= 0)."""
    known = y >= 0
    f, t = np.asarray(flagged, dtype=bool)[known], y[known] == 1
    tp, fp, fn = int((f & t).sum()), int((f & ~t).sum()), int((~f & t).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1, tp, fp, fn


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def layer_scores(results: Sequence[ModerationResult]) -> dict[str, Floats]:
    """(rows, categories) score matrix per layer."""
    out: dict[str, Floats] = {}
    for layer, pick in (
        ("rules", lambda r: r.rule_scores),
        ("classifier", lambda r: r.classifier_scores),
        ("combined", lambda r: r.combined_scores),
    ):
        getter: Callable[[ModerationResult], Mapping[str, float]] = pick
        out[layer] = np.array([[getter(r)[c] for c in CATEGORIES] for r in results])
    return out


def thresholds_matrix(detector: ModerationDetector) -> dict[str, Floats]:
    t = detector.thresholds
    return {
        "rules": np.array([t.rules[c] for c in CATEGORIES]),
        "classifier": np.array([t.classifier[c] for c in CATEGORIES]),
        "combined": np.array([t.combined[c] for c in CATEGORIES]),
    }


def bench(fn: Callable[[str], object], text: str, runs: int = 300) -> float:
    """Best-of-5 CPU time per call in microseconds (CPU time: the machine may be shared)."""
    fn(text)
    samples = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(runs // 5):
            fn(text)
        samples.append((time.process_time() - start) / (runs // 5))
    return min(samples) * 1e6


LOSO_TARGET_FPR = 0.03  # the over-blocking aim


def loso_table(data_root: Path) -> str:
    """Leave-one-source-out table for the product's model family: ``train_moderation.fit`` (hashed
    n-gram logistic regression on the rule layer's canonical text) retrained without the held-out
    source on one "unsafe in any category" label, noisy-OR'd with the (untrained) rule layer's highest
    category score; threshold for FPR <= 3% on a group-split validation part of the training sources.
    The packaged column is the shipped detector at its default per-category thresholds."""
    corpus = moderation_corpus(data_root)
    y = corpus.y
    canon = canonical_texts(corpus.texts)
    rules = rule_scores(corpus.texts).max(axis=1)
    design = build_design(canon, FeatureHasher(FEATURES))
    shipped = ModerationDetector()
    packaged_verdicts = np.array([shipped.scan(t).flagged for t in corpus.texts])

    def fit_rows(rows: loso.Index) -> tuple[Floats, float]:
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        return fit(design.subset(mask), y[mask].astype(np.float64), np.ones(int(mask.sum())), 1.0)

    def score_rows(model: tuple[Floats, float], rows: loso.Index) -> Floats:
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        z = np.clip(design.subset(mask).matvec(model[0]) + model[1], -60, 60)
        return np.asarray(noisy_or(rules[mask], 1.0 / (1.0 + np.exp(-z))), dtype=np.float64)

    return loso.fpr_report(
        corpus, fit_rows, score_rows, packaged_verdicts, LOSO_TARGET_FPR, "unsafe; any category"
    )


def print_benign_section(
    detector: ModerationDetector, th: Mapping[str, Floats], texts: Sequence[str], title: str, note: str
) -> None:
    """False positives per layer on an all-benign list, then every prompt the detector flags.

    Why per layer: it shows whether over-blocking comes from a rule or from classifier noise."""
    results = [detector.scan(t) for t in texts]
    scores = layer_scores(results)
    print(f"## {title}: {len(texts)} (all benign; {note})\n")
    rows: list[list[object]] = []
    for layer in LAYERS:
        flagged = np.asarray((scores[layer] >= th[layer]).any(axis=1), dtype=bool)
        rows.append([layer, int(flagged.sum()), float(flagged.mean())])
    print(table(["layer", "flagged (any category)", "false-positive rate"], rows), "\n")
    for res, text in zip(results, texts, strict=True):
        if res.flagged:
            print(f"- flagged {list(res.flagged_categories)}: {text}")
    top = sorted(((r.max_score, t) for r, t in zip(results, texts, strict=True)), reverse=True)[:3]
    print("- highest combined scores: " + "; ".join(f"{s:.3f} {t!r}" for s, t in top), "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--model", type=Path, default=None, help="model .npz to evaluate (default: packaged)")
    ap.add_argument("--holdout", type=Path, default=HOLDOUT_FILE, help="benign over-blocking set to score")
    ap.add_argument("--no-loso", action="store_true", help="skip the leave-one-source-out table")
    ap.add_argument("--loso-only", action="store_true", help="print only the leave-one-source-out table")
    ap.add_argument(
        "--no-harmful-request",
        action="store_true",
        help="skip the harmful-request model's leave-one-source/language-out table (~15 min)",
    )
    ap.add_argument(
        "--write-card", action="store_true", help="also write the table into the model card (MODEL_CARD.md)"
    )
    args = ap.parse_args(argv)
    if not (args.data_dir / OPENAI_FILE).is_file():
        print(
            f"error: shared dataset not found: {args.data_dir / OPENAI_FILE}\n"
            f"expected {OPENAI_FILE} (and {DAVIDSON_FILE} for training) in {args.data_dir}; pass --data-dir",
            file=sys.stderr,
        )
        return 2
    if not args.no_loso:
        root = args.data_dir.parent
        note = CARD_NOTE.format(script=Path(__file__).name)
        marker = args.data_dir / "coconot.jsonl"
        loso.print_loso(root, marker, loso_table, CARD if args.write_card else None, note)
        if marker.is_file() and not args.no_harmful_request:
            from train_harmful_request import loso_report

            print(loso_report(root), "\n", flush=True)
        if args.loso_only:
            return 0
    texts, labels = load_openai(args.data_dir)
    test = split_openai(texts, labels)
    t_texts = [texts[i] for i in np.flatnonzero(test)]
    y = labels[test]
    y_any = any_label(y)
    classifier = ModerationClassifier.load(args.model) if args.model else None
    detector = ModerationDetector(classifier=classifier)
    print(f"model: {args.model or 'packaged'}\n")
    th = thresholds_matrix(detector)
    results = [detector.scan(t) for t in t_texts]
    scores = layer_scores(results)

    print(
        f"## Held-out OpenAI part: {len(t_texts)} prompts ({int(y_any.sum())} violating any category); "
        f"training never saw these\n"
    )
    rows: list[list[object]] = []
    for layer in LAYERS:
        flagged = scores[layer] >= th[layer]
        p, r, f, tp, fp, fn = prf(flagged.any(axis=1), y_any)
        rows.append([layer, "any (overall)", p, r, f, tp, fp, fn])
    print("### Overall (any category flagged vs any category labelled 1)\n")
    print(table(["layer", "category", "precision", "recall", "F1", "TP", "FP", "FN"], rows), "\n")
    print("Reference: LLM self-check prompt, full OpenAI set, overall F1 0.62 (NeMo Guardrails docs).\n")

    print("### Per category (rows with a known label only; combined-score threshold shown)\n")
    rows = []
    for j, cat in enumerate(CATEGORIES):
        known = int((y[:, j] >= 0).sum())
        pos = int((y[:, j] == 1).sum())
        row: list[object] = [f"{cat} ({CODES[cat]})", f"{pos}/{known}", f"{th['combined'][j]:.3f}"]
        for layer in LAYERS:
            p, r, f, *_ = prf(scores[layer][:, j] >= th[layer][j], y[:, j])
            row += [p, r, f]
        rows.append(row)
    header = ["category", "pos/known", "t_comb"]
    header += [f"{m} {layer[:4]}" for layer in LAYERS for m in ("P", "R", "F1")]
    print(table(header, rows), "\n")

    print("### Threshold sweep (one threshold for every category; overall any-category)\n")
    rows = []
    for t in SWEEP:
        row = [f"{t:.1f}"]
        for layer in ("classifier", "combined"):
            p, r, f, *_ = prf((scores[layer] >= t).any(axis=1), y_any)
            row += [p, r, f]
        rows.append(row)
    p, r, f, *_ = prf((scores["combined"] >= th["combined"]).any(axis=1), y_any)
    rows.append(["defaults (per category)", "", "", "", p, r, f])
    print(table(["threshold", "P cls", "R cls", "F1 cls", "P comb", "R comb", "F1 comb"], rows), "\n")

    print_benign_section(
        detector, th, load_benign_hard(), "Benign-hard prompts", "used to set thresholds, so in-sample"
    )
    print_benign_section(
        detector,
        th,
        load_benign_hard(args.holdout),
        "Held-out over-blocking prompts",
        f"{args.holdout.name}; never used for training or thresholds",
    )

    print("## Latency (CPU time per call, best of 5 batches, this machine)\n")
    corpus = " ".join(t_texts)
    rows = []
    for size in (2048, 8192):
        rows.append([f"{size // 1024} KB", f"{bench(detector.scan, corpus[:size]):.0f} us"])
    print(table(["text", "detector.scan (rules + classifier)"], rows))
    times = []
    for text in t_texts[:300]:
        start = time.process_time()
        detector.scan(text)
        times.append((time.process_time() - start) * 1e6)
    print(f"\nmedian detector.scan over 300 held-out prompts: {float(np.median(times)):.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
