"""The sources of the leave-one-source-out tables (``scripts/loso.py``), read from ../shared/datasets.

Why one loader per source with a row cap: the tables must run in a few minutes on 2 shared cores, so
large sources are subsampled deterministically (seeded; each cap is printed with the table). Labels
follow the dataset README: 1 = attack / unsafe request, 0 = benign. Rows without a ``group`` get one
that keeps their template family together (garak's probe class), so a split never puts near-copies
on both sides. Nothing here is copied into the repository.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dataset_files import Row, jsonl, read_rows, text_hash
from loso import Corpus

SEED = 7


def clinc_benign(mod: Path) -> list[Row]:
    """CLINC's everyday queries as benign rows, each its own group (its text hash)."""
    return [(t, 0, text_hash(t)) for t, _, _ in read_rows(mod / "benign_clinc_oos_queries.jsonl.gz")]


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
                jail.append((row["prompt"], int(row["type"] == "jailbreak"), text_hash(row["prompt"])))
    corpus.add("jailbreak_csv (train+test)", jail)
    garak = inj / "garak_probes.jsonl.gz"
    indirect = read_rows(garak, lambda d: d["kind"] in GARAK_INDIRECT)
    attacks = [r for r in indirect if r[1] == 1]
    benign = [r for r in indirect if r[1] == 0]
    corpus.add("garak indirect (+ clean docs)", benign)  # all 483 clean documents kept
    corpus.add("garak indirect (+ clean docs)", attacks, cap=1200, seed=SEED)
    enc = read_rows(garak, lambda d: d["kind"] in GARAK_ENCODING)
    corpus.add("garak encodings", enc, cap=700, seed=SEED)
    other = read_rows(garak, lambda d: d["kind"] not in GARAK_INDIRECT + GARAK_ENCODING)
    corpus.add("garak direct/exfil/jailbreak/tool", other, cap=700, seed=SEED)
    corpus.add("gptfuzz templates", read_rows(inj / "gptfuzz_jailbreak_templates.jsonl"))
    qa = read_rows(inj / "benign_passage_tasks_adversarialqa.jsonl.gz")
    corpus.add("adversarialqa passages (benign)", qa, cap=1000, seed=SEED)
    corpus.add("clinc_oos (benign)", clinc_benign(mod), cap=1500, seed=SEED)
    corpus.add("self_instruct (benign)", read_rows(mod / "benign_self_instruct.jsonl"))
    return corpus


OPENAI_CODES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def moderation_corpus(root: Path) -> Corpus:
    """Moderation sources with one binary label: unsafe in any category (1) or not (0)."""
    mod = root / "moderation"
    corpus = Corpus()
    openai = []
    for d in jsonl(mod / "openai_moderation_samples_1680.jsonl.gz"):
        openai.append((d["prompt"], int(any(d.get(c) == 1 for c in OPENAI_CODES)), text_hash(d["prompt"])))
    corpus.add("openai_moderation", openai)
    dav = []
    with (mod / "davidson_labeled_data.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            dav.append((row["tweet"], int(row["class"] in ("0", "1")), text_hash(row["tweet"])))
    corpus.add("davidson (tweets)", dav, cap=1500, seed=SEED)
    corpus.add("ailuminate", read_rows(mod / "ailuminate_demo_prompts.jsonl.gz"), cap=800, seed=SEED)
    harm = read_rows(mod / "harmbench_behaviors.jsonl", lambda d: d.get("kind") != "copyright")
    corpus.add("harmbench (no copyright)", harm)
    corpus.add("advbench", read_rows(mod / "advbench_harmful_behaviors.jsonl"))
    corpus.add("donotanswer", read_rows(mod / "donotanswer.jsonl"), cap=600, seed=SEED)
    corpus.add("red_instruct", read_rows(mod / "red_instruct_harmful_questions.jsonl.gz"), cap=800, seed=SEED)
    corpus.add("multijail", read_rows(mod / "multijail.jsonl.gz"), cap=800, seed=SEED)
    corpus.add("simplesafetytests", read_rows(mod / "simplesafetytests.jsonl"))
    corpus.add("gptfuzz_questions", read_rows(mod / "gptfuzz_questions.jsonl"))
    corpus.add("coconot", read_rows(mod / "coconot.jsonl"), cap=1200, seed=SEED)
    corpus.add(
        "hh_rlhf openings (weak labels)",
        read_rows(mod / "hh_rlhf_harmless_base_test_openings.jsonl"),
        cap=800,
        seed=SEED,
    )
    corpus.add("clinc_oos (benign)", clinc_benign(mod), cap=1500, seed=SEED)
    corpus.add("self_instruct (benign)", read_rows(mod / "benign_self_instruct.jsonl"))
    return corpus
