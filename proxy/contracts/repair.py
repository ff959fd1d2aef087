"""The follow-up that asks a model to fix an answer that broke its contract.

The repair request is the original request plus two messages: the model's own invalid answer
(as an assistant turn, so it sees what it wrote) and a user turn listing what was wrong, with
the validator's messages. Everything else (model, tools, ``response_format``, sampling,
``max_tokens``) is kept, so the repaired answer is held to exactly the same contract.

The invalid answer is quoted back as text even when it was a tool call: a real assistant
``tool_calls`` turn would have to be followed by tool results the sidecar does not have.
Both texts are bounded, so a long broken answer cannot blow up the prompt.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from proxy.contracts.assemble import Output
from proxy.contracts.verdict import Verdict
from proxy.models.chat import Route

MAX_ECHO_CHARS = 4000
MAX_LISTED = 8


def _previous_answer(output: Output) -> str:
    parts: list[str] = []
    for choice in output.choices[:1]:
        if choice.content:
            parts.append(choice.content)
        for call in choice.calls:
            parts.append(f"(tool call) {call.name or ''}({call.arguments})")
    text = "\n".join(parts) or "(empty answer)"
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + " …(cut)"


def repair_instruction(verdict: Verdict) -> str:
    lines = [f"- {v.message}" for v in verdict.violations[:MAX_LISTED]]
    if len(verdict.violations) > MAX_LISTED:
        lines.append(f"- … and {len(verdict.violations) - MAX_LISTED} more problems.")
    tools = any(v.where == "tool_call" for v in verdict.violations)
    ask = (
        "Call only the declared tools, with arguments that are valid JSON matching each tool's parameters."
        if tools
        else "Reply again with only the corrected JSON value: no prose, no code fences."
    )
    return (
        "Your previous answer did not satisfy the required output format:\n" + "\n".join(lines) + "\n" + ask
    )


def repair_body(body: dict[str, Any], route: Route, output: Output, verdict: Verdict) -> bytes:
    """The bytes of the repair request (see module doc); ``body`` is not modified."""
    new = copy.copy(body)
    turns = [
        {"role": "assistant", "content": _previous_answer(output)},
        {"role": "user", "content": repair_instruction(verdict)},
    ]
    if route is Route.RESPONSES:
        inp = body.get("input")
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else list(inp or [])
        new["input"] = items + turns
    else:
        new["messages"] = list(body.get("messages") or []) + turns
    return orjson.dumps(new)
