"""Cheap structural validation of client bodies, with OpenAI-style ``param`` paths.

Hand-written rather than a pydantic model on purpose: it checks only the fields the chain
relies on, leaves every other field untouched (unknown fields are preserved end to end), and
costs a few microseconds on the hot path. Deeper validation is the provider's job.

It also enforces the policy's ``limits`` on item counts and nesting depth (see
``proxy.policy.schema.Limits`` for why): they are checked here, before any plugin runs, so no
guard ever spends CPU on a request that is refused anyway.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest
from proxy.models.chat import Route
from proxy.policy.schema import Limits

DEFAULT_LIMITS = Limits()

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


def too_many(what: str, limit: int, param: str, code: str) -> InvalidRequest:
    return InvalidRequest(
        f"Too many {what}: at most {limit} are allowed per request (limits in the sidecar policy).",
        param=param,
        code=code,
    )


def check_depth(raw: bytes | None, body: Any, limit: int) -> None:
    """Refuse a body nested deeper than ``limit`` objects/arrays.

    Why: the parser accepts 1024 levels but the encoder (re-encoding an edited body, hashing a
    schema) stops at 255, and recursive code over client JSON (schema compilation, validation)
    must stay far from Python's recursion limit. Counting brackets in the raw bytes is a C-speed
    pre-check: a body with fewer openers than the limit cannot be deeper, so an ordinary request
    never pays for the walk.
    """
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise InvalidRequest(
                f"The JSON body is nested too deeply: at most {limit} levels are allowed.",
                code="json_too_deep",
            )
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _content_parts(items: list[Any], key: str, limits: Limits) -> None:
    """Content parts over all messages (or Responses input items), against ``max_content_parts``."""
    total = 0
    for item in items:
        content = item.get(key) if isinstance(item, dict) else None
        if isinstance(content, list):
            total += len(content)
    if total > limits.max_content_parts:
        raise too_many("content parts", limits.max_content_parts, key, "too_many_content_parts")


def _counts(route: Route, body: dict[str, Any], limits: Limits) -> None:
    """Item counts (messages, inputs, tools, content parts) against the policy's ``limits``."""
    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > limits.max_tools:
        raise too_many("tools", limits.max_tools, "tools", "too_many_tools")
    if route is Route.EMBEDDINGS:
        inp = body.get("input")
        # A list of token ids is one input; a list of strings or of token lists is one per item.
        if isinstance(inp, list) and inp and not isinstance(inp[0], int) and len(inp) > limits.max_inputs:
            raise too_many("inputs", limits.max_inputs, "input", "too_many_inputs")
        return
    items = body.get("messages") if route is not Route.RESPONSES else body.get("input")
    if not isinstance(items, list):
        return
    param = "input" if route is Route.RESPONSES else "messages"
    if len(items) > limits.max_messages:
        raise too_many(param, limits.max_messages, param, "too_many_messages")
    _content_parts(items, "content", limits)


def validate_body(route: Route, body: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    _require_str(body, "model")
    _optional(body, "stream", (bool,), "a boolean")
    _counts(route, body, limits)  # before the per-item checks: those cost per item too
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
        _optional(body, "tools", (list,), "an array")
    elif route is Route.EMBEDDINGS:
        inp = body.get("input")
        if inp is None:
            raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if not isinstance(inp, (str, list)):
            raise _bad("Invalid type for 'input': expected a string or an array.", "input")
    return body
