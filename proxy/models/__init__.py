"""Provider-neutral request, response and stream-event models seen by plugins."""

from proxy.models.chat import ChatRequest, ChatResponse, Route, TextSlot
from proxy.models.stream import (
    ErrorEvent,
    Finish,
    RawEvent,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ErrorEvent",
    "Finish",
    "RawEvent",
    "Route",
    "StreamEvent",
    "TextDelta",
    "TextSlot",
    "ToolCallDelta",
    "Usage",
]
