"""Prompt and completion text for debugging: captured only when the policy opts in.

By default no text is ever captured (``observability.logs.content: none`` and
``observability.tracing.content: none``). When a policy asks for ``redacted`` content, the text
goes through ``redact`` first: a deliberately simple masking of what most often leaks (email
addresses, digit runs such as card, phone and account numbers, and key-like tokens). It is a
debugging aid, not a PII guarantee: names and addresses in prose are *not* found. A policy that
needs real PII handling puts the ``pii`` plugin first, so the text captured here is already
redacted by it. ``full`` (spans only) captures the text as the upstream saw it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.models.chat import ChatRequest, ChatResponse, Route

#: Longest text kept per capture: a debugging aid must not turn logs into a transcript store.
MAX_CHARS = 2000

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Key-like tokens: a known prefix, or 24+ characters of letters, digits and -_ with a digit in them.
_TOKEN = re.compile(
    r"\b(?:sk|pk|rk|ghp|xox[abp]|AKIA)[-_A-Za-z0-9]{8,}|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{24,}\b"
)
_DIGITS = re.compile(r"\d")


def redact(text: str) -> str:
    """Mask emails, key-like tokens and every digit; cut to ``MAX_CHARS``."""
    text = _EMAIL.sub("[EMAIL]", text)
    text = _TOKEN.sub("[TOKEN]", text)
    text = _DIGITS.sub("#", text)
    return text[:MAX_CHARS]


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
