"""The model's output in one neutral shape, whatever it came in.

Three inputs, one ``Output``: a non-streamed body (chat completion or Responses object), a
whole SSE byte string (what the ``buffer`` stream mode collects), or stream events fed one by
one (what the ``validate_at_end`` filter sees). Streamed tool calls arrive as fragments keyed
by (choice, call index); they are joined per call, so each call's arguments are validated on
their own. For the Responses API the final ``response.completed`` (or ``incomplete``) event
carries the whole response, which is used as is; deltas are the fallback when it never came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.models.chat import Route
from proxy.models.stream import Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec
from proxy.upstream.sse import SSEParser

_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass(slots=True)
class CallOut:
    name: str | None
    arguments: str
    id: str | None = None


@dataclass(slots=True)
class ChoiceOut:
    index: int
    content: str | None = None
    refusal: str | None = None
    calls: list[CallOut] = field(default_factory=list)
    finish: str | None = None


@dataclass(slots=True)
class Output:
    choices: list[ChoiceOut] = field(default_factory=list)
    usage: dict[str, Any] | None = None

    def total_tokens(self) -> int:
        """Reported tokens, or a rough estimate (4 characters a token) when none were reported."""
        usage = self.usage or {}
        total = usage.get("total_tokens")
        if isinstance(total, int):
            return total
        chars = sum(len(c.content or "") + sum(len(k.arguments) for k in c.calls) for c in self.choices)
        return chars // 4


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts)
    return None


def _chat_choices(body: dict[str, Any]) -> list[ChoiceOut]:
    out: list[ChoiceOut] = []
    for i, choice in enumerate(body.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        msg: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
        calls = []
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                args = fn.get("arguments")
                calls.append(CallOut(fn.get("name"), args if isinstance(args, str) else "", call.get("id")))
        refusal = msg.get("refusal") if isinstance(msg.get("refusal"), str) else None
        index = choice.get("index", i) if isinstance(choice.get("index"), int) else i
        out.append(
            ChoiceOut(index, _text_of(msg.get("content")), refusal, calls, choice.get("finish_reason"))
        )
    return out


def _responses_choice(body: dict[str, Any]) -> ChoiceOut:
    """The Responses API has one answer: its message texts joined, its function calls in order."""
    texts: list[str] = []
    refusal: str | None = None
    choice = ChoiceOut(0)
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            args = item.get("arguments")
            choice.calls.append(
                CallOut(item.get("name"), args if isinstance(args, str) else "", item.get("call_id"))
            )
        elif item.get("type") == "message":
            for part in item.get("content") or ():
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusal = part["refusal"]
                elif isinstance(part.get("text"), str):
                    texts.append(part["text"])
    choice.content = "".join(texts) if texts else None
    choice.refusal = refusal
    status = body.get("status")
    choice.finish = "length" if status == "incomplete" else str(status) if status else None
    return choice


def output_from_body(body: dict[str, Any], route: Route) -> Output:
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    if route is Route.RESPONSES:
        return Output([_responses_choice(body)], usage)
    return Output(_chat_choices(body), usage)


class StreamAssembler:
    """Joins stream events into an ``Output``; one per stream, fed in order."""

    __slots__ = ("_calls", "_final", "_finish", "_refusals", "_texts", "_usage")

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._refusals: dict[int, list[str]] = {}
        self._calls: dict[tuple[int, int], CallOut] = {}
        self._finish: dict[int, str | None] = {}
        self._usage: dict[str, Any] | None = None
        self._final: Output | None = None

    def feed(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            texts = self._texts.setdefault(event.index, [])
            if event.text:
                texts.append(event.text)
            delta = (event.extra or {}).get("delta") or {}
            if isinstance(delta, dict) and isinstance(delta.get("refusal"), str):
                self._refusals.setdefault(event.index, []).append(delta["refusal"])
        elif isinstance(event, ToolCallDelta):
            key = (event.index, event.call_index)
            call = self._calls.get(key)
            if call is None:
                call = self._calls[key] = CallOut(event.name, "", event.id)
            elif event.name and not call.name:
                call.name = event.name
            call.arguments += event.arguments
        elif isinstance(event, Finish):
            self._finish[event.index] = event.reason
        elif isinstance(event, Usage):
            self._usage = dict(event.data)
        elif isinstance(event, RawEvent) and event.event in _FINAL_EVENTS:
            self._final = _final_response(event.data)

    def output(self) -> Output:
        if self._final is not None:
            return self._final
        indices = sorted({*self._texts, *self._finish, *(k[0] for k in self._calls)})
        choices = []
        for index in indices:
            parts = self._texts.get(index)
            text = "".join(parts) if parts else None
            refusal = "".join(self._refusals[index]) if index in self._refusals else None
            calls = [self._calls[k] for k in sorted(self._calls) if k[0] == index]
            choices.append(ChoiceOut(index, text, refusal, calls, self._finish.get(index)))
        return Output(choices, self._usage)


def _final_response(raw: bytes) -> Output | None:
    events = SSEParser().feed(raw)
    try:
        payload = orjson.loads(events[0].data) if events else None
    except orjson.JSONDecodeError:
        return None
    response = payload.get("response") if isinstance(payload, dict) else None
    return output_from_body(response, Route.RESPONSES) if isinstance(response, dict) else None


def output_from_sse(data: bytes, route: Route) -> Output:
    """Decode a whole SSE byte string (chat chunks or Responses events) into an ``Output``."""
    codec = ResponsesStreamCodec() if route is Route.RESPONSES else ChatStreamCodec()
    parser = SSEParser()
    assembler = StreamAssembler()
    for sse in [*parser.feed(data), *parser.flush()]:
        for event in codec.decode(sse):
            assembler.feed(event)
    return assembler.output()
