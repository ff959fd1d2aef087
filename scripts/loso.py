"""Leave-one-source-out (LOSO) evaluation: train on every source but one, test on the one left out.

Why: an in-distribution split of one corpus says how well a detector memorises that corpus's style
(injection recall 0.965 at FPR 0 on the jailbreak test split), not how it does on attacks it was never
tuned on (0 of 125 indirect injections). Holding a whole *source* out -- a different collection, author,
template family or attack kind -- is the cheapest honest proxy for "new data in production".

The machinery is model-agnostic: callers pass ``fit`` (row indices -> model), ``score`` (model, row
indices -> scores) and ``choose`` (row indices, scores, labels -> threshold). Two rules keep it honest:

- everything the held-out source contributes is invisible to ``fit`` and ``choose``: the threshold is
  chosen on a validation part of the *training* sources (split by ``group``, so near-copies of one
  template never sit on both sides), and ``choose`` is told which rows it sees so tests can check that;
- templated sources are split by ``group`` for the in-distribution baseline as well.

Used by ``scripts/eval_injection.py`` and ``scripts/eval_moderation.py``; tested on synthetic data in
``tests/unit/test_loso.py``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

M = TypeVar("M")
Index = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]
Fit = Callable[[Index], M]
Score = Callable[[M, Index], Floats]
Choose = Callable[[Index, Floats, Labels], float]

VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass
class Corpus:
    """All rows of all sources, flat. ``groups`` link near-copies (same template/document/passage)."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "garak_indirect: 1200 of 8680 rows (seed 7)"

    def add(
        self,
        source: str,
        rows: Sequence[tuple[str, int, str]],
        cap: int | None = None,
        seed: int = 0,
        total: int | None = None,
    ) -> None:
        """Append (text, label, group) rows of one source, keeping a deterministic random ``cap`` of them."""
        kept = list(rows)
        if cap is not None and len(kept) > cap:
            rng = np.random.default_rng(_seed(seed, source))
            pick = np.sort(rng.choice(len(kept), size=cap, replace=False))
            kept = [kept[i] for i in pick]
            self.notes.append(f"{source}: {cap} of {total or len(rows)} rows (random, seed {seed})")
        for text, label, group in kept:
            self.texts.append(text)
            self.labels.append(int(label))
            self.sources.append(source)
            self.groups.append(f"{source}/{group}")

    @property
    def y(self) -> Labels:
        return np.asarray(self.labels, dtype=np.int8)

    def source_names(self) -> list[str]:
        return list(dict.fromkeys(self.sources))


