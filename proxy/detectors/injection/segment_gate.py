"""The indirect path's cue gate for many segments in one Hyperscan pass.

Why: ``IndirectDetector.scan`` asks the cue gate (``indirect._feature_gate``) which cue patterns
can match each candidate segment and the segment before it: ~8 passes per 2 KB support ticket,
each ~2.5 µs of which the scan itself is a small part (encoding, the callback closure, the
result sets). Here the segments asked about are joined with ``"\\n"`` and scanned once with the
end offset of every match recorded; each end then names the segment it falls in.

Exact as a gate (a superset of the cues that can match each segment): a segment holds no
line break (``segments`` cuts at every one), and every cue pattern is compiled with
``re.MULTILINE`` and no look-around, so a match of a pattern in a segment alone is also a match
at the same place in the joined text: ``^`` and ``$`` hold at a segment's ends (a line break or
the text's end is next to them), ``\\b`` sees a non-word character there as it sees the string
edge, and the characters matched are the same. Hyperscan reports every end of every match, so
that end is reported and names the segment. Matches that run across a line break only add
cues to check (each reported cue is still confirmed by ``re`` in ``featurise``). Texts the gate
cannot take (non-ASCII, control characters), a gate without recorded ends, and patterns that
break the argument (``joinable``) fall back to one pass per segment, as before
(tests/unit/test_injection_segment_gate.py compares both).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from proxy.detectors import multiscan

_LOOK_AROUND = ("(?=", "(?!", "(?<", "\\A", "\\Z", "\\z")


class _Matching(Protocol):
    def matching(self, text: str) -> AbstractSet[Hashable] | None: ...


def joinable(patterns: Iterable[re.Pattern[str]]) -> bool:
    """Do the module docstring's conditions hold for every pattern (multi-line, no look-around)?"""
    return all(
        p.flags & re.MULTILINE and not any(token in p.pattern for token in _LOOK_AROUND) for p in patterns
    )


def gate_segments(
    gate: _Matching | Any, texts: Sequence[str], *, joined_ok: bool
) -> list[AbstractSet[Hashable] | None]:
    """Per text (a segment, without line breaks): the keys of the patterns that may match it
    (None: not gated, check every pattern). One pass over all of them when ``gate`` is a
    ``multiscan.Gate`` recording the ends of its patterns and ``joined_ok`` (``joinable``)."""
    if joined_ok and len(texts) > 1 and isinstance(gate, multiscan.Gate) and gate.ends_of == gate.keys:
        found = gate.scan("\n".join(texts))
        if found is not None:
            starts: list[int] = []
            at = 0
            for text in texts:
                starts.append(at)
                at += len(text) + 1
            out: list[set[Hashable]] = [set() for _ in texts]
            for key, ends in found.ends.items():
                for end in ends:
                    k = bisect_right(starts, end) - 1
                    if end <= starts[k] + len(texts[k]):
                        out[k].add(key)
            return list(out)
    return [gate.matching(text) for text in texts]
