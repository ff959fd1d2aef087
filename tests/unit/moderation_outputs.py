"""Digests of everything the moderation detector outputs, per text source (issue 17's "identical").

Why digests: the moderation speed-ups (compiled leet folding, shared token sets, ...) must not change
a single score, rule hit, intent flag or decision. The outputs of the code before them were hashed
per source and committed (``moderation_digests.json``, no data); ``test_moderation_output_digest.py``
recomputes them with the current code. A mismatch names the source and the layer (rules,
classifier, intent, detector), so a deliberate change of one layer (new rules, a retrained model)
shows where it lands; regenerate with ``python -m tests.unit.moderation_outputs --write`` only for
such a deliberate change, never to make a speed-up pass.

Sources: the shared moderation sets (the first ``CAP`` texts of each), the injection set's benign
passages, the packaged hard-benign prompts, the benchmark's support tickets (2 KB to 70 KB: windows,
the intent cut at 8 KB, truncation at 64 KB), the same texts echoed after an upstream's reply prefix,
and seeded "obfuscated" variants (leetspeak digits and symbols, ``!``/``|`` inside words, stretched
letters, curly quotes, mixed case) that exercise every branch of the canonicaliser.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import sys
from collections.abc import Iterator
from importlib import resources, util
from pathlib import Path

from proxy.detectors.moderation import ModerationDetector, RuleScanner
from proxy.detectors.moderation.classifier import ModerationClassifier
from proxy.detectors.moderation.intent import intent_phrase, literal
from tests.datasets import MODERATION_FILES, shared_datasets

DIGESTS = Path(__file__).with_name("moderation_digests.json")
CAP = 3000  # texts per source: enough for every branch, a few seconds per source
ECHO = "Hello from the demo upstream. You said: "
FILES = MODERATION_FILES
_LEET = {"a": "4@", "e": "3", "i": "1!|", "l": "1|", "o": "0", "s": "5$", "t": "7", "g": "9", "b": "8"}


def _ticket(size: int) -> str:
    """The benchmark's support ticket (``benchmarks/payload.py``; benchmarks/ is not a package)."""
    spec = util.spec_from_file_location("_payload", Path(__file__).parents[2] / "benchmarks" / "payload.py")
    assert spec is not None and spec.loader is not None
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.ticket(size))


def _read(path: Path) -> Iterator[str]:
    if path.name.endswith(".csv"):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield row["tweet"]
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            yield str(rec.get("text") or rec.get("prompt") or "")


def _obfuscate(text: str, rng: random.Random) -> str:
    """A seeded, deterministic obfuscation of ``text``: what evasive users type."""
    out: list[str] = []
    for ch in text:
        r = rng.random()
        low = ch.lower()
        if low in _LEET and r < 0.25:
            out.append(rng.choice(_LEET[low]))
        elif ch.isalpha() and r < 0.30:
            out.append(ch * rng.randint(2, 5))  # stretched letters
        elif ch == "'" and r < 0.6:
            out.append(rng.choice("\u2019\u2018\u02bc`"))
        elif ch.isalpha() and r < 0.35:
            out.append(ch.swapcase())
        else:
            out.append(ch)
    return "".join(out)


def sources(root: Path | None = None) -> dict[str, list[str]]:
    """Every source's texts, in a fixed order (the digests depend on it)."""
    base = root or shared_datasets("moderation")
    out: dict[str, list[str]] = {}
    for name in FILES:
        texts = [t for t in _read(base / name) if t][:CAP]
        out[name] = texts
    passages = base.parent / "injection" / "benign_passage_tasks_adversarialqa.jsonl.gz"
    out["injection_benign_passages"] = [t for t in _read(passages) if t][:1000]
    lines = resources.files("proxy.detectors.moderation").joinpath("benign_hard.txt").read_text("utf-8")
    out["benign_hard"] = [ln for ln in lines.splitlines() if ln.strip() and not ln.startswith("#")]
    out["tickets"] = [_ticket(n) for n in (300, 2048, 5000, 9000, 16384, 70000)]
    echoed = ("davidson_labeled_data.csv", "coconot.jsonl")
    out["echo"] = [ECHO + t for name in echoed for t in out[name][:500]]
    out["echo"] += [ECHO + t for t in out["tickets"]]
    rng = random.Random(17)
    mixed = out["davidson_labeled_data.csv"][:800] + out["red_instruct_harmful_questions.jsonl.gz"][:800]
    mixed += out["simplesafetytests.jsonl"] + out["benign_hard"]
    out["obfuscated"] = [_obfuscate(t, rng) for t in mixed]
    joined = " ".join(out["obfuscated"])
    out["obfuscated_long"] = [joined[i : i + 6000] for i in range(0, 60000, 6000)]
    return out


def layer_lines(texts: list[str], detector: ModerationDetector) -> dict[str, list[str]]:
    """One line per text and layer: every field of the outputs, floats by ``repr`` (exact)."""
    scanner = RuleScanner.default()
    classifier = ModerationClassifier.default()
    lines: dict[str, list[str]] = {"rules": [], "classifier": [], "intent": [], "detector": []}
    for text in texts:
        rules = scanner.scan(text)
        lines["rules"].append(
            repr((dict(rules.scores), rules.hits, rules.allowed, rules.canonical, rules.classifier_text))
        )
        lines["classifier"].append(repr(classifier.score_list(rules.classifier_text)))
        lines["intent"].append(repr((literal(text), intent_phrase(text))))
        r = detector.scan(text)
        lines["detector"].append(
            repr(
                (
                    dict(r.rule_scores),
                    dict(r.classifier_scores),
                    dict(r.combined_scores),
                    r.flagged_categories,
                    r.rule_hits,
                    r.allowed_rules,
                    r.truncated,
                )
            )
        )
    return lines


def digests(texts: list[str], detector: ModerationDetector) -> dict[str, str | int]:
    out: dict[str, str | int] = {"count": len(texts)}
    for layer, lines in layer_lines(texts, detector).items():
        out[layer] = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()
    return out


def main() -> int:
    if sys.argv[1:] != ["--write"]:
        print("usage: python -m tests.unit.moderation_outputs --write   (regenerates the digests)")
        return 2
    detector = ModerationDetector()
    result = {name: digests(texts, detector) for name, texts in sources().items()}
    DIGESTS.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS} ({len(result)} sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