def _seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def group_split(groups: Sequence[str], rows: Index, fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """True for the rows (of ``rows``) whose group falls in the ``fraction`` side, by a seeded hash of
    the group name: deterministic, and every row of a group lands on the same side."""
    cut = int(fraction * 2**32)
    return np.array([_seed(seed, groups[i]) % 2**32 < cut for i in rows], dtype=bool)


@dataclass(frozen=True)
class Outcome:
    """One held-out evaluation: counts at the chosen threshold, and the threshold itself."""

    name: str
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    packaged: tuple[int, int, int, int] | None = None  # tp, fp, fn, tn of the shipped detector

    @property
    def kind(self) -> str:
        pos, neg = self.tp + self.fn, self.fp + self.tn
        return "mixed" if pos and neg else ("attack" if pos else "benign")


def counts(flagged: npt.NDArray[np.bool_], y: Labels) -> tuple[int, int, int, int]:
    t = y == 1
    return (
        int((flagged & t).sum()),
        int((flagged & ~t).sum()),
        int((~flagged & t).sum()),
        int((~flagged & ~t).sum()),
    )


def metric(c: tuple[int, int, int, int]) -> str:
    """Recall for attack-only rows, FPR for benign-only, P/R/F1 for mixed."""
    tp, fp, fn, tn = c
    pos, neg = tp + fn, fp + tn
    recall = tp / pos if pos else 0.0
    fpr = fp / neg if neg else 0.0
    if pos and neg:
        precision = tp / (tp + fp) if tp + fp else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        return f"P {precision:.2f} R {recall:.2f} F1 {f1:.2f} (FPR {fpr:.3f})"
    return f"recall {recall:.3f}" if pos else f"FPR {fpr:.3f}"


def _evaluate(
    name: str,
    train: Index,
    test: Index,
    corpus: Corpus,
    fit: Fit[M],
    score: Score[M],
    choose: Choose,
    seed: int,
) -> Outcome:
    y = corpus.y
    val_side = group_split(corpus.groups, train, VALIDATION_FRACTION, seed + 1)
    fit_rows, val_rows = train[~val_side], train[val_side]
    model = fit(fit_rows)
    threshold = choose(val_rows, score(model, val_rows), y[val_rows])
    flagged = score(model, test) >= threshold
    return Outcome(name, threshold, *counts(flagged, y[test]))


def leave_one_source_out(
    corpus: Corpus,
    fit: Fit[M],
    score: Score[M],
    choose: Choose,
    *,
    seed: int = 0,
    packaged: Callable[[Index], npt.NDArray[np.bool_]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """One ``Outcome`` per source (trained on all others), then the in-distribution split ("all
    sources, random split by group"). ``packaged``: verdicts of the shipped detector for some rows, for
    the "what users get today" column."""
    y = corpus.y
    src = np.asarray(corpus.sources)
    everything = np.arange(len(y), dtype=np.int64)
    out: list[Outcome] = []
    names = corpus.source_names()
    for name in names:
        held = everything[src == name]
        train = everything[src != name]
        result = _evaluate(name, train, held, corpus, fit, score, choose, seed)
        pk = counts(packaged(held), y[held]) if packaged is not None else None
        out.append(Outcome(**{**result.__dict__, "packaged": pk}))
        if progress is not None:
            progress(f"held out {name}: {metric(counts_of(out[-1]))}")
    test_side = group_split(corpus.groups, everything, TEST_FRACTION, seed)
    test, train = everything[test_side], everything[~test_side]
    result = _evaluate(
        "in-distribution (all sources, split by group)", train, test, corpus, fit, score, choose, seed
    )
    pk = counts(packaged(test), y[test]) if packaged is not None else None
    out.append(Outcome(**{**result.__dict__, "packaged": pk}))
    return out


def counts_of(o: Outcome) -> tuple[int, int, int, int]:
    return o.tp, o.fp, o.fn, o.tn


def threshold_for_fpr(scores: Floats, y: Labels, max_fpr: float) -> float:
    """Smallest threshold (score >= t flags) whose false-positive rate on the benign rows is <= max_fpr."""
    neg = np.sort(scores[y == 0])[::-1]
    if not len(neg):
        return 0.5
    allowed = int(np.floor(max_fpr * len(neg)))
    cut = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.nextafter(cut, np.inf))


def markdown(outcomes: Sequence[Outcome], model_label: str, packaged_label: str) -> str:
    """The LOSO table: rows, what was held out, metric of the retrained model and of the packaged one."""
    header = ["held-out source", "rows (attack/benign)", model_label, "threshold", packaged_label]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for o in outcomes:
        c = counts_of(o)
        pk = metric(o.packaged) if o.packaged is not None else "-"
        rows = f"{o.tp + o.fn}/{o.fp + o.tn}"
        lines.append(f"| {o.name} | {rows} | {metric(c)} | {o.threshold:.3f} | {pk} |")
    return "\n".join(lines)


def fpr_report(
    corpus: Corpus,
    fit: Fit[M],
    score: Score[M],
    packaged: npt.NDArray[np.bool_],
    max_fpr: float,
    what: str,
) -> str:
    """The whole LOSO section both eval scripts print: thresholds for ``max_fpr`` on the training
    side only, the heading (rows, positives called ``what``, subsampling notes), then the table.

    ``packaged``: the shipped detector's verdict for every row of ``corpus``."""
    y = corpus.y

    def choose(_rows: Index, scores: Floats, labels: Labels) -> float:
        return threshold_for_fpr(scores, labels, max_fpr)

    outcomes = leave_one_source_out(
        corpus,
        fit,
        score,
        choose,
        packaged=lambda rows: packaged[rows],
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    head = (
        f"## Leave-one-source-out ({len(y)} rows, {int(y.sum())} {what}; threshold: "
        f"FPR <= {max_fpr:.0%} on a validation split (by group) of the training sources)\n\n"
        + "".join(f"- subsampled: {n}\n" for n in corpus.notes)
        + "\n"
    )
    return head + markdown(outcomes, "retrained without it", "packaged model (defaults)")


def write_card(card: Path, note: str, table: str) -> None:
    """Put ``table`` (``fpr_report``'s output) first in the model card at ``card``, under ``note``."""
    body = f"{CARD_SECTION}\n\n{note}\n\n{table}".replace("## Leave-one-source-out (", "Setup (")
    card.write_text(put_card_section(card.read_text("utf-8"), body), "utf-8")


CARD_SECTION = "## Leave-one-source-out evaluation"


def _section(card: str) -> tuple[int, int] | None:
    start = card.find(CARD_SECTION)
    if start < 0:
        return None
    end = card.find("\n## ", start + len(CARD_SECTION))
    return start, (len(card) if end < 0 else end + 1)


def put_card_section(card: str, body: str) -> str:
    """``card`` with its leave-one-source-out section replaced by ``body`` (a markdown block starting
    with ``CARD_SECTION``), or inserted before the first other section: it goes first, ahead of the
    in-distribution numbers."""
    body = body.rstrip("\n") + "\n\n"
    found = _section(card)
    if found is not None:
        return card[: found[0]] + body + card[found[1] :]
    first = card.find("\n## ")
    if first < 0:
        return card.rstrip("\n") + "\n\n" + body
    return card[: first + 1] + body + card[first + 1 :]


def carry_card_section(new_card: str, old_card: str) -> str:
    """Keep the leave-one-source-out section of the previous card when a training script rewrites it
    (the section is written by the eval scripts' ``--write-card``, which takes minutes to compute)."""
    found = _section(old_card)
    return new_card if found is None else put_card_section(new_card, old_card[found[0] : found[1]])


def print_loso(root: Path, marker: Path, table: Callable[[Path], str], card: Path | None, note: str) -> None:
    """Print the leave-one-source-out table when its data (``marker``) is present, and put it in the
    model card when ``card`` is given; else say why it was skipped (the evaluators' shared step)."""
    if not marker.is_file():
        print(f"(leave-one-source-out table skipped: second-batch data not found in {root})\n")
        return
    md = table(root)
    print(md, "\n", flush=True)
    if card is not None:
        write_card(card, note, md)
