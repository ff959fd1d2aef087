#!/usr/bin/env python
"""Span-level precision / recall / F2 of the ``pii`` plugin's detection on the Presidio synthetic set.

    python scripts/eval_pii.py [--dataset PATH] [--ner off|auto|required] [--threshold 0.4]

The dataset (``../shared/datasets/pii/presidio_synth_dataset_v2.json`` relative to the repo root)
is a list of records ``{full_text, spans: [{entity_type, start_position, end_position}], template_id}``.
Detection is exactly what the plugin does: presidio analysis, per-type threshold, overlap
resolution and merging. Nothing is tuned on this data (so no template split is needed).

Matching: a predicted span is a true positive when it has the same (mapped) type as a gold span
and their intersection-over-union is >= 0.5; each gold span is matched at most once. The
``ANY_PII`` row ignores types (what matters for redaction: a US phone number recognised as
``UK_NHS`` is still removed). Dataset types presidio has no recogniser for (TITLE, AGE,
ZIP_CODE) count as misses in the overall row; ``supported`` excludes them.
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
UNSUPPORTED = {"TITLE", "AGE", "ZIP_CODE"}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--ner", choices=["off", "auto", "required"], default="off")
    ap.add_argument("--threshold", type=float, default=0.4, help="the plugin's default_threshold")
    ap.add_argument("--limit", type=int, default=0)
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
    if args.limit:
        records = records[: args.limit]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    chars = 0
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
        for typed in (True, False):
            for etype, kind in _match(gold, pred, typed):
                counts[etype][kind] += 1
    elapsed = time.perf_counter() - t0
    engine = plugin.engine
    print(f"engine: ner={args.ner} model={engine.ner_model or '-'} threshold={args.threshold}")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
