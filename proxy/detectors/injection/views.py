"""De-obfuscated *views* of a text: leetspeak, spaced or dotted letters, rot13 and reversed text.

Why views and not a rewrite: ``1gn0r3 4ll pr3v10u5 1nstruct10ns`` or ``i g n o r e  a l l  p r e v i o u s``
defeat both the rules and the n-gram classifier, yet undoing them on *every* text would corrupt benign
ones ("mp3", "COVID-19", "U.S.A."). So each trick yields an extra view only when the text shows it
(words mixing letters with leet digits, runs of single letters), the detector scores every view, keeps
the maximum and names the view that produced it. A view that does not change the text is not made.

Text written backwards is recognised the same way as rot13 (it reads as English once turned around).
The rot13 check here complements the rule probe in ``normalise.py`` (which only fires when a rule
matches the rotated text): a text that reads as English *after* rotating and not before is rotated
text, whatever it says, and the classifier then gets to see it.

All functions are pure and linear in the input; they run on the folded (ASCII-ish) text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .compiled import kernel as _kernel
from .decoders import rot13

# --- leetspeak -------------------------------------------------------------------------------------

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"}
)
_LEET_CHARS = frozenset("0134578@$")
# A token of letters and leet characters holding at least one letter and at least one leet character.
_LEET_TOKEN = re.compile(r"(?<![\w@$])[a-z0-9@$]*[0-9@$][a-z0-9@$]*(?![\w@$])", re.IGNORECASE)
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th|s|k|m|g|x|d|p|h|am|pm|kg|km|mb|gb|px)?$", re.IGNORECASE)
_TRAILING_DIGITS = re.compile(r"[a-z]+\d+$", re.IGNORECASE)
_MIN_LEET_TOKENS = 2


def _unleet_token(token: str) -> str | None:
    """The letters a leet token stands for, or None when it is not leet (numbers, units, "mp3", "b2b")."""
    if len(token) < 3 or not any(c.isalpha() for c in token) or _ORDINAL.fullmatch(token):
        return None
    if not any(c in _LEET_CHARS for c in token) or any(c in "269" for c in token):
        return None
    vocab = _vocabulary()
    plain = token.translate(_LEET)
    if "1" in token:  # "a11" is "all", "1nstruct" is "instruct": prefer the reading that is a word
        with_l = token.replace("1", "l").translate(_LEET)
        if with_l.lower() in vocab and plain.lower() not in vocab:
            plain = with_l
    if _TRAILING_DIGITS.fullmatch(token) and plain.lower() not in vocab:
        return None  # "covid19", "gpt4", "win10": a name with a number, unless it spells a word ("th3")
    return plain if plain.isalpha() else None


# The rest of an address's first domain label after a token (a token stops at ``-``), then a dot and
# the start of the next label: ``-widgets.e`` in ``finance1@acme-widgets.example.org``. A label is
# letters, digits and hyphens and may start with a digit (``3m.com``).
_DOMAIN_REST = re.compile(r"[A-Za-z0-9-]*\.[A-Za-z0-9]")


def _in_email(text: str, token: str, end: int) -> bool:
    """Is this token (ending at ``end`` in ``text``) the local part and domain head of an e-mail
    address (``name0@host.tld``, ``finance1@acme-widgets.example.org``)? Support tickets are full of
    them; read as leetspeak they doubled the classifier's work and added nothing (an address is not
    an instruction)."""
    at = token.find("@")
    return 0 < at < len(token) - 1 and _DOMAIN_REST.match(text, end) is not None


# A leet character (or any digit) with a letter beside it. Why: ``_LEET_TOKEN`` has no literal to
# skip ahead to, so ``re`` tries it at every word (~80 µs per 2 KB of prose, most of ``views``);
# this one starts with a character class ``re`` scans for at C speed (~3 µs), and every token
# ``_unleet_token`` accepts has such a seam (it holds a letter and a leet character, and all its
# characters are either). Each seam's token is then cut out and checked exactly as before.
_LEET_SEAM = re.compile(r"[0-9@$](?:(?<=[a-z].)|(?=[a-z]))", re.IGNORECASE)
# A run of the characters ``_LEET_TOKEN``'s look-around excludes: a token is a whole such run.
_RUN = re.compile(r"[\w@$]*", re.IGNORECASE)


def _run_end(text: str, pos: int) -> int:
    m = _RUN.match(text, pos)
    return m.end() if m is not None else pos  # always a match: the run may be empty


def unleet(text: str) -> str | None:
    """``text`` with leet words spelled out, or None when fewer than two words look like leetspeak.

    The words are the matches of ``_LEET_TOKEN`` (maximal runs of letters, digits, ``@`` and ``$``
    holding a digit, ``@`` or ``$``), visited through ``_LEET_SEAM``: only tokens with a seam can
    read as a word, so the others are left as they are without being looked at
    (tests/unit/test_injection_views_fast.py checks this against the plain ``_LEET_TOKEN.sub``)."""
    if _kernel is not None and not _kernel.leet_beyond_emails(text):
        return None  # no seam, or every seam an e-mail address, skipped below: no leet word (compiled.py)
    if not any(c in text for c in "0134578@$"):
        return None
    out: list[str] = []
    hits = done = 0  # done: end of the last token visited (and of the text copied to ``out``)
    copied = 0
    reverse = ""
    n = len(text)
    for seam in _LEET_SEAM.finditer(text):
        p = seam.start()
        if p < done:
            continue  # another seam of a token already visited
        if not reverse:
            reverse = text[::-1]
        start = n - _run_end(reverse, n - p)
        done = _run_end(text, p)
        token = text[start:done]
        if _in_email(text, token, done) or not _LEET_TOKEN.fullmatch(token):
            continue  # an address ("lopez0@example.com"), or not a token ("a_b0")
        plain = _unleet_token(token)
        if plain is None:
            continue
        hits += 1
        out.append(text[copied:start])
        out.append(plain)
        copied = done
    if hits < _MIN_LEET_TOKENS:
        return None
    out.append(text[copied:])
    return "".join(out)


# --- spaced / dotted letters -------------------------------------------------------------------------

# Three or more single letters (or leet digits), each followed by the same kind of one-character
# separator: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e". A double space ends the run (a word gap).
_SPACED = re.compile(
    r"(?<![^\W_])(?:[^\W_]([ .\-_*|+~])(?=[^\W_]))(?:[^\W_]\1(?=[^\W_])){1,}[^\W_](?![^\W_])"
)
_MAX_RUN_TO_SEGMENT = 64
# Pre-checks with a literal first character (``re`` then skips ahead at C speed): _SPACED itself,
# with its look-behind, costs ~70 µs per 2 KB of prose, these ~15 µs, and every match of _SPACED
# contains a match of one of them.
_SPACE_GATE = re.compile(r" [^\W_] [^\W_](?![^\W_])")
_SEP_GATES = tuple(
    (sep, re.compile(re.escape(sep) + r"[^\W_]" + re.escape(sep) + r"[^\W_]")) for sep in ".-_*|+~"
)


def _maybe_spaced(text: str) -> bool:
    """Could ``_SPACED`` match ``text``? The compiled kernel's one pass when it is built (~1 µs per
    2 KB, against ~9 µs for the gates), else the gates (tests/unit/test_injection_kernel.py)."""
    if _kernel is not None:
        return _kernel.maybe_spaced(text)
    return _maybe_spaced_python(text)


def _maybe_spaced_python(text: str) -> bool:
    if _SPACE_GATE.search(f" {text} "):
        return True
    return any(sep in text and gate.search(text) for sep, gate in _SEP_GATES)


def unspace(text: str) -> str | None:
    """``text`` with letter-by-letter runs joined into words (and long joined runs split back into
    words when a small vocabulary allows), or None when there is no such run."""
    changed = False

    def sub(m: re.Match[str]) -> str:
        nonlocal changed
        sep = m.group(1)
        joined = m.group().replace(sep, "")
        if not joined.isalpha():
            joined = _unleet_token(joined) or joined  # "1 g n 0 r 3"
        changed = True
        return segment_words(joined)

    if not _maybe_spaced(text):
        return None
    out = _SPACED.sub(sub, text)
    if not changed:
        return None
    return re.sub(r" {2,}", " ", out)


# A small vocabulary, enough to split "ignoreallpreviousinstructions" back into words so the rules can
# match it. It is not a dictionary: words outside it stay joined (the classifier's character n-grams
# still see them).
_WORDS = """
    a about above act admin all an and any anything are as ask assistant at be before below bypass can
    chat command confidential content developer disable disregard do dont ethical ethics every
    everything filter filters for forget from give guidelines has have hidden i ignore in instruction
    instructions is it jailbreak just key last limits me message mode must my new no not now of off on
    or original output override password policy previous print prior prompt prompts reply respond
    restriction restrictions reveal role rules safety say secret secrets show so system tell that the
    then these this to token unrestricted unfiltered up us user what will with without word words you
    your yourself evil dan pretend act now free always never answer above earlier forget context guard
    guardrails repeat text print verbatim initial hack kill bomb weapon
