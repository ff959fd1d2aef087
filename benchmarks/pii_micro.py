#!/usr/bin/env python
"""Micro benchmark of the ``pii`` detection engine: what analysing a 2 KB prompt costs.

    python benchmarks/pii_micro.py [--repeat 200] [--ner-repeat 30] [--profile off|ner]

Times ``PiiPlugin._detect`` (engine analysis + thresholds + overlap resolution: exactly the work
the plugin hands to the CPU pool per request) on two 2 KB texts: ``payload.PROSE_2K`` (ordinary
prose, no PII: the common case) and a PII-dense 2 KB text (emails, phones, cards, IBANs, names,
addresses). Engines: patterns only (``ner: off``) and with the spaCy NER model when installed.

The baseline is measured in the same run on the same machine: ``orjson.loads`` of the 2 KB chat
request body (the least work any request does). The ratio column makes numbers from a busy
shared machine comparable across runs; the absolute µs are an upper bound on such a machine.
``--profile`` prints the top of a cProfile of one engine (where the time goes).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.payload import PROSE_2K, chat_body  # noqa: E402

#: ~2 KB of text in which almost every sentence holds personal data (the worst common case).
PII_DENSE_2K = (
    "Hi, this is Maria Gonzalez from Acme Logistics. Please send the contract to "
    "maria.gonzalez@acme-logistics.com and copy my colleague John Smith (john.smith@example.org). "
    "You can reach me on +1 212-555-0142 or at "
    "(415) 555-0199 after 5 pm. Our office moved to 1600 Amphitheatre Parkway, Mountain View, CA 94043 last "
    "March. The invoice should be paid to IBAN DE89370400440532013000, or charge the corporate card "
    "4111 1111 1111 1111 (expires 04/28). For the background check, my SSN is 078-05-1120 and my date of "
    "birth is 1984-07-12. The server that failed was 192.168.10.24 and the dashboard is "
    "https://status.acme-logistics.com/. "
    "Our German partner, Klaus Müller, lives at Hauptstraße 12, 10115 Berlin, Germany; call him on "
    "+49 30 901820. "
    "Peter Jensen from Nordic Freight AS asked about shipment 55-2231 to Oslo, Norway. He wrote from "
    "peter.jensen@nordicfreight.no on Monday and again on 2024-03-18 09:15. The bank details he sent are "
    "GB29NWBK60161331926819 and his card ends 5500 0000 0000 0004. Ask Sarah O'Connor in Dublin "
    "(sarah.oconnor@example.ie, 087 123 4567) whether the Dublin warehouse at 14 Fitzwilliam Square can "
    "take the pallets. "
)


def _time(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def _pad(text: str) -> str:
    """Exactly 2048 characters (repeat, then cut at a word)."""
    while len(text) < 2048:
        text += " " + text
    return text[:2048].rsplit(" ", 1)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per pattern-engine row")
    ap.add_argument("--ner-repeat", type=int, default=30, help="timed calls per NER row")
    ap.add_argument("--profile", choices=["none", "off", "ner"], default="none")
    args = ap.parse_args()

    import orjson

    from plugins.pii import PiiConfig, PiiPlugin
    from proxy.chain import Deps
    from proxy.chain.plugin import Resources
    from proxy.detectors.pii import ner_module

    body = chat_body(prose=True)
    texts = {"prose 2 KB": _pad(PROSE_2K), "PII-dense 2 KB": _pad(PII_DENSE_2K)}
    base = statistics.median(_time(lambda: orjson.loads(body), args.repeat * 5))
    engines = [("patterns only (ner: off)", "off", args.repeat)]
    if ner_module() is not None:
        engines.append((f"NER ({ner_module()})", "required", args.ner_repeat))
    rows = []
    plugins = {}
    for label, ner, repeat in engines:
        t0 = time.perf_counter()
        plugin = PiiPlugin(PiiConfig(ner=ner), Deps(Resources(), cpu_workers=1))
        build = time.perf_counter() - t0
        plugins[ner] = plugin
        for tname, text in texts.items():
            found = plugin._detect([text], True)[0]
            samples = _time(lambda p=plugin, t=text: p._detect([t], True), repeat)
            p50 = statistics.median(samples)
            p90 = sorted(samples)[int(len(samples) * 0.9) - 1]
            kb = len(text.encode()) / 1024
            rows.append(
                (label, tname, min(samples), p50, p90, p50 / 1000 / kb, p50 / base, len(found), build)
            )
    print(f"baseline: orjson.loads of the {len(body)} B prose chat request: {base:.1f} µs p50")
    print()
    print("| engine | text | µs min | µs p50 | µs p90 | ms per KB (p50) | p50 x baseline | spans | build s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, tname, low, p50, p90, per_kb, ratio, n, build in rows:
        print(
            f"| {label} | {tname} | {low:.0f} | {p50:.0f} | {p90:.0f} | {per_kb:.3f} | {ratio:.0f} | {n} "
            f"| {build:.1f} |"
        )
    print()
    for label, tname, _, p50, *_rest in rows:
        if label.startswith("patterns"):
            verdict = "PASS" if p50 < 2000 else "FAIL"
            print(f"{verdict}: default engine < 2 ms p50 for the {tname} text ({p50 / 1000:.2f} ms)")
    if args.profile != "none":
        key = "off" if args.profile == "off" else "required"
        plugin = plugins[key]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            for text in texts.values():
                plugin._detect([text], True)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
