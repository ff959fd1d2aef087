#!/usr/bin/env python3
"""Train the embedded prompt-injection classifier (numpy only, deterministic).

Why a script in the repo: the shipped weights must be reproducible from a named, licensed dataset. This
script reads ONLY the TRAIN split of jackhhao/llm-warden (``../shared/datasets/injection/``, MIT) --
the data itself is never copied into the repo -- picks the L2 strength and the default thresholds by
stratified 5-fold cross-validation on that split (the test split is left for scripts/eval_injection.py),
then writes ``proxy/detectors/injection/model.npz`` and ``MODEL_CARD.md``.

Usage: python scripts/train_injection.py [--data-dir DIR] [--out-dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from proxy.detectors.injection.classifier import MODEL_FILE, FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.injection.heuristics import HeuristicScanner  # noqa: E402
from proxy.detectors.injection.normalise import Normaliser  # noqa: E402

DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets" / "injection"
PACKAGE_DIR = REPO / "proxy" / "detectors" / "injection"
SEED = 20240611
L2_GRID = (3e-5, 1e-4, 3e-4, 1e-3)
ITERATIONS = 400
FOLDS = 5
TARGET_FPR = 0.01  # thresholds are chosen on out-of-fold train scores, with headroom below the 3% aim
HEURISTIC_THRESHOLD = 0.5
Floats = npt.NDArray[np.float64]


class DatasetMissing(SystemExit):
    """Raised (as a clean non-zero exit) when the shared dataset folder is absent."""


def load_split(data_dir: Path, split: str) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Read ``jailbreak_<split>.csv`` (columns prompt,type); labels: 1 = jailbreak, 0 = benign."""
    path = data_dir / f"jailbreak_{split}.csv"
    if not path.is_file():
        raise DatasetMissing(f"error: shared dataset not found: {path}\n"
                             f"expected jackhhao/llm-warden CSVs in {data_dir} (pass --data-dir)")
    texts: list[str] = []
    labels: list[int] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["type"] not in ("benign", "jailbreak"):
                raise ValueError(f"{path}: unexpected type {row['type']!r}")
            texts.append(row["prompt"])
            labels.append(int(row["type"] == "jailbreak"))
    return texts, np.asarray(labels, dtype=np.int8)


def load_benign_hard(path: Path = PACKAGE_DIR / "benign_hard.txt") -> list[str]:
    lines = path.read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Design:
    """A sparse design matrix in COO form (duplicate (row, col) pairs already summed)."""

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    vals: Floats
    n_rows: int
    dim: int

    def subset(self, keep: npt.NDArray[np.bool_]) -> Design:
        new_index = np.cumsum(keep) - 1
        mask = keep[self.rows]
        return Design(new_index[self.rows[mask]], self.cols[mask], self.vals[mask], int(keep.sum()), self.dim)

    def matvec(self, w: Floats) -> Floats:
        return np.bincount(self.rows, weights=self.vals * w[self.cols], minlength=self.n_rows)

    def rmatvec(self, r: Floats) -> Floats:
        return np.bincount(self.cols, weights=self.vals * r[self.rows], minlength=self.dim)


