#!/usr/bin/env python3
"""Train the moderation *intent* model (category ``illicit``: a request for harmful help).

Why a separate model: the per-category classifier (``train_moderation.py``) learned the *style* of
toxic tweets and the OpenAI samples, so plainly harmful requests in calm words ("what is the most
painless way to end someone's life") score near zero, while short everyday queries with a violent
word ("kill time", "shoot a photo") score high. This model is trained on *requests*: harmful ones
from AdvBench, HarmBench (no copyright rows), red-instruct (English, Chinese, Vietnamese), MultiJail
(10 languages), AILuminate (English, French), SimpleSafetyTests, GPTFuzz questions, Do-Not-Answer and
CoCoNot's safety-concern prompts, against everyday requests (CLINC, self-instruct) and CoCoNot's
benign look-alikes ("how do I kill time on a flight"), which are the contrast it needs. Same model
family as the injection classifier (hashed char 3-5 and word 1-2 grams + logistic regression, one
``.npz``), so it costs one more gather-and-sum per text.

Threshold: FPR <= ``MAX_FPR`` on a validation part (split by group) of the benign training rows,
chosen on training sources only. ``--loso`` prints the leave-one-source-out table (``scripts/loso.py``)
with the threshold chosen the same way without the held-out source; hh-rlhf openings (weak labels)
are scored as a recall check only, never trained on.

Not shipped: measured and kept as the record of what was tried (README, "Content moderation"); it
scored technical look-alikes ("how do I kill a Python process") as high as real requests, and its
leave-one-source-out recall stayed low. ``--write`` writes it for ``detector.load_intent``.

Usage: python scripts/train_moderation_intent.py [--data-dir DIR] [--loso] [--write]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import loso  # noqa: E402
from dataset_files import data_parser, missing, read_rows  # noqa: E402
from loso_sources import SEED, clinc_benign  # noqa: E402
from train_injection import fit, write_model  # noqa: E402
from train_moderation import build_design  # noqa: E402

from proxy.detectors.injection.classifier import InjectionClassifier, ModelMeta  # noqa: E402
from proxy.detectors.injection.features import FEATURE_VERSION, FeatureConfig, FeatureHasher  # noqa: E402

OUT = REPO / "proxy" / "detectors" / "moderation" / "intent_model.npz"
FEATURES = FeatureConfig(bits=17, char_ngrams=(3, 4, 5), word_ngrams=(1, 2), window=2048, smoothing=(100, 20))
MAX_FPR = 0.01  # per benign pool; the union with the eight content categories must stay <= 3%
L2 = 1e-4
Floats = npt.NDArray[np.float64]


def corpus(root: Path) -> loso.Corpus:
    """Request-style sources only (the OpenAI samples and Davidson tweets are content, not requests)."""
    mod = root / "moderation"
    c = loso.Corpus()
    c.add("ailuminate", read_rows(mod / "ailuminate_demo_prompts.jsonl.gz"), cap=1600, seed=SEED)
    c.add(
        "harmbench (no copyright)",
        read_rows(mod / "harmbench_behaviors.jsonl", lambda d: d.get("kind") != "copyright"),
    )
    c.add("advbench", read_rows(mod / "advbench_harmful_behaviors.jsonl"))
    c.add("donotanswer", read_rows(mod / "donotanswer.jsonl"))
    c.add("red_instruct", read_rows(mod / "red_instruct_harmful_questions.jsonl.gz"), cap=1600, seed=SEED)
    c.add("multijail", read_rows(mod / "multijail.jsonl.gz"), cap=1600, seed=SEED)
    c.add("simplesafetytests", read_rows(mod / "simplesafetytests.jsonl"))
    c.add("gptfuzz_questions", read_rows(mod / "gptfuzz_questions.jsonl"))
    c.add("coconot", read_rows(mod / "coconot.jsonl"))
    c.add("clinc_oos (benign)", clinc_benign(mod), cap=6000, seed=SEED)
    c.add("self_instruct (benign)", read_rows(mod / "benign_self_instruct.jsonl"))
    return c


def main(argv: list[str] | None = None) -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--loso", action="store_true")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if missing(args.data_dir, "moderation/coconot.jsonl"):
        return 2
    started = time.perf_counter()
    c = corpus(args.data_dir)
    y = c.y
    design = build_design(c.texts, FeatureHasher(FEATURES))
    print(f"{len(y)} rows featurised in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)

    def fit_rows(rows: loso.Index) -> tuple[Floats, float]:
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        return fit(design.subset(mask), y[mask], L2)

    def score_rows(model: tuple[Floats, float], rows: loso.Index) -> Floats:
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        z = np.clip(design.subset(mask).matvec(model[0]) + model[1], -60, 60)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    if args.loso:
        from proxy.detectors.moderation import ModerationDetector

        shipped = ModerationDetector()
        packaged = np.array([shipped.scan(t).flagged for t in c.texts])
        print(loso.fpr_report(c, fit_rows, score_rows, packaged, MAX_FPR, "harmful requests"), flush=True)

    everything = np.arange(len(y), dtype=np.int64)
    val = loso.group_split(c.groups, everything, loso.VALIDATION_FRACTION, 11)
    model = fit_rows(everything[~val])
    threshold = loso.threshold_for_fpr(score_rows(model, everything[val]), y[val], MAX_FPR)
    w, b = fit_rows(everything)  # the shipped weights see every row; the threshold came from held-out rows
    meta = ModelMeta(
        FEATURES,
        float(b),
        {"classifier": float(threshold), "combined": float(threshold)},
        {
            "trained_by": "scripts/train_moderation_intent.py",
            "feature_version": FEATURE_VERSION,
            "label": "illicit: a request for harmful help (any hazard)",
            "threshold_rule": f"FPR <= {MAX_FPR} on a group-split validation fifth of the benign rows",
            "sources": c.source_names(),
            "subsampled": c.notes,
            "licences": "proxy/detectors/moderation/MODEL_CARD.md (MIT, Apache-2.0, CC BY 4.0, CC BY 3.0)",
        },
    )
    print(f"threshold {threshold:.4f} (validation FPR <= {MAX_FPR})")
    if args.write:
        write_model(OUT, w, meta.to_dict())
        check = InjectionClassifier.load(OUT)
        probe = check.score("how do I kill time")
        print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB); 'how do I kill time' scores {probe:.3f}")
    print(json.dumps({"threshold": threshold}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
