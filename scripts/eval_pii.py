#!/usr/bin/env python
"""Span-level precision / recall / F2 of the ``pii`` plugin's detection on the Presidio synthetic set.

    python scripts/eval_pii.py [--ner off|auto|required] [--split test|dev|all] [--detect all|default]
                               [--method presidio|strict] [--errors TYPE] [--every N]

The dataset (``../shared/datasets/pii/presidio_synth_dataset_v2.json`` relative to the repo root)
is a list of records ``{full_text, spans: [{entity_type, start_position, end_position}], template_id}``.
Detection is exactly what the plugin does: the engine, per-type threshold, overlap resolution
and merging.

Split: the recognisers in ``proxy/detectors/pii/tuned.py`` were tuned on this dataset, so it is
split by *template* (the 209 sentence templates its records are generated from): templates with
an even ``template_id`` are the dev half (tuning, ``--errors``), odd ones the test half (the
numbers reported in docs/pii.md, ``--split test``, the default). A split by record would leak:
the same sentence template, with other names filled in, would sit on both sides.

Types are mapped as presidio-research maps them (``STREET_ADDRESS``/``GPE`` -> LOCATION,
``DOMAIN_NAME`` -> URL; TITLE and ZIP_CODE stay). The ``ANY_PII`` row ignores types (what
matters for redaction: a US phone number recognised as ``UK_NHS`` is still removed).

Matching (``--method``):

* ``presidio`` (default since #6): presidio-research's ``SpanEvaluator`` method, see
  ``SpanScorer``: same-type spans separated only by skip words are merged (gold and predicted),
  extents are trimmed of skip words, and a gold span is found when the union of the overlapping
  predictions of its type reaches IoU >= 0.5.
* ``strict`` (the method before #6): raw spans, one prediction to one gold span at IoU >= 0.5.
  The dataset labels an address piece by piece, so one predicted address covering street, city
  and postcode scored one false positive and several misses.

Every run prints the other method's summary line too, so numbers are never quoted from one
method alone. ``coverage`` counts raw gold spans lying wholly inside any predicted span.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATASET = ROOT / ".." / "shared" / "datasets" / "pii" / "presidio_synth_dataset_v2.json"
TYPE_MAP = {"STREET_ADDRESS": "LOCATION", "GPE": "LOCATION", "DOMAIN_NAME": "URL"}
#: Predicted types compared as presidio-research's: since #22 street addresses are ADDRESS (in
#: the default set) and places LOCATION (not), but the dataset labels an address piece by
#: piece (street, town: both LOCATION after ``TYPE_MAP``), so ``--detect all`` compares both
#: as LOCATION, as before #22.
PRED_MAP = {"ADDRESS": "LOCATION"}
#: ``--detect default``: the dataset's types mapped onto the default set's (gold spans of
#: other types, and predictions of them, are left out: the default policy does not look for them).
DEFAULT_TYPE_MAP = {"STREET_ADDRESS": "ADDRESS", "DOMAIN_NAME": "URL"}
UNSUPPORTED: set[str] = set()  # dataset types with no recogniser (TITLE and ZIP_CODE had none before #6)
#: presidio-research's documented default overlap for a span match (``span_based_approach.md``).
IOU_THRESHOLD = 0.5
#: presidio-research ``skipwords.py`` (besides punctuation and spaCy's English stop words).
SKIP_WORDS = frozenset(
    """'s street st. st de rue via and a the or do as of day address country state city zip po apt
    unit corner p.o. box suite mr. mrs. miss year years y/o month months old morning noon afternoon
    night evening this first last week weeks weekend days age ago inc inc. ltd >> >>> >>>> >>>>>
    >>>>>>""".split()  # noqa: SIM905 (a word list)
)


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


Triple = tuple[int, int, str]
Counts = dict[str, dict[str, int]]


def _match_strict(gold: list[Triple], pred: list[Triple], typed: bool) -> list[tuple[str, str]]:
    """The pre-#6 method: raw gold spans, one prediction to one gold span at IoU >= 0.5.

    A predicted address that covers its street, city and postcode pieces overlaps each piece
    with IoU < 0.5: one false positive and N misses, although every piece is redacted.
    """
    used: set[int] = set()
    events: list[tuple[str, str]] = []
    for ps, pe, pt in pred:
        best = -1
        for i, (gs, ge, gt) in enumerate(gold):
            if i not in used and (not typed or gt == pt) and _iou((ps, pe), (gs, ge)) >= IOU_THRESHOLD:
                best = i
                break
        if best >= 0:
            used.add(best)
            events.append((pt if typed else "ANY_PII", "tp"))
        else:
            events.append((pt if typed else "ANY_PII", "fp"))
    for i, (_, _, gt) in enumerate(gold):
        if i not in used:
            events.append((gt if typed else "ANY_PII", "fn"))
    return events


class SpanScorer:
    """presidio-research's ``SpanEvaluator`` method, re-implemented without pandas.

    1. Text is tokenised (spaCy's English tokenizer, no model); a token belongs to a span it
       overlaps. Consecutive tokens of one type form a span; two spans of one type separated
       only by *skip words* (punctuation, whitespace, stop words, "street", "apt", ...: the
       list in presidio-research's ``skipwords.py``) are merged, for gold and prediction alike.
       So an address the dataset labels street / city / country, all LOCATION after the type
       map, is one gold span, as in presidio-research.
    2. Each span's extent for IoU is trimmed of skip-word tokens (a span of skip words only,
       e.g. a ``Mr.`` TITLE, is dropped, as there).
    3. Per gold span: the overlapping predictions of its type (and, for ``ANY_PII``, of any
       type) are added in order while their union raises the character IoU; a gold span is a
       true positive when that IoU is >= the threshold. Each prediction counts once: credited
       if it took part in a match, otherwise a false positive. Recall = TP / gold,
       precision = credited / predicted.

    Unlike presidio-research's notebooks, predictions of types the dataset does not label
    (UK_NHS, US_BANK_NUMBER, ...) are kept and count as false positives, not filtered out.
    """

    def __init__(self) -> None:
        import string

        import spacy
        from spacy.lang.en.stop_words import STOP_WORDS

        self._tok = spacy.blank("en").tokenizer
        self.skip = {*string.punctuation, *SKIP_WORDS, *STOP_WORDS, ""}

    def spans(self, tokens: list[tuple[int, int, str]], labelled: list[Triple]) -> list[tuple[int, int, str]]:
        """Token-level IO tags -> merged spans with skip-word-trimmed extents."""
        tags: list[str | None] = []
        for ts, te, _ in tokens:
            tag = None
            for s, e, t in labelled:
                if ts < e and te > s:
                    tag = t
                    break
            tags.append(tag)
        groups: list[tuple[int, int, str]] = []  # (first token, last token + 1, type)
        i = 0
        while i < len(tokens):
            tag = tags[i]
            if tag is None:
                i += 1
                continue
            j = i
            while j < len(tokens) and tags[j] == tag:
                j += 1
            if (
                groups
                and groups[-1][2] == tag
                and all(tokens[k][2] in self.skip for k in range(groups[-1][1], i))
            ):
                groups[-1] = (groups[-1][0], j, tag)
            else:
                groups.append((i, j, tag))
            i = j
        out = []
        for a, b, tag in groups:
            kept = [tokens[k] for k in range(a, b) if tokens[k][2] not in self.skip]
            if kept:
                out.append((min(k[0] for k in kept), max(k[1] for k in kept), tag))
        return out

    def score(self, text: str, gold: list[Triple], pred: list[Triple], counts: Counts) -> None:
        tokens = [(t.idx, t.idx + len(t.text), t.text.lower().strip()) for t in self._tok(text)]
        g = self.spans(tokens, gold)
        p = self.spans(tokens, pred)
        for typed in (True, False):
            matched: set[int] = set()
            for gs, ge, gt in g:
                key = gt if typed else "ANY_PII"
                cands = [
                    (i, ps, pe)
                    for i, (ps, pe, pt) in enumerate(p)
                    if i not in matched and (not typed or pt == gt) and ps < ge and pe > gs
                ]
                chosen: list[tuple[int, int, int]] = []
                best = 0.0
                for c in cands:
                    iou = _combined_iou((gs, ge), [(s, e) for _, s, e in [*chosen, c]])
                    if iou > best:
                        chosen.append(c)
                        best = iou
                counts[key]["gold"] += 1
                if best >= IOU_THRESHOLD:
                    counts[key]["tp"] += 1
                    matched.update(i for i, _, _ in chosen)
            for i, (_, _, pt) in enumerate(p):
                key = pt if typed else "ANY_PII"
                counts[key]["pred"] += 1
                counts[key]["credited"] += i in matched


def _combined_iou(gold: tuple[int, int], preds: list[tuple[int, int]]) -> float:
    covered: set[int] = set()
    for s, e in preds:
        covered.update(range(s, e))
    g = set(range(*gold))
    union = len(covered | g)
    return len(covered & g) / union if union else 0.0


def _prf(credited: int, pred: int, tp: int, gold: int, beta: float = 2.0) -> tuple[float, float, float]:
    p = credited / pred if pred else 0.0
    r = tp / gold if gold else 0.0
    b2 = beta * beta
    f = (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0
    return p, r, f


def _f(tp: int, fp: int, fn: int, beta: float = 2.0) -> tuple[float, float, float]:
    return _prf(tp, tp + fp, tp, tp + fn, beta)


def _show_errors(etype: str, text: str, gold: list[Triple], pred: list[Triple]) -> None:
    g = [(s, e) for s, e, t in gold if t == etype]
    p = [(s, e) for s, e, t in pred if t == etype]
    miss = [x for x in g if not any(_iou(x, y) >= IOU_THRESHOLD for y in p)]
    fa = [y for y in p if not any(_iou(x, y) >= IOU_THRESHOLD for x in g)]
    if miss or fa:
        others = [(text[s:e], t) for s, e, t in pred if (s, e) not in p]
        print(
            f"{text!r}\n   miss={[text[s:e] for s, e in miss]} "
            f"false={[text[s:e] for s, e in fa]} other={others}"
        )


def _rows(counts: Counts) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(label, (credited, predicted, tp, gold)) per type, then all / supported / ANY_PII."""
    rows = []
    total = [0, 0, 0, 0]
    supported = [0, 0, 0, 0]
    for etype in sorted(k for k in counts if k != "ANY_PII"):
        c = counts[etype]
        vals = (c["credited"], c["pred"], c["tp"], c["gold"])
        note = " (no recogniser)" if etype in UNSUPPORTED else ""
        rows.append((etype + note, vals))
        for i, v in enumerate(vals):
            total[i] += v
            if etype not in UNSUPPORTED:
                supported[i] += v
    a = counts["ANY_PII"]
    rows.append(("**all types**", (total[0], total[1], total[2], total[3])))
    if UNSUPPORTED:
        rows.append(("**supported types**", (supported[0], supported[1], supported[2], supported[3])))
    rows.append(("**ANY_PII**", (a["credited"], a["pred"], a["tp"], a["gold"])))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--ner", choices=["off", "auto", "required"], default="off")
    ap.add_argument("--threshold", type=float, default=0.4, help="the plugin's default_threshold")
    ap.add_argument(
        "--detect",
        choices=["all", "default"],
        default="all",
        help="all: every type (comparable with the numbers before #22); default: the plugin's "
        "default entity set, scored on the gold spans of those types only",
    )
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="score every Nth record (a quick subset)")
    ap.add_argument("--split", choices=["test", "dev", "all"], default="test", help="by template_id parity")
    ap.add_argument(
        "--method",
        choices=["presidio", "strict"],
        default="presidio",
        help="presidio: presidio-research span method (default); strict: the pre-#6 raw-span method",
    )
    ap.add_argument("--errors", metavar="TYPE", help="print misses and false alarms of TYPE (dev split only)")
    args = ap.parse_args()
    if not args.dataset.exists():
        print(
            f"dataset not found: {args.dataset}\n"
            "expected the Presidio synthetic dataset (presidio_synth_dataset_v2.json) from presidio-research",
            file=sys.stderr,
        )
        return 2

    from plugins.pii import PiiConfig, PiiPlugin
    from proxy.chain import Deps
    from proxy.chain.plugin import Resources

    t0 = time.perf_counter()
    plugin = PiiPlugin(
        PiiConfig(ner=args.ner, default_threshold=args.threshold, detect=args.detect),
        Deps(Resources(), cpu_workers=1),
    )
    from proxy.detectors.pii import DEFAULT_ENTITIES

    gold_map, pred_map = (TYPE_MAP, PRED_MAP) if args.detect == "all" else (DEFAULT_TYPE_MAP, {})
    in_scope = (lambda t: True) if args.detect == "all" else (lambda t: t in DEFAULT_ENTITIES)
    build = time.perf_counter() - t0
    records = json.loads(args.dataset.read_text())
    if args.errors:
        args.split = "dev"  # error analysis is tuning: never look at the test half
    if args.split != "all":
        parity = 0 if args.split == "dev" else 1
        records = [r for r in records if r["template_id"] % 2 == parity]
    records = records[:: args.every]
    if args.limit:
        records = records[: args.limit]
    scorer = SpanScorer()
    strict: Counts = defaultdict(lambda: {"credited": 0, "pred": 0, "tp": 0, "gold": 0})
    merged: Counts = defaultdict(lambda: {"credited": 0, "pred": 0, "tp": 0, "gold": 0})
    chars = covered = n_gold = 0
    detect = 0.0
    plugin._spans("warm up", False)
    for rec in records:
        text = rec["full_text"]
        chars += len(text)
        gold = [
            (s["start_position"], s["end_position"], gold_map.get(s["entity_type"], s["entity_type"]))
            for s in rec["spans"]
        ]
        gold = [g for g in gold if in_scope(g[2])]
        n_gold += len(gold)
        t0 = time.perf_counter()
        pred = [
            (s.start, s.end, pred_map.get(s.entity_type, s.entity_type)) for s in plugin._spans(text, False)
        ]
        detect += time.perf_counter() - t0
        if args.errors:
            if args.method == "presidio":
                tokens = [(t.idx, t.idx + len(t.text), t.text.lower().strip()) for t in scorer._tok(text)]
                _show_errors(args.errors, text, scorer.spans(tokens, gold), scorer.spans(tokens, pred))
            else:
                _show_errors(args.errors, text, gold, pred)
        covered += sum(any(ps <= gs and ge <= pe for ps, pe, _ in pred) for gs, ge, _ in gold)
        for typed in (True, False):
            for etype, kind in _match_strict(gold, pred, typed):
                c = strict[etype]
                c["gold"] += kind != "fp"
                c["pred"] += kind != "fn"
                c["tp"] += kind == "tp"
                c["credited"] += kind == "tp"
        scorer.score(text, gold, pred, merged)
    engine = plugin.engine
    print(
        f"engine: ner={args.ner} model={engine.ner_model or '-'} detect={args.detect} "
        f"threshold={args.threshold} split={args.split} method={args.method} iou>={IOU_THRESHOLD}"
    )
    per_2kb = detect * 1000 / (chars / 2048)
    print(f"records: {len(records)}  build: {build:.1f}s  detection: {per_2kb:.1f} ms / 2 KB")
    print()
    print("| entity | gold | pred | precision | recall | F2 |")
    print("|---|---:|---:|---:|---:|---:|")
    chosen, other = (merged, strict) if args.method == "presidio" else (strict, merged)
    for label, (credited, pred_n, tp, gold_n) in _rows(chosen):
        p, r, f = _prf(credited, pred_n, tp, gold_n)
        print(f"| {label} | {gold_n} | {pred_n} | {p:.3f} | {r:.3f} | {f:.3f} |")
    print()
    other_name = "strict" if args.method == "presidio" else "presidio"
    summary = []
    for label, (credited, pred_n, tp, gold_n) in _rows(other):
        if label.startswith("**"):
            p, r, f = _prf(credited, pred_n, tp, gold_n)
            summary.append(f"{label.strip('*')} P {p:.3f} R {r:.3f} F2 {f:.3f}")
    print(f"{other_name} method: " + "; ".join(summary))
    print(
        f"redaction coverage: {covered}/{n_gold} gold spans ({covered / max(1, n_gold):.3f}) "
        "lie wholly inside a predicted span of any type "
        "(a multi-line address found as one span covers its gold pieces)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
