#!/usr/bin/env python3
"""Train the embedded moderation classifier (numpy only, deterministic).

Why a script in the repo: the shipped weights must be reproducible from named, licensed data. It reads
``../shared/datasets/moderation/`` (never copied into the repo):

- the OpenAI moderation sample set (1,680 prompts, MIT). It is also the evaluation set, so a fixed,
  stratified 40% of it is held out by a seeded hash of the text (``split_openai``) and NEVER read here
  beyond computing the split; ``scripts/eval_moderation.py`` scores that part only;
- the Davidson et al. tweets (24,783, MIT), mapped to hate (class 0 -> hate 1, classes 1/2 -> hate 0)
  and harassment (classes 0/1 -> 1, 2 -> 0), subsampled and down-weighted (tweets are not prompts);
- optionally (``--benign-weight W``, off by default), the benign rows (``type == "benign"``) of the
  jailbreak *training* file ``../shared/datasets/injection/jailbreak_train.csv`` (MIT;
  ``jailbreak_test.csv`` is never read), as negatives for all eight categories.

Labels missing in the OpenAI set are *unknown*: those rows are left out of that category's loss. The
L2 strength is fixed (1e-6). Why the options for everyday benign prompts and a stronger L2 exist but are
off: tried on 2026-12-06 against over-blocking (the model then packaged flagged 14 of the 147 prompts of the
over-blocking hold-out list in ``scripts/data/``), L2 1e-3 with the benign rows cut that to 5 at equal
held-out any-category F1, but the classifier's scores then crowd around 0.5 (held-out F1 on its own
0.11, from 0.56), so thresholds written in a policy lose their meaning; Platt scaling the logits
restored the spread but cost 0.1 of combined F1. Kept as experiment switches, not as the default.
Default thresholds are chosen per category on out-of-fold scores of the training part (max F1), then
raised so that no prompt of ``benign_hard.txt`` is flagged. Writes
``proxy/detectors/moderation/moderation_model.npz`` and ``MODEL_CARD.md``.

Usage: python scripts/train_moderation.py [--data-dir DIR] [--benign-dir DIR] [--out-dir DIR]
       [--benign-weight W] [--benign-sentences N] [--[no-]benign-in-prior]
       [--benign-threshold-weight W] [--balance B] [--l2 L2]
(``--out-dir /tmp/x`` trains a candidate without touching the packaged model; evaluate it with
``scripts/eval_moderation.py --model /tmp/x/moderation_model.npz``)
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from loso import carry_card_section  # noqa: E402
from train_injection import Design, sha256, today, write_model  # noqa: E402

from proxy.detectors.injection.features import FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.moderation.classifier import MODEL_FILE  # noqa: E402
from proxy.detectors.moderation.rules import CLASSIFIER_CATEGORIES as CATEGORIES  # noqa: E402
from proxy.detectors.moderation.rules import CODES, RuleScanner  # noqa: E402

DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets" / "moderation"
DEFAULT_BENIGN_DIR = REPO.parent / "shared" / "datasets" / "injection"
PACKAGE_DIR = REPO / "proxy" / "detectors" / "moderation"
OPENAI_FILE = "openai_moderation_samples_1680.jsonl.gz"
DAVIDSON_FILE = "davidson_labeled_data.csv"
BENIGN_FILE = "jailbreak_train.csv"  # only its benign rows; the paired jailbreak_test.csv is never read
BENIGN_LICENCE = "MIT (jackhhao/jailbreak-classification, LICENSE.jailbreak)"
SEED = 20261123
TEST_FRACTION = 0.4
# Pseudo-counts (100, 20). (300, 50), as the injection model, was tried on 2026-12-06: out-of-fold
# any-category F1 0.675 -> 0.695 and fewer short everyday prompts flagged, but more long ones (everyday
# benign prompts of jailbreak_train.csv, never trained on: 32 -> 43 of 1,073 flagged, 1-4 KB: 8 -> 13
# of 120; a repeated benign sentence reached hate/threatening), so it was not adopted.
FEATURES = FeatureConfig(bits=17, smoothing=(100, 20))
L2 = 1e-6  # see the module docstring for the stronger values tried
ITERATIONS = 150
FOLDS = 3
BALANCE = 1.0  # exponent of the positive-class up-weighting (see fit)
RULE_THRESHOLD = 0.5
HARD_MARGIN = 0.01
MAX_THRESHOLD = 0.95
DAVIDSON_PER_CLASS = (1430, 2000, 2000)  # rows kept per Davidson class (hate, offensive, neither)
DAVIDSON_WEIGHT = 0.3  # a Davidson row counts this much relative to an OpenAI row
BENIGN_WEIGHT = 0.0  # an everyday benign prompt's weight relative to an OpenAI row (0: not used)
BENIGN_SENTENCES = 0  # single sentences per everyday benign prompt added as extra negatives
BENIGN_THRESHOLD_WEIGHT = 0.0  # false positives per out-of-fold flagged everyday prompt (thresholds)
Labels = npt.NDArray[np.int8]  # (rows, categories): 1 violates, 0 does not, -1 unknown
Floats = npt.NDArray[np.float64]


class DatasetMissing(SystemExit):
    """Raised (as a clean non-zero exit) when the shared dataset folder is absent."""


def _require(path: Path) -> None:
    if not path.is_file():
        raise DatasetMissing(
            f"error: shared dataset not found: {path}\n"
            f"expected {OPENAI_FILE} and {DAVIDSON_FILE} in {path.parent} (pass --data-dir)"
        )


def load_openai(data_dir: Path) -> tuple[list[str], Labels]:
    """The OpenAI moderation samples: prompts and a label matrix in ``CATEGORIES`` order."""
    path = data_dir / OPENAI_FILE
    _require(path)
    texts: list[str] = []
    rows: list[list[int]] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            texts.append(str(rec["prompt"]))
            rows.append([-1 if rec.get(CODES[c]) is None else int(rec[CODES[c]]) for c in CATEGORIES])
    return texts, np.asarray(rows, dtype=np.int8)


def any_label(labels: Labels) -> npt.NDArray[np.int8]:
    """Overall label: 1 if any category is 1 (unknown counts as not violating, as in the published evals)."""
    return np.asarray((labels == 1).any(axis=1), dtype=np.int8)


def split_openai(texts: list[str], labels: Labels) -> npt.NDArray[np.bool_]:
    """Held-out mask (True = test). Stratified by the rarest positive category (or "none"); within each
    stratum rows are ordered by SHA-256(seed + text) and the first 40% go to test. Identical texts share
    a hash, hence a side."""
    order = ["sexual/minors", "violence/graphic", "hate/threatening", "self-harm", "harassment"]
    order += ["violence", "hate", "sexual"]
    strata: dict[str, list[int]] = {}
    for i in range(len(texts)):
        positive = [c for c in order if labels[i, CATEGORIES.index(c)] == 1]
        strata.setdefault(positive[0] if positive else "none", []).append(i)
    test = np.zeros(len(texts), dtype=bool)
    for members in strata.values():
        keyed = sorted(members, key=lambda i: hashlib.sha256(f"{SEED}:{texts[i]}".encode()).hexdigest())
        test[keyed[: round(TEST_FRACTION * len(members))]] = True
    held = {texts[i] for i in np.flatnonzero(test)}
    test |= np.array([t in held for t in texts])
    return test


def load_davidson(data_dir: Path) -> tuple[list[str], Labels]:
    """Davidson tweets, subsampled deterministically; only hate and harassment labels are known."""
    path = data_dir / DAVIDSON_FILE
    _require(path)
    by_class: dict[int, list[str]] = {0: [], 1: [], 2: []}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_class[int(row["class"])].append(row["tweet"])
    rng = np.random.default_rng(SEED)
    texts: list[str] = []
    rows: list[list[int]] = []
    hate, harass = CATEGORIES.index("hate"), CATEGORIES.index("harassment")
    for cls, keep in zip((0, 1, 2), DAVIDSON_PER_CLASS, strict=True):
        pool = by_class[cls]
        chosen = sorted(rng.choice(len(pool), size=min(keep, len(pool)), replace=False))
        for i in chosen:
            label = [-1] * len(CATEGORIES)
            label[hate] = int(cls == 0)
            label[harass] = int(cls in (0, 1))
            texts.append(pool[i])
            rows.append(label)
    return texts, np.asarray(rows, dtype=np.int8)


def load_everyday_benign(path: Path) -> list[str]:
    """Benign rows of the jailbreak training file: everyday prompts, negatives for every category.

    Refuses any file but ``jailbreak_train.csv``: the test file of that dataset scores the injection
    detector and must stay unseen by every model in this repository."""
    if path.name != BENIGN_FILE:
        raise ValueError(f"only {BENIGN_FILE} may be used for training, not {path.name}")
    if not path.is_file():
        raise DatasetMissing(f"error: shared dataset not found: {path} (pass --benign-dir)")
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["prompt"] for row in csv.DictReader(fh) if row["type"] == "benign"]


def benign_sentences(texts: list[str], per_text: int, seed: int = SEED) -> list[str]:
    """Up to ``per_text`` sentences (20-200 chars, seeded choice) from each everyday benign prompt.

    Why: most of those prompts are long (median ~230 chars), while the over-blocked ones are short
    questions with one scary word; a sentence of a benign prompt ("The men attack the fort at dawn.") is
    a short benign text with exactly that shape."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for text in texts:
        parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text)]
        parts = [p for p in parts if 20 <= len(p) <= 200 and p != text.strip()]
        if parts:
            chosen = rng.choice(len(parts), size=min(per_text, len(parts)), replace=False)
            out.extend(parts[i] for i in sorted(chosen))
    return out


