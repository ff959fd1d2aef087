"""Did the upstream end its stream properly? A cheap check for streams piped byte for byte.

An upstream may end a stream by closing a close-delimited response: no Content-Length, no
chunked terminator, so the HTTP client sees a normal end of body. Without a check the client
got a 200 that simply stopped, with no ``[DONE]`` and no error. Each wire format has a proper
end (the upstream side always speaks OpenAI: an Anthropic upstream is translated to chat
chunks first, and its ``message_stop`` becomes ``[DONE]``):

* chat completions: ``data: [DONE]`` is the last event, so only the stream's tail is looked at,
  once, at the end (no per-chunk work at all);
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


def stream_cut() -> UpstreamError:
    """The in-band error for a stream the upstream ended without its end marker."""
    return UpstreamError(
        "The upstream provider ended the stream before it was complete.",
        code="upstream_stream_incomplete",
        detail="the upstream closed the stream without its end event ([DONE] / response.completed)",
    )


class EndWatch:
    """Per stream: ``per_chunk`` says whether ``see`` must be called for every chunk."""

    __slots__ = ("_carry", "_seen", "per_chunk")

    def __init__(self, route: Route) -> None:
        self.per_chunk = route is Route.RESPONSES
        self._seen = False
        self._carry = b""

    def see(self, chunk: bytes) -> None:
        if self._seen:
            return
        if _RESPONSES_END.search(chunk) or _RESPONSES_END.search(self._carry + chunk[:_SPLICE]):
            self._seen = True
        self._carry = chunk[-_SPLICE:]

    def ended(self, prev: bytes, last: bytes) -> bool:
        """``prev``, ``last``: the stream's two last chunks (the piped loop keeps them anyway)."""
        if self.per_chunk:
            return self._seen
        tail = last[-_TAIL:] if len(last) >= _TAIL else prev[-_TAIL:] + last
        return _CHAT_END.search(tail) is not None
