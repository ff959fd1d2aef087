"""Load a policy file: YAML with positions -> validated model, errors as ``file:line:col``.

The YAML is composed once into nodes (which carry marks) and constructed from those nodes,
so a pydantic error path like ``plugins.0.patterns.1`` can be walked back to the exact node
and reported where the user must edit.

Every error says what was probably meant (``proxy/policy/hints.py``): an unknown field gets the
closest field name of its model, an unknown literal or name the closest allowed value. Checks
that cannot fail a load (a ``when.models`` glob that matches no configured model) come back as
warnings with the same ``file:line:col`` (``proxy/policy/lint.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from proxy.errors import ConfigError
from proxy.policy.hints import explain, refine_node
from proxy.policy.schema import PolicyBase

#: Maps a path in the policy (``("plugins", 0, "when", "models", 1)``) to ``file:line:col``.
Locate = Callable[[tuple[int | str, ...]], str]


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
        message = f"invalid YAML: {exc.problem or exc.context}"
        if mark is not None and _env_in_flow(text, mark.index):
            # `{api_key: ${KEY}}`: in flow style `{` opens a mapping, so `${KEY}` is not a plain value.
            message = (
                "invalid YAML: ${...} inside a flow-style {...} or [...] must be quoted, "
                'e.g. {api_key: "${NAME}"}'
            )
            where = f"{source}:{mark.line + 1}:{mark.column}"  # at the `$`
        raise ConfigError(message, location=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", location=source) from exc
    return data, node


def _env_in_flow(text: str, index: int) -> bool:
    """True when the YAML error is at the ``{`` of a ``${`` (an unquoted env reference in flow style)."""
    return 0 < index < len(text) and text[index] == "{" and text[index - 1] == "$"


def location_of(root: yaml.Node, loc: tuple[int | str, ...], source: str, key_node: bool = False) -> str:
    """``file:line:col`` of a validation error's path in any YAML document (policy or case file)."""
    return _where(source, _node_at(root, loc, key_node))


def path_of(loc: tuple[int | str, ...], root: yaml.Node) -> str:
    """A validation error's path as the user writes it: ``cases[0].expect.status``."""
    return _path(loc, root)


def locator(node: yaml.Node, source: str) -> Locate:
    """``file:line:col`` of the node at a policy path (its parent when the path is absent)."""
    return lambda loc: _where(source, _node_at(node, loc))


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
            message = explain(err, model)
            if message is None:  # noise: a consequence of another error already listed
                continue
            loc = tuple(err["loc"])
            at = _node_at(node, loc, key_node=err["type"] == "extra_forbidden")
            at, key = refine_node(at, err)
            path = (_path(loc, node) + key).lstrip(".") or "(policy)"
            lines.append(f"{_where(source, at)}: {path}: {message}")
        if not lines:  # every error was filtered as noise: never hide the failure
            lines = [f"{source}:1:1: (policy): {exc}"]
        first = lines[0].split(": ", 1)
        raise ConfigError(
            "\n".join([first[1], *lines[1:]]) if len(lines) > 1 else first[1], location=first[0]
        ) from exc


def load_policy_text(text: str, source: str, model: type[PolicyBase]) -> PolicyBase:
    data, node = parse_yaml(text, source)
    return validate_policy(data, node, source, model)


def load_policy_checked(text: str, source: str, model: type[PolicyBase]) -> tuple[PolicyBase, list[str]]:
    """``load_policy_text`` plus its warnings (``file:line:col: message``), for check and reloads."""
    from proxy.policy.lint import lint_policy

    data, node = parse_yaml(text, source)
    policy = validate_policy(data, node, source, model)
    assert node is not None  # validate_policy refuses an empty document
    return policy, lint_policy(policy, locator(node, source))


def read_policy_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("policy file not found", location=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy file: {exc}", location=str(path)) from exc
