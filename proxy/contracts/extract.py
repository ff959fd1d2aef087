"""Find the JSON value in what a model wrote.

``strict``: the whole text (surrounding whitespace aside) must be one JSON value — what an
application calling ``json.loads(content)`` or the SDK's ``parse()`` needs.

``lenient`` (only where the policy allows it): also accept the value inside a Markdown code
fence, or the first balanced ``{...}`` / ``[...]`` after some prose ("Sure! Here it is: {...}").
The balanced scan is a small string-aware bracket matcher rather than a regex, so braces inside
JSON strings do not end the object early, and a truncated object is reported as truncated
instead of being silently cut.

Both return the exact substring that parsed, so the plugin can hand the application clean JSON
without re-serialising (key order and number formatting stay the model's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc|javascript)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)


#: Bounded so a long answer full of brackets cannot make extraction quadratic.
_MAX_EMBEDDED_TRIES = 16


class ExtractError(ValueError):
    """No JSON value could be taken from the text; the message says why (safe: no text quoted)."""


@dataclass(frozen=True, slots=True)
class Extracted:
    value: Any
    text: str  # the exact JSON text that parsed
    how: str  # "whole" | "fence" | "embedded"


def _parse(text: str) -> Any:
    return orjson.loads(text)


def _balanced_end(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at ``start``, or -1 when it never closes."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def extract_json(text: str, lenient: bool = False) -> Extracted:
    """The JSON value in ``text`` (see module doc); raises ``ExtractError``."""
    stripped = text.strip()
    if not stripped:
        raise ExtractError("the output is empty")
    try:
        return Extracted(_parse(stripped), stripped, "whole")
    except orjson.JSONDecodeError as exc:
        first_error = exc
    if lenient:
        for match in _FENCE.finditer(text):
            body = match.group(1).strip()
            try:
                return Extracted(_parse(body), body, "fence")
            except orjson.JSONDecodeError:
                continue
        for tries, opener in enumerate(re.finditer(r"[{\[]", text)):
            if tries >= _MAX_EMBEDDED_TRIES:
                break
            start = opener.start()
            end = _balanced_end(text, start)
            if end < 0:
                break  # never closes: truncated, report it below
            candidate = text[start:end]
            try:
                return Extracted(_parse(candidate), candidate, "embedded")
            except orjson.JSONDecodeError:
                continue
    if stripped[0] in "{[" and _balanced_end(stripped, 0) < 0:
        raise ExtractError("the JSON output is truncated (an object or array never closes)")
    raise ExtractError(f"the output is not valid JSON ({_short(first_error)})")


def _short(exc: orjson.JSONDecodeError) -> str:
    """Position only: the decoder's message may quote the text."""
    return f"line {exc.lineno} column {exc.colno}"