def load_benign_hard(path: Path = PACKAGE_DIR / "benign_hard.txt") -> list[str]:
    """Non-comment lines of a one-prompt-per-line file (benign_hard.txt or the eval hold-out list)."""
    lines = path.read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def canonical_texts(texts: list[str]) -> list[str]:
    """What the classifier sees at runtime: the rule layer's canonical text, allow-listed spans blanked."""
    scanner = RuleScanner.default()
    return [scanner.scan(t).classifier_text for t in texts]


def rule_scores(texts: list[str]) -> Floats:
    scanner = RuleScanner.default()
    return np.array([[scanner.scan(t).scores[c] for c in CATEGORIES] for t in texts])


def build_design(canon: list[str], hasher: FeatureHasher) -> Design:
    """Featurise exactly as the runtime does: first window, per-group scaling."""
    rows, cols, vals = [], [], []
    for i, text in enumerate(canon):
        for buckets, scale in hasher.groups(text):
            rows.append(np.full(buckets.size, i, dtype=np.int64))
            cols.append(buckets.astype(np.int64))
            vals.append(np.full(buckets.size, scale))
    dim = 1 << hasher.config.bits
    key = np.concatenate(rows) * dim + np.concatenate(cols)
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.asarray(np.bincount(inverse, weights=np.concatenate(vals)), dtype=np.float64)
    return Design(uniq // dim, uniq % dim, summed, len(canon), dim)


def fit(
    x: Design,
    t: Floats,
    base: Floats,
    balance: float,
    l2: float = L2,
    iterations: int = ITERATIONS,
    prior: npt.NDArray[np.bool_] | None = None,
) -> tuple[Floats, float]:
    """Class-balanced, sample-weighted, L2-regularised logistic regression (Nesterov accelerated GD with
    block step sizes from a power-iteration Lipschitz bound, as in train_injection.fit).

    ``prior``: rows that set the positive up-weighting (default all). Kept for ``--no-benign-in-prior``,
    which leaves the everyday benign rows out of neg/pos so they do not up-weight positives further; in
    practice that made scores crowd just above the bias and over-blocking worse, so that is not the default.
    """
    counted = np.ones(t.size, dtype=bool) if prior is None else prior
    pos = max(float(base[counted & (t == 1)].sum()), 1e-9)
    neg = max(float(base[counted & (t == 0)].sum()), 1e-9)
    # Positives up-weighted by (neg/pos)**balance: 1 = fully balanced (prior 50%), 0 = natural prior.
    sw = base * np.where(t == 1, (neg / pos) ** balance, 1.0)
    sw /= sw.sum()
    v = np.ones(x.dim) / np.sqrt(x.dim)
    for _ in range(20):
        v = x.rmatvec(sw * x.matvec(v))
        v /= np.linalg.norm(v)
    top = float(v @ x.rmatvec(sw * x.matvec(v))) * 1.05
    step_w = 1.0 / (0.5 * top + l2)
    step_b = 1.0 / (0.5 * float(sw.sum()))
    w = np.zeros(x.dim)
    b = 0.0
    w_prev, b_prev = w.copy(), b
    for k in range(1, iterations + 1):
        momentum = (k - 1) / (k + 2)
        wy, by = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        z = np.clip(x.matvec(wy) + by, -60, 60)
        r = sw * (1.0 / (1.0 + np.exp(-z)) - t)
        w_prev, b_prev = w, b
        w = wy - step_w * (x.rmatvec(r) + l2 * wy)
        b = by - step_b * float(r.sum())
    return w, b


def fit_all(
    x: Design,
    labels: Labels,
    base: Floats,
    balance: float,
    l2: float = L2,
    prior: npt.NDArray[np.bool_] | None = None,
) -> tuple[Floats, Floats]:
    """One-vs-rest: weights (dim, categories) and biases, each category on its known-label rows
    (``prior``: rows that set the class balance, see ``fit``)."""
    weights = np.zeros((x.dim, len(CATEGORIES)))
    biases = np.zeros(len(CATEGORIES))
    counted = np.ones(x.n_rows, dtype=bool) if prior is None else prior
    for j in range(len(CATEGORIES)):
        known = labels[:, j] >= 0
        y = labels[known, j].astype(np.float64)
        w, b = fit(x.subset(known), y, base[known], balance, l2, prior=counted[known])
        weights[:, j], biases[j] = w, b
    return weights, biases


def predict(x: Design, weights: Floats, biases: Floats) -> Floats:
    z = np.stack([x.matvec(weights[:, j]) for j in range(weights.shape[1])], axis=1) + biases
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60, 60))), dtype=np.float64)


