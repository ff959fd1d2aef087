"""Exact token counts of a text, cheaper than ``len(encoding.encode_ordinary(text))`` (issue 17).

Why: the budget step counts every prompt, and the full encode of a 2 KB ticket cost ~100 µs, most
of it tiktoken's pre-tokeniser regex. BPE is applied to each pre-token (piece) on its own, so a
text's count is the sum of its pieces' counts, and a piece's count depends only on its bytes. The
compiled ``_piece_counter`` splits a text exactly as tiktoken's regex does (a hand-written scanner
for cl100k_base and o200k_base over ASCII) and looks each piece up in a bounded cache that tiktoken
itself fills (``encode_single_piece``) on a miss: ~15-20 µs for the same ticket.

Where the scanner is not sure, tiktoken decides. It gives up a piece as soon as it reads a
non-ASCII character, and ``encode_ordinary`` counts from that piece's start to the next *certain*
boundary: just after a CR or LF, before an ASCII character other than whitespace and ``/``; or at
a space that follows an ASCII character other than whitespace. No alternative of either pattern
continues a piece across such a point: letter pieces never take CR/LF, not even as their
one-character prefix, and take a space only as that prefix (at their start); digit pieces hold
digits only; punctuation pieces start with at most one space and end in ``[\\r\\n]*`` or, for
o200k, ``[\\r\\n/]*``; whitespace pieces hold whitespace only. The patterns have no look-behind,
so the pieces from that point on depend only on the text from it; and the pieces before it are
the ones tiktoken finds in the cut text: the last of them ends at the cut in both texts (a
whitespace or punctuation run ending in the line break, or a letter, digit or punctuation run
that stops at the space or at the end alike), and no earlier piece looks past it (contractions
look at most two characters ahead, and neither a space nor the end completes one).

When most pieces miss the cache (new vocabulary, or a client sending random strings), the rest of
the text goes to ``encode_ordinary`` in one call, so the worst case stays close to tiktoken's own.

Texts longer than :data:`FAST_MAX_CHARS` keep the plain encode: it releases the GIL, the scanner
does not, and a long text is counted in the CPU pool while the event loop must go on.

``tests/unit/test_token_fast_count.py`` compares these counts with tiktoken's over the datasets
and adversarial Unicode (case folding, Unicode spaces and digits, CR/LF and
``/`` next to non-ASCII characters). Without the compiled module (no C compiler at install)
tiktoken counts every text: the same numbers, more CPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import tiktoken

try:  # built by setup.py when a C compiler is there; tiktoken's encode is the reference
    from proxy.tokens import _piece_counter
    from proxy.tokens._piece_counter import PieceCounter
except ImportError:  # pragma: no cover - exercised only on installs without a compiler
    _piece_counter = None  # type: ignore[assignment]
    PieceCounter = None  # type: ignore[assignment,misc]
    logging.getLogger(__name__).warning(
        "compiled token piece counter not built (no C compiler at install time?): the budget step "
        "counts tokens with a full tiktoken encode: same counts, several times the CPU"
    )

FAST_MAX_CHARS = 65_536
"""Longer texts are counted by tiktoken with the GIL released (the scanner keeps it: ~0.5 ms here)."""
PRE_TOKENISED = frozenset({"cl100k_base", "o200k_base"})
"""Encodings whose pre-tokeniser the compiled scanner implements."""


_counters: dict[str, PieceCounter] = {}
_counters_lock = threading.Lock()


def compiled() -> bool:
    """Whether the compiled counter is built (the sidecar then counts without a full encode)."""
    return _piece_counter is not None


def new_counter(encoding: tiktoken.Encoding) -> PieceCounter:
    """A compiled counter for ``encoding`` with its own empty cache (tests; ``piece_counter`` shares one).

    Raises ``RuntimeError`` without the compiled module and ``ValueError`` for an encoding whose
    pre-tokeniser it does not implement."""
    if _piece_counter is None:
        raise RuntimeError("proxy/tokens/_piece_counter.c is not built")
    # The Rust core's method takes bytes and skips the Python wrapper's str handling.
    encode_piece: Callable[[bytes], Sequence[int]] = encoding._core_bpe.encode_single_piece
    return _piece_counter.PieceCounter(encoding.name, encode_piece, encoding.encode_ordinary)


def piece_counter(encoding: tiktoken.Encoding) -> PieceCounter | None:
    """The (per process, per encoding) compiled counter, or None where there is none."""
    counter = _counters.get(encoding.name)
    if counter is not None or _piece_counter is None or encoding.name not in PRE_TOKENISED:
        return counter
    with _counters_lock:
        counter = _counters.get(encoding.name)
        if counter is None:
            counter = _counters[encoding.name] = new_counter(encoding)
        return counter


def count_tokens(encoding: tiktoken.Encoding, text: str) -> int:
    """``len(encoding.encode_ordinary(text))``, through the piece cache when it is exact and cheaper."""
    if len(text) <= FAST_MAX_CHARS:
        counter = piece_counter(encoding)
        if counter is not None:
            return counter.count(text)
    return len(encoding.encode_ordinary(text))
