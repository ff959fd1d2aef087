"""Work the injection and moderation detectors share within one request.

Why: both plugins usually scan the same user message, and both start the same way: fold Unicode
tricks (the injection normaliser; moderation runs it without decoding, which yields the same folded
text) and hash the lower-cased text's n-grams for their classifiers (the same hashing, cut to
different bucket counts). A ``ScanCache`` kept in the request's state under ``SCAN_CACHE`` lets the
second plugin reuse what the first computed: for a 2 KB prompt that is most of the moderation
classifier's cost.

It lives for one request only (a process-wide cache would make repeated prompts look free in
benchmarks and keep user text in memory). It is not locked: a request's plugin steps run one after
the other, and a text scored in the CPU pool is awaited before the next step runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from proxy.chain.context import RequestContext, StateKey

if TYPE_CHECKING:
    from proxy.detectors.injection.features import HashedText

K = TypeVar("K")
V = TypeVar("V")

_MAX_ENTRIES = 32  # per map: bounds the memory a request with very many messages can pin
_MAX_CHARS = 65_536  # longer texts are not kept (the detectors only scan head and tail of them anyway)


class _Memo(dict[K, V]):
    """A dict that stops growing at ``_MAX_ENTRIES`` and skips over-long texts: a memo, not a store."""

    def __setitem__(self, key: K, value: V) -> None:
        text = key[0] if isinstance(key, tuple) else key
        if len(self) < _MAX_ENTRIES and isinstance(text, str) and len(text) <= _MAX_CHARS:
            super().__setitem__(key, value)

    def setdefault(self, key: K, default: V) -> V:  # dict's own would skip the bound in __setitem__
        if key in self:
            return self[key]
        self[key] = default
        return default


class ScanCache:
    """Per-request memo: folded (normalised) text per original text, n-gram hashes per prepared text."""

    __slots__ = ("folded", "hashes")

    def __init__(self) -> None:
        self.folded: _Memo[str, str] = _Memo()
        self.hashes: _Memo[tuple[str, tuple[int, ...], tuple[int, ...]], HashedText] = _Memo()


SCAN_CACHE: StateKey[ScanCache] = StateKey("detectors.scan_cache")


def scan_cache(ctx: RequestContext) -> ScanCache:
    """This request's cache, created by whichever detector plugin runs first."""
    cache = ctx.get(SCAN_CACHE)
    if cache is None:
        cache = ScanCache()
        ctx.set(SCAN_CACHE, cache)
    return cache