def folds(n: int, k: int = FOLDS, seed: int = SEED) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    fold = np.arange(n) % k
    rng.shuffle(fold)
    return fold


def f1_at(scores: Floats, y: npt.NDArray[np.int8], threshold: float) -> float:
    flagged = scores >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def best_f1_threshold(
    scores: Floats, y: npt.NDArray[np.int8], negatives: Floats | None = None, neg_weight: float = 0.0
) -> float:
    """Threshold maximising F1 on known-label rows (midpoint between adjacent distinct scores).

    ``negatives``: out-of-fold scores of extra all-benign rows (everyday prompts); each one flagged counts
    as ``neg_weight`` false positives. Why: the OpenAI samples are ~30% violating, far more than real
    traffic, so F1 on them alone under-prices false alarms on ordinary prompts."""
    known = y >= 0
    s, yy = scores[known], y[known]
    neg = negatives if negatives is not None and neg_weight > 0 else np.zeros(0)
    cands = np.unique(np.concatenate([s, neg]))
    mids = np.concatenate([(cands[:-1] + cands[1:]) / 2, [0.5]]) if len(cands) > 1 else np.array([0.5])
    pos = np.sort(s[yy == 1])
    neg_open = np.sort(s[yy == 0])
    neg_extra = np.sort(neg)
    # Counts at or above each candidate, by binary search (the candidate grid can be ~3k long).
    tp = len(pos) - np.searchsorted(pos, mids, side="left")
    fp = len(neg_open) - np.searchsorted(neg_open, mids, side="left")
    fp_extra = len(neg_extra) - np.searchsorted(neg_extra, mids, side="left")
    fn = len(pos) - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + neg_weight * fp_extra + fn, 1e-12)
    return float(mids[int(np.argmax(f1))])


