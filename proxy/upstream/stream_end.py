"""Did the upstream end its stream properly? A cheap check for streams piped byte for byte.

An upstream may end a stream by closing a close-delimited response: no Content-Length, no
chunked terminator, so the HTTP client sees a normal end of body. Without a check the client
got a 200 that simply stopped, with no ``[DONE]`` and no error. Each wire format has a proper
end (the upstream side always speaks OpenAI: an Anthropic upstream is translated to chat
chunks first, and its ``message_stop`` becomes ``[DONE]``):

* chat completions: ``data: [DONE]`` is the last event, so only the stream's last bytes are
  kept (a bounded slice per chunk, however the marker is split across reads) and searched
  once, at the end;
* Responses API: no ``[DONE]``; the last event is ``response.completed`` / ``incomplete`` /
  ``failed`` (or ``error``), which carries the whole response and may span many chunks, so each
  chunk is searched for the terminal event's ``"type"`` (one regex pass over bytes the socket
  just delivered, plus a few bytes across the chunk boundary).

An upstream's own in-band error counts as an end. Parsed streams (stream filters, Anthropic
clients) ask their codec instead (``ChatStreamCodec.ended`` / ``ResponsesStreamCodec.ended``).
"""

from __future__ import annotations

import re

from proxy.errors import UpstreamError
from proxy.models.chat import Route

_TAIL = 256
_CHAT_END = re.compile(rb"data: ?\[DONE\]|\"error\"\s*:\s*\{")
_RESPONSES_END = re.compile(rb"\"type\"\s*:\s*\"(?:response\.(?:completed|incomplete|failed)|error)\"")
_SPLICE = 64  # longer than any terminal marker


def incomplete_stream() -> UpstreamError:
    """The in-band error for a stream the upstream ended without its end marker."""
    return UpstreamError(
        "The upstream provider ended the stream before it was complete.",
        code="upstream_stream_incomplete",
        detail="the upstream closed the stream without its end event ([DONE] / response.completed)",
    )


class EndWatch:
    """Per stream: ``see`` every chunk, then ask ``ended``."""

    __slots__ = ("_responses", "_seen", "_tail")

    def __init__(self, route: Route) -> None:
        self._responses = route is Route.RESPONSES
        self._seen = False
        self._tail = b""

    def see(self, chunk: bytes) -> None:
        if not self._responses:
            # Only the stream's last bytes matter for chat: keep a bounded slice.
            self._tail = chunk[-_TAIL:] if len(chunk) >= _TAIL else (self._tail + chunk)[-_TAIL:]
            return
        if self._seen:
            return
        if _RESPONSES_END.search(chunk) or _RESPONSES_END.search(self._tail + chunk[:_SPLICE]):
            self._seen = True
        self._tail = chunk[-_SPLICE:] if len(chunk) >= _SPLICE else (self._tail + chunk)[-_SPLICE:]

    @property
    def ended(self) -> bool:
        if self._responses:
            return self._seen
        return _CHAT_END.search(self._tail) is not None
