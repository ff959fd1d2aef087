"""Prompt and completion text for debugging: captured only when the policy opts in.

By default no text is ever captured (``observability.logs.content: none`` and
``observability.tracing.content: none``). When a policy asks for ``redacted`` content, the text
goes through ``redact`` first: a deliberately simple masking of what most often leaks (email
addresses, digit runs such as card, phone and account numbers, and key-like tokens). It is a
debugging aid, not a PII guarantee: names and addresses in prose are *not* found. The text is
what clients send, so ``redact`` runs in time linear in its length whatever the input. A policy that
needs real PII handling puts the ``pii`` plugin first, so the text captured here is already
redacted by it. ``full`` (spans only) captures the text as the upstream saw it.
"""

from __future__ import annotations

import re
import string
from typing import Any

import orjson

from proxy.models.chat import ChatRequest, ChatResponse, Route

#: Longest text kept per capture: a debugging aid must not turn logs into a transcript store.
MAX_CHARS = 2000

# What the masking means, as the three regexes it was first written with (kept as the
# specification: ``tests/unit/test_logging.py`` checks ``redact`` against them):
#   email:  [A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}
#   token:  \b(?:sk|pk|rk|ghp|xox[abp]|AKIA)[-_A-Za-z0-9]{8,}|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{24,}\b
#   digits: \d
# Applied as such to the whole text they take quadratic time on long runs an attacker controls
# (17 ms for 2,000 "x", seconds for 20,000): the email regex retries its local part from every
# position of a run without "@", the token lookahead rescans a run from every word boundary.
# ``redact`` finds the same matches in linear time by giving the regex engine only bounded,
# disjoint pieces of the text (see ``_mask_emails`` and ``_mask_tokens``).
_LOCAL_CHARS = string.ascii_letters + string.digits + "._%+-"  # an email's local part
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{10,}")  # a token is a run of these, 10+ long
_TOKEN = re.compile(
    r"\b(?:sk|pk|rk|ghp|xox[abp]|AKIA)[-_A-Za-z0-9]{8,}|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{24,}\b"
)
_PREFIXED_TOKEN = re.compile(r"\b(?:sk|pk|rk|ghp|xox[abp]|AKIA)[-_A-Za-z0-9]{8,}")
_DIGIT = re.compile(r"\d")


def redact(text: str) -> str:
    """Mask emails, key-like tokens and every digit; cut to ``MAX_CHARS``. Linear time."""
    text = _mask_emails(text)
    text = _mask_tokens(text)
    text = _DIGIT.sub("#", text)
    return text[:MAX_CHARS]


def _mask_emails(text: str) -> str:
    """``[EMAIL]`` for every ``local@domain.tld``, the matches the email regex finds, in O(n).

    Anchored on each "@" rather than on every position: the local part is the run of local-part
    characters just before the "@" (``rstrip``, over the text since the previous "@" or match
    only, so these slices are disjoint), the domain is matched from just after it, and domain
    runs end at the next "@", so they are disjoint too. The regex's leftmost match starts where
    that run starts, which is why the results are the same.
    """
    at = text.find("@")
    if at < 0:
        return text
    parts: list[str] = []
    done = 0  # end of the last match: text before it is already in ``parts``
    floor = 0  # the local part of the next "@" cannot start before this
    while at >= 0:
        before = text[floor:at]
        start = at - (len(before) - len(before.rstrip(_LOCAL_CHARS)))
        found = _DOMAIN.match(text, at + 1) if start < at else None
        if found is not None:
            parts += (text[done:start], "[EMAIL]")
            done = floor = found.end()
        else:
            floor = at + 1
        at = text.find("@", floor)
    parts.append(text[done:])
    return "".join(parts)


def _mask_tokens(text: str) -> str:
    """``[TOKEN]`` for key-like tokens, the matches the token regex finds, in O(n).

    A token lies inside one run of ``[A-Za-z0-9_-]`` (at least 10 long), so the regex runs on
    each run alone (``pos``/``endpos`` one character wider, so its ``\b`` sees the neighbours).
    In a run with no digit only the prefixed form can match: that one runs alone there, since
    the digit lookahead of the other would rescan the run from each word boundary, the
    quadratic case. In a run with a digit, the first boundary before a digit starts a match
    that takes the run to its last boundary, so few starts are ever tried.
    """
    parts: list[str] = []
    done = 0
    for run in _TOKEN_RUN.finditer(text):
        start, end = run.span()
        pattern = _TOKEN if _DIGIT.search(text, start, end) else _PREFIXED_TOKEN
        for found in pattern.finditer(text, start, end + 1):
            parts += (text[done : found.start()], "[TOKEN]")
            done = found.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def request_messages(req: ChatRequest) -> list[dict[str, str]]:
    """The prompt as role / content pairs (GenAI ``gen_ai.input.messages`` shape, text parts only)."""
    return [{"role": slot.role, "content": slot.text} for slot in req.text_slots()]


def response_messages(data: bytes, route: Route) -> list[dict[str, str]]:
    """The completion's text from a non-streamed answer body (empty when it is not JSON)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(body, dict):
        return []
    return [{"role": "assistant", "content": s.text} for s in ChatResponse(body, route).text_slots()]


def render(messages: list[dict[str, str]], mode: str) -> str:
    """``messages`` as one JSON string, redacted unless ``mode`` is ``full``, at most ``MAX_CHARS``."""
    cleaned: list[dict[str, Any]] = [
        {"role": m["role"], "content": m["content"] if mode == "full" else redact(m["content"])}
        for m in messages
    ]
    return orjson.dumps(cleaned).decode()[: MAX_CHARS * 2]
