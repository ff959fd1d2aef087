"""A small file-backed state that notices when its file changed, cheaply, on the hot path.

Requests call ``refresh(interval)``: at most once per ``interval`` seconds it ``stat``s the file
(one system call; a Kubernetes Secret's symlink swap changes the inode it resolves to) and, if
the (mtime, size, inode) signature moved, re-parses it off the event loop. A file that no longer
parses keeps the previous content, and the error is logged and kept for ``/admin/policy``;
the first load of all, when there is nothing to keep, raises so the policy load fails loudly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError

log = logging.getLogger("policy_sidecar.auth")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class WatchedFile(ABC):
    """Subclasses implement ``parse(text)`` (raise ``ValueError`` on bad content) and ``install``."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = False
        self.generation = 0
        self.error: str | None = None
        self.loaded_at: float | None = None
        self.reloads_failed = 0
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()  # the compile thread and the loop may both load
        self._async_lock: asyncio.Lock | None = None

    # -- subclass API ---------------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> Any:
        """The file's content, validated; raise ``ValueError`` to keep the previous content."""

    @abstractmethod
    def install(self, parsed: Any) -> None:
        """Make ``parse``'s result the live state (called under the load lock)."""

    # -- loading --------------------------------------------------------------------------
    def load_now(self) -> None:
        """Read the file if it changed since the last load (policy load and reload call this)."""
        with self._lock:
            sig = _signature(self.path)
            self._checked = time.monotonic()
            if self.loaded and sig == self._signature:
                return
            try:
                text = self.path.read_text(encoding="utf-8")
                parsed = self.parse(text)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                message = f"{self.kind} {self.path}: {exc}"
                if not self.loaded:
                    raise ConfigError(message) from exc
                self._signature = sig  # do not re-parse the same broken content on every check
                self.reloads_failed += 1
                self.error = message
                log.error("%s could not be reloaded; keeping the previous content: %s", self.kind, message)
                return
            self.install(parsed)
            self._signature = sig
            self.generation += 1
            self.loaded = True
            self.loaded_at = time.time()
            if self.error is not None:
                log.info("%s %s reloaded; the previous error is cleared", self.kind, self.path)
            self.error = None

    async def refresh(self, interval: float) -> None:
        """Hot path: a clock compare, and a ``stat`` at most once per ``interval`` seconds."""
        now = time.monotonic()
        if interval and now - self._checked < interval:
            return
        self._checked = now
        if _signature(self.path) == self._signature:
            return
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:  # one re-read at a time; the others wait for its result
            if _signature(self.path) != self._signature:
                await asyncio.to_thread(self.load_now)

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "loaded_at": self.loaded_at,
            "generation": self.generation,
            "error": self.error,
            "reloads_failed": self.reloads_failed,
        }
