"""Normalise and check a pass-through path before it is matched or joined to an upstream URL.

The server decodes the path before routing (``%2f`` becomes ``/``) and the HTTP client resolves
``..`` when it joins the path to the upstream's base URL, so ``/v1/..%2f..%2flatest/meta-data``
used to reach the upstream host as ``/latest/meta-data`` with the policy's key. Here the path
is judged on the bytes the client sent (``raw_path``): encoded slashes, backslashes, encoded
dots, ``.`` / ``..`` segments, empty segments (``//``) and control characters are refused
(400 ``invalid_path``), so what is matched is exactly what is forwarded and it can never leave
the upstream's base path. The forwarded path keeps the client's encoding (``%20`` stays).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from proxy.errors import InvalidRequest

PREFIX = "/v1"
_ENCODED_BAD = ("%2f", "%5c", "%2e", "%00")


def _invalid(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid request path: {why}. Send a plain path below /v1.", code="invalid_path", param="path"
    )


def passthrough_path(scope: Mapping[str, Any]) -> tuple[str, str]:
    """(decoded path below /v1 for matching, raw path below /v1 for forwarding), or 400.

    Both start with ``/``. Raises ``InvalidRequest`` (``invalid_path``) for any form that could
    resolve to something other than what it looks like.
    """
    raw_bytes = scope.get("raw_path")
    if isinstance(raw_bytes, bytes | bytearray):
        raw = bytes(raw_bytes).decode("latin-1").split("?", 1)[0]
    else:
        raw = quote(str(scope.get("path", "")), safe="/:@!$&'()*+,;=-._~")
    if raw != PREFIX and not raw.startswith(PREFIX + "/"):
        raise _invalid("the /v1 prefix must be written plainly")
    rest = raw[len(PREFIX) :] or "/"
    lowered = rest.lower()
    if any(bad in lowered for bad in _ENCODED_BAD) or "\\" in rest:
        raise _invalid("encoded slashes, backslashes and encoded dots are not accepted")
    try:
        decoded = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise _invalid("it is not valid UTF-8 once decoded") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise _invalid("it contains control characters")
    segments = decoded.split("/")[1:]
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            raise _invalid("'.' and '..' segments are not accepted")
        if seg == "" and i != len(segments) - 1:
            raise _invalid("empty segments ('//') are not accepted")
    return decoded, rest