def choose_thresholds(
    oof: Floats,
    labels: Labels,
    hard: Floats,
    negatives: Floats | None = None,
    neg_weight: float = 0.0,
) -> dict[str, float]:
    """Per category: max OOF F1 (everyday benign rows as weighted extra negatives), raised above every
    benign-hard score (+ margin), capped at 0.95."""
    out: dict[str, float] = {}
    for j, cat in enumerate(CATEGORIES):
        extra = negatives[:, j] if negatives is not None else None
        best = best_f1_threshold(oof[:, j], labels[:, j], extra, neg_weight)
        t = max(best, float(hard[:, j].max()) + HARD_MARGIN)
        out[cat] = round(min(t, MAX_THRESHOLD), 4)
    return out


def noisy_or(a: Floats, b: Floats) -> Floats:
    return 1.0 - (1.0 - a) * (1.0 - b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--benign-dir", type=Path, default=DEFAULT_BENIGN_DIR, help=f"folder of {BENIGN_FILE}")
    ap.add_argument("--out-dir", type=Path, default=PACKAGE_DIR)
    ap.add_argument("--balance", type=float, default=BALANCE, help="positive up-weighting exponent")
    ap.add_argument(
        "--benign-weight", type=float, default=BENIGN_WEIGHT, help="weight per everyday benign row (0: off)"
    )
    ap.add_argument("--l2", type=float, default=L2, help="L2 strength")
    ap.add_argument(
        "--benign-sentences",
        type=int,
        default=BENIGN_SENTENCES,
        help="also add up to N single sentences of each everyday benign prompt as negatives (0: off)",
    )
    ap.add_argument(
        "--benign-in-prior",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count the everyday benign rows in neg/pos for the positive up-weighting (see fit)",
    )
    ap.add_argument(
        "--benign-threshold-weight",
        type=float,
        default=BENIGN_THRESHOLD_WEIGHT,
        help="false positives counted per flagged everyday benign row when choosing thresholds (0: off)",
    )
    args = ap.parse_args(argv)
    o_texts, o_labels = load_openai(args.data_dir)
    d_texts, d_labels = load_davidson(args.data_dir)
    wanted = args.benign_weight > 0 or args.benign_threshold_weight > 0
    b_texts = load_everyday_benign(args.benign_dir / BENIGN_FILE) if wanted else []
    n_prompts = len(b_texts)
    b_texts += benign_sentences(b_texts, args.benign_sentences) if args.benign_sentences else []
    test = split_openai(o_texts, o_labels)
    train_idx = np.flatnonzero(~test)
    tr_texts = [o_texts[i] for i in train_idx]
    tr_labels = o_labels[train_idx]
    # Row order: OpenAI train part, everyday benign (known 0 for every category), Davidson.
    texts = tr_texts + b_texts + d_texts
    b_labels = np.zeros((len(b_texts), len(CATEGORIES)), dtype=np.int8)
    labels = np.concatenate([tr_labels, b_labels, d_labels])
    base = np.concatenate(
        [
            np.ones(len(tr_texts)),
            np.full(len(b_texts), args.benign_weight),
            np.full(len(d_texts), DAVIDSON_WEIGHT),
        ]
    )
    n_open, n_benign = len(tr_texts), len(b_texts)
    # Rows that set the positive up-weighting (everyday benign ones only with --benign-in-prior, the default:
    # leaving them out made the scores crowd just above the bias, and thresholds sat on that crowd).
    prior = np.concatenate(
        [
            np.ones(n_open, dtype=bool),
            np.full(n_benign, args.benign_in_prior),
            np.ones(len(d_texts), dtype=bool),
        ]
    )
    print(
        f"openai train={n_open} (held out {int(test.sum())}), everyday benign={n_benign}, "
        f"davidson={len(d_texts)}",
        flush=True,
    )

    hasher = FeatureHasher(FEATURES)
    x = build_design(canonical_texts(texts), hasher)
    print(f"design rows={x.n_rows} nnz={x.vals.size}", flush=True)

    # Out-of-fold scores on the OpenAI training part and the everyday benign rows (their own folds, so the
    # OpenAI folds are unchanged); Davidson rows always train, never score.
    fold = folds(n_open)
    b_fold = folds(n_benign, seed=SEED + 1)
    oof = np.zeros((n_open, len(CATEGORIES)))
    b_oof = np.zeros((n_benign, len(CATEGORIES)))
    always = np.ones(len(d_texts), dtype=bool)
    for f in range(FOLDS):
        fit_mask = np.concatenate([fold != f, b_fold != f, always])
        w, b = fit_all(
            x.subset(fit_mask), labels[fit_mask], base[fit_mask], args.balance, args.l2, prior[fit_mask]
        )
        score_mask = np.concatenate([fold == f, b_fold == f, ~always])
        scored = predict(x.subset(score_mask), w, b)
        oof[fold == f] = scored[: int((fold == f).sum())]
        b_oof[b_fold == f] = scored[int((fold == f).sum()) :]
        print(f"fold {f + 1}/{FOLDS} done", flush=True)
    weights, biases = fit_all(x, labels, base, args.balance, args.l2, prior)

    hard = load_benign_hard()
    hard_design = build_design(canonical_texts(hard), hasher)
    p_hard = predict(hard_design, weights, biases)
    r_oof, r_hard, r_benign = rule_scores(tr_texts), rule_scores(hard), rule_scores(b_texts)
    b_comb = noisy_or(r_benign, b_oof) if n_benign else b_oof
    tw = args.benign_threshold_weight
    thresholds = {
        "rules": dict.fromkeys(CATEGORIES, RULE_THRESHOLD),
        "classifier": choose_thresholds(oof, tr_labels, p_hard, b_oof, tw),
        "combined": choose_thresholds(noisy_or(r_oof, oof), tr_labels, noisy_or(r_hard, p_hard), b_comb, tw),
    }
    oof_f1 = {
        layer: {
            c: round(f1_at(s[:, j][tr_labels[:, j] >= 0], tr_labels[:, j][tr_labels[:, j] >= 0], t[c]), 3)
            for j, c in enumerate(CATEGORIES)
        }
        for layer, s, t in (
            ("classifier", oof, thresholds["classifier"]),
            ("combined", noisy_or(r_oof, oof), thresholds["combined"]),
        )
    }
    # Share of everyday benign prompts flagged (any category) out of fold: a training-side over-blocking
    # check (the evaluation hold-out list is never read here).
    comb_t = np.array([thresholds["combined"][c] for c in CATEGORIES])
    # Any-category OOF F1 of the combined layer: the training-side proxy for the evaluation headline (the
    # thresholds were fitted on these same scores, so it is optimistic; use it to compare runs).
    oof_any_f1 = round(
        f1_at((noisy_or(r_oof, oof) >= comb_t).any(axis=1).astype(np.float64), any_label(tr_labels), 0.5), 4
    )
    benign_oof_fpr = round(float((b_comb >= comb_t).any(axis=1).mean()), 4) if n_benign else None
    hyper = {
        "l2": args.l2,
        "iterations": ITERATIONS,
        "optimizer": "Nesterov accelerated GD, block step sizes from a power-iteration Lipschitz bound",
        "class_weight": f"positives x (neg/pos)**{args.balance} per category; unknown labels excluded"
        + (
            f"; everyday benign rows {'' if args.benign_in_prior else 'not '}counted in neg"
            if n_benign
            else ""
        ),
        "folds": FOLDS,
        "seed": SEED,
        "test_fraction": TEST_FRACTION,
        "davidson_per_class": list(DAVIDSON_PER_CLASS),
        "davidson_weight": DAVIDSON_WEIGHT,
        "everyday_benign_weight": args.benign_weight if n_benign else 0.0,
        "everyday_benign_sentences_per_prompt": args.benign_sentences if n_benign else 0,
        "threshold_rule": (
            f"max OOF F1 (each OOF-flagged everyday benign row counts {tw if n_benign else 0.0} FP); "
            f"> max benign_hard score + {HARD_MARGIN}; capped at {MAX_THRESHOLD}"
        ),
    }
    datasets: dict[str, dict[str, Any]] = {
        OPENAI_FILE: {"sha256": sha256(args.data_dir / OPENAI_FILE), "rows": len(o_texts)},
        DAVIDSON_FILE: {"sha256": sha256(args.data_dir / DAVIDSON_FILE), "rows_used": len(d_texts)},
    }
    if n_benign:
        datasets[BENIGN_FILE] = {
            "sha256": sha256(args.benign_dir / BENIGN_FILE),
            "rows_used": n_prompts,
            "sentence_rows_added": n_benign - n_prompts,
            "filter": "type == 'benign'",
            "licence": BENIGN_LICENCE,
        }
    info = {
        "datasets": datasets,
        "openai_train_rows": n_open,
        "openai_test_rows": int(test.sum()),
        "everyday_benign_oof_fpr": benign_oof_fpr,
        "trained": today(),
        "hyper": hyper,
        "oof_f1": oof_f1,
        "oof_any_f1": oof_any_f1,
    }
    meta = {
        "features": FEATURES.to_dict(),
        "categories": list(CATEGORIES),
        "biases": [float(b) for b in biases],
        "thresholds": thresholds,
        "info": info,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_model(args.out_dir / MODEL_FILE, weights, meta)
    size = (args.out_dir / MODEL_FILE).stat().st_size
    card_path = args.out_dir / "MODEL_CARD.md"
    old = card_path.read_text("utf-8") if card_path.is_file() else ""
    card = carry_card_section(model_card(meta, o_labels, test, size), old)  # keeps the LOSO table
    card_path.write_text(card, "utf-8")
    print(
        json.dumps(
            {
                "thresholds": thresholds,
                "oof_f1": oof_f1,
                "oof_any_f1": oof_any_f1,
                "benign_oof_fpr": benign_oof_fpr,
            },
            indent=1,
        )
    )
    return 0


def benign_card(ds: dict[str, Any], info: dict[str, Any]) -> str:
    """Model-card provenance bullet for the everyday benign prompts (empty when they were not used)."""
    entry = ds.get(BENIGN_FILE)
    if not entry:
        return ""
    hyper = info["hyper"]
    sentences = (
        f"\n  Plus {entry['sentence_rows_added']} single sentences of those prompts (20-200 chars, up to "
        f"{hyper['everyday_benign_sentences_per_prompt']} per prompt, seeded), same label and weight."
        if entry["sentence_rows_added"]
        else ""
    )
    return f"""- **Everyday benign prompts**: the benign rows of the jailbreak classification training file
  (`jackhhao/jailbreak-classification`, read from `../shared/datasets/injection/`), licence **MIT**
  (`LICENSE.jailbreak`). `{BENIGN_FILE}`, SHA-256 `{entry["sha256"]}`;
  {entry["rows_used"]} rows with `{entry["filter"]}`, label 0 for all eight categories, weight
  {hyper["everyday_benign_weight"]} per row.{sentences} Why: the OpenAI samples contain few ordinary
  prompts, so short everyday requests were over-blocked. `jailbreak_test.csv` is never read.
"""


def model_card(meta: dict[str, Any], labels: Labels, test: npt.NDArray[np.bool_], size: int) -> str:
    """MODEL_CARD.md: provenance, licences, split, features, hyper-parameters, thresholds, limits."""
    feats, info = meta["features"], meta["info"]
    ds = info["datasets"]
    benign_fpr = info["everyday_benign_oof_fpr"]
    per_cat = " | ".join(
        f"{CODES[c]} {int((labels[~test, j] == 1).sum())}/{int((labels[test, j] == 1).sum())}"
        for j, c in enumerate(CATEGORIES)
    )
    return f"""# Model card: embedded moderation classifier (`{MODEL_FILE}`)

Generated by `scripts/train_moderation.py` on {info["trained"]}. Do not edit by hand; re-run the script.

## Provenance and licences
Read from `../shared/datasets/moderation/`; no data is copied into this repository.
- **OpenAI moderation samples** (`openai/moderation-api-release`, `data/`), licence **MIT**
  (`LICENSE.openai_moderation` next to the data). `{OPENAI_FILE}`, {ds[OPENAI_FILE]["rows"]} rows,
  SHA-256 `{ds[OPENAI_FILE]["sha256"]}`.
- **Davidson et al. 2017, hate speech and offensive language**
  (`t-davidson/hate-speech-and-offensive-language`, `data/`), licence **MIT** (`LICENSE.davidson`).
  `{DAVIDSON_FILE}`, SHA-256 `{ds[DAVIDSON_FILE]["sha256"]}`;
  {ds[DAVIDSON_FILE]["rows_used"]} tweets used (per class hate/offensive/neither:
  {info["hyper"]["davidson_per_class"]}, seeded sample), weight {info["hyper"]["davidson_weight"]} per row.
  Mapping: hate = (class 0); harassment = (class 0 or 1); other categories unknown for these rows.
{benign_card(ds, info)}
## Split (honest evaluation)
The OpenAI set is both training data and the evaluation set, so {info["openai_test_rows"]} of its rows
(~{int(info["hyper"]["test_fraction"] * 100)}%) are held out: rows are stratified by their rarest
positive category (S3, V2, H2, SH, HR, V, H, S, else "none"), ordered by
SHA-256(`"{info["hyper"]["seed"]}:" + prompt`) within each stratum, and the first 40% go to
test (identical prompts always share a side). The split is computed by `split_openai()` in the
training script; training, model selection and thresholds never see the test rows;
`scripts/eval_moderation.py` scores only them. Train/test positives per category: {per_cat}.
Labels missing in the OpenAI set are treated as unknown (excluded from that category's loss and
per-category metrics); the overall (any-category) label is 1 if any category is 1.

## Model
- Input: the rule layer's canonical text (`rules.py`: injection `normalise.py`, lower-case, leetspeak
  folding, squeezed letter runs, allow-listed benign spans blanked).
- Features: reused from `proxy.detectors.injection.features` (v{feats["feature_version"]}): char
  {feats["char_ngrams"]}-grams and word {feats["word_ngrams"]}-grams hashed into
  2^{feats["bits"]} buckets, each group scaled by 1/(#n-grams + k), k = {feats["smoothing"]}.
  Texts longer than {feats["window"]} chars: max over half-overlapping windows.
- Model: one-vs-rest logistic regression, one weight column per category ({", ".join(CODES.values())});
  float16 weights ({size / 1024:.0f} KiB compressed), biases in the JSON meta.
- Hyper-parameters: `{json.dumps(info["hyper"], sort_keys=True)}`
- Default thresholds (per category; `combined` = noisy-OR of rules and classifier):
  `{json.dumps(meta["thresholds"], sort_keys=True)}`
- Out-of-fold F1 on the training part at those thresholds: `{json.dumps(info["oof_f1"], sort_keys=True)}`
- Out-of-fold any-category F1 (combined layer, same thresholds): `{info["oof_any_f1"]}`
- Out-of-fold share of everyday benign training prompts flagged (combined, any category):
  `{"not measured (not loaded)" if benign_fpr is None else benign_fpr}`
- The hand-written `benign_hard.txt` *was* used to raise thresholds, so its false-positive rate is
  in-sample.
- The over-blocking hold-out list in `scripts/data/` (benign prompts that look dangerous, or are just
  everyday) was *not* used for training or thresholds: `eval_moderation.py` reports its false-positive
  rate as an over-blocking estimate. Its results were seen when the experiments in the training
  script's docstring were judged (2026-12-06); the packaged model predates them.

## Intended use and limits
Offline screening of prompts for the eight OpenAI moderation categories inside the policy proxy. The
training data is small (about a thousand labelled prompts, plus tweets for hate/harassment) and comes
from particular sources: rare categories (V2, H2, S3, SH) have only tens of positives, so their scores
are noisy and lean on the rule layer. Expect weaker results on non-English text, on other domains and on
long documents. Measure with `scripts/eval_moderation.py`.
"""


if __name__ == "__main__":
    sys.exit(main())
