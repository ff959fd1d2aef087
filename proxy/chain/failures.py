"""Failure classes: one vocabulary for retry, circuit breaker and fallback triggers.

In the chain layer (beside the ``Upstream`` port) because the wrappers that use it are plugins,
and plugins import nothing from ``proxy.upstream``.

``timeout``, ``connect``, ``bad_response`` (from exceptions), ``429``, ``5xx``,
``context_length``, ``content_policy``, ``4xx`` (from answers), ``circuit_open`` and
``bulkhead_full`` (raised by our own wrappers). Classifying an error answer may read its body,
which is already in memory: targets settle answers before returning them.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Literal

import orjson

from proxy.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from proxy.models.upstream import BufferedResponse, UpstreamResponse

FailureClass = Literal[
    "timeout",
    "connect",
    "bad_response",
    "429",
    "5xx",
    "context_length",
    "content_policy",
    "4xx",
    "circuit_open",
    "bulkhead_full",
]

_CONTEXT = (
    "context_length_exceeded",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)
_POLICY = (
    "content_policy",
    "content_filter",
    "content policy",
    "safety system",
    "responsibleaipolicyviolation",
)


def classes_as_text(value: Any) -> Any:
    """YAML reads an unquoted ``429`` as a number; failure classes are names."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) if isinstance(v, int) else v for v in value)
    return value


def classify_exception(exc: BaseException) -> FailureClass | None:
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnavailable):
        if exc.code in ("circuit_open", "bulkhead_full"):
            return exc.code  # type: ignore[return-value]
        return "connect"
    if isinstance(exc, UpstreamError):
        return "bad_response"
    return None


def classify_response(resp: UpstreamResponse) -> FailureClass | None:
    status = resp.status
    if status < 400:
        return None
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    body = resp.body.lower() if isinstance(resp, BufferedResponse) else b""
    text = body.decode("utf-8", "replace")
    if any(marker in text for marker in _CONTEXT):
        return "context_length"
    if any(marker in text for marker in _POLICY):
        return "content_policy"
    return "4xx"


def retry_after(resp: UpstreamResponse) -> float | None:
    """Seconds the provider asked us to wait: ``retry-after-ms``, ``retry-after`` (seconds or date)."""
    headers = {k.lower(): v for k, v in resp.headers}
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def error_code(resp: UpstreamResponse) -> str | None:
    if not isinstance(resp, BufferedResponse):
        return None
    try:
        err = orjson.loads(resp.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return err.get("code") if isinstance(err, dict) else None
