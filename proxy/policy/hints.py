"""Turn pydantic's validation errors into messages that say what was meant.

pydantic says "Extra inputs are not permitted" and "Input should be 'enforce', 'shadow' or
'off'"; a user who typed ``entitis`` or ``shadw`` wants to read ``did you mean 'entities'?``.
This module adds that, for unknown fields (closest field of the model at the error's path),
unknown literals and plugin types (closest allowed value), unquoted YAML booleans where a word
was expected (``on``/``off``/``yes``/``no``), and points an ``UnknownName`` (raised by
``proxy.chain.names``) at the exact key or list item that is wrong.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from proxy.chain.names import UnknownName, suggest

_QUOTED = re.compile(r"'([^']*)'")


def _members(tp: Any) -> list[Any]:
    """``tp`` with Annotated, Optional and Union unwrapped into the types it can be."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp]


def _step(tp: Any, part: int | str) -> Any:
    members = _members(tp)
    for m in members:
        is_model = isinstance(m, type) and issubclass(m, BaseModel)
        if is_model and isinstance(part, str) and part in m.model_fields:
            return m.model_fields[part].annotation
        origin = typing.get_origin(m)
        args = typing.get_args(m)
        if origin in (list, tuple, Sequence) and isinstance(part, int) and args:
            return args[0]
        if origin is dict and isinstance(part, str) and len(args) == 2:
            return args[1]
    for m in members:  # a discriminated union's tag (the plugin type) in the path
        is_model = isinstance(m, type) and issubclass(m, BaseModel)
        if is_model and "type" in m.model_fields and m.model_fields["type"].default == part:
            return m
    return None


def field_names(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, ...]:
    """The field names of the model found at ``loc`` inside ``model`` (empty when unknown)."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return ()
    for m in _members(tp):
        if isinstance(m, type) and issubclass(m, BaseModel):
            return tuple(m.model_fields)
    return ()


def explain(err: ErrorDetails, model: type[BaseModel]) -> str | None:
    """The message for one error, with a did-you-mean where one can be found; None for noise."""
    kind, msg, value = err["type"], err["msg"], err.get("input")
    msg = msg.removeprefix("Value error, ")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "too_short" and isinstance(value, Sequence) and len(value) >= ctx.get("min_length", 0):
        return None  # the items were given but failed: their own errors say why
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        known = field_names(model, loc[:-1])
        hint = suggest(str(loc[-1]), known) if known else ""
        if known:
            return f"{msg}{hint}; known fields: {', '.join(known)}"
        return msg
    if kind == "literal_error" and isinstance(value, bool):
        word = "on/yes/true" if value else "off/no/false"
        return f"{msg}; YAML reads an unquoted {word} as a boolean: quote the word, e.g. 'off'"
    if kind == "literal_error" and isinstance(value, str | int):
        return msg + suggest(str(value), _QUOTED.findall(str(ctx.get("expected", ""))))
    if kind == "union_tag_invalid":
        return msg + suggest(str(ctx.get("tag", "")), _QUOTED.findall(str(ctx.get("expected_tags", ""))))
    return msg


def _find_scalar(node: yaml.Node, value: str) -> yaml.Node | None:
    """The first scalar in ``node``'s subtree whose text is or starts ``value`` (``up`` in ``up:model``)."""
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        return node if text == value or text.startswith(value + ":") else None
    children = [v for _k, v in node.value] if isinstance(node, yaml.MappingNode) else list(node.value)
    for child in children:
        hit = _find_scalar(child, value)
        if hit is not None:
            return hit
    return None


def refine_node(node: yaml.Node, err: ErrorDetails) -> tuple[yaml.Node, str]:
    """For an unknown name, the key or item that holds it (and its path suffix), else ``node``."""
    error = (err.get("ctx") or {}).get("error")
    if not isinstance(error, UnknownName):
        return node, ""
    suffix = ""
    for part in error.within:
        if isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if k.value == part]
            if not found:
                return node, suffix
            node, suffix = found[0], f"{suffix}.{part}"
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, suffix = node.value[part], f"{suffix}[{part}]"
    if error.within:
        hit = _find_scalar(node, error.value)
        return (hit, suffix) if hit is not None else (node, suffix)
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            if key.value == error.value:
                return key, f".{error.value}"
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if isinstance(item, yaml.ScalarNode) and item.value == error.value:
                return item, f"[{i}]"
    return node, ""
