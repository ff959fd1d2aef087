"""The contracts one request carries, merged with the policy's, as a ``Plan``.

Sources:

* chat completions: ``response_format`` (``json_schema`` or ``json_object``) and
  ``tools[].function.parameters``;
* Responses API: ``text.format`` (same two types, flattened) and ``tools[]`` of type ``function``;
* the policy: one schema for the content, and an optional allow-list of tool names.

A schema the client sent that is not a valid Draft 2020-12 schema raises ``RequestSchemaError``
(the plugin maps it to 422: the fault is in the request, not in the model's answer). Tool types
other than ``function`` (web search, custom tools) are declared by name without a schema: a
call to them is allowed, its arguments are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.contracts.compiled import CompiledSchema, SchemaCache, SchemaInvalid
from proxy.models.chat import Route


class RequestSchemaError(SchemaInvalid):
    """A schema inside the request is invalid; ``param`` says where (OpenAI error ``param``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    schema: CompiledSchema | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request's output must satisfy. Built in ``on_request``, kept in ``ctx`` state."""

    content: tuple[CompiledSchema, ...] = ()
    json_object: bool = False  # the content must be a JSON object (json_object or any schema)
    tools: dict[str, ToolSpec] | None = None  # None: the request declared no tools
    allowed_tools: frozenset[str] | None = None  # the policy's allow-list
    lenient: bool = False
    sources: tuple[str, ...] = ()  # for decision records: response_format, tools, policy

    @property
    def checks_content(self) -> bool:
        return bool(self.content) or self.json_object


def _format_of(body: dict[str, Any], route: Route) -> tuple[dict[str, Any] | None, str]:
    """(format object, its param path) in the chat or the Responses shape, flattened to
    ``{"type", "name", "schema", "strict"}``."""
    if route is Route.RESPONSES:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        return (fmt if isinstance(fmt, dict) else None), "text.format"
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None, "response_format"
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return {"type": "json_schema", **fmt["json_schema"]}, "response_format.json_schema"
    return fmt, "response_format"


def _tool_defs(body: dict[str, Any], route: Route) -> list[tuple[str, dict[str, Any], str]]:
    """(name, function definition, param path) per declared tool."""
    out: list[tuple[str, dict[str, Any], str]] = []
    tools = body.get("tools")
    if not isinstance(tools, list):
        return out
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type", "function")
        if route is Route.RESPONSES:
            fn: Any = tool if kind == "function" else None
            path = f"tools[{i}].parameters"
        else:
            fn = tool.get(kind) if isinstance(tool.get(kind), dict) else None
            path = f"tools[{i}].function.parameters"
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append((fn["name"], fn if kind == "function" else {}, path))
        elif isinstance(tool.get("name"), str):
            out.append((tool["name"], {}, path))
        else:
            out.append((str(kind), {}, path))  # built-in tools (web_search ...) by type
    return out


def declared_tool_names(body: dict[str, Any], route: Route) -> list[str]:
    return [name for name, _fn, _path in _tool_defs(body, route)]


def plan_from_request(
    body: dict[str, Any],
    route: Route,
    cache: SchemaCache,
    *,
    use_request: bool = True,
    policy_schema: CompiledSchema | None = None,
    allowed_tools: frozenset[str] | None = None,
    lenient: bool = False,
) -> Plan | None:
    """The plan for this request, or None when nothing constrains the output."""
    content: list[CompiledSchema] = []
    json_object = False
    tools: dict[str, ToolSpec] | None = None
    sources: list[str] = []
    if use_request:
        fmt, param = _format_of(body, route)
        kind = fmt.get("type") if fmt else None
        if fmt is not None and kind == "json_schema":
            schema = fmt.get("schema", {})
            try:
                content.append(cache.get(schema, str(fmt.get("name") or ""), bool(fmt.get("strict"))))
            except SchemaInvalid as exc:
                raise RequestSchemaError(str(exc), f"{param}.schema") from None
            sources.append("response_format")
        elif kind == "json_object":
            json_object = True
            sources.append("response_format")
        defs = _tool_defs(body, route)
        if defs:
            tools = {}
            for name, fn, path in defs:
                params = fn.get("parameters")
                compiled = None
                if params is not None:
                    try:
                        compiled = cache.get(params, name, bool(fn.get("strict")))
                    except SchemaInvalid as exc:
                        raise RequestSchemaError(str(exc), path) from None
                tools[name] = ToolSpec(name, compiled)
            sources.append("tools")
    if policy_schema is not None:
        content.append(policy_schema)
        sources.append("policy")
    if allowed_tools is not None:
        sources.append("allowed_tools")
    if not content and not json_object and tools is None and allowed_tools is None:
        return None
    return Plan(tuple(content), json_object or bool(content), tools, allowed_tools, lenient, tuple(sources))
