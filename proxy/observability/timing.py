"""Cheap looks into upstream answers for telemetry, without parsing them on the hot path.

The empty policy never parses an answer (it forwards bytes). Metrics and spans still want the
token usage, the model that answered and, for streams, when the first token went out. These
helpers find them with a bounded regex scan of bytes the sidecar already holds: a few
microseconds, against ~10 for a full JSON parse of a small answer.
"""

from __future__ import annotations

import re
from typing import Any

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_COUNTS = re.compile(
    rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens|total_tokens)"\s*:\s*(\d{1,12})'
)
# A streamed delta that carries output: chat ``"content":"x``, tool ``"arguments":"x``, Responses
# ``"delta":"x``, Anthropic ``"text":"x`` / ``"partial_json":"x`` (a non-empty string value).
_TOKEN = re.compile(rb'"(?:content|arguments|delta|text|partial_json)"\s*:\s*"[^"]')


def peek_model(data: bytes) -> str | None:
    """The first ``"model"`` value in the first 4 KB (an answer body or a stream's first chunk)."""
    found = _MODEL.search(data, 0, 4096)
    return found.group(1).decode("utf-8", "replace") if found else None


def peek_usage(data: bytes) -> dict[str, Any]:
    """Token counts of the last ``"usage"`` object in ``data`` (an answer body or a stream's tail)."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return {}
    # pos / endpos instead of a slice: no copy of the window
    return {k.decode(): int(v) for k, v in _COUNTS.findall(data, at, at + 1024)}


def carries_token(chunk: bytes) -> bool:
    """True when a chunk of an SSE stream holds output text (or tool-call arguments)."""
    return _TOKEN.search(chunk) is not None


def output_tokens(usage: dict[str, Any] | None) -> int | None:
    if not usage:
        return None
    value = usage.get("completion_tokens", usage.get("output_tokens"))
    return int(value) if value is not None else None


def input_tokens(usage: dict[str, Any] | None) -> int | None:
    if not usage:
        return None
    value = usage.get("prompt_tokens", usage.get("input_tokens"))
    return int(value) if value is not None else None
