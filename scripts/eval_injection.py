#!/usr/bin/env python3
"""Evaluate the prompt-injection detector on the held-out TEST split and on benign-hard prompts.

Why separate from training: the test split (``jailbreak_test.csv``) is only ever read here, so the
numbers below are an honest estimate for this data distribution. Prints markdown tables: per-layer
precision/recall/FPR at the default thresholds, threshold sweeps for the classifier and the combined
score, over-blocking on ``benign_hard.txt``, recall on synthetically obfuscated test jailbreaks, and
scoring latency.

Usage: python scripts/eval_injection.py [--data-dir DIR]   (exits non-zero if the dataset is absent)
"""

from __future__ import annotations

import argparse
import base64
import codecs
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import loso  # noqa: E402
from dataset_files import read_rows  # noqa: E402
from loso_sources import injection_corpus  # noqa: E402
from train_injection import (  # noqa: E402
    DEFAULT_DATA_DIR,
    QUICK_L2,
    build_design,
    fit,
    load_benign_hard,
    load_split,
)

from proxy.detectors.injection import InjectionClassifier, InjectionDetector, InjectionResult  # noqa: E402
from proxy.detectors.injection.classifier import ModelMeta  # noqa: E402
from proxy.detectors.injection.detector import Thresholds  # noqa: E402
from proxy.detectors.injection.features import FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.injection.multilingual import MultilingualLexicon  # noqa: E402

SWEEP = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
Scores = npt.NDArray[np.float64]
CARD_NOTE = (
    "Written by `{script} --write-card`: read this before the in-distribution numbers below. Each row "
    "retrains this model family without the held-out source; the threshold is chosen on the training "
    "sources only. The packaged column is this model at its default thresholds: rows from its own "
    "training data are in-sample for it."
)
CARD = REPO / "proxy" / "detectors" / "injection" / "MODEL_CARD.md"
Labels = npt.NDArray[np.int8]


def confusion(flagged: npt.NDArray[np.bool_], y: Labels) -> tuple[float, float, float, int, int, int, int]:
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / max(tp + fn, 1), fp / max(fp + tn, 1), tp, fp, fn, tn


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def layer_scores(results: Sequence[InjectionResult]) -> dict[str, Scores]:
    return {
        "heuristics": np.array([r.heuristic_score for r in results]),
        "classifier": np.array([r.classifier_score for r in results]),
        "combined": np.array([r.combined_score for r in results]),
    }


def obfuscations() -> dict[str, Callable[[str], str]]:
    """Synthetic attacks built from test jailbreaks, to check that normalisation does its job."""
    homoglyphs = str.maketrans(
        {"a": "\u0430", "e": "\u0435", "o": "\u043e", "i": "\u0456", "c": "\u0441", "p": "\u0440"}
    )

    def zero_width(t: str) -> str:
        return "\u200b".join(t[i : i + 3] for i in range(0, len(t), 3))

    leet = str.maketrans({"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7"})

    def spaced(t: str, sep: str = " ") -> str:
        return "  ".join(sep.join(word) for word in t.split())

    return {
        "plain": lambda t: t,
        "leetspeak (o0 i1 e3 a4 s5 t7)": lambda t: t.lower().translate(leet),
        "spaced letters (words: double space)": spaced,
        "dotted letters": lambda t: spaced(t, "."),
        "rot13 (whole text)": lambda t: codecs.encode(t, "rot13"),
        "written backwards": lambda t: t[::-1],
        "regional-indicator letters": lambda t: "".join(
            chr(ord(c) - 97 + 0x1F1E6) + "\u200b" if "a" <= c <= "z" else c for c in t.lower()
        ),
        "homoglyphs (Cyrillic a/e/o/i/c/p)": lambda t: t.translate(homoglyphs),
        "zero-width every 3 chars": zero_width,
        "fullwidth": lambda t: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t),
        "base64 payload (neutral wrapper)": lambda t: "Data: " + base64.b64encode(t.encode()).decode(),
    }


