"""Cheap structural validation of client bodies, with OpenAI-style ``param`` paths.

Hand-written rather than a pydantic model on purpose: it checks only the fields the chain
relies on, leaves every other field untouched (unknown fields are preserved end to end), and
costs a few microseconds on the hot path. Deeper validation is the provider's job.

It sits with the models (not the routes) because replay and calibrate validate recorded
traffic exactly as the routes validate live requests, and they must not import the routes.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest
from proxy.models.chat import Route

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(message: str, param: str, code: str = "invalid_type") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _require_str(body: dict[str, Any], key: str) -> None:
    if key not in body:
        raise _bad(f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
    if not isinstance(body[key], str) or not body[key]:
        raise _bad(f"Invalid type for '{key}': expected a non-empty string.", key)


def _optional(body: dict[str, Any], key: str, types: tuple[type, ...], what: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) and bool not in types:
        raise _bad(f"Invalid type for '{key}': expected {what}.", key)
    if not isinstance(value, types):
        raise _bad(f"Invalid type for '{key}': expected {what}.", key)


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise _bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _bad("Invalid type for 'messages': expected an array.", "messages")
    if not messages:
        raise _bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = msg.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _bad(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(sorted(ROLES))}.",
                f"messages[{i}].role",
                "invalid_value",
            )
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(
                f"Invalid type for 'messages[{i}].content': expected a string or an array.",
                f"messages[{i}].content",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(
                        f"Invalid type for 'messages[{i}].content[{j}]': expected an object with a type.",
                        f"messages[{i}].content[{j}]",
                    )


#: Optional chat fields checked by type, in this order: (key, accepted types, what to say).
_CHAT_OPTIONAL: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("stream_options", (dict,), "an object"),
    ("n", (int,), "an integer"),
    ("max_tokens", (int,), "an integer"),
    ("max_completion_tokens", (int,), "an integer"),
    ("temperature", (int, float), "a number"),
    ("top_p", (int, float), "a number"),
    ("tools", (list,), "an array"),
    ("user", (str,), "a string"),
)


def validate_body(route: Route, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    _require_str(body, "model")
    _optional(body, "stream", (bool,), "a boolean")
    if route is Route.CHAT:
        _messages(body)
        for key, types, what in _CHAT_OPTIONAL:
            if key in body:  # most requests carry few of them: skip the call for the rest
                _optional(body, key, types, what)
    elif route is Route.RESPONSES:
        inp = body.get("input")
        if inp is not None and not isinstance(inp, (str, list)):
            raise _bad("Invalid type for 'input': expected a string or an array.", "input")
        _optional(body, "instructions", (str,), "a string")
        _optional(body, "max_output_tokens", (int,), "an integer")
    elif route is Route.EMBEDDINGS:
        inp = body.get("input")
        if inp is None:
            raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if not isinstance(inp, (str, list)):
            raise _bad("Invalid type for 'input': expected a string or an array.", "input")
    return body
