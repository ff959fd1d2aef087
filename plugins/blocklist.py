"""``blocklist``: keywords and regular expressions, blocked or redacted in prompts and answers.

Small on purpose, but it exercises every text path of the chain: request hook (prompt),
response hook (whole answer) and a stream filter with hold-back, so a keyword split across
two streamed chunks is still caught before any part of it reaches the client.

Streams: text is held back only from where a match could still begin (partial matching), at
most ``max_match_chars``; ordinary text is released as it arrives, so the first token is not
delayed. Matching sees some released text as context, so ``\b`` and lookbehinds behave as on
the whole text; released text is final, which is what makes chunked and unchunked output
identical (property-tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import regex
from pydantic import Field, field_validator, model_validator

from proxy.chain import (
    Deps,
    Plugin,
    PluginConfig,
    RegexRewriter,
    RequestContext,
    Roles,
    StreamFilter,
    SurfaceHooks,
    TextStreamFilter,
)
from proxy.detectors import multiscan
from proxy.errors import Rejected
from proxy.models import ChatRequest, ChatResponse, TextSlot

#: Texts longer than this are matched in the CPU pool, with the GIL released (see ``_apply``).
OFFLOAD_CHARS = 65_536


class BlocklistConfig(PluginConfig):
    """Block or redact keywords and regular expressions in prompts, answers and streams."""

    type: Literal["blocklist"] = "blocklist"
    keywords: tuple[str, ...] = Field(default=(), description="literal strings")
    patterns: tuple[str, ...] = Field(default=(), description="regular expressions (Python syntax)")
    case_sensitive: bool = False
    action: Literal["block", "redact"] = "block"
    replacement: str = "[REDACTED]"
    scan_request: bool = True
    scan_response: bool = True
    roles: Roles = Field(
        default=("user", "tool", "function"),
        description="request roles scanned (system is trusted by default)",
    )
    max_match_chars: int = Field(
        default=64, ge=1, le=4096, description="longest possible regex match; the stream hold-back window"
    )
    message: str = Field(default="The request was blocked by policy.", description="public error message")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for p in patterns:
            try:
                regex.compile(p, regex.VERSION0)
            except regex.error as exc:
                raise ValueError(f"invalid regular expression {p!r}: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _not_empty(self) -> BlocklistConfig:
        if not self.keywords and not self.patterns:
            raise ValueError("a blocklist needs at least one keyword or pattern")
        return self


class BlocklistPlugin(Plugin[BlocklistConfig]):
    Config = BlocklistConfig
    guard = True

    def __init__(self, config: BlocklistConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        alternatives = [regex.escape(k) for k in config.keywords] + [f"(?:{p})" for p in config.patterns]
        flags = 0 if config.case_sensitive else regex.IGNORECASE
        # The ``regex`` module: same syntax as ``re``, plus the partial matching streams need.
        self._rx = regex.compile("|".join(alternatives), flags | regex.VERSION0)
        # One Hyperscan pass says "no match anywhere" for most texts: then neither the search nor
        # the substitution runs (issue 17; exact, see proxy/detectors/multiscan.py).
        self._gate = multiscan.gate([("blocklist", self._rx)])
        longest_keyword = max((len(k) for k in config.keywords), default=1)
        self._window = max(longest_keyword, config.max_match_chars if config.patterns else 1)
        self._roles = frozenset(config.roles)

    def may_match(self, text: str) -> bool:
        """False only when the pre-scan proved ``text`` holds no match (True: check with ``_rx``)."""
        return self._gate.matching(text) != frozenset()

    def _search(self, text: str) -> bool:
        return self._rx.search(text, concurrent=True) is not None

    def _subn(self, text: str) -> tuple[str, int]:
        return self._rx.subn(self.config.replacement, text, concurrent=True)

    async def _apply(self, slots: Iterator[TextSlot], ctx: RequestContext, where: str) -> None:
        """Search (block) or substitute (redact) every slot.

        A text over ``OFFLOAD_CHARS`` is matched in the CPU pool with ``concurrent=True``, which
        makes the ``regex`` module release the GIL while it matches: an 8 MB prompt otherwise
        held the event loop for a third of a second.
        """
        hits = 0
        for slot in list(slots):
            if where == "request" and slot.role not in self._roles:
                continue
            text, big = slot.text, len(slot.text) > OFFLOAD_CHARS
            if not self.may_match(text):
                continue
            if self.config.action == "block":
                found = await self.deps.run_cpu(self._search, text) if big else self._rx.search(text)
                if found:
                    ctx.record(f"{where}_match", "block", detail={"where": where, "kind": slot.kind})
                    raise Rejected(self.config.message, code="content_blocked")
                continue
            if big:
                new, n = await self.deps.run_cpu(self._subn, text)
            else:
                new, n = self._rx.subn(self.config.replacement, text)
            if n:
                hits += n
                slot.set(new)
        if hits:
            ctx.record(f"{where}_match", "redact", detail={"where": where, "count": hits})

    def surface_hooks(self, route: str, stream: bool) -> SurfaceHooks:
        scan = (self.config.scan_request, self.config.scan_response)
        hooks = {"request": scan[0], "stream" if stream else "response": scan[1]}
        return SurfaceHooks(tuple(h for h, on in hooks.items() if on))

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> None:
        if self.config.scan_request:
            await self._apply(req.text_slots(), ctx, "request")

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        if self.config.scan_response:
            await self._apply((s for s in resp.text_slots() if s.kind == "message"), ctx, "response")

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        if not self.config.scan_response:
            return None
        rx, cfg, window = self._rx, self.config, self._window

        def replace(match: regex.Match[str]) -> str:
            if cfg.action == "block":
                ctx.record("stream_match", "block", detail={"where": "stream"})
                raise Rejected(cfg.message, code="content_blocked")
            ctx.record("stream_match", "redact", detail={"where": "stream", "count": 1})
            return cfg.replacement

        return TextStreamFilter(lambda: RegexRewriter(rx, replace, window))
