"""Check one ``Output`` against a ``Plan``: the single place that decides "valid or not".

Rules, per choice:

* A choice with tool calls: every call must name a tool the request declared (and the policy's
  allow-list, when there is one allows), and its arguments must be strict JSON that validates
  against that tool's ``parameters``. Arguments are never extracted leniently: the SDKs feed
  them straight to ``json.loads``.
* A choice without tool calls, when the plan checks content: the content must hold a JSON value
  (strictly, or leniently when the policy allows), an object for ``json_object`` / schemas, and
  valid against every content schema. A refusal (``message.refusal``) is a typed answer the
  SDKs surface on their own, so it is not a violation.

When lenient extraction was needed for a valid answer, the clean JSON text is kept in
``normalized`` so the plugin can hand the application what it asked for.

``Violation.message`` may quote the output and goes only into the repair prompt; ``code`` is
the record-safe form (where, path, keyword; tool names only when the request declared them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.contracts.assemble import CallOut, Output
from proxy.contracts.extract import ExtractError, extract_json
from proxy.contracts.request import Plan


@dataclass(frozen=True, slots=True)
class Violation:
    where: str  # content | tool_call
    choice: int
    path: str
    keyword: str  # schema keyword, or: parse, truncated, empty, not_object, unknown_tool, tool_not_allowed
    message: str  # may quote the output: repair prompt only
    tool: str | None = None  # only a declared tool's name

    @property
    def code(self) -> str:
        where = f"{self.where}({self.tool})" if self.tool else self.where
        return f"{where}{self.path[1:] if self.path != '$' else ''}:{self.keyword}"


@dataclass(slots=True)
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    normalized: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def codes(self, limit: int = 8) -> list[str]:
        return [v.code for v in self.violations[:limit]]

    def detail(self) -> dict[str, Any]:
        """Record-safe summary (no output text)."""
        return {"violations": self.codes(), "count": len(self.violations)}


def _content(plan: Plan, choice: int, text: str | None, finish: str | None, verdict: Verdict) -> None:
    if not text or not text.strip():
        verdict.violations.append(Violation("content", choice, "$", "empty", "The answer was empty."))
        return
    try:
        found = extract_json(text, plan.lenient)
    except ExtractError as exc:
        truncated = finish == "length" or "truncated" in str(exc)
        keyword = "truncated" if truncated else "parse"
        verdict.violations.append(Violation("content", choice, "$", keyword, str(exc).capitalize() + "."))
        return
    before = len(verdict.violations)
    if plan.json_object and not isinstance(found.value, dict):
        msg = "The answer must be a single JSON object."
        verdict.violations.append(Violation("content", choice, "$", "not_object", msg))
    for schema in plan.content:
        for p in schema.problems(found.value):
            msg = f"At {p.path}: {p.message}"
            verdict.violations.append(Violation("content", choice, p.path, p.keyword, msg))
    if len(verdict.violations) == before and found.how != "whole":
        verdict.normalized[choice] = found.text


def _call(plan: Plan, choice: int, call: CallOut, verdict: Verdict) -> None:
    name = call.name or ""
    declared = plan.tools or {}
    if name not in declared:
        names = ", ".join(sorted(declared)) or "none"
        msg = f"The tool {name[:64]!r} was not declared in the request (declared tools: {names})."
        verdict.violations.append(Violation("tool_call", choice, "$", "unknown_tool", msg))
        return
    if plan.allowed_tools is not None and name not in plan.allowed_tools:
        msg = f"The tool {name!r} is not allowed here."
        verdict.violations.append(Violation("tool_call", choice, "$", "tool_not_allowed", msg, name))
        return
    try:
        found = extract_json(call.arguments or "{}", lenient=False)
    except ExtractError as exc:
        keyword = "truncated" if "truncated" in str(exc) else "parse"
        msg = f"The arguments of {name!r} are not valid JSON: {exc}."
        verdict.violations.append(Violation("tool_call", choice, "$", keyword, msg, name))
        return
    spec = declared[name]
    if spec.schema is not None:
        for p in spec.schema.problems(found.value):
            msg = f"Arguments of {name!r} at {p.path}: {p.message}"
            verdict.violations.append(Violation("tool_call", choice, p.path, p.keyword, msg, name))


def evaluate(plan: Plan, output: Output) -> Verdict:
    verdict = Verdict()
    if not output.choices and plan.checks_content:
        verdict.violations.append(Violation("content", 0, "$", "empty", "The answer had no content."))
    for choice in output.choices:
        if choice.calls:
            for call in choice.calls:
                _call(plan, choice.index, call, verdict)
        elif plan.checks_content and not (choice.refusal and not choice.content):
            _content(plan, choice.index, choice.content, choice.finish, verdict)
    return verdict
