"""Work the injection and moderation detectors share within one request.

Why: both plugins usually scan the same user message, and both start the same way: fold Unicode
tricks (the injection normaliser; moderation runs it without decoding, which yields the same folded
text) and hash the lower-cased text's n-grams for their classifiers (the same hashing, cut to
different bucket counts). A ``ScanCache`` kept in the request's state under ``SCAN_CACHE`` lets the
second plugin reuse what the first computed: for a 2 KB prompt that is most of the moderation
classifier's cost.

``InlineBudget`` is the other shared piece: how both plugins decide which texts to score on the
event loop and which in the CPU pool (see its docstring for the measurements behind the limit).

The cache lives for one request only (a process-wide cache would make repeated prompts look free in
benchmarks and keep user text in memory). It is not locked: a request's plugin steps run one after
the other, and a text scored in the CPU pool is awaited before the next step runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from proxy.chain.context import RequestContext, StateKey, deadline_exceeded, past

if TYPE_CHECKING:
    from proxy.detectors.injection.features import HashedText

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

_MAX_ENTRIES = 32  # per map: bounds the memory a request with very many messages can pin
_MAX_CHARS = 65_536  # longer texts are not kept (the detectors only scan head and tail of them anyway)
#: Characters of text (all entries together) whose n-gram hashes one request's cache keeps. Why:
#: hashes cost ~43 bytes per character (three char n-gram sizes and the word offsets, 8 bytes
#: each), and the cache lives as long as the request, upstream call included. Unbounded (32
#: entries of up to 64 K characters), a 64 KB prompt pinned ~5.6 MB for its whole life and 16 such
#: requests in flight grew the guarded sidecar's RSS by ~75 MB (``benchmarks/memory_guarded.py``).
#: What is worth keeping is small: the two classifiers only ever hash the same string for a text
#: that fits one window (4,096 characters); for longer texts injection hashes the whole text and
#: moderation its windows, so none of those entries is ever read again. 16 K characters (~0.7 MB)
#: keeps every text of an ordinary request and several full windows.
_MAX_HASHED_CHARS = 16_384


class _Memo(dict[K, V]):
    """A dict that stops growing at ``_MAX_ENTRIES`` entries or ``chars`` characters of keys in
    total, and skips over-long texts: a memo, not a store."""

    def __init__(self, chars: int = _MAX_ENTRIES * _MAX_CHARS) -> None:
        super().__init__()
        self.chars_left = chars

    def __setitem__(self, key: K, value: V) -> None:
        text = key[0] if isinstance(key, tuple) else key
        if (
            len(self) < _MAX_ENTRIES
            and isinstance(text, str)
            and len(text) <= min(_MAX_CHARS, self.chars_left)
            and key not in self
        ):
            self.chars_left -= len(text)
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
        self.hashes: _Memo[tuple[str, tuple[int, ...], tuple[int, ...]], HashedText]
        self.hashes = _Memo(_MAX_HASHED_CHARS)


#: Characters one hook may score on the event loop; texts past it go to the CPU pool. Measured with
#: ``python benchmarks/detectors_micro.py --offload`` on the 2-core benchmark machine: the hop to a
#: pool thread and back (executor queue, futex wake-up, GIL hand-over, loop callback) costs ~90 µs
#: of process CPU per call, while a scan costs ~0.1-0.15 ms per KB of prose: the hop adds about a
#: third to the CPU of a 2 KB scan, a fifth at 4 KB, a tenth at 8 KB. And it buys the loop little for
#: such scans: the detectors are mostly Python, so a pool thread holds the GIL for most of a scan
#: (up to the 5 ms switch interval) and the loop waits for it anyway. 4 KB of scanning stalls the
#: loop for ~0.4-0.5 ms per hook (the request hooks of an injection and a moderation step run in one
#: loop turn: ~1 ms), which is the bound kept here (the pii plugin inlines the same 4 KB); bigger
#: prompts, answers and stream windows, where scanning takes milliseconds, are scored in the pool,
#: and so is the rest of a request whose texts add up to more than this.
INLINE_CHARS = 4096


#: Texts one hook may score on the event loop, whatever their size. Each scan has a fixed cost
#: (measured with 2,048 one-character texts: ~20 µs injection, ~60 µs pii, ~85 µs moderation per
#: text), so a character budget alone let 2,048 tiny embeddings inputs stall the loop ~0.3 s.
INLINE_TEXTS = 32
#: One CPU-pool call scores up to this many texts / characters: one thread hop per batch instead
#: of per text, and the request deadline is checked between batches (and between texts inside).
BATCH_TEXTS = 128
BATCH_CHARS = 32_768


class InlineBudget:
    """What one hook may still score on the event loop: ``INLINE_CHARS`` characters, ``INLINE_TEXTS`` texts.

    Why a budget and not a per-text size check: a request with many small messages would otherwise
    be scored inline one after the other, stalling the loop for the sum of the scans.
    """

    __slots__ = ("left", "texts")

    def __init__(self, chars: int = INLINE_CHARS, texts: int = INLINE_TEXTS) -> None:
        self.left = chars
        self.texts = texts

    def take(self, text: str) -> bool:
        """True (and the budget shrinks) when ``text`` still fits: score it inline."""
        if self.texts > 0 and len(text) <= self.left:
            self.left -= len(text)
            self.texts -= 1
            return True
        return False


def scan_batch(
    scan: Callable[[str, ScanCache | None], R],
    texts: Sequence[str],
    cache: ScanCache | None,
    deadline: float | None,
) -> list[R]:
    """Score ``texts`` one after the other (in a pool thread), stopping at the request deadline."""
    out: list[R] = []
    for text in texts:
        if past(deadline):
            raise deadline_exceeded()
        out.append(scan(text, cache))
    return out


async def scan_all(
    texts: Sequence[str],
    scan: Callable[[str, ScanCache | None], R],
    run_cpu: Callable[..., Awaitable[Any]],
    ctx: RequestContext,
    cache: ScanCache | None,
    budget: InlineBudget,
    *,
    honour_deadline: bool = True,
) -> list[R]:
    """Scores of ``texts`` in order: inline while ``budget`` lasts, the rest in pool batches.

    Every text keeps its own scan (batching never joins texts: an attack split over two inputs
    is not a new attack, and scores must not depend on the neighbours). The request deadline
    (``ctx.deadline``) is checked before each batch and between texts in the pool thread, so a
    request with thousands of texts stops burning CPU once it can only be answered 504.
    ``honour_deadline=False`` for answers: the deadline covers getting the answer, not checking it.
    """
    deadline = ctx.deadline if honour_deadline else None
    results: list[R | None] = [None] * len(texts)
    pending: list[int] = []
    for i, text in enumerate(texts):
        if budget.take(text):
            results[i] = scan(text, cache)
        else:
            pending.append(i)
    start = 0
    while start < len(pending):
        if past(deadline):
            raise deadline_exceeded()
        end, chars = start, 0
        while end < len(pending) and end - start < BATCH_TEXTS:
            size = len(texts[pending[end]])
            if end > start and chars + size > BATCH_CHARS:
                break
            chars += size
            end += 1
        batch = pending[start:end]
        found = await run_cpu(scan_batch, scan, [texts[i] for i in batch], cache, deadline)
        for i, result in zip(batch, found, strict=True):
            results[i] = result
        start = end
    return cast("list[R]", results)


SCAN_CACHE: StateKey[ScanCache] = StateKey("detectors.scan_cache", shared=True)


def scan_cache(ctx: RequestContext) -> ScanCache:
    """This request's cache, created by whichever detector plugin runs first."""
    cache = ctx.get(SCAN_CACHE)
    if cache is None:
        cache = ScanCache()
        ctx.set(SCAN_CACHE, cache)
    return cache
