"""Structural validation of Anthropic Messages API bodies (``POST /v1/messages``), before translation.

Why: ``anthropic_request_to_openai`` assumes the shapes the Messages API documents (a list of
strings in ``stop_sequences``, objects in ``system`` / ``tools``, a ``source`` object in an
image...). Anything else used to surface as a ``TypeError`` deep in the translator, i.e. a 500.
This module checks every field the translator reads, in the order it reads them, and answers a
400 whose message names the field the way Anthropic does (``messages.0.content.1.source``); the
route renders it in Anthropic's error envelope. Fields the translator does not read are left
alone (the translator drops them), and so are the values Anthropic itself would judge (model
names, media types, token limits).

The policy's item limits (``limits.max_messages`` ...) are checked first, so a body with a
million blocks costs one ``len`` before it is refused.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest
from proxy.policy.schema import Limits
from proxy.routes.validate import too_many

_CODE = "invalid_request_error"


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code=_CODE)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(param, "Input should be a valid dictionary")
    return value


def _str(block: dict[str, Any], key: str, param: str, *, required: bool = True) -> None:
    value = block.get(key)
    if value is None and not required:
        return
    if value is None:
        raise _bad(f"{param}.{key}", "Field required")
    if not isinstance(value, str):
        raise _bad(f"{param}.{key}", "Input should be a valid string")


def _kind(block: Any, param: str) -> str:
    kind = _obj(block, param).get("type")
    if not isinstance(kind, str):
        raise _bad(f"{param}.type", "Field required")
    return kind


def _source(block: dict[str, Any], param: str) -> None:
    """An image or document ``source``: base64 (media_type + data) or url; other types are refused
    by the translator with a clear message, so only their shape is checked here."""
    source = _obj(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if not isinstance(kind, str):
        raise _bad(f"{param}.source.type", "Field required")
    if kind == "base64":
        _str(source, "media_type", f"{param}.source")
        _str(source, "data", f"{param}.source")
    elif kind == "url":
        _str(source, "url", f"{param}.source")


def _text_block(block: dict[str, Any], param: str) -> None:
    _str(block, "text", param)


def _tool_result(block: dict[str, Any], param: str) -> None:
    _str(block, "tool_use_id", param)
    inner = block.get("content")
    if inner is None or isinstance(inner, str):
        return
    if not isinstance(inner, list):
        raise _bad(f"{param}.content", "Input should be a valid string or list")
    for j, sub in enumerate(inner):
        where = f"{param}.content.{j}"
        kind = _kind(sub, where)
        if kind == "text":
            _text_block(sub, where)
        elif kind == "image":
            _source(sub, where)


def _user_block(block: Any, param: str) -> None:
    kind = _kind(block, param)
    if kind == "text":
        _text_block(block, param)
    elif kind in ("image", "document"):
        _source(block, param)
    elif kind == "tool_result":
        _tool_result(block, param)


def _assistant_block(block: Any, param: str) -> None:
    kind = _kind(block, param)
    if kind == "text":
        _text_block(block, param)
    elif kind == "tool_use":
        _str(block, "id", param)
        _str(block, "name", param)
        if block.get("input") is not None and not isinstance(block["input"], dict):
            raise _bad(f"{param}.input", "Input should be a valid dictionary")


def _messages(body: dict[str, Any], limits: Limits) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages", "Field required" if messages is None else "Input should be a valid list")
    if len(messages) > limits.max_messages:
        raise too_many("messages", limits.max_messages, "messages", "too_many_messages")
    parts = sum(
        len(m["content"]) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
    )
    if parts > limits.max_content_parts:
        raise too_many("content blocks", limits.max_content_parts, "messages", "too_many_content_parts")
    for i, msg in enumerate(messages):
        param = f"messages.{i}"
        role = _obj(msg, param).get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"{param}.role", "Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise _bad(f"{param}.content", "Input should be a valid string or list")
        check = _user_block if role == "user" else _assistant_block
        for j, block in enumerate(content):
            check(block, f"{param}.content.{j}")


def _system(body: dict[str, Any]) -> None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _bad("system", "Input should be a valid string or list")
    for i, block in enumerate(system):
        param = f"system.{i}"
        if _kind(block, param) != "text":
            raise _bad(f"{param}.type", "Input should be 'text'")
        _text_block(block, param)


def _tools(body: dict[str, Any], limits: Limits) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad("tools", "Input should be a valid list")
    if len(tools) > limits.max_tools:
        raise too_many("tools", limits.max_tools, "tools", "too_many_tools")
    for i, tool in enumerate(tools):
        param = f"tools.{i}"
        _obj(tool, param)
        if tool.get("type", "custom") != "custom":
            continue  # a server tool: the translator refuses it by name
        _str(tool, "name", param)
        _str(tool, "description", param, required=False)
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad(f"{param}.input_schema", "Input should be a valid dictionary")


def _tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = _kind(choice, "tool_choice")
    if kind == "tool":
        _str(choice, "name", "tool_choice")
    flag = choice.get("disable_parallel_tool_use")
    if flag is not None and not isinstance(flag, bool):
        raise _bad("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")


def _scalars(body: dict[str, Any]) -> None:
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _bad("max_tokens", "Field required")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise _bad("max_tokens", "Input should be a positive integer")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise _bad("stop_sequences", "Input should be a valid list of strings")
    for key in ("temperature", "top_p"):
        if body.get(key) is not None and not _is_number(body[key]):
            raise _bad(key, "Input should be a valid number")
    if body.get("top_k") is not None and not _is_int(body["top_k"]):
        raise _bad("top_k", "Input should be a valid integer")
    metadata = body.get("metadata")
    if metadata is not None:
        _obj(metadata, "metadata")
        _str(metadata, "user_id", "metadata", required=False)


def validate_anthropic(body: dict[str, Any], limits: Limits) -> None:
    """Raise ``InvalidRequest`` (400) for any shape the translator cannot take; see the module doc."""
    _scalars(body)
    _messages(body, limits)
    _system(body)
    _tools(body, limits)
    _tool_choice(body)
