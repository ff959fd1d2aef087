"""Load a policy file: YAML with positions -> validated model, errors as ``file:line:col``.

The YAML is composed once into nodes (which carry marks) and constructed from those nodes,
so a pydantic error path like ``plugins.0.patterns.1`` can be walked back to the exact node
and reported where the user must edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from proxy.errors import ConfigError
from proxy.policy.schema import PolicyBase


def _node_at(root: yaml.Node, loc: tuple[int | str, ...], key_node: bool = False) -> yaml.Node:
    """The deepest node along ``loc``; path elements the YAML lacks (union tags) are skipped.

    ``key_node``: point at the last key itself rather than its value (for unknown fields).
    """
    node = root
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = key if key_node and i == len(loc) - 1 else value
                    break
            else:
                # A missing field is reported at its parent mapping; a tag name is skipped.
                continue
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
    return node


def _where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _path(loc: tuple[int | str, ...], root: yaml.Node) -> str:
    parts: list[str] = []
    node: yaml.Node = root
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
            if isinstance(node, yaml.SequenceNode) and part < len(node.value):
                node = node.value[part]
            continue
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == part]
            if not match and parts:  # a union tag, not a YAML key
                continue
            if match:
                node = match[0]
        parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"invalid YAML: {exc.problem or exc.context}", location=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", location=source) from exc
    return data, node


def validate_policy(data: Any, node: yaml.Node | None, source: str, model: type[PolicyBase]) -> PolicyBase:
    if node is None or data is None:
        raise ConfigError("the policy file is empty (an empty file never replaces a policy)", location=source)
    if not isinstance(data, dict):
        raise ConfigError("the policy must be a YAML mapping", location=_where(source, node))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            where = _where(source, _node_at(node, loc, key_node=err["type"] == "extra_forbidden"))
            path = _path(loc, node) or "(policy)"
            lines.append(f"{where}: {path}: {err['msg']}")
        first = lines[0].split(": ", 1)
        raise ConfigError(
            "\n".join([first[1], *lines[1:]]) if len(lines) > 1 else first[1], location=first[0]
        ) from exc


def load_policy_text(text: str, source: str, model: type[PolicyBase]) -> PolicyBase:
    data, node = parse_yaml(text, source)
    return validate_policy(data, node, source, model)


def read_policy_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("policy file not found", location=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy file: {exc}", location=str(path)) from exc
