"""The case file of ``policy-sidecar test``: golden requests and what the policy must do to them.

A case file is YAML (``policies/tests/*.yaml``)::

    policy: ../pii.yaml            # optional; ``--policy`` on the command line wins
    cases:
      - name: an email is redacted and restored
        input: "Write to bob@example.com"      # one user message, or a list of messages,
                                               # or ``body:`` (a whole request body)
        answer: "Sure, I will write to {last_user}"   # scripted upstream reply (optional)
        expect:
          allowed: true
          redacted: {EMAIL_ADDRESS: [bob@example.com]}  # types (a list) or types -> values
          output_contains: [bob@example.com]           # restored for the client

Validated with pydantic (``extra="forbid"``: a typo is an error, not a silently ignored check)
and reported as ``file:line:col`` with the policy loader's locator, so a bad case file fails as
clearly as a bad policy. ``case_file_schema()`` is the JSON Schema for editors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.errors import ConfigError
from proxy.policy.loader import location_of, parse_yaml, path_of

ROUTES = ("chat.completions", "responses", "embeddings", "messages")


class Expect(BaseModel):
    """What must hold for the case, in every run (non-stream and every stream split)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool | None = Field(
        default=None, description="true: no enforced block; false: some enforced block"
    )
    blocked: str | None = Field(
        default=None, description="an enforced block by this step id, or step/rule (e.g. pii/request_pii)"
    )
    redacted: list[str] | dict[str, list[str]] | None = Field(
        default=None,
        description="entity types an enforced redact/mask/hash decision named; as a mapping, also the "
        "values of each type, which must never reach the upstream",
    )
    flagged: list[str] | None = Field(default=None, description="step or step/rule ids that recorded a flag")
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status the client gets")
    headers: dict[str, str] | None = Field(
        default=None, description="response headers the client gets (name -> exact value)"
    )
    output: str | None = Field(default=None, description="the exact answer text the client gets")
    output_contains: list[str] = Field(default_factory=list, description="substrings of the answer text")
    output_not_contains: list[str] = Field(
        default_factory=list, description="must not appear in the answer text (e.g. leaked values)"
    )
    upstream_not_contains: list[str] = Field(
        default_factory=list, description="must never appear in what the upstream receives"
    )
    error_code: str | None = Field(default=None, description="error.code of an error envelope")

    def redacted_types(self) -> list[str]:
        if self.redacted is None:
            return []
        return list(self.redacted)

    def redacted_values(self) -> list[str]:
        if not isinstance(self.redacted, dict):
            return []
        return [v for values in self.redacted.values() for v in values]


class Case(BaseModel):
    """One golden request; exactly one of ``input`` and ``body``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    route: str = Field(default="chat.completions", description="any of: " + ", ".join(ROUTES))
    input: str | list[dict[str, Any]] | None = Field(
        default=None, description="a user message, or a list of chat messages"
    )
    body: dict[str, Any] | None = Field(default=None, description="the whole JSON request body")
    model: str = "gpt-4o-mini"
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")
    answer: str | None = Field(
        default=None,
        description="scripted upstream reply ({last_user} = the last user message as the upstream got "
        "it); with an answer the case also runs streamed, split at every boundary",
    )
    upstream_status: int | None = Field(default=None, ge=400, le=599, description="scripted upstream error")
    stream: bool = Field(default=True, description="false: run the case non-stream only")
    expect: Expect

    @model_validator(mode="after")
    def _one_request(self) -> Case:
        if (self.input is None) == (self.body is None):
            raise ValueError("give exactly one of input (messages) and body (a whole request body)")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        return self

    def request_body(self) -> dict[str, Any]:
        if self.body is not None:
            return dict(self.body)
        messages = [{"role": "user", "content": self.input}] if isinstance(self.input, str) else self.input
        if self.route == "responses":
            return {"model": self.model, "input": messages}
        if self.route == "embeddings":
            return {"model": self.model, "input": self.input}
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.route == "messages":
            body["max_tokens"] = 256
        return body


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str | None = Field(default=None, description="policy YAML, relative to this file")
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> CaseFile:
        seen: set[str] = set()
        for case in self.cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}: names identify failures")
            seen.add(case.name)
        return self


def case_file_schema() -> dict[str, Any]:
    """JSON Schema of a case file (for editors: ``# yaml-language-server: $schema=...``)."""
    return CaseFile.model_json_schema()


def load_cases(path: Path) -> CaseFile:
    """Parse and validate a case file; every error names ``file:line:col`` and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read case file: {exc}", location=str(path)) from exc
    data, node = parse_yaml(text, str(path))
    if node is None or not isinstance(data, dict):
        raise ConfigError("a case file is a mapping with a 'cases:' list", location=str(path))
    try:
        return CaseFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            where = location_of(node, loc, str(path), key_node=err["type"] == "extra_forbidden")
            lines.append(f"{where}: {path_of(loc, node) or '(file)'}: {err['msg']}")
        first_where, first = lines[0].split(": ", 1)
        raise ConfigError("\n".join([first, *lines[1:]]), location=first_where) from exc
