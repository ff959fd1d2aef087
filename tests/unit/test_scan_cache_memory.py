"""The request's scan cache keeps a bounded amount of n-gram hashes (issue 17: RSS).

Why: the cache lives as long as its request, upstream call included, and n-gram hashes cost ~43
bytes per character. Unbounded, a 64 KB prompt pinned ~5.6 MB and 16 such requests in flight
grew the guarded sidecar by ~75 MB. These tests prove the bound holds, that what the two
classifiers really share (a text within one window) is still shared, and that scores are the
same whether or not the cache kept an entry.
"""

from __future__ import annotations

import pytest

from proxy.detectors import shared
from proxy.detectors.injection.detector import InjectionDetector
from proxy.detectors.moderation.detector import ModerationDetector
from proxy.detectors.shared import ScanCache

PROSE = (
    "Our greenhouse needs new panels before the frost; which seedlings grow well in a cold spring, "
    "and how far apart should the rows be? The soil is clay and the beds face south-east. "
)


def _hashed_chars(cache: ScanCache) -> int:
    return sum(len(key[0]) for key in cache.hashes)


def test_a_long_prompt_leaves_at_most_the_budget_of_hashes() -> None:
    text = PROSE * 400  # ~70 K characters: the injection classifier hashes it whole, moderation per window
    cache = ScanCache()
    InjectionDetector().scan(text, cache)
    ModerationDetector().scan(text, cache)
    assert 0 < _hashed_chars(cache) <= shared._MAX_HASHED_CHARS
    pinned = sum(h.buckets.nbytes + h.word_starts.nbytes + h.word_ends.nbytes for h in cache.hashes.values())
    assert pinned < 1_000_000  # unbounded this was ~5.6 MB for 64 KB


def test_scores_do_not_depend_on_what_the_cache_kept() -> None:
    text = PROSE * 120  # longer than the budget: some windows are kept, later ones are not
    cache = ScanCache()
    injection, moderation = InjectionDetector(), ModerationDetector()
    with_cache = (injection.scan(text, cache).to_dict(), moderation.scan(text, cache).to_dict())
    assert with_cache == (injection.scan(text).to_dict(), moderation.scan(text).to_dict())
    assert 0 < _hashed_chars(cache) <= shared._MAX_HASHED_CHARS


def test_a_short_prompt_is_still_hashed_once_for_both_classifiers() -> None:
    cache = ScanCache()
    InjectionDetector().scan(PROSE, cache)
    kept = dict(cache.hashes)
    assert kept
    ModerationDetector().scan(PROSE, cache)
    assert cache.hashes == kept  # moderation found the injection detector's hashes: no new entry


@pytest.mark.parametrize("budget", [0, 10, 100])
def test_the_memo_counts_characters_across_entries(budget: int) -> None:
    memo: shared._Memo[tuple[str, int], int] = shared._Memo(budget)
    for i in range(20):
        memo[("x" * 9, i)] = i
    assert sum(len(key[0]) for key in memo) <= budget
    assert len(memo) == budget // 9
    left = memo.chars_left
    memo[("x" * 9, 0)] = 99  # setting a kept key again neither changes it nor spends budget
    assert memo.get(("x" * 9, 0)) == (0 if budget >= 9 else None)
    assert memo.chars_left == left
    assert memo.setdefault(("y", 1), 5) == 5  # the default is returned even when it is not kept
