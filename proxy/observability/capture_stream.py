"""A streamed answer, kept for capture: the neutral stream events joined into the JSON body a
non-streamed answer would have had, so ``replay``, ``calibrate`` and the review page read a
captured stream exactly like a captured whole answer.

Why from the relay's events and not the wire: the relay already decodes the upstream SSE into
provider-neutral events (``proxy.models.stream``) whenever filters run or the client speaks
another format (Anthropic clients); joining those is a few list appends per event. On the piped
path (no filters, OpenAI client) the relay decodes a second copy of the bytes for this only when
capture keeps answers: with capture off, or ``responses: false``, no ``StreamCapture`` exists and
the relay pays nothing.

Why a cap (``max_response_kb``): a stream has no ``Content-Length`` the body limit could check,
and the capture record sits in memory until the writer thread takes it. Text and tool-call
arguments beyond the cap are cut off; the record then says ``response_truncated: true``. The
events are the provider's, before any stream filter, like the whole answer kept before response
hooks (``capture.keep_answer``).
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from proxy.chain.context import RequestContext
from proxy.contracts.assemble import Output, StreamAssembler
from proxy.models.chat import Route
from proxy.models.stream import RawEvent, StreamEvent, TextDelta, ToolCallDelta
from proxy.observability.capture import REQUEST_KEY, RESPONSE_KEY, STREAM_KEY
from proxy.policy.compiler import CompiledPolicy
from proxy.upstream.sse import SSEParser

_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class StreamCapture:
    """Joins one stream's events, within ``limit`` characters of text and arguments."""

    __slots__ = ("_assembler", "_final", "_room", "route", "truncated")

    def __init__(self, route: Route, limit: int) -> None:
        self.route = route
        self._assembler = StreamAssembler()
        self._room = limit
        self._final: dict[str, object] | None = None
        self.truncated = False

    def feed(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            if len(event.text) > self._room:
                event = replace(event, text=event.text[: self._room])
                self.truncated = True
            self._room -= len(event.text)
        elif isinstance(event, ToolCallDelta):
            if len(event.arguments) > self._room:
                event = replace(event, arguments=event.arguments[: self._room])
                self.truncated = True
            self._room -= len(event.arguments)
        elif isinstance(event, RawEvent) and event.event in _FINAL_EVENTS:
            self._keep_final(event.data)
            return
        self._assembler.feed(event)

    def _keep_final(self, data: bytes) -> None:
        """The Responses API's last event carries the whole response object: kept as is, if it fits."""
        if len(data) > self._room:
            self.truncated = True
            return
        events = SSEParser().feed(data)
        try:
            payload = orjson.loads(events[0].data) if events else None
        except orjson.JSONDecodeError:
            return
        response = payload.get("response") if isinstance(payload, dict) else None
        if isinstance(response, dict):
            self._final = response

    def body(self, model: str) -> bytes:
        """The answer as a chat completion (or, on the Responses route, a response object)."""
        if self._final is not None:
            return orjson.dumps(self._final)
        out = self._assembler.output()
        if self.route is Route.RESPONSES:
            return orjson.dumps(_responses_body(out, model))
        return orjson.dumps(_chat_body(out, model))


def _chat_body(out: Output, model: str) -> dict[str, object]:
    choices = []
    for choice in out.choices:
        message: dict[str, object] = {"role": "assistant", "content": choice.content}
        if choice.refusal is not None:
            message["refusal"] = choice.refusal
        if choice.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in choice.calls
            ]
        choices.append({"index": choice.index, "message": message, "finish_reason": choice.finish})
    body: dict[str, object] = {"object": "chat.completion", "model": model, "choices": choices}
    if out.usage is not None:
        body["usage"] = out.usage
    return body


def _responses_body(out: Output, model: str) -> dict[str, object]:
    """Deltas only (the stream ended before ``response.completed``, or it did not fit): a minimal
    response object that ``proxy.contracts.output_from_body`` reads back into the same text."""
    text = "".join(c.content or "" for c in out.choices)
    content = [{"type": "output_text", "text": text}]
    body: dict[str, object] = {
        "object": "response",
        "model": model,
        "status": "incomplete",
        "output": [{"type": "message", "role": "assistant", "content": content}],
    }
    if out.usage is not None:
        body["usage"] = out.usage
    return body


def open_capture(policy: CompiledPolicy, ctx: RequestContext, route: Route) -> StreamCapture | None:
    """A ``StreamCapture`` when the policy keeps answers and this request's body was kept; else None."""
    if not policy.capture_on:
        return None
    cfg = policy.policy.observability.capture
    if not cfg.responses or REQUEST_KEY not in ctx.state:
        return None
    return StreamCapture(route, int(cfg.max_response_kb * 1024))


def keep_stream(ctx: RequestContext, cap: StreamCapture, completed: bool) -> None:
    """At the stream's end: the joined answer where the capture observer reads a whole one."""
    ctx.state[RESPONSE_KEY] = cap.body(ctx.response_model or ctx.model or "")
    ctx.state[STREAM_KEY] = {"truncated": cap.truncated, "completed": completed}
