"""The PII pattern engine's full output on a fixed corpus, as one SHA-256 per source.

``tests/unit/data/pii_digests.json`` holds the digests the engine produced *before* the #17 work
(presidio imported, no plan, no exact triggers, ...), computed by running this module against
that commit: ``python -m tests.unit.pii_corpus --record``. ``test_pii_output_digest.py`` compares
today's output with them, so any change to a span, type, score (exact ``repr``) or their order
on any of these texts fails. ``python -m tests.unit.pii_corpus --dump SOURCE`` prints the output
text by text, for diffing against a checkout of the base commit.

Uses only the engine API that existed before (``PiiEngine(ner).prepare(...)``, ``analyze``), so
the same file runs on both sides.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGESTS = Path(__file__).resolve().parent / "data" / "pii_digests.json"
#: (entities, min_score): the plugin's default scan (default entities, 0.4) and everything at 0.0
SETTINGS = ("default@0.4", "all@0.0")

_FRAGMENTS = [
    "call", "phone", "card", "ssn", "iban", "passport", "license", "email", "my name is", "Dr.",
    "Mr", "Anna-Lena", "Maria", "Street", "Road", "P.O. Box", "Apt", "suite", "2024-03-18",
    "12/31/2023", "03.04.2021", "4111 1111 1111 1111", "5500-0000-0000-0004", "DE89370400440532013000",
    "GB29 NWBK 6016 1331 9268 19", "219-09-9999", "078-05-1120", "943 476 5919", "192.168.1.1",
    "::1", "fe80::1%eth0", "00:1A:2B:3C:4D:5E", "123e4567-e89b-12d3-a456-426614174000",
    "ann@example.com", "b.c@x.co.uk", "https://example.org/a?b=1", "+1 415 555 0100", "(212) 555-0103",
    "0680 298 70 63", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "A1234567", "AB1234563", "sk-abc123def456ghi789",
    "10115 Berlin", "1600 Amphitheatre Parkway", "12 Main Street", "Paris", "Germany", "German",
    "version 10.0.0.1", "ext. 42", "x", "9", "-", ".", ",", "\n", " ", "  ", "é", "\u2019", "<PERSON_1>",
]  # fmt: skip


def generated(n: int = 400, seed: int = 17) -> list[str]:
    """Seeded texts dense with what the rules look for (fixed: the same list on every run)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def _sources() -> dict[str, Callable[[], list[str]]]:
    def dataset() -> list[str]:
        from tests.datasets import shared_datasets

        path = shared_datasets("pii", "presidio_synth_dataset_v2.json")
        return [row["full_text"] for row in json.loads(path.read_text())]

    def tickets() -> list[str]:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import payload
        from pii_micro import PII_DENSE_2K

        system = json.loads(payload.ticket_body(300))["messages"][0]["content"]
        return [system, PII_DENSE_2K, *(payload.ticket(n) for n in (300, 2048, 16384, 65536))]

    return {"dataset": dataset, "tickets": tickets, "generated": generated}


SOURCES = tuple(_sources())


def outputs(source: str) -> Iterator[str]:
    """One JSON line per (setting, text): the spans ``analyze`` returns, scores by ``repr``."""
    from proxy.detectors.pii import PiiEngine
    from proxy.detectors.pii.defaults import DEFAULT_ENTITIES

    engine = PiiEngine("off")
    default = sorted(frozenset(DEFAULT_ENTITIES) & engine.entities)
    settings: dict[str, tuple[list[str] | None, float]] = {
        "default@0.4": (default, 0.4),
        "all@0.0": (None, 0.0),
    }
    texts = _sources()[source]()
    for name in SETTINGS:
        entities, min_score = settings[name]
        engine.prepare(entities)
        for text in texts:
            spans = engine.analyze(text, entities, min_score)
            yield json.dumps([name, [[s.start, s.end, s.entity_type, repr(s.score)] for s in spans]])


def digest(source: str) -> str:
    h = hashlib.sha256()
    for line in outputs(source):
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {DIGESTS.name} from this checkout")
    parser.add_argument("--dump", choices=SOURCES, help="print one source's output, line by line")
    args = parser.parse_args()
    if args.dump:
        for line in outputs(args.dump):
            print(line)
        return 0
    found = {source: digest(source) for source in SOURCES}
    if args.record:
        DIGESTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