LOSO_TARGET_FPR = 0.01  # the packaged model's own threshold rule (train_injection.TARGET_FPR)
LOSO_ITERATIONS = 150  # half the packaged model's 300: keeps the table to a few minutes on 2 cores


def loso_table(data_root: Path) -> str:
    """Leave-one-source-out table for the product's model family: the hashed n-gram logistic regression
    of ``train_injection.py`` retrained without the held-out source, combined with the (untrained) rule
    layer and the normaliser's decoded views exactly as ``InjectionDetector.scan`` does; threshold for
    FPR <= 1% on a group-split validation part of the training sources. The packaged column is the
    shipped detector at its default thresholds (it was trained on jailbreak_train.csv only)."""
    corpus = injection_corpus(data_root)
    y = corpus.y
    config = FeatureConfig()
    design = build_design(corpus.texts, FeatureHasher(config))
    shipped = InjectionDetector()
    packaged_verdicts = np.array([shipped.scan(t).is_injection for t in corpus.texts])

    def fit_rows(rows: loso.Index) -> InjectionDetector:
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        w, b = fit(design.subset(mask), y[mask], QUICK_L2, iterations=LOSO_ITERATIONS)
        classifier = InjectionClassifier(w, ModelMeta(config, b))
        return InjectionDetector(Thresholds(), classifier=classifier)

    def score_rows(detector: InjectionDetector, rows: loso.Index) -> loso.Floats:
        return np.array([detector.scan(corpus.texts[i]).combined_score for i in rows])

    return loso.fpr_report(
        corpus, fit_rows, score_rows, packaged_verdicts, LOSO_TARGET_FPR, "attacks; combined score"
    )


def plain_detector() -> InjectionDetector:
    """The detector without the de-obfuscated views and the multilingual lexicon (the behaviour before
    they were added), to show what they cost in false positives."""
    return InjectionDetector(lexicon=MultilingualLexicon({}), deobfuscate=False)


