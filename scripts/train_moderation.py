#!/usr/bin/env python3
"""Train the embedded moderation classifier (numpy only, deterministic).

Why a script in the repo: the shipped weights must be reproducible from named, licensed data. It reads
``../shared/datasets/moderation/`` (never copied into the repo):

- the OpenAI moderation sample set (1,680 prompts, MIT). It is also the evaluation set, so a fixed,
  stratified 40% of it is held out by a seeded hash of the text (``split_openai``) and NEVER read here
  beyond computing the split; ``scripts/eval_moderation.py`` scores that part only;
- the Davidson et al. tweets (24,783, MIT), mapped to hate (class 0 -> hate 1, classes 1/2 -> hate 0)
  and harassment (classes 0/1 -> 1, 2 -> 0), subsampled and down-weighted (tweets are not prompts).

Labels missing in the OpenAI set are *unknown*: those rows are left out of that category's loss. The
L2 strength is fixed (no search: the data is small and the grid did not matter in the injection model);
default thresholds are chosen per category on out-of-fold scores of the training part (max F1), then
raised so that no prompt of ``benign_hard.txt`` is flagged. Writes
``proxy/detectors/moderation/moderation_model.npz`` and ``MODEL_CARD.md``.

Usage: python scripts/train_moderation.py [--data-dir DIR] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_injection import Design, sha256, today, write_model  # noqa: E402

from proxy.detectors.injection.features import FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.moderation.classifier import MODEL_FILE  # noqa: E402
from proxy.detectors.moderation.rules import CATEGORIES, CODES, RuleScanner  # noqa: E402

DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets" / "moderation"
PACKAGE_DIR = REPO / "proxy" / "detectors" / "moderation"
OPENAI_FILE = "openai_moderation_samples_1680.jsonl.gz"
DAVIDSON_FILE = "davidson_labeled_data.csv"
SEED = 20261123
TEST_FRACTION = 0.4
FEATURES = FeatureConfig(bits=17, smoothing=(100, 20))
L2 = 1e-6
ITERATIONS = 150
FOLDS = 3
BALANCE = 1.0  # exponent of the positive-class up-weighting (see fit)
RULE_THRESHOLD = 0.5
HARD_MARGIN = 0.01
MAX_THRESHOLD = 0.95
DAVIDSON_PER_CLASS = (1430, 2000, 2000)  # rows kept per Davidson class (hate, offensive, neither)
DAVIDSON_WEIGHT = 0.3  # a Davidson row counts this much relative to an OpenAI row
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


def load_benign_hard(path: Path = PACKAGE_DIR / "benign_hard.txt") -> list[str]:
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
    x: Design, t: Floats, base: Floats, balance: float, l2: float = L2, iterations: int = ITERATIONS
) -> tuple[Floats, float]:
    """Class-balanced, sample-weighted, L2-regularised logistic regression (Nesterov accelerated GD with
    block step sizes from a power-iteration Lipschitz bound, as in train_injection.fit)."""
    pos = max(float(base[t == 1].sum()), 1e-9)
    neg = max(float(base[t == 0].sum()), 1e-9)
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


def fit_all(x: Design, labels: Labels, base: Floats, balance: float) -> tuple[Floats, Floats]:
    """One-vs-rest: weights (dim, categories) and biases, each category on its known-label rows."""
    weights = np.zeros((x.dim, len(CATEGORIES)))
    biases = np.zeros(len(CATEGORIES))
    for j in range(len(CATEGORIES)):
        known = labels[:, j] >= 0
        w, b = fit(x.subset(known), labels[known, j].astype(np.float64), base[known], balance)
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


def best_f1_threshold(scores: Floats, y: npt.NDArray[np.int8]) -> float:
    """Threshold maximising F1 on known-label rows (midpoint between adjacent distinct scores)."""
    known = y >= 0
    s, yy = scores[known], y[known]
    cands = np.unique(s)
    mids = np.concatenate([(cands[:-1] + cands[1:]) / 2, [0.5]]) if len(cands) > 1 else np.array([0.5])
    f1 = np.array([f1_at(s, yy, float(t)) for t in mids])
    return float(mids[int(np.argmax(f1))])


def choose_thresholds(oof: Floats, labels: Labels, hard: Floats) -> dict[str, float]:
    """Per category: max OOF F1, raised above every benign-hard score (+ margin), capped at 0.95."""
    out: dict[str, float] = {}
    for j, cat in enumerate(CATEGORIES):
        t = max(best_f1_threshold(oof[:, j], labels[:, j]), float(hard[:, j].max()) + HARD_MARGIN)
        out[cat] = round(min(t, MAX_THRESHOLD), 4)
    return out


def noisy_or(a: Floats, b: Floats) -> Floats:
    return 1.0 - (1.0 - a) * (1.0 - b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out-dir", type=Path, default=PACKAGE_DIR)
    ap.add_argument("--balance", type=float, default=BALANCE, help="positive up-weighting exponent")
    args = ap.parse_args(argv)
    o_texts, o_labels = load_openai(args.data_dir)
    d_texts, d_labels = load_davidson(args.data_dir)
    test = split_openai(o_texts, o_labels)
    train_idx = np.flatnonzero(~test)
    tr_texts = [o_texts[i] for i in train_idx]
    tr_labels = o_labels[train_idx]
    texts = tr_texts + d_texts
    labels = np.concatenate([tr_labels, d_labels])
    base = np.concatenate([np.ones(len(tr_texts)), np.full(len(d_texts), DAVIDSON_WEIGHT)])
    n_open = len(tr_texts)
    print(f"openai train={n_open} (held out {int(test.sum())}), davidson={len(d_texts)}", flush=True)

    hasher = FeatureHasher(FEATURES)
    x = build_design(canonical_texts(texts), hasher)
    print(f"design rows={x.n_rows} nnz={x.vals.size}", flush=True)

    # Out-of-fold scores on the OpenAI training part (Davidson rows always train, never score).
    fold = folds(n_open)
    oof = np.zeros((n_open, len(CATEGORIES)))
    for f in range(FOLDS):
        fit_mask = np.concatenate([fold != f, np.ones(len(d_texts), dtype=bool)])
        w, b = fit_all(x.subset(fit_mask), labels[fit_mask], base[fit_mask], args.balance)
        score_mask = np.concatenate([fold == f, np.zeros(len(d_texts), dtype=bool)])
        oof[fold == f] = predict(x.subset(score_mask), w, b)
        print(f"fold {f + 1}/{FOLDS} done", flush=True)
    weights, biases = fit_all(x, labels, base, args.balance)

    hard = load_benign_hard()
    hard_design = build_design(canonical_texts(hard), hasher)
    p_hard = predict(hard_design, weights, biases)
    r_oof, r_hard = rule_scores(tr_texts), rule_scores(hard)
    thresholds = {
        "rules": dict.fromkeys(CATEGORIES, RULE_THRESHOLD),
        "classifier": choose_thresholds(oof, tr_labels, p_hard),
        "combined": choose_thresholds(noisy_or(r_oof, oof), tr_labels, noisy_or(r_hard, p_hard)),
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
    hyper = {
        "l2": L2,
        "iterations": ITERATIONS,
        "optimizer": "Nesterov accelerated GD, block step sizes from a power-iteration Lipschitz bound",
        "class_weight": f"positives x (neg/pos)**{args.balance} per category; unknown labels excluded",
        "folds": FOLDS,
        "seed": SEED,
        "test_fraction": TEST_FRACTION,
        "davidson_per_class": list(DAVIDSON_PER_CLASS),
        "davidson_weight": DAVIDSON_WEIGHT,
        "threshold_rule": f"max OOF F1; > max benign_hard score + {HARD_MARGIN}; capped at {MAX_THRESHOLD}",
    }
    info = {
        "datasets": {
            OPENAI_FILE: {"sha256": sha256(args.data_dir / OPENAI_FILE), "rows": len(o_texts)},
            DAVIDSON_FILE: {"sha256": sha256(args.data_dir / DAVIDSON_FILE), "rows_used": len(d_texts)},
        },
        "openai_train_rows": n_open,
        "openai_test_rows": int(test.sum()),
        "trained": today(),
        "hyper": hyper,
        "oof_f1": oof_f1,
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
    (args.out_dir / "MODEL_CARD.md").write_text(model_card(meta, o_labels, test, size), "utf-8")
    print(json.dumps({"thresholds": thresholds, "oof_f1": oof_f1}, indent=1))
    return 0


def model_card(meta: dict[str, Any], labels: Labels, test: npt.NDArray[np.bool_], size: int) -> str:
    """MODEL_CARD.md: provenance, licences, split, features, hyper-parameters, thresholds, limits."""
    feats, info = meta["features"], meta["info"]
    ds = info["datasets"]
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
- The hand-written `benign_hard.txt` *was* used to raise thresholds, so its false-positive rate is
  in-sample.

## Intended use and limits
Offline screening of prompts for the eight OpenAI moderation categories inside the policy proxy. The
training data is small (about a thousand labelled prompts, plus tweets for hate/harassment) and comes
from particular sources: rare categories (V2, H2, S3, SH) have only tens of positives, so their scores
are noisy and lean on the rule layer. Expect weaker results on non-English text, on other domains and on
long documents. Measure with `scripts/eval_moderation.py`.
"""


if __name__ == "__main__":
    sys.exit(main())
