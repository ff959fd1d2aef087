"""Stream events: what stream filters see instead of wire bytes.

A codec below the chain turns provider SSE into these events and another turns them back
into the client's wire format. Events are immutable; a filter returns new ones.

``index`` is the independent text stream an event belongs to: the choice index for chat
completions, the output item index for the Responses API. Filters hold text back per index.

Wire fields the proxy does not interpret travel in two places on a ``TextDelta``:
``extra`` is bound to *this exact text* (role, logprobs, sequence numbers) and must be dropped
when a filter holds or changes the text (logprobs of redacted text would leak it); ``meta``
says *where* the text goes (Responses API item id, content index) and is kept on any text a
filter releases for that index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text for one choice."""

    index: int
    text: str
    extra: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: arguments arrive as string fragments."""

    index: int
    call_index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage reported by the provider (``stream_options.include_usage``)."""

    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return int(self.data.get("prompt_tokens", self.data.get("input_tokens", 0)) or 0)

    @property
    def completion_tokens(self) -> int:
        return int(self.data.get("completion_tokens", self.data.get("output_tokens", 0)) or 0)


@dataclass(frozen=True, slots=True)
class Finish:
    """A choice ended; ``reason`` is the provider's finish/stop reason."""

    index: int
    reason: str | None
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An in-band error (``{"message", "type", "param", "code"}``)."""

    error: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A wire event the codec does not interpret; passed to the client verbatim."""

    data: bytes
    event: str | None = None


StreamEvent = TextDelta | ToolCallDelta | Usage | Finish | ErrorEvent | RawEvent
