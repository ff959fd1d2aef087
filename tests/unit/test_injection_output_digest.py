"""The injection detector's full output is unchanged on a broad sample (issue #17 speed-ups).

``data/injection_digests.json`` holds, per source, the SHA-256 of every result's canonical form
(scores by exact ``repr``, view names, verdicts, flags, decoded segments, rule matches, the
indirect path's evidence, and the folded text left in the request's scan cache), recorded with
``python -m tests.unit.injection_corpus --write`` at the commit before the speed-ups. A digest
that differs means some text now scores differently: ``--dump SOURCE`` in both checkouts and a
diff show which one.
"""

from __future__ import annotations

import json

import pytest

from proxy.detectors.injection.detector import InjectionDetector
from tests.datasets import dataset_or_skip
from tests.unit.injection_corpus import DIGESTS, all_sources, digest

RECORDED: dict[str, dict[str, object]] = json.loads(DIGESTS.read_text())


@pytest.fixture(scope="module")
def sources() -> dict[str, list[str]]:
    dataset_or_skip("injection")
    dataset_or_skip("moderation")
    return all_sources()


@pytest.fixture(scope="module")
def detector() -> InjectionDetector:
    return InjectionDetector()


def test_every_recorded_source_is_in_the_sample(sources: dict[str, list[str]]) -> None:
    assert sorted(sources) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_output_digest_matches_the_base_commit(
    name: str, sources: dict[str, list[str]], detector: InjectionDetector
) -> None:
    texts = sources[name]
    assert len(texts) == RECORDED[name]["texts"]
    assert digest(detector, texts) == RECORDED[name]["sha256"], f"{name}: detector output changed"
