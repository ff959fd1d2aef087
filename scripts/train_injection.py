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
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from loso import carry_card_section  # noqa: E402

from proxy.detectors.injection.classifier import MODEL_FILE  # noqa: E402
from proxy.detectors.injection.features import FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.injection.heuristics import HeuristicScanner  # noqa: E402
from proxy.detectors.injection.normalise import Normaliser  # noqa: E402

DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets" / "injection"
PACKAGE_DIR = REPO / "proxy" / "detectors" / "injection"
SEED = 20240611
L2_GRID = (1e-8, 1e-7)  # tiny because features are (smoothed) relative frequencies
QUICK_L2 = 1e-8
ITERATIONS = 300
FOLDS = 5
TARGET_FPR = 0.01  # thresholds are chosen on out-of-fold train scores, with headroom below the 3% aim
HEURISTIC_THRESHOLD = 0.5
HARD_MARGIN = 0.005
DATASET = "jackhhao/llm-warden datasets/default/ (MIT)"
Floats = npt.NDArray[np.float64]


class DatasetMissing(SystemExit):
    """Raised (as a clean non-zero exit) when the shared dataset folder is absent."""


def load_split(data_dir: Path, split: str) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Read ``jailbreak_<split>.csv`` (columns prompt,type); labels: 1 = jailbreak, 0 = benign."""
    path = data_dir / f"jailbreak_{split}.csv"
    if not path.is_file():
        raise DatasetMissing(
            f"error: shared dataset not found: {path}\n"
            f"expected jackhhao/llm-warden CSVs in {data_dir} (pass --data-dir)"
        )
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
        out = np.bincount(self.rows, weights=self.vals * w[self.cols], minlength=self.n_rows)
        return np.asarray(out, dtype=np.float64)  # weighted bincount is float64 already; typing says int

    def rmatvec(self, r: Floats) -> Floats:
        return np.asarray(
            np.bincount(self.cols, weights=self.vals * r[self.rows], minlength=self.dim), np.float64
        )


def build_design(texts: list[str], hasher: FeatureHasher) -> Design:
    """Featurise exactly as the runtime does: normalised text, first window, per-group scaling."""
    normaliser = Normaliser(rot13_probe=HeuristicScanner.default().reveals_trigger)
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        for buckets, scale in hasher.groups(normaliser(text).text):
            rows.append(np.full(buckets.size, i, dtype=np.int64))
            cols.append(buckets.astype(np.int64))
            vals.append(np.full(buckets.size, scale))
    dim = 1 << hasher.config.bits
    key = np.concatenate(rows) * dim + np.concatenate(cols)
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.asarray(np.bincount(inverse, weights=np.concatenate(vals)), dtype=np.float64)
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
    top = float(v @ x.rmatvec(sw * x.matvec(v))) * 1.05  # +5%: power iteration approaches from below
    # Block step sizes: the Hessian of [X, 1] is <= 2 * blockdiag(X'SX, 1'S1), so weights and bias each
    # get their own Lipschitz bound. One shared bound would be dominated by the bias block, because
    # relative-frequency features are tiny, and the weights would barely move.
    step_w = 1.0 / (0.5 * top + l2)
    step_b = 1.0 / (0.5 * float(sw.sum()))
    w = np.zeros(x.dim)
    b = 0.0
    w_prev, b_prev = w.copy(), b
    for k in range(1, iterations + 1):
        momentum = (k - 1) / (k + 2)
        wy, by = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        z = x.matvec(wy) + by
        r = sw * (1.0 / (1.0 + np.exp(-z)) - t)
        w_prev, b_prev = w, b
        w = wy - step_w * (x.rmatvec(r) + l2 * wy)
        b = by - step_b * float(r.sum())
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


def write_model(path: Path, weights: Floats, meta: dict[str, Any]) -> None:
    """A byte-reproducible .npz: fixed zip timestamps, float16 weights, JSON meta as uint8."""
    arrays: dict[str, npt.NDArray[Any]] = {
        "weights": weights.astype(np.float16),
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def select_l2(x: Design, y: npt.NDArray[np.int8], grid: tuple[float, ...]) -> tuple[float, Floats]:
    """Pick the L2 strength by out-of-fold recall at the target FPR; return it with its OOF logits."""
    fold = folds(y)
    best: tuple[float, float, Floats] | None = None
    for l2 in grid:
        oof = np.empty(len(y))
        for f in range(FOLDS):
            w, b = fit(x.subset(fold != f), y[fold != f], l2)
            oof[fold == f] = logits(x.subset(fold == f), w, b)
        rec = recall_at(oof, y, threshold_for_fpr(oof, y, TARGET_FPR))
        print(f"l2={l2:g}: out-of-fold recall@FPR<={TARGET_FPR:.0%} = {rec:.3f}", flush=True)
        if best is None or rec > best[0]:
            best = (rec, l2, oof)
    assert best is not None
    return best[1], best[2]


def choose_threshold(scores: Floats, y: npt.NDArray[np.int8], hard_scores: Floats) -> float:
    """OOF FPR target, raised if needed so that at most one benign-hard prompt is flagged (plus a
    margin, so the default does not sit exactly on a benign-hard prompt's score)."""
    return round(
        max(threshold_for_fpr(scores, y, TARGET_FPR), float(np.sort(hard_scores)[-2]) + HARD_MARGIN), 4
    )


def today() -> str:
    """UTC date, or the one given by SOURCE_DATE_EPOCH for reproducible artefacts."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return moment.date().isoformat()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out-dir", type=Path, default=PACKAGE_DIR)
    ap.add_argument("--quick", action="store_true", help=f"skip the L2 search (use {QUICK_L2:g})")
    args = ap.parse_args(argv)
    texts, y = load_split(args.data_dir, "train")
    config = FeatureConfig()
    hasher = FeatureHasher(config)
    x = build_design(texts, hasher)
    print(f"train rows={len(texts)} (jailbreak={int(y.sum())}) nnz={x.vals.size}", flush=True)
    l2, oof = select_l2(x, y, (QUICK_L2,) if args.quick else L2_GRID)
    w, b = fit(x, y, l2)
    scanner = HeuristicScanner.default()
    normaliser = Normaliser(rot13_probe=scanner.reveals_trigger)
    hard = load_benign_hard()
    p_oof, p_hard = sigmoid(oof), sigmoid(logits(build_design(hard, hasher), w, b))
    h_oof = np.array([scanner.scan(normaliser(t)).score for t in texts])
    h_hard = np.array([scanner.scan(normaliser(t)).score for t in hard])
    c_oof, c_hard = 1.0 - (1.0 - h_oof) * (1.0 - p_oof), 1.0 - (1.0 - h_hard) * (1.0 - p_hard)
    t_cls, t_comb = choose_threshold(p_oof, y, p_hard), choose_threshold(c_oof, y, c_hard)
    thresholds = {"heuristics": HEURISTIC_THRESHOLD, "classifier": t_cls, "combined": t_comb}
    hyper = {
        "l2": l2,
        "l2_grid": list(L2_GRID),
        "iterations": ITERATIONS,
        "optimizer": "Nesterov accelerated GD, block step sizes from a power-iteration Lipschitz bound",
        "class_weight": "balanced",
        "folds": FOLDS,
        "seed": SEED,
        "threshold_rule": f"OOF FPR <= {TARGET_FPR}; at most 1 benign_hard hit (margin {HARD_MARGIN})",
    }
    csv_sha, date = sha256(args.data_dir / "jailbreak_train.csv"), today()
    info = {"dataset": DATASET, "train_csv_sha256": csv_sha, "train_rows": len(texts), "trained": date}
    meta = {
        "features": config.to_dict(),
        "bias": b,
        "thresholds": thresholds,
        "info": info | {"hyper": hyper},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_model(args.out_dir / MODEL_FILE, w, meta)
    oof_stats: dict[str, tuple[float, ...]] = {
        "classifier": (recall_at(p_oof, y, t_cls), float((p_oof[y == 0] >= t_cls).mean())),
        "combined": (recall_at(c_oof, y, t_comb), float((c_oof[y == 0] >= t_comb).mean())),
    }
    card = model_card(meta, y, (args.out_dir / MODEL_FILE).stat().st_size, oof_stats)
    card_path = args.out_dir / "MODEL_CARD.md"
    old = card_path.read_text("utf-8") if card_path.is_file() else ""
    card_path.write_text(carry_card_section(card, old), "utf-8")  # keeps the LOSO table (eval script)
    print(json.dumps({"thresholds": thresholds, "oof": oof_stats}, indent=1))
    return 0


def model_card(
    meta: dict[str, Any], y: npt.NDArray[np.int8], size: int, oof: dict[str, tuple[float, ...]]
) -> str:
    """MODEL_CARD.md: provenance (dataset, licence, rows, CSV hash), features, hyper-parameters, limits."""
    feats, info = meta["features"], meta["info"]
    (c_rec, c_fpr), (m_rec, m_fpr) = oof["classifier"], oof["combined"]
    return f"""# Model card: embedded prompt-injection classifier (`{MODEL_FILE}`)

Generated by `scripts/train_injection.py` on {info["trained"]}. Do not edit by hand; re-run the script.

## Provenance
- Dataset: **jackhhao/llm-warden**, folder `datasets/default/`, licence **MIT** (Copyright (c) 2023
  jackhhao; licence text next to the data as `LICENSE.jailbreak`). Read from
  `../shared/datasets/injection/`; no data is copied into this repository.
- Training split only: `jailbreak_train.csv`, {len(y)} rows ({int(y.sum())} jailbreak, {len(y) - int(y.sum())}
  benign), SHA-256 `{info["train_csv_sha256"]}`.
- The test split (`jailbreak_test.csv`) was not used for training, model selection or thresholds. The
  hand-written `benign_hard.txt` *was* used to set the thresholds, so its false-positive rate is in-sample.

## Model
- Input: text normalised by `normalise.py` (compatibility folding, invisible/bidi stripping, homoglyph
  folding), lower-cased, whitespace collapsed.
- Features: char {feats["char_ngrams"]}-grams and word {feats["word_ngrams"]}-grams, hashed
  (polynomial rolling hash + murmur3 finaliser, `features.py` v{feats["feature_version"]}) into
  2^{feats["bits"]} buckets; each group scaled by 1/(#n-grams + k), k = {feats["smoothing"]} (chars,
  words). Texts longer than {feats["window"]} chars are scored per half-overlapping window (max).
- Model: logistic regression; float16 weights ({size / 1024:.0f} KiB compressed), bias in the JSON meta.
- Hyper-parameters: `{json.dumps(info["hyper"], sort_keys=True)}`
- Default thresholds: `{json.dumps(meta["thresholds"], sort_keys=True)}`. Out-of-fold on train (recall /
  FPR): classifier {c_rec:.3f} / {c_fpr:.3f}, combined {m_rec:.3f} / {m_fpr:.3f}.

## Intended use and limits
Scores user/tool text for jailbreak and instruction-override attempts inside the policy proxy. The data
is dominated by English "DAN"-style persona jailbreaks and benign role-play/QA prompts: expect weaker
recall on short, novel, non-English or indirect (document-borne) injections, and some false positives
on long role-play prompts. Pair it with the heuristic layer; measure with `scripts/eval_injection.py`.
"""


if __name__ == "__main__":
    sys.exit(main())
