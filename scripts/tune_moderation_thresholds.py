#!/usr/bin/env python3
"""Raise the content categories' default thresholds until everyday requests are not over-blocked.

Why: the packaged moderation model flagged 10.3% of everyday CLINC queries (6.2% as ``sexual``
alone) at its thresholds, which were chosen on the OpenAI samples and 79 hand-written prompts.
Here each of the eight content categories gets the smallest threshold (never lower than the
current one) at which it flags at most ``PER_CATEGORY`` of a *tuning* pool of benign requests:
half of CLINC (every row whose text hash is even; the other half is only ever used to report),
self-instruct and CoCoNot's benign look-alikes and non-compliance prompts. Eight categories at
0.25% plus ``illicit`` at 1% (``train_moderation_intent.py``) keep the union near 3% in the worst case.
The weights are not touched: only ``thresholds.combined`` in ``moderation_model.npz`` is rewritten
(the previous values are kept in ``info.thresholds_before_tuning``).

Usage: python scripts/tune_moderation_thresholds.py [--data-dir DIR] [--write]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from dataset_files import data_parser, jsonl, missing  # noqa: E402
from train_injection import write_model  # noqa: E402

from proxy.detectors.model_file import read_model  # noqa: E402
from proxy.detectors.moderation import CLASSIFIER_CATEGORIES, ModerationDetector  # noqa: E402

MODEL = REPO / "proxy" / "detectors" / "moderation" / "moderation_model.npz"
PER_CATEGORY = 0.0025


def clinc_half(root: Path, tuning: bool) -> list[str]:
    """The tuning (even hash) or the report (odd hash) half of CLINC: a fixed, seedless split."""
    rows = [d["text"] for d in jsonl(root / "moderation" / "benign_clinc_oos_queries.jsonl.gz")]
    return [t for t in rows if (hashlib.sha256(t.encode()).digest()[0] % 2 == 0) == tuning]


def tuning_pool(root: Path) -> list[str]:
    mod = root / "moderation"
    pool = clinc_half(root, tuning=True)
    pool += [d["text"] for d in jsonl(mod / "benign_self_instruct.jsonl")]
    pool += [d["text"] for d in jsonl(mod / "coconot.jsonl") if d["label"] == 0]
    return pool


def main(argv: list[str] | None = None) -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if missing(args.data_dir, "moderation/coconot.jsonl"):
        return 2
    detector = ModerationDetector()
    pool = tuning_pool(args.data_dir)
    scores = np.array([[detector.scan(t).combined_scores[c] for c in CLASSIFIER_CATEGORIES] for t in pool])
    weights, meta = read_model("proxy.detectors.moderation", "moderation_model.npz")
    before = dict(meta["thresholds"]["combined"])
    allowed = int(np.floor(PER_CATEGORY * len(pool)))
    after = {}
    for j, cat in enumerate(CLASSIFIER_CATEGORIES):
        col = np.sort(scores[:, j])[::-1]
        cut = float(np.nextafter(col[allowed], np.inf)) if allowed < len(col) else 0.0
        after[cat] = round(max(before[cat], min(cut, 0.999)), 4)
        print(f"{cat:18s} {before[cat]:.4f} -> {after[cat]:.4f}")
    th = np.array([after[c] for c in CLASSIFIER_CATEGORIES])
    print(
        f"tuning pool: {len(pool)} benign requests; any category flagged {(scores >= th).any(1).mean():.4f}"
    )
    if args.write:
        meta["thresholds"]["combined"] = after
        meta.setdefault("info", {})["thresholds_before_tuning"] = before
        meta["info"]["threshold_tuning"] = (
            f"scripts/tune_moderation_thresholds.py: per category <= {PER_CATEGORY} of {len(pool)} benign "
            "requests (CLINC even-hash half, self-instruct, CoCoNot benign), never below the previous value"
        )
        write_model(MODEL, np.asarray(weights, dtype=np.float64), meta)
        print(f"wrote {MODEL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
