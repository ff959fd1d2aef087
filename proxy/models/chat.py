"""Provider-neutral request and response views.

The body stays a plain dict, exactly as the client sent it, so fields the proxy does not
understand are preserved end to end and an untouched request is forwarded byte for byte (no
re-serialisation cost on the hot path). Plugins read and edit text through ``TextSlot``s,
which mark the owner dirty so the route knows to re-encode.

The OpenAI chat format is the neutral shape: it is the de facto lingua franca of LLM APIs, and
adapters for other providers translate to and from it below the chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class Route(StrEnum):
    """The API operation a request belongs to (used by ``when:`` matching and metrics)."""

    CHAT = "chat.completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    PASSTHROUGH = "passthrough"


class _Dirty:
    """Shared dirty flag: a slot edit marks its owning request or response as changed."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty = False


@dataclass(slots=True)
class TextSlot:
    """One editable piece of text inside a body.

    ``kind`` says where it lives: ``message`` (chat content), ``instructions``, ``input``
    (embeddings / Responses input), ``tool_result`` (a ``tool`` role message),
    ``tool_arguments`` (a tool call's JSON arguments in a response).
    """

    role: str
    kind: str
    text: str
    container: Any
    key: Any
    owner: _Dirty
    name: str | None = None
    message_index: int = 0

    def set(self, text: str) -> None:
        if text != self.text:
            self.container[self.key] = text
            self.text = text
            self.owner.dirty = True


def _content_slots(
    msg: dict[str, Any], owner: _Dirty, kind: str, role: str, index: int
) -> Iterator[TextSlot]:
    name = msg.get("name") if isinstance(msg.get("name"), str) else None
    content = msg.get("content")
    if isinstance(content, str):
        yield TextSlot(role, kind, content, msg, "content", owner, name, index)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield TextSlot(role, kind, part["text"], part, "text", owner, name, index)


class ChatRequest(_Dirty):
    """A client request on a chain route, as a view over its JSON body."""

    __slots__ = ("body", "raw", "route")

    def __init__(self, body: dict[str, Any], route: Route, raw: bytes | None = None) -> None:
        super().__init__()
        self.body = body
        self.route = route
        self.raw = raw

    @property
    def model(self) -> str:
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    @model.setter
    def model(self, value: str) -> None:
        self.body["model"] = value
        self.dirty = True

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def user(self) -> str | None:
        user = self.body.get("user")
        return user if isinstance(user, str) else None

    def text_slots(self) -> Iterator[TextSlot]:
        """Every piece of prompt text, in order, with its role and kind."""
        body = self.body
        if self.route is Route.EMBEDDINGS:
            inp = body.get("input")
            if isinstance(inp, str):
                yield TextSlot("user", "input", inp, body, "input", self)
            elif isinstance(inp, list):
                for i, item in enumerate(inp):
                    if isinstance(item, str):
                        yield TextSlot("user", "input", item, inp, i, self, None, i)
            return
        if self.route is Route.RESPONSES:
            if isinstance(body.get("instructions"), str):
                yield TextSlot("system", "instructions", body["instructions"], body, "instructions", self)
            inp = body.get("input")
            if isinstance(inp, str):
                yield TextSlot("user", "input", inp, body, "input", self)
                return
            messages = inp if isinstance(inp, list) else []
        else:
            if isinstance(body.get("system"), str):  # Anthropic-style system prompt
                yield TextSlot("system", "instructions", body["system"], body, "system", self)
            messages = body.get("messages") or []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "function_call_output" and isinstance(msg.get("output"), str):
                yield TextSlot("tool", "tool_result", msg["output"], msg, "output", self, None, i)
                continue
            role = msg["role"] if isinstance(msg.get("role"), str) else "user"
            kind = "tool_result" if role in ("tool", "function") else "message"
            yield from _content_slots(msg, self, kind, role, i)

    def encode(self) -> bytes:
        """The bytes to send upstream: the original ones unless a plugin changed the body."""
        if self.raw is not None and not self.dirty:
            return self.raw
        return orjson.dumps(self.body)


class ChatResponse(_Dirty):
    """A complete (non-streamed) upstream response, as a view over its JSON body."""

    __slots__ = ("body", "raw", "route", "status")

    def __init__(self, body: dict[str, Any], route: Route, raw: bytes | None = None, status: int = 200):
        super().__init__()
        self.body = body
        self.route = route
        self.raw = raw
        self.status = status

    @property
    def model(self) -> str:
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    @property
    def usage(self) -> dict[str, Any]:
        usage = self.body.get("usage")
        return usage if isinstance(usage, dict) else {}

    def text_slots(self) -> Iterator[TextSlot]:
        """Every piece of generated text (message content and tool-call arguments)."""
        body = self.body
        if self.route is Route.RESPONSES:
            for i, item in enumerate(body.get("output") or []):
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                    yield TextSlot(
                        "assistant",
                        "tool_arguments",
                        item["arguments"],
                        item,
                        "arguments",
                        self,
                        item.get("name"),
                        i,
                    )
                for part in item.get("content") or []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield TextSlot("assistant", "message", part["text"], part, "text", self, None, i)
            return
        for choice in body.get("choices") or []:
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                continue
            msg = choice["message"]
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            if isinstance(msg.get("content"), str):
                yield TextSlot("assistant", "message", msg["content"], msg, "content", self, None, index)
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    yield TextSlot(
                        "assistant",
                        "tool_arguments",
                        fn["arguments"],
                        fn,
                        "arguments",
                        self,
                        fn.get("name"),
                        index,
                    )

    def encode(self) -> bytes:
        if self.raw is not None and not self.dirty:
            return self.raw
        return orjson.dumps(self.body)
