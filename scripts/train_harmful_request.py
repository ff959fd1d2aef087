#!/usr/bin/env python3
"""Train and evaluate the moderation harmful-request model (issue #18 items 1, 4, 6).

What it is: a hashed character 3-5-gram + word 1-2-gram logistic regression (the injection
classifier's file format and scorer, one ``.npz``) that scores *requests for harmful help*, in any
language, for the ``illicit`` category. Why character n-grams: they need no tokenizer or vocabulary per
language, so Chinese, Thai or Bengali requests get features at all (the English intent phrases and the
tweet-trained content classifier see nothing in them), at one gather-and-sum per text.

Training data (``../shared/datasets/moderation``; nothing is copied into the repository):

- harmful requests: AILuminate (EN/FR), HarmBench (no copyright rows), AdvBench, Do-Not-Answer,
  red-instruct (EN/ZH/VI), MultiJail (10 languages), SimpleSafetyTests, GPTFuzz questions, CoCoNot's
  safety-concern prompts;
- benign: CLINC everyday queries, self-instruct, CoCoNot's benign prompts (its safe look-alikes:
  "how can I kill time on a flight" -- the contrast the model needs), and *non-English* benign text:
  translated user-interface messages from the machine's gettext catalogues (``/usr/share/locale``).
  Why those: every harmful set above has non-English rows and no benign set has any, so without them
  a character model learns "Thai script = harmful". They are short UI strings, not requests: a weak
  stand-in, measured as its own held-out source (FPR per language in the report).
- hh-rlhf red-team openings (weak labels: "how much alcohol can I drink per day?") are scored as a
  recall check only, never trained on.

Rows are weighted so each source adds the same total weight within its class (a 6,000-row CLINC would
otherwise define "benign" alone); classes are balanced. The text is what the detector scores at
runtime: ``intent.literal`` (lower-cased, figurative uses such as "kill the process" blanked).

Honest evaluation (``--loso``): leave-one-source-out for every source, leave-one-language-out for
MultiJail (its rows in that language dropped from training; the same prompts in other languages stay,
so this measures transfer across languages of known prompts), and an in-distribution split by group.
Every threshold is chosen on the training side only: the lowest score with FPR <= ``MAX_FPR`` on a
group-split validation fifth of the training rows. The shipped model is fitted on everything, its
threshold chosen the same way on a validation fifth.

Usage: python scripts/train_harmful_request.py [--data-dir DIR] [--loso] [--write [--out PATH]]
(deterministic: seeded subsampling and splits, full-batch gradient descent from zeros)
"""

from __future__ import annotations

import csv
import gettext
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import loso  # noqa: E402
from dataset_files import DATA, data_parser, jsonl, missing, text_hash  # noqa: E402
from loso_sources import OPENAI_CODES, SEED, clinc_benign  # noqa: E402
from train_injection import write_model  # noqa: E402
from train_moderation import build_design  # noqa: E402
from train_moderation import fit as fit_weighted  # noqa: E402

from proxy.detectors.injection.classifier import InjectionClassifier, ModelMeta  # noqa: E402
from proxy.detectors.injection.features import FEATURE_VERSION, FeatureConfig, FeatureHasher  # noqa: E402
from proxy.detectors.moderation.intent import literal  # noqa: E402

OUT = REPO / "proxy" / "detectors" / "moderation" / "harmful_request_model.npz"
FEATURES = FeatureConfig(bits=18, char_ngrams=(3, 4, 5), word_ngrams=(1, 2), window=2048, smoothing=(100, 20))
MAX_FPR = 0.03  # per benign source on the training side (the over-blocking goal)
# 1e-6 / 1e-7 underfit: left-out recall at 3% FPR 0.10-0.12 / 0.13-0.34 (HarmBench, AILuminate, DNA).
L2 = 1e-8
LOOK_ALIKE_WEIGHT = 3.0  # CoCoNot's safe look-alikes count 3x: they are the contrast n-grams need most
ITERATIONS = 300
LOCALE_DIR = Path("/usr/share/locale")
#: gettext catalogue folder -> language code (MultiJail's, red-instruct's and AILuminate's languages
#: first; Javanese has no catalogues on Debian).
UI_LANGS = {
    "zh_CN": "zh", "zh_TW": "zh", "it": "it", "vi": "vi", "ar": "ar", "ko": "ko", "th": "th",
    "bn": "bn", "sw": "sw", "fr": "fr", "de": "de", "es": "es", "ja": "ja", "ru": "ru", "pt_BR": "pt",
}  # fmt: skip
UI_PER_LANG = 300
OPERATING_POINT = 0.6  # detector.PHRASE_FIRES: the shipped score crosses it at the chosen threshold
WEAK = "hh_rlhf openings (weak labels)"
COCONOT = "coconot (safety concerns + safe look-alikes)"
UI = "ui_translations (benign, 15 languages)"
Floats = npt.NDArray[np.float64]
_PLACEHOLDER = re.compile(r"%[-+ #0-9.]*[a-zA-Z]|%\d+\$[a-z]|\{[^}]*\}|[_&~](?=\w)|\\[nt]|<[^>]+>")


