#!/usr/bin/env python
"""Span-level precision / recall / F2 of the ``pii`` plugin's detection on the Presidio synthetic set.

    python scripts/eval_pii.py [--ner off|auto|required] [--split test|dev|all] [--errors TYPE]

The dataset (``../shared/datasets/pii/presidio_synth_dataset_v2.json`` relative to the repo root)
is a list of records ``{full_text, spans: [{entity_type, start_position, end_position}], template_id}``.
Detection is exactly what the plugin does: the engine, per-type threshold, overlap resolution
and merging.

Split: the recognisers in ``proxy/detectors/pii/tuned.py`` were tuned on this dataset, so it is
split by *template* (the 209 sentence templates its records are generated from): templates with
an even ``template_id`` are the dev half (tuning, ``--errors``), odd ones the test half (the
numbers reported in docs/pii.md, ``--split test``, the default). A split by record would leak:
the same sentence template, with other names filled in, would sit on both sides.

Matching: a predicted span is a true positive when it has the same (mapped) type as a gold span
and their intersection-over-union is >= 0.5; each gold span is matched at most once. The
``ANY_PII`` row ignores types (what matters for redaction: a US phone number recognised as
``UK_NHS`` is still removed). Dataset types the plugin deliberately does not detect (TITLE,
ZIP_CODE) count as misses in the overall row; ``supported`` excludes them. ``coverage`` counts
gold spans lying wholly inside any predicted span (redacted, even where the span-level match
fails because the dataset labels an address piece by piece).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATASET = ROOT / ".." / "shared" / "datasets" / "pii" / "presidio_synth_dataset_v2.json"
TYPE_MAP = {"STREET_ADDRESS": "LOCATION", "GPE": "LOCATION", "DOMAIN_NAME": "URL"}
UNSUPPORTED = {"TITLE", "ZIP_CODE"}


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


def _match(gold: list[tuple[int, int, str]], pred: list[tuple[int, int, str]], typed: bool) -> list[Any]:
    """(type, tp, fp, fn) events per span."""
    used: set[int] = set()
    events: list[tuple[str, str]] = []
    for ps, pe, pt in pred:
        best = -1
        for i, (gs, ge, gt) in enumerate(gold):
            if i not in used and (not typed or gt == pt) and _iou((ps, pe), (gs, ge)) >= 0.5:
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


def _f(tp: int, fp: int, fn: int, beta: float = 2.0) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    f = (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0
    return p, r, f


def _show_errors(etype: str, text: str, gold: list[Any], pred: list[Any]) -> None:
    g = [(s, e) for s, e, t in gold if t == etype]
    p = [(s, e) for s, e, t in pred if t == etype]
    miss = [x for x in g if not any(_iou(x, y) >= 0.5 for y in p)]
    fa = [y for y in p if not any(_iou(x, y) >= 0.5 for x in g)]
    if miss or fa:
        others = [(text[s:e], t) for s, e, t in pred if (s, e) not in p]
        print(
            f"{text!r}\n   miss={[text[s:e] for s, e in miss]} "
            f"false={[text[s:e] for s, e in fa]} other={others}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--ner", choices=["off", "auto", "required"], default="off")
    ap.add_argument("--threshold", type=float, default=0.4, help="the plugin's default_threshold")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--split", choices=["test", "dev", "all"], default="test", help="by template_id parity")
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
        PiiConfig(ner=args.ner, default_threshold=args.threshold), Deps(Resources(), cpu_workers=1)
    )
    build = time.perf_counter() - t0
    records = json.loads(args.dataset.read_text())
    if args.errors:
        args.split = "dev"  # error analysis is tuning: never look at the test half
    if args.split != "all":
        parity = 0 if args.split == "dev" else 1
        records = [r for r in records if r["template_id"] % 2 == parity]
    if args.limit:
        records = records[: args.limit]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    chars = covered = 0
    plugin._spans("warm up", False)
    t0 = time.perf_counter()
    for rec in records:
        text = rec["full_text"]
        chars += len(text)
        gold = [
            (s["start_position"], s["end_position"], TYPE_MAP.get(s["entity_type"], s["entity_type"]))
            for s in rec["spans"]
        ]
        pred = [(s.start, s.end, s.entity_type) for s in plugin._spans(text, False)]
        if args.errors:
            _show_errors(args.errors, text, gold, pred)
        covered += sum(any(ps <= gs and ge <= pe for ps, pe, _ in pred) for gs, ge, _ in gold)
        for typed in (True, False):
            for etype, kind in _match(gold, pred, typed):
                counts[etype][kind] += 1
    elapsed = time.perf_counter() - t0
    engine = plugin.engine
    print(
        f"engine: ner={args.ner} model={engine.ner_model or '-'} "
        f"threshold={args.threshold} split={args.split}"
    )
    per_2kb = elapsed * 1000 / (chars / 2048)
    print(f"records: {len(records)}  build: {build:.1f}s  analysis: {per_2kb:.1f} ms / 2 KB")
    print()
    print("| entity | gold | pred | precision | recall | F2 |")
    print("|---|---:|---:|---:|---:|---:|")
    total = {"tp": 0, "fp": 0, "fn": 0}
    supported = {"tp": 0, "fp": 0, "fn": 0}
    for etype in sorted(k for k in counts if k != "ANY_PII"):
        c = counts[etype]
        p, r, f = _f(c["tp"], c["fp"], c["fn"])
        note = " (no recogniser)" if etype in UNSUPPORTED else ""
        print(f"| {etype}{note} | {c['tp'] + c['fn']} | {c['tp'] + c['fp']} | {p:.3f} | {r:.3f} | {f:.3f} |")
        for k in total:
            total[k] += c[k]
            if etype not in UNSUPPORTED:
                supported[k] += c[k]
    rows = (("**all types**", total), ("**supported types**", supported), ("**ANY_PII**", counts["ANY_PII"]))
    for label, c in rows:
        p, r, f = _f(c["tp"], c["fp"], c["fn"])
        print(f"| {label} | {c['tp'] + c['fn']} | {c['tp'] + c['fp']} | {p:.3f} | {r:.3f} | {f:.3f} |")
    n_gold = sum(len(r["spans"]) for r in records)
    print()
    print(
        f"redaction coverage: {covered}/{n_gold} gold spans ({covered / max(1, n_gold):.3f}) "
        "lie wholly inside a predicted span of any type "
        "(a multi-line address found as one span covers its gold pieces)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