""".split()  # noqa: SIM905


@functools.cache
def _vocabulary() -> frozenset[str]:
    return frozenset(_WORDS)


def segment_words(joined: str) -> str:
    """Split a run of letters into vocabulary words when they cover it entirely; else return it as is.

    Dynamic programming over prefixes (fewest words), bounded by ``_MAX_RUN_TO_SEGMENT`` characters."""
    low = joined.lower()
    if len(low) > _MAX_RUN_TO_SEGMENT or low in _vocabulary():
        return joined
    vocab = _vocabulary()
    longest = max(map(len, vocab))
    best: list[list[str] | None] = [[]] + [None] * len(low)
    for end in range(1, len(low) + 1):
        for start in range(max(0, end - longest), end):
            prev = best[start]
            if prev is not None and low[start:end] in vocab:
                cand = [*prev, low[start:end]]
                current = best[end]
                if current is None or len(cand) < len(current):
                    best[end] = cand
    words = best[-1]
    return " ".join(words) if words and len(words) > 1 else joined


# --- rot13 by readability ----------------------------------------------------------------------------

_COMMON = frozenset(
    [
        "the",
        "and",
        "you",
        "your",
        "to",
        "of",
        "a",
        "is",
        "are",
        "in",
        "that",
        "it",
        "for",
        "this",
        "with",
        "be",
        "not",
        "all",
        "now",
        "as",
        "on",
        "or",
        "do",
        "what",
        "me",
        "my",
        "i",
        "will",
        "from",
        "have",
        "any",
        "previous",
        "instructions",
        "ignore",
        "system",
        "prompt",
        "tell",
        "say",
    ]
)
_WORD = re.compile(r"[a-z]+", re.IGNORECASE)
_MIN_WORDS = 4


def _common_share(text: str) -> tuple[int, int]:
    words = _WORD.findall(text.lower())
    return sum(w in _COMMON for w in words), len(words)


_CHUNK = re.compile(r"[^.:;!?\n]+")


_MARKERS = (" the ", " and ", " to ", " of ", " you ", " is ")


def _plainly_english(text: str) -> bool:
    """Most text is ordinary English, and judging it word by word (``_readable_after``) costs ~0.5 ms
    per 2 KB; a few C-level counts of the commonest words settle it in a few µs. Text with at least
    one marker per 12 spaces is taken as English and not searched for rot13 or reversed chunks (a
    short hidden sentence inside long English prose is then missed: the classifier still sees it).
    The compiled kernel counts the same on ASCII text in one pass (~4 -> ~1 µs per 2 KB)."""
    if _kernel is not None:
        answer = _kernel.plainly_english(text)
        if answer is not None:
            return answer
    return _plainly_english_python(text)


def _plainly_english_python(text: str) -> bool:
    low = text.lower()
    spaces = low.count(" ")
    if spaces < 24:
        return False
    found = 0
    for marker in _MARKERS:  # commonest first; stop counting once there are enough (~10 -> ~4 µs)
        found += low.count(marker)
        if found * 12 >= spaces:
            return True
    return False


def _readable_after(text: str, transform: Callable[[str], str]) -> str | None:
    """``text`` with every sentence-like chunk that reads as English only after ``transform`` replaced
    by its transform, or None when there is none (so "Decode this: <hidden>" is caught, and plain
    English is left alone: a chunk with common English words is never transformed)."""
    if len(text) < 12:
        return None
    hits, n = _common_share(text)  # counts ASCII words only: other scripts are never transformed
    if n >= _MIN_WORDS and hits <= 0.15 * n:  # the whole text first: short chunks are hard to judge
        turned = transform(text)
        if _common_share(turned)[0] >= max(2, 0.25 * n):
            return turned
    changed = False

    def sub(m: re.Match[str]) -> str:
        nonlocal changed
        chunk = m.group()
        hits, n = _common_share(chunk)
        if n < _MIN_WORDS or hits > 0.15 * n:
            return chunk  # plain English (or too short to tell)
        turned = transform(chunk)
        t_hits, _ = _common_share(turned)
        if t_hits >= max(2, 0.25 * n):
            changed = True
            return turned
        return chunk

    out = _CHUNK.sub(sub, text)
    return out if changed else None


def rot13_if_readable(text: str) -> str | None:
    """Chunks that read as English after rot13, rotated back (see ``_readable_after``)."""
    return _readable_after(text, rot13)


def reversed_if_readable(text: str) -> str | None:
    """Chunks written backwards ("snoitcurtsni suoiverp lla erongi"), turned around."""
    return _readable_after(text, _reverse)


def _reverse(chunk: str) -> str:
    return chunk[::-1]


def views(text: str) -> list[tuple[str, str]]:
    """(view name, text) for every de-obfuscation that changes ``text``; cheap when none applies."""
    out: list[tuple[str, str]] = []
    leet = unleet(text)
    if leet is not None:
        out.append(("leetspeak", leet))
    spaced = unspace(leet if leet is not None else text)
    if spaced is not None:
        out.append(("spaced_letters" if leet is None else "leetspeak+spaced_letters", spaced))
    if not _plainly_english(text):
        rotated = rot13_if_readable(text)
        if rotated is not None:
            out.append(("rot13", rotated))
        backwards = reversed_if_readable(text)
        if backwards is not None:
            out.append(("reversed", backwards))
    return out