def ui_translations(locale_dir: Path = LOCALE_DIR, per_lang: int = UI_PER_LANG) -> list[tuple[str, str, str]]:
    """(text, language, catalogue) for translated messages of 25-300 characters, placeholders removed,
    ``per_lang`` per language (seeded sample; sorted first, so the machine's file order does not matter)."""
    out: list[tuple[str, str, str]] = []
    for folder, lang in UI_LANGS.items():
        seen: dict[str, str] = {}
        for mo in sorted((locale_dir / folder / "LC_MESSAGES").glob("*.mo")):
            try:
                with mo.open("rb") as fh:
                    catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError, ValueError, KeyError):
                continue
            for key, value in catalog.items():
                if not key or not isinstance(value, str):
                    continue  # the header entry
                text = " ".join(_PLACEHOLDER.sub(" ", value).split())
                if 25 <= len(text) <= 300 and text not in seen:
                    seen[text] = mo.stem
        items = sorted(seen.items())
        rng = np.random.default_rng(loso._seed(SEED, folder))
        pick = rng.choice(len(items), size=min(per_lang, len(items)), replace=False) if items else []
        out += [(items[i][0], lang, items[i][1]) for i in sorted(pick)]
    return out


def more_benign(root: Path) -> dict[str, list[tuple[str, int, str, str]]]:
    """Benign text of other kinds, so that "benign" is not just the style of three request sets:
    prompts people write to chat models (the jailbreak set's benign rows: role-play set-ups, tasks),
    the OpenAI moderation samples judged safe, AdversarialQA passage tasks, tweets judged neither
    hateful nor offensive (Davidson)."""
    inj, mod = root / "injection", root / "moderation"
    prompts = []
    for split in ("train", "test"):
        with (inj / f"jailbreak_{split}.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["type"] != "jailbreak":
                    prompts.append((row["prompt"], 0, text_hash(row["prompt"]), "en"))
    openai = [
        (str(d["prompt"]), 0, text_hash(str(d["prompt"])), "en")
        for d in jsonl(mod / "openai_moderation_samples_1680.jsonl.gz")
        if all(d.get(code) == 0 for code in OPENAI_CODES)
    ]
    qa = [
        (str(d["text"]), 0, str(d.get("group") or text_hash(str(d["text"]))), "en")
        for d in jsonl(inj / "benign_passage_tasks_adversarialqa.jsonl.gz")
    ]
    with (mod / "davidson_labeled_data.csv").open(newline="", encoding="utf-8") as fh:
        neither = [r["tweet"] for r in csv.DictReader(fh) if r["class"] == "2"]
    tweets = [(t, 0, text_hash(t), "en") for t in neither]
    return {
        "chat prompts (benign rows of jailbreak_csv)": prompts,
        "openai_moderation (safe rows)": openai,
        "adversarialqa passage tasks (benign)": qa,
        "davidson tweets (neither)": tweets,
    }


class Data:
    """The corpus plus each row's language (MultiJail's leave-one-language-out needs it)."""

    def __init__(self, root: Path, locale_dir: Path = LOCALE_DIR, extra_benign: bool = True) -> None:
        mod = root / "moderation"
        self.corpus = c = loso.Corpus()
        self.langs: list[str] = []

        def add(name: str, rows: list[tuple[str, int, str, str]], cap: int | None = None) -> None:
            before = len(c.texts)
            c.add(name, [(t, y, g) for t, y, g, _ in rows], cap=cap, seed=SEED, total=len(rows))
            by_text = {t: lang for t, _, _, lang in rows}
            self.langs += [by_text[t] for t in c.texts[before:]]

        def rows(
            path: Path, keep: Callable[[dict[str, object]], bool] | None = None
        ) -> list[tuple[str, int, str, str]]:
            out = []
            for d in jsonl(path):
                if keep is None or keep(d):
                    # Per-row groups unless the file links near-copies: a source's *category* as the group
                    # (``read_rows``) puts e.g. all 1,015 CoCoNot safety rows on one side of a split.
                    group = d.get("group") or text_hash(str(d["text"]))
                    out.append((str(d["text"]), int(d["label"]), str(group), str(d.get("lang") or "en")))
            return out

        add("ailuminate (en+fr)", rows(mod / "ailuminate_demo_prompts.jsonl.gz"), cap=1600)
        add(
            "harmbench (no copyright)",
            rows(mod / "harmbench_behaviors.jsonl", lambda d: d.get("kind") != "copyright"),
        )
        add("advbench", rows(mod / "advbench_harmful_behaviors.jsonl"))
        add("donotanswer", rows(mod / "donotanswer.jsonl"))
        add("red_instruct (en+zh+vi)", rows(mod / "red_instruct_harmful_questions.jsonl.gz"), cap=1600)
        add("multijail (10 languages)", rows(mod / "multijail.jsonl.gz"))
        add("simplesafetytests", rows(mod / "simplesafetytests.jsonl"))
        add("gptfuzz_questions", rows(mod / "gptfuzz_questions.jsonl"))
        add(COCONOT, rows(mod / "coconot.jsonl"))
        add(WEAK, rows(mod / "hh_rlhf_harmless_base_test_openings.jsonl"), cap=800)
        clinc = [(t, y, g, "en") for t, y, g in clinc_benign(mod)]
        add("clinc_oos (benign)", clinc, cap=4000)
        add("self_instruct (benign)", rows(mod / "benign_self_instruct.jsonl"))
        add(UI, [(t, 0, f"{lang}/{cat}", lang) for t, lang, cat in ui_translations(locale_dir)])
        if extra_benign:
            for name, found in more_benign(root).items():
                add(name, found, cap=1000)
        self.texts = [literal(t) for t in c.texts]  # what the detector scores at runtime
        src = np.asarray(c.sources)
        self.weak = src == WEAK
        # Each source the same total weight within its class.
        self.base = np.ones(len(src))
        for name in c.source_names():
            rows_of = src == name
            self.base[rows_of] = 1000.0 / int(rows_of.sum())
        self.base[(src == COCONOT) & (c.y == 0)] *= LOOK_ALIKE_WEIGHT
        self.sources = src


def make_fit_score(
    data: Data, design: object, l2: float = L2
) -> tuple[
    Callable[[loso.Index], tuple[Floats, float]], Callable[[tuple[Floats, float], loso.Index], Floats]
]:
    """``fit`` (never on weak-label rows) and ``score`` closures over the featurised corpus."""
    y = data.corpus.y
    n = len(y)

    def fit_rows(rows: loso.Index) -> tuple[Floats, float]:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        mask &= ~data.weak
        sub = design.subset(mask)  # type: ignore[attr-defined]
        return fit_weighted(sub, y[mask].astype(np.float64), data.base[mask], 1.0, l2, ITERATIONS)

    def score_rows(model: tuple[Floats, float], rows: loso.Index) -> Floats:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        z = np.clip(design.subset(mask).matvec(model[0]) + model[1], -60, 60)  # type: ignore[attr-defined]
        out = np.empty(n)
        out[mask] = 1.0 / (1.0 + np.exp(-z))
        return np.asarray(out[rows], dtype=np.float64)

    return fit_rows, score_rows


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def chooser(data: Data) -> loso.Choose:
    """Threshold: the lowest score with FPR <= ``MAX_FPR`` on *each* benign source among ``rows`` (a
    pooled FPR would let 4,000 CLINC rows hide CoCoNot's look-alikes)."""

    def choose(rows: loso.Index, scores: Floats, labels: loso.Labels) -> float:
        src = data.sources[rows]
        cuts = [
            loso.threshold_for_fpr(scores[src == name], labels[src == name], MAX_FPR)
            for name in dict.fromkeys(src[labels == 0].tolist())
        ]
        return max(cuts, default=0.5)

    return choose


def leave_one_language_out(
    data: Data,
    fit_rows: Callable[[loso.Index], tuple[Floats, float]],
    score_rows: Callable[[tuple[Floats, float], loso.Index], Floats],
    source: str,
    seed: int = 0,
) -> list[loso.Outcome]:
    """Per language of ``source``: train on every row except that language's rows of ``source``
    (threshold on a group-split validation part of the training side), test on those rows."""
    c = data.corpus
    y = c.y
    src = np.asarray(c.sources)
    langs = np.asarray(data.langs)
    everything = np.arange(len(y), dtype=np.int64)
    out = []
    for lang in sorted(set(langs[src == source])):
        held = everything[(src == source) & (langs == lang)]
        train = everything[~((src == source) & (langs == lang))]
        val = loso.group_split(c.groups, train, loso.VALIDATION_FRACTION, seed + 1)
        model = fit_rows(train[~val])
        threshold = chooser(data)(train[val], score_rows(model, train[val]), y[train[val]])
        flagged = score_rows(model, held) >= threshold
        out.append(loso.Outcome(f"{source} [{lang}]", threshold, *loso.counts(flagged, y[held])))
    return out


def report(data: Data, design: object, packaged: npt.NDArray[np.bool_]) -> str:
    """The LOSO + leave-one-language-out + in-distribution tables (markdown)."""
    fit_rows, score_rows = make_fit_score(data, design)
    c = data.corpus
    outcomes = loso.leave_one_source_out(
        c,
        fit_rows,
        score_rows,
        chooser(data),
        packaged=lambda rows: packaged[rows],
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    lolo = leave_one_language_out(data, fit_rows, score_rows, "multijail (10 languages)")
    packaged_lolo = []
    src, langs = np.asarray(c.sources), np.asarray(data.langs)
    for o in lolo:
        lang = o.name.rsplit("[", 1)[1].rstrip("]")
        rows = np.flatnonzero((src == "multijail (10 languages)") & (langs == lang))
        packaged_lolo.append(
            loso.Outcome(**{**o.__dict__, "packaged": loso.counts(packaged[rows], c.y[rows])})
        )
    head = (
        f"## Harmful-request model: leave-one-source-out ({len(c.y)} rows; threshold: FPR <= {MAX_FPR:.0%} "
        "on each benign source of a group-split validation fifth of the training side; weak-label rows "
        "never trained on)\n\n" + "".join(f"- subsampled: {n}\n" for n in c.notes) + "\n"
    )
    rows = outcomes[:-1] + packaged_lolo + outcomes[-1:]
    table = loso.markdown(rows, "retrained without it", "packaged detector (before)")
    return head + table


def packaged_before(texts: list[str]) -> npt.NDArray[np.bool_]:
    """The shipped detector's verdicts without this model (its content categories and intent phrases)."""
    from proxy.detectors.moderation import ModerationDetector

    shipped = ModerationDetector(harmful_request=False)
    return np.array([shipped.scan(t).flagged for t in texts])


def loso_report(data_dir: Path) -> str:
    """The whole evaluation section (``scripts/eval_moderation.py`` prints it): a few minutes per source."""
    data = Data(data_dir)
    design = build_design(data.texts, FeatureHasher(FEATURES))
    return report(data, design, packaged_before(data.corpus.texts))


def main(argv: list[str] | None = None) -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--loso", action="store_true", help="print the leave-one-source/language-out tables")
    ap.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    ap.add_argument("--out", type=Path, default=OUT, help="where --write puts the model (default: packaged)")
    args = ap.parse_args(argv)
    if missing(args.data_dir, "moderation/coconot.jsonl"):
        return 2
    started = time.perf_counter()
    data = Data(args.data_dir)
    c = data.corpus
    y = c.y
    design = build_design(data.texts, FeatureHasher(FEATURES))
    print(f"{len(y)} rows featurised in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    fit_rows, score_rows = make_fit_score(data, design)
    if args.loso:
        print(report(data, design, packaged_before(c.texts)), "\n", flush=True)

    everything = np.arange(len(y), dtype=np.int64)
    val = loso.group_split(c.groups, everything, loso.VALIDATION_FRACTION, 11)
    model = fit_rows(everything[~val])
    val_rows = everything[val & ~data.weak]
    threshold = chooser(data)(val_rows, score_rows(model, val_rows), y[val_rows])
    w, b = fit_rows(everything)  # the shipped weights see every row; the threshold came from held-out rows
    # Shift the bias so the chosen threshold scores exactly OPERATING_POINT, the ``illicit`` category's
    # threshold (an intent phrase fires alone at 0.6): the detector's thresholds need no change and
    # ``score >= 0.6`` is ``raw score >= threshold``.
    shift = _logit(OPERATING_POINT) - _logit(threshold)
    meta = ModelMeta(
        FEATURES,
        float(b + shift),
        {"classifier": OPERATING_POINT, "combined": OPERATING_POINT},
        {
            "trained_by": "scripts/train_harmful_request.py",
            "feature_version": FEATURE_VERSION,
            "label": "illicit: a request for harmful help (any hazard, any language)",
            "input": "proxy.detectors.moderation.intent.literal(text)",
            "threshold_rule": f"FPR <= {MAX_FPR} per benign source, group-split validation fifth (seed 11)",
            "raw_threshold": threshold,
            "bias_shift": shift,
            "look_alike_weight": LOOK_ALIKE_WEIGHT,
            "l2": L2,
            "iterations": ITERATIONS,
            "sources": c.source_names(),
            "subsampled": c.notes,
            "licences": "proxy/detectors/moderation/MODEL_CARD_harmful_request.md",
        },
    )
    print(f"threshold {threshold:.4f} (validation FPR <= {MAX_FPR})")
    if args.write:
        write_model(args.out, w, meta.to_dict())
        check = InjectionClassifier.load(args.out)
        probe = check.score(literal("how do I kill time"))
        size = args.out.stat().st_size // 1024
        print(f"wrote {args.out} ({size} KB); 'how do I kill time' scores {probe:.3f}")
    print(json.dumps({"threshold": threshold, "data": str(DATA)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
