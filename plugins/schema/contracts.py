"""Policy contracts: schema files next to the policy, compiled once per revision, matched per request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from proxy.chain import RequestContext
from proxy.chain.chain import Matcher
from proxy.contracts import SchemaInvalid, compile_schema
from proxy.contracts.compiled import CompiledSchema
from proxy.errors import ConfigError

from .config import PolicyContract


@dataclass(frozen=True, slots=True)
class Contract:
    matcher: Matcher | None
    schema: CompiledSchema | None
    allowed_tools: frozenset[str] | None


def load_schema(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else orjson.loads(text)


def compile_contract(i: int, spec: PolicyContract, policy_dir: str) -> Contract:
    """Policy schemas compile here, once per revision; a bad one fails the policy load."""
    schema = spec.json_schema
    where = f"contracts[{i}]"
    if spec.json_schema_file is not None:
        path = Path(policy_dir) / spec.json_schema_file
        try:
            schema = load_schema(path)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"schema: {where}: cannot read {path}: {exc}") from exc
    try:
        compiled = compile_schema(schema, where, spec.strict) if schema is not None else None
    except SchemaInvalid as exc:
        raise ConfigError(f"schema: {where}: {exc}") from exc
    matcher = Matcher(spec.match) if spec.match is not None else None
    allowed = frozenset(spec.allowed_tools) if spec.allowed_tools is not None else None
    return Contract(matcher, compiled, allowed)


def first_match(contracts: tuple[Contract, ...], ctx: RequestContext) -> Contract | None:
    """The first contract whose ``match`` selects this request (first match wins)."""
    for contract in contracts:
        if contract.matcher is None or contract.matcher.matches(ctx):
            return contract
    return None
