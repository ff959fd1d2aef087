"""One error tree for the whole sidecar, mapped to the OpenAI error envelope in one place.

Plugins and routes *raise*; they never build HTTP responses. ``to_envelope`` is the single
place where an exception becomes ``{"error": {"message", "type", "param", "code"}}`` plus a
status code, so the official SDKs raise the matching exception class (400 ->
``BadRequestError``, 429 -> ``RateLimitError``, 5xx -> ``InternalServerError`` ...).

Public messages are generic and safe: they never contain prompt text or secrets. Details for
operators travel in ``detail`` (logs, decision records), never in the HTTP body.

Tree (the design guide's, plus ``InvalidRequest`` for malformed client input, which is neither
a policy decision nor a crash and must never look like a 500)::

    ProxyError
    ├── ConfigError        load/reload only
    ├── InvalidRequest     the client sent something we cannot accept (400/413/415/404/405)
    ├── Unauthenticated    ``clients:`` is on and the credential is missing or invalid (401)
    ├── Forbidden          the verified caller may not use this model or route (403)
    ├── Rejected           a policy said no (400 by default, 429 for limits, 502 for a bad answer)
    ├── UpstreamError      the provider failed (502 / 503 / 504)
    ├── PluginError        a plugin crashed (500)
    ├── ServerBusy         the sidecar's own connection cap (503)
    └── StreamAborted      after headers were sent: becomes an in-band error event
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    """Base of every error the sidecar raises on purpose."""

    status: int = 500
    error_type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.detail = detail

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(ProxyError):
    """A policy file could not be loaded: syntax, validation, unknown plugin, constraints.

    ``location`` is ``file:line:col`` when known, so editors and humans can jump to it.
    """

    status = 500
    error_type = "configuration_error"
    default_code = "invalid_policy"

    def __init__(self, message: str, *, location: str | None = None, **kw: Any) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message, **kw)


class InvalidRequest(ProxyError):
    """Malformed client input: bad JSON, wrong types, too large, wrong content type."""

    status = 400
    error_type = "invalid_request_error"


class Unauthenticated(ProxyError):
    """No valid client credential (``clients:``): 401, so SDKs raise ``AuthenticationError``."""

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("www-authenticate", 'Bearer realm="policy-sidecar"')


class Forbidden(ProxyError):
    """A verified caller asked for a model or route its credential does not allow: 403."""

    status = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class Rejected(ProxyError):
    """A policy decided to refuse the request or response. Never swallowed by fail_open."""

    status = 400
    error_type = "invalid_request_error"
    default_code = "policy_violation"


class OutputSchemaViolation(Rejected):
    """The model's answer broke its output contract (schema, tool call) and was not repaired.

    A policy decision about the *answer*, so 502 (the upstream gave no usable answer), not 400.
    """

    status = 502
    error_type = "upstream_error"
    default_code = "output_schema_violation"


class PassthroughRefused(Rejected):
    """A pass-through path (outside the governed routes) the policy does not allow: 403.

    Raised when the upstream that would serve the path holds the key (``auth: policy``) and no
    ``passthrough:`` rule lists the path and method, and for WebSocket upgrades.
    """

    status = 403
    default_code = "passthrough_not_allowed"


class RateLimited(Rejected):
    """A rate or budget limit was hit: 429 with Retry-After."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(1, round(retry_after + 0.4999))))


class UpstreamError(ProxyError):
    """The provider could not give a usable answer."""

    status = 502
    error_type = "upstream_error"
    default_code = "bad_upstream_response"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    """Connection refused, DNS failure, circuit open, bulkhead full."""

    status = 503
    default_code = "upstream_unavailable"


class PluginError(ProxyError):
    """A plugin crashed and its step is ``fail_closed``."""

    status = 500
    error_type = "api_error"
    default_code = "plugin_error"


class ServerBusy(ProxyError):
    """The sidecar itself is at capacity (its connection cap): 503 with Retry-After."""

    status = 503
    error_type = "api_error"
    default_code = "server_busy"


class StreamAborted(ProxyError):
    """Raised after response headers were sent; the route turns it into an in-band event."""

    status = 500
    error_type = "api_error"
    default_code = "stream_aborted"


def to_envelope(exc: BaseException) -> tuple[int, dict[str, str], bytes]:
    """Map any exception to (status, headers, OpenAI-format JSON body).

    Unknown exceptions become a generic 500 whose message reveals nothing internal.
    """
    if isinstance(exc, ProxyError):
        body = orjson.dumps(exc.envelope())
        return exc.status, dict(exc.headers), body
    generic = PluginError("The sidecar hit an internal error.", code="internal_error")
    return 500, {}, orjson.dumps(generic.envelope())


def error_event_payload(exc: BaseException) -> dict[str, Any]:
    """The ``error`` object used for in-band stream errors (same fields as the envelope)."""
    if isinstance(exc, ProxyError):
        return exc.envelope()["error"]  # type: ignore[no-any-return]
    return PluginError("The sidecar hit an internal error.", code="internal_error").envelope()["error"]  # type: ignore[no-any-return]
