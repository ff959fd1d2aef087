"""Cheap structural validation of client bodies, with OpenAI-style ``param`` paths.

Hand-written rather than a pydantic model on purpose: it checks only the fields the chain
relies on, leaves every other field untouched (unknown fields are preserved end to end), and
costs a few microseconds on the hot path. Deeper validation is the provider's job.

It sits with the models (not the routes) because replay and calibrate validate recorded
traffic exactly as the routes validate live requests, and they must not import the routes.

It also enforces the policy's ``limits`` on item counts and nesting depth (see
``proxy.policy.schema.Limits`` for why): they are checked here, before any plugin runs, so no
guard ever spends CPU on a request that is refused anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from proxy.errors import InvalidRequest
from proxy.models.chat import Route


class Limits(Protocol):
    """The bounds this module checks; the policy's ``limits:`` section (``proxy.policy.schema``)
    has these fields. A protocol, so this layer never imports the policy package above it."""

    @property
    def max_messages(self) -> int: ...
    @property
    def max_inputs(self) -> int: ...
    @property
    def max_tools(self) -> int: ...
    @property
    def max_content_parts(self) -> int: ...
    @property
    def max_json_depth(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DefaultLimits:
    """The defaults of the policy's ``limits:`` (a test keeps the two equal)."""

    max_messages: int = 2048
    max_inputs: int = 2048
    max_tools: int = 128
    max_content_parts: int = 2048
    max_json_depth: int = 64


DEFAULT_LIMITS: Limits = DefaultLimits()

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
        calls = msg.get("tool_calls")
        if calls is not None:
            _tool_calls(calls, f"messages[{i}].tool_calls")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(
                        f"Invalid type for 'messages[{i}].content[{j}]': expected an object with a type.",
                        f"messages[{i}].content[{j}]",
                    )


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"Invalid type for '{param}': expected an object.", param)
    return value


def _optional_str(obj: dict[str, Any], key: str, param: str) -> None:
    if obj.get(key) is not None and not isinstance(obj[key], str):
        raise _bad(f"Invalid type for '{param}.{key}': expected a string.", f"{param}.{key}")


def _schema_holder(obj: dict[str, Any], key: str, param: str) -> None:
    """``parameters`` / ``schema``: a JSON Schema is an object (or a boolean schema)."""
    value = obj.get(key)
    if value is not None and not isinstance(value, (dict, bool)):
        raise _bad(f"Invalid type for '{param}.{key}': expected an object.", f"{param}.{key}")


def _tool_calls(calls: Any, param: str) -> None:
    if not isinstance(calls, list):
        raise _bad(f"Invalid type for '{param}': expected an array.", param)
    for j, call in enumerate(calls):
        where = f"{param}[{j}]"
        fn = _object(call, where).get("function")
        if fn is not None:
            _object(fn, f"{where}.function")
            _optional_str(fn, "name", f"{where}.function")
            _optional_str(fn, "arguments", f"{where}.function")


def _tools(route: Route, body: dict[str, Any]) -> None:
    """Tool definitions: what the schema step, token counting and translators read from them.

    Chat nests a function tool under ``function``; the Responses API puts its fields on the
    tool itself. Other tool types (built-in tools) only need a string ``type``.
    """
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad("Invalid type for 'tools': expected an array.", "tools")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        kind = _object(tool, param).get("type", "function")
        if not isinstance(kind, str):
            raise _bad(f"Invalid type for '{param}.type': expected a string.", f"{param}.type")
        if kind != "function":
            continue
        fn = tool if route is Route.RESPONSES else tool.get("function")
        where = param if route is Route.RESPONSES else f"{param}.function"
        if fn is None and route is not Route.RESPONSES:
            raise _bad(f"Missing required parameter: '{where}'.", where, "missing_required_parameter")
        _object(fn, where)
        _optional_str(fn, "name", where)
        _optional_str(fn, "description", where)
        _schema_holder(fn, "parameters", where)


def _output_format(route: Route, body: dict[str, Any]) -> None:
    """``response_format`` (chat) / ``text.format`` (Responses): read by the schema step."""
    if route is Route.RESPONSES:
        text = body.get("text")
        if text is None:
            return
        fmt, param = _object(text, "text").get("format"), "text.format"
    else:
        fmt, param = body.get("response_format"), "response_format"
    if fmt is None:
        return
    _object(fmt, param)
    _optional_str(fmt, "type", param)
    _optional_str(fmt, "name", param)
    if route is Route.RESPONSES:
        _schema_holder(fmt, "schema", param)
    elif fmt.get("json_schema") is not None:
        inner = _object(fmt["json_schema"], f"{param}.json_schema")
        _optional_str(inner, "name", f"{param}.json_schema")
        _schema_holder(inner, "schema", f"{param}.json_schema")


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
    if not isinstance(body, (dict, list)):
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
        if "tools" in body:
            _tools(route, body)
        if "response_format" in body:
            _output_format(route, body)
    elif route is Route.RESPONSES:
        inp = body.get("input")
        if inp is not None and not isinstance(inp, (str, list)):
            raise _bad("Invalid type for 'input': expected a string or an array.", "input")
        _optional(body, "instructions", (str,), "a string")
        _optional(body, "max_output_tokens", (int,), "an integer")
        _tools(route, body)
        _output_format(route, body)
    elif route is Route.EMBEDDINGS:
        inp = body.get("input")
        if inp is None:
            raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if not isinstance(inp, (str, list)):
            raise _bad("Invalid type for 'input': expected a string or an array.", "input")
    return body
