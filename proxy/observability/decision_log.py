"""The decision log: one JSON line per decision record, to a file or stdout, for calibration.

Why a Sidecar observer and not a ``DecisionSink`` listener: the observer receives the request's
pinned ``CompiledPolicy``, so the policy's own ``observability.decision_log`` section decides
where lines go and whether a text hash or redaction is added. A reload that turns the log on,
off or elsewhere takes effect from the next request, with no restart and no shared state.

The event loop must not wait on disk: lines go into a buffered file object (a memory copy per
line) and reach the file when the buffer fills or ``flush_seconds`` after the first unflushed
line (one ``call_later``, no background task), and at interpreter exit. Write errors are
logged once and counted, never raised: a full disk must not fail traffic.

Records never hold raw text. ``text: hash`` adds ``text_hash`` (SHA-256, or HMAC-SHA256 with
``hash_key`` so short prompts cannot be confirmed by guessing); ``text: redacted`` adds
``text_redacted``, the cheap mask of emails, key-like tokens and digits, truncated. Only
decisions whose plugin reported what it scanned (``ctx.record(..., text=...)``) get either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import re
import sys
import weakref
from typing import IO, TYPE_CHECKING, Any

import orjson

from proxy.chain.decisions import Decision
from proxy.observability.content import redact as mask
from proxy.policy.observability import DecisionLogConfig

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.policy.compiler import CompiledPolicy

log = logging.getLogger("policy_sidecar.decision_log")

STDOUT = "stdout"
_FIELDS = tuple(f.name for f in dataclasses.fields(Decision))
BUFFER_BYTES = 64 * 1024

_SPACE = re.compile(r"\s+")


def redact(text: str, max_chars: int = 200) -> str:
    """The product's one cheap mask (``content.redact``: emails, key-like tokens, digits), on one line.

    Shared with the access log and spans so "redacted" means the same everywhere; a debugging
    aid for seeing why a rule fired, not a PII engine (put the ``pii`` step first for that).
    """
    # Only the part that can survive the cut is masked: the mask's regexes cost more than linear
    # time on long runs without spaces, and this runs on the event loop. The cut drops the last,
    # possibly partial, word: half an email address would no longer look like one to the mask.
    if len(text) > max_chars * 2:
        text = text[: max_chars * 2].rsplit(None, 1)[0]
    out = _SPACE.sub(" ", mask(text)).strip()
    return out if len(out) <= max_chars else out[: max_chars - 1] + "…"


def text_hash(text: str, key: bytes | None) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if key:
        return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def record_dict(
    decision: Decision,
    cfg: DecisionLogConfig,
    text: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object of one line: the decision's fields, request fields and the text option."""
    # Not ``Decision.as_dict``: ``dataclasses.asdict`` deep-copies (tens of µs); the row is
    # serialised at once, so the record's own values can be used as they are.
    row = {name: getattr(decision, name) for name in _FIELDS}
    if extra:
        row.update(extra)
    if text is not None and cfg.text == "hash":
        key = cfg.hash_key.get_secret_value().encode() if cfg.hash_key is not None else None
        row["text_hash"] = text_hash(text, key)
    elif text is not None and cfg.text == "redacted":
        row["text_redacted"] = redact(text, cfg.redacted_chars)
    return row


class _Target:
    """One open destination; the file object's own buffer is the write buffer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None
        self.failed = False

    def open(self) -> IO[bytes] | None:
        if self.fh is None and not self.failed:
            try:
                if self.path == STDOUT:
                    self.fh = sys.stdout.buffer
                else:
                    self.fh = open(self.path, "ab", buffering=BUFFER_BYTES)  # noqa: SIM115 (kept open)
            except OSError as exc:
                self.failed = True  # logged once; a reload to another path tries again
                log.error("decision log: cannot open %s: %s", self.path, exc)
        return self.fh

    def flush(self) -> None:
        if self.fh is not None:
            try:
                self.fh.flush()
            except (OSError, ValueError) as exc:
                log.error("decision log: flush to %s failed: %s", self.path, exc)

    def close(self) -> None:
        self.flush()
        if self.fh is not None and self.path != STDOUT:
            self.fh.close()
        self.fh = None


def _close_all(targets: dict[str, _Target]) -> None:
    for target in list(targets.values()):
        target.close()
    targets.clear()


class DecisionLog:
    """A ``Sidecar`` observer: ``sidecar.observers.append(DecisionLog())``."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}
        self._flush_pending = False
        self.lines = 0
        self.dropped = 0
        # Buffered lines reach the file at exit even if no flush was scheduled.
        self._finalizer = weakref.finalize(self, _close_all, self._targets)

    def _target(self, path: str) -> _Target:
        target = self._targets.get(path)
        if target is None:
            # The policy moved the log: close the previous destination (one open at a time).
            _close_all(self._targets)
            target = self._targets[path] = _Target(path)
        return target

    def __call__(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        cfg = policy.policy.observability.decision_log
        if cfg.path is None:
            if self._targets:
                _close_all(self._targets)
            return
        if not ctx.decisions:
            return
        target = self._target(cfg.path)
        fh = target.open()
        extra = {"route": ctx.route.value, "model": ctx.model, "status": outcome.status}
        scanned = ctx.scanned or {}
        lines = []
        for d in ctx.decisions:
            if cfg.actions is not None and d.action not in cfg.actions:
                continue
            lines.append(orjson.dumps(record_dict(d, cfg, scanned.get(id(d)), extra), default=str))
        if not lines:
            return
        if fh is None:
            self.dropped += len(lines)
            return
        try:
            fh.write(b"\n".join(lines) + b"\n")
        except (OSError, ValueError) as exc:
            self.dropped += len(lines)
            log.error("decision log: write to %s failed: %s", target.path, exc)
            return
        self.lines += len(lines)
        self._schedule_flush(cfg.flush_seconds)

    def _schedule_flush(self, delay: float) -> None:
        if delay <= 0:
            self.flush()
            return
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop (tools, tests): nothing to wait for
            self.flush()
            return
        self._flush_pending = True
        loop.call_later(delay, self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        for target in self._targets.values():
            target.flush()

    def close(self) -> None:
        _close_all(self._targets)