def benign_fpr_table(data_root: Path) -> str:
    """False-positive rate of the packaged detector on the benign sets, with and without the views and
    the multilingual lexicon (full sets, not subsampled)."""
    sets = {
        "clinc_oos everyday queries": data_root / "moderation" / "benign_clinc_oos_queries.jsonl.gz",
        "self_instruct tasks": data_root / "moderation" / "benign_self_instruct.jsonl",
        "adversarialqa passages + tasks": data_root
        / "injection"
        / "benign_passage_tasks_adversarialqa.jsonl.gz",
    }
    before, after = plain_detector(), InjectionDetector()
    rows = []
    for name, path in sets.items():
        if not path.is_file():
            continue
        texts = [t for t, _, _ in read_rows(path)]
        fp_before = sum(before.scan(t).is_injection for t in texts)
        res_after = [after.scan(t) for t in texts]
        fp_after = sum(r.is_injection for r in res_after)
        views = sum(r.view not in ("text",) and not r.view.startswith("text:") for r in res_after)
        rows.append(
            [
                name,
                len(texts),
                f"{fp_before} ({fp_before / len(texts):.4f})",
                f"{fp_after} ({fp_after / len(texts):.4f})",
                views,
            ]
        )
    header = [
        "benign set",
        "rows",
        "flagged before (no views/lexicon)",
        "flagged after",
        "best view not the text",
    ]
    return "## Benign sets: false positives before/after de-obfuscation (combined verdict)\n\n" + table(
        header, rows
    )


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--no-loso", action="store_true", help="skip the leave-one-source-out table")
    ap.add_argument("--loso-only", action="store_true", help="print only the leave-one-source-out table")
    ap.add_argument(
        "--write-card", action="store_true", help="also write the table into the model card (MODEL_CARD.md)"
    )
    args = ap.parse_args(argv)
    if not args.data_dir.is_dir():
        print(
            f"error: shared dataset folder not found: {args.data_dir}\n"
            "expected jackhhao/llm-warden CSVs (jailbreak_test.csv); pass --data-dir",
            file=sys.stderr,
        )
        return 2
    if not args.no_loso:
        root = args.data_dir.parent
        note = CARD_NOTE.format(script=Path(__file__).name)
        marker = root / "injection" / "garak_probes.jsonl.gz"
        loso.print_loso(root, marker, loso_table, CARD if args.write_card else None, note)
        if args.loso_only:
            return 0
    if (args.data_dir.parent / "moderation").is_dir():
        print(benign_fpr_table(args.data_dir.parent), "\n", flush=True)
    texts, y = load_split(args.data_dir, "test")
    detector = InjectionDetector()
    t = detector.thresholds
    thresholds = {"heuristics": t.heuristics, "classifier": t.classifier, "combined": t.combined}
    results = [detector.scan(text) for text in texts]
    scores = layer_scores(results)

    print(f"## Test split: {len(texts)} prompts ({int(y.sum())} jailbreak, {int((y == 0).sum())} benign)\n")
    rows = [[layer, thresholds[layer], *confusion(scores[layer] >= thresholds[layer], y)] for layer in scores]
    print(table(["layer", "threshold", "precision", "recall", "FPR", "TP", "FP", "FN", "TN"], rows), "\n")
    for layer in ("classifier", "combined"):
        sweep = sorted({*SWEEP, thresholds[layer]})
        rows = [
            [
                f"{th:.4g}" + (" (default)" if th == thresholds[layer] else ""),
                *confusion(scores[layer] >= th, y)[:3],
            ]
            for th in sweep
        ]
        print(f"### Threshold sweep: {layer}\n")
        print(table(["threshold", "precision", "recall", "FPR"], rows), "\n")

    hard = load_benign_hard()
    hard_results = [detector.scan(text) for text in hard]
    hard_scores = layer_scores(hard_results)
    print(f"## Benign-hard prompts: {len(hard)} (all benign)\n")
    rows = [
        [
            layer,
            thresholds[layer],
            int((hard_scores[layer] >= thresholds[layer]).sum()),
            float((hard_scores[layer] >= thresholds[layer]).mean()),
        ]
        for layer in hard_scores
    ]
    print(table(["layer", "threshold", "flagged", "false-positive rate"], rows), "\n")
    flagged = [(r.combined_score, text) for r, text in zip(hard_results, hard, strict=True) if r.is_injection]
    for score, text in flagged:
        print(f"- flagged (combined {score:.3f}): {text}")
    top = sorted(zip(hard_scores["combined"], hard, strict=True), reverse=True)[:3]
    print("- highest combined scores: " + "; ".join(f"{s:.3f} {text!r}" for s, text in top), "\n")

    jailbreaks = [text for text, label in zip(texts, y, strict=True) if label == 1]
    print(f"## Obfuscated test jailbreaks ({len(jailbreaks)} prompts, synthetic transforms)\n")
    rows = []
    before = plain_detector()
    for name, transform in obfuscations().items():
        res = [detector.scan(transform(text)) for text in jailbreaks]
        s = layer_scores(res)
        recalls = (float((s[k] >= thresholds[k]).mean()) for k in ("heuristics", "classifier", "combined"))
        rows.append([name, *recalls])
        plain_res = [before.scan(transform(text)).is_injection for text in jailbreaks]
        rows[-1].append(float(np.mean(plain_res)))
    header = ["transform", "recall heuristics", "recall classifier", "recall combined", "combined, no views"]
    print(table(header, rows), "\n")

    classifier = InjectionClassifier.default()
    english = " ".join(texts)
    print("## Latency (CPU time per call, best of 5 batches, this machine)\n")
    rows = []
    for size in (2048, 8192):
        sample = english[:size]
        rows.append(
            [
                f"{size // 1024} KB",
                f"{bench(classifier.score, sample):.0f} us",
                f"{bench(detector.scan, sample):.0f} us",
            ]
        )
    all_times = []
    for text in texts[:200]:
        start = time.process_time()
        detector.scan(text)
        all_times.append((time.process_time() - start) * 1e6)
    print(table(["text", "classifier.score", "detector.scan (all layers)"], rows))
    print(f"\nmedian detector.scan over 200 test prompts: {statistics.median(all_times):.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
