"""The sources of the leave-one-source-out tables (``scripts/loso.py``), read from ../shared/datasets.

Why one loader per source with a row cap: the tables must run in a few minutes on 2 shared cores, so
large sources are subsampled deterministically (seeded; each cap is printed with the table). Labels
follow the dataset README: 1 = attack / unsafe request, 0 = benign. Rows without a ``group`` get one
that keeps their template family together (garak's probe class), so a split never puts near-copies
on both sides. Nothing here is copied into the repository.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loso import Corpus

SEED = 7
Row = tuple[str, int, str]


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _rows(path: Path, keep: Any = None) -> list[Row]:
    out = []
    for n, d in enumerate(_jsonl(path)):
        if keep is None or keep(d):
            group = d.get("group") or d.get("category") or str(n)
            out.append((d["text"], int(d["label"]), str(group)))
    return out


GARAK_INDIRECT = ("indirect_injection", "benign_document")
GARAK_ENCODING = ("encoding_obfuscation",)


def injection_corpus(root: Path) -> Corpus:
    """Injection sources. garak is split by kind: indirect injections (with their clean documents as
    benign controls: a mixed source), encodings, and the rest (direct/exfiltration/jailbreak/tool...)."""
    inj, mod = root / "injection", root / "moderation"
    corpus = Corpus()
    jail: list[Row] = []
    for split in ("train", "test"):
        with (inj / f"jailbreak_{split}.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                jail.append((row["prompt"], int(row["type"] == "jailbreak"), _h(row["prompt"])))
    corpus.add("jailbreak_csv (train+test)", jail)
    garak = inj / "garak_probes.jsonl.gz"
    indirect = _rows(garak, lambda d: d["kind"] in GARAK_INDIRECT)
    attacks = [r for r in indirect if r[1] == 1]
    benign = [r for r in indirect if r[1] == 0]
    corpus.add("garak indirect (+ clean docs)", benign)  # all 483 clean documents kept
    corpus.add("garak indirect (+ clean docs)", attacks, cap=1200, seed=SEED)
    enc = _rows(garak, lambda d: d["kind"] in GARAK_ENCODING)
    corpus.add("garak encodings", enc, cap=700, seed=SEED)
    other = _rows(garak, lambda d: d["kind"] not in GARAK_INDIRECT + GARAK_ENCODING)
    corpus.add("garak direct/exfil/jailbreak/tool", other, cap=700, seed=SEED)
    corpus.add("gptfuzz templates", _rows(inj / "gptfuzz_jailbreak_templates.jsonl"))
    qa = _rows(inj / "benign_passage_tasks_adversarialqa.jsonl.gz")
    corpus.add("adversarialqa passages (benign)", qa, cap=1000, seed=SEED)
    clinc = _rows(mod / "benign_clinc_oos_queries.jsonl.gz")
    corpus.add("clinc_oos (benign)", [(t, 0, _h(t)) for t, _, _ in clinc], cap=1500, seed=SEED)
    corpus.add("self_instruct (benign)", _rows(mod / "benign_self_instruct.jsonl"))
    return corpus


OPENAI_CODES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def moderation_corpus(root: Path) -> Corpus:
    """Moderation sources with one binary label: unsafe in any category (1) or not (0)."""
    mod = root / "moderation"
    corpus = Corpus()
    openai = []
    for d in _jsonl(mod / "openai_moderation_samples_1680.jsonl.gz"):
        openai.append((d["prompt"], int(any(d.get(c) == 1 for c in OPENAI_CODES)), _h(d["prompt"])))
    corpus.add("openai_moderation", openai)
    dav = []
    with (mod / "davidson_labeled_data.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            dav.append((row["tweet"], int(row["class"] in ("0", "1")), _h(row["tweet"])))
    corpus.add("davidson (tweets)", dav, cap=1500, seed=SEED)
    corpus.add("ailuminate", _rows(mod / "ailuminate_demo_prompts.jsonl.gz"), cap=800, seed=SEED)
    harm = _rows(mod / "harmbench_behaviors.jsonl", lambda d: d.get("kind") != "copyright")
    corpus.add("harmbench (no copyright)", harm)
    corpus.add("advbench", _rows(mod / "advbench_harmful_behaviors.jsonl"))
    corpus.add("donotanswer", _rows(mod / "donotanswer.jsonl"), cap=600, seed=SEED)
    corpus.add("red_instruct", _rows(mod / "red_instruct_harmful_questions.jsonl.gz"), cap=800, seed=SEED)
    corpus.add("multijail", _rows(mod / "multijail.jsonl.gz"), cap=800, seed=SEED)
    corpus.add("simplesafetytests", _rows(mod / "simplesafetytests.jsonl"))
    corpus.add("gptfuzz_questions", _rows(mod / "gptfuzz_questions.jsonl"))
    corpus.add("coconot", _rows(mod / "coconot.jsonl"), cap=1200, seed=SEED)
    corpus.add(
        "hh_rlhf openings (weak labels)",
        _rows(mod / "hh_rlhf_harmless_base_test_openings.jsonl"),
        cap=800,
        seed=SEED,
    )
    clinc = _rows(mod / "benign_clinc_oos_queries.jsonl.gz")
    corpus.add("clinc_oos (benign)", [(t, 0, _h(t)) for t, _, _ in clinc], cap=1500, seed=SEED)
    corpus.add("self_instruct (benign)", _rows(mod / "benign_self_instruct.jsonl"))
    return corpus