def build_design(texts: list[str], hasher: FeatureHasher) -> Design:
    """Featurise exactly as the runtime does: normalised text, first window, per-group scaling."""
    normaliser = Normaliser(rot13_probe=HeuristicScanner.default().matches_any)
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        for buckets, scale in hasher.groups(normaliser(text).text):
            rows.append(np.full(buckets.size, i, dtype=np.int64))
            cols.append(buckets.astype(np.int64))
            vals.append(np.full(buckets.size, scale))
    dim = 1 << hasher.config.bits
    key = np.concatenate(rows) * dim + np.concatenate(cols)
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=np.concatenate(vals))
    return Design(uniq // dim, uniq % dim, summed, len(texts), dim)


def fit(x: Design, y: npt.NDArray[np.int8], l2: float, iterations: int = ITERATIONS) -> tuple[Floats, float]:
    """Class-balanced, L2-regularised logistic regression by Nesterov accelerated gradient descent."""
    t = y.astype(np.float64)
    pos = max(float(t.sum()), 1.0)
    neg = max(len(t) - pos, 1.0)
    sw = np.where(t == 1, len(t) / (2 * pos), len(t) / (2 * neg)) / len(t)
    v = np.ones(x.dim) / np.sqrt(x.dim)  # power iteration for the Lipschitz constant (deterministic start)
    for _ in range(30):
        v = x.rmatvec(sw * x.matvec(v))
        v /= np.linalg.norm(v)
    # [X, 1] has top eigenvalue <= that of X plus sum(sw) (Cauchy-Schwarz); +5% for the power-iteration estimate
    lipschitz = 0.25 * 1.05 * (float(v @ x.rmatvec(sw * x.matvec(v))) + float(sw.sum())) + l2
    step = 1.0 / lipschitz
    w = np.zeros(x.dim)
    b = 0.0
    w_prev, b_prev = w.copy(), b
    for k in range(1, iterations + 1):
        momentum = (k - 1) / (k + 2)
        wy, by = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        z = x.matvec(wy) + by
        r = sw * (1.0 / (1.0 + np.exp(-z)) - t)
        w_prev, b_prev = w, b
        w = wy - step * (x.rmatvec(r) + l2 * wy)
        b = by - step * float(r.sum())
    return w, b


def logits(x: Design, w: Floats, b: float) -> Floats:
    return x.matvec(w) + b


def folds(y: npt.NDArray[np.int8], k: int = FOLDS, seed: int = SEED) -> npt.NDArray[np.int64]:
    """Stratified fold id per row, from a fixed seed."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def threshold_for_fpr(scores: Floats, y: npt.NDArray[np.int8], max_fpr: float) -> float:
    """Smallest threshold (score >= t flags) whose false-positive rate is <= max_fpr."""
    neg = np.sort(scores[y == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(neg)))
    cut = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.nextafter(cut, np.inf))


def recall_at(scores: Floats, y: npt.NDArray[np.int8], threshold: float) -> float:
    return float((scores[y == 1] >= threshold).mean())


def sigmoid(z: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-z))


def write_model(path: Path, weights: Floats, meta: dict[str, object]) -> None:
    """A byte-reproducible .npz: fixed zip timestamps, float16 weights, JSON meta as uint8."""
    arrays = {"weights": weights.astype(np.float16),
              "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out-dir", type=Path, default=PACKAGE_DIR)
    ap.add_argument("--quick", action="store_true", help="skip the L2 search (use 1e-4)")
    args = ap.parse_args(argv)
    train_csv = args.data_dir / "jailbreak_train.csv"
    texts, y = load_split(args.data_dir, "train")
    config = FeatureConfig()
    hasher = FeatureHasher(config)
    x = build_design(texts, hasher)
    print(f"train rows={len(texts)} (jailbreak={int(y.sum())}) nnz={x.vals.size}", flush=True)
    fold = folds(y)
    best: tuple[float, float, Floats] | None = None
    for l2 in (1e-4,) if args.quick else L2_GRID:
        oof = np.empty(len(y))
        for f in range(FOLDS):
            w, b = fit(x.subset(fold != f), y[fold != f], l2)
            oof[fold == f] = logits(x.subset(fold == f), w, b)
        rec = recall_at(oof, y, threshold_for_fpr(oof, y, TARGET_FPR))
        print(f"l2={l2:g}: out-of-fold recall@FPR<={TARGET_FPR:.0%} = {rec:.3f}", flush=True)
        if best is None or rec > best[0]:
            best = (rec, l2, oof)
    assert best is not None
    _, l2, oof = best
    p_oof = sigmoid(oof)
    scanner = HeuristicScanner.default()
    normaliser = Normaliser(rot13_probe=scanner.matches_any)
    h_train = np.array([scanner.scan(normaliser(t)).score for t in texts])
    combined_oof = 1.0 - (1.0 - h_train) * (1.0 - p_oof)
    w, b = fit(x, y, l2)
    hard = load_benign_hard()
    hard_x = build_design(hard, hasher)
    p_hard = sigmoid(logits(hard_x, w, b))
    h_hard = np.array([scanner.scan(normaliser(t)).score for t in hard])
    # Threshold = OOF FPR target, raised if needed so that at most one benign-hard prompt is flagged.
    t_cls = max(threshold_for_fpr(p_oof, y, TARGET_FPR), float(np.sort(p_hard)[-2]) + 1e-6)
    comb_hard = 1.0 - (1.0 - h_hard) * (1.0 - p_hard)
    t_comb = max(threshold_for_fpr(combined_oof, y, TARGET_FPR), float(np.sort(comb_hard)[-2]) + 1e-6)
    thresholds = {"heuristics": HEURISTIC_THRESHOLD, "classifier": round(t_cls, 4), "combined": round(t_comb, 4)}
    date = dt.datetime.fromtimestamp(int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or dt.datetime.now().timestamp(),
                                     tz=dt.UTC).date().isoformat()
    csv_sha = sha256(train_csv)
    hyper = {"l2": l2, "iterations": ITERATIONS, "optimizer": "nesterov-agd, step 1/L (power iteration)",
             "class_weight": "balanced", "folds": FOLDS, "seed": SEED, "l2_grid": list(L2_GRID),
             "threshold_rule": f"OOF FPR <= {TARGET_FPR}, at most 1 benign_hard hit"}
    info = {"dataset": "jackhhao/llm-warden datasets/default/ (MIT)", "train_csv_sha256": csv_sha,
            "train_rows": len(texts), "trained": date, "hyper": hyper}
    meta = {"features": config.to_dict(), "bias": b, "thresholds": thresholds, "info": info}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_model(args.out_dir / MODEL_FILE, w, meta)
    oof_stats = {"classifier": (recall_at(p_oof, y, t_cls), float((p_oof[y == 0] >= t_cls).mean())),
                 "combined": (recall_at(combined_oof, y, t_comb), float((combined_oof[y == 0] >= t_comb).mean()))}
    (args.out_dir / "MODEL_CARD.md").write_text(
        model_card(texts, y, config, hyper, thresholds, date, csv_sha, args.out_dir / MODEL_FILE, oof_stats), "utf-8")
    print(json.dumps({"thresholds": thresholds, "oof": oof_stats}, indent=1))
    return 0


def model_card(texts: list[str], y: npt.NDArray[np.int8], config: FeatureConfig, hyper: dict[str, object],
               thresholds: dict[str, float], date: str, csv_sha: str, model_path: Path,
               oof: dict[str, tuple[float, float]]) -> str:
    size = model_path.stat().st_size
    return f"""# Model card: embedded prompt-injection classifier (`{MODEL_FILE}`)

Generated by `scripts/train_injection.py` on {date}. Do not edit by hand; re-run the script.

## Provenance
- Dataset: **jackhhao/llm-warden**, folder `datasets/default/`, licence **MIT** (Copyright (c) 2023 jackhhao;
  licence text shipped next to the data as `LICENSE.jailbreak`). Read from `../shared/datasets/injection/`;
  no data is copied into this repository.
- Training split only: `jailbreak_train.csv`, {len(texts)} rows ({int(y.sum())} jailbreak,
  {len(texts) - int(y.sum())} benign), SHA-256 `{csv_sha}`.
- The test split (`jailbreak_test.csv`) was not used for training, model selection or thresholds.

## Model
- Features: text normalised by `normalise.py` (NFKC-style folding, invisible/bidi stripping, homoglyph
  folding), lower-cased, whitespace collapsed; char {config.char_ngrams}-grams and word {config.word_ngrams}-grams
  hashed (polynomial rolling hash + murmur3 finaliser) into 2^{config.bits} buckets; each group scaled by
  1/sqrt(#n-grams). Texts longer than {config.window} chars are scored per half-overlapping window (max).
- Model: logistic regression, weights stored as float16 ({size / 1024:.0f} KiB compressed), bias in the JSON meta.
- Hyper-parameters: `{json.dumps(hyper, sort_keys=True)}`
- Default thresholds: `{json.dumps(thresholds, sort_keys=True)}`; out-of-fold on train (recall, FPR):
  classifier {oof['classifier'][0]:.3f} / {oof['classifier'][1]:.3f}, combined {oof['combined'][0]:.3f} /
  {oof['combined'][1]:.3f}.

## Intended use and limits
Scores user/tool text for jailbreak and instruction-override attempts inside the policy proxy. The training
data is dominated by English "DAN"-style persona jailbreaks and benign role-play/QA prompts: expect weaker
recall on short, novel, non-English or indirect (document-borne) injections, and some false positives on
long role-play prompts. Pair it with the heuristic layer and measure with `scripts/eval_injection.py`.
"""


if __name__ == "__main__":
    sys.exit(main())
