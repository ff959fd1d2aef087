"""The live policy: one reference, swapped atomically; the old revision retires when idle.

* A request pins ``store.acquire()`` for its whole life, so it finishes on the revision it
  started with, whatever reloads happen meanwhile.
* A reload parses, validates and compiles *before* touching ``current``: a broken file never
  replaces a working policy. The failure is logged, counted and shown at ``/admin/policy``.
* Triggers: file change (the *directory* is watched, so a Kubernetes ConfigMap update, which
  swaps the ``..data`` symlink, is seen), SIGHUP, and the admin POST endpoint. All three call
  ``reload``; identical content (same hash) swaps nothing, but ends a failed status (the file
  was restored after a broken edit: the error is cleared, logged, and the status says
  ``unchanged``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from proxy.chain.plugin import Deps, Resources, close_items
from proxy.chain.registry import Registry
from proxy.errors import ConfigError
from proxy.policy.compiler import CompiledPolicy, compile_policy, revision_of
from proxy.policy.loader import load_policy_checked, read_policy_file
from proxy.policy.promotion import PromotionBook
from proxy.policy.schema import PolicyBase, build_policy_model
from proxy.upstream.json_http import pooled_json_http

log = logging.getLogger("policy_sidecar.policy")


class PolicyStore:
    def __init__(self, path: Path, registry: Registry, *, cpu_workers: int = 2) -> None:
        self.path = path
        self.registry = registry
        self.model: type[PolicyBase] = build_policy_model(registry)
        self.resources = Resources()
        # Promotion state of ``promote:`` steps: process-wide, so it survives reloads.
        self.promotions = PromotionBook()
        self._orphans: list[Any] = []  # resources a failed compile released, to close on the loop
        self.cpu_workers = cpu_workers
        self._current: CompiledPolicy | None = None
        self._retiring: list[CompiledPolicy] = []
        self._lock = asyncio.Lock()
        self.last_error: str | None = None
        self.last_reload: dict[str, Any] | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0

    # -- building ----------------------------------------------------------------------
    def compile_text(self, text: str, source: str) -> CompiledPolicy:
        """Validate and compile; the new revision holds references to the resources it uses."""
        policy, warnings = load_policy_checked(text, source, self.model)
        deps = Deps(self.resources, str(Path(source).parent), self.cpu_workers, http=pooled_json_http)
        try:
            compiled = compile_policy(policy, revision_of(text), source, self.registry, deps, self.promotions)
        except BaseException:
            # Give back what the failed build took; closed by the next ``_close`` / ``aclose``.
            self._orphans.extend(self.resources.release(deps.used_resources))
            raise
        compiled.warnings = warnings
        for warning in warnings:
            log.warning("policy warning: %s", warning, extra={"revision": compiled.revision})
        return compiled

    def load_initial(self) -> CompiledPolicy:
        """Startup load: there is no previous policy to keep, so errors propagate."""
        compiled = self.compile_text(read_policy_file(self.path), str(self.path))
        self._current = compiled
        self.last_reload = {
            "result": "loaded",
            "revision": compiled.revision,
            "trigger": "startup",
            "at": time.time(),
        }
        log.info("policy loaded", extra={"revision": compiled.revision, "source": str(self.path)})
        return compiled

    @property
    def current(self) -> CompiledPolicy:
        if self._current is None:
            raise RuntimeError("no policy loaded")
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    # -- request pinning ---------------------------------------------------------------
    def acquire(self) -> CompiledPolicy:
        policy = self.current
        policy.in_flight += 1
        return policy

    def release(self, policy: CompiledPolicy) -> None:
        policy.in_flight -= 1
        if policy.retired and policy.in_flight == 0:
            asyncio.get_running_loop().create_task(self._close(policy))

    # -- reloading ---------------------------------------------------------------------
    async def reload(self, trigger: str) -> dict[str, Any]:
        async with self._lock:
            started = time.perf_counter()
            try:
                text = read_policy_file(self.path)
                revision = revision_of(text)
                if self._current is not None and revision == self._current.revision:
                    return self._unchanged(revision, trigger)
                # Off the event loop: building plugins may load models for seconds (PII NER), and
                # traffic must keep flowing on the old revision meanwhile.
                compiled = await asyncio.to_thread(self.compile_text, text, str(self.path))
            except ConfigError as exc:
                await self._close_orphans()
                return self._failed(exc, trigger)
            except Exception as exc:  # a plugin bug during build must not kill the watcher
                log.exception("unexpected error while compiling the policy")
                await self._close_orphans()
                return self._failed(ConfigError(f"could not compile the policy: {exc!r}"), trigger)
            old, self._current = self._current, compiled
            self.reloads_ok += 1
            self.last_error = None
            self.last_reload = {
                "result": "reloaded",
                "revision": compiled.revision,
                "previous": old.revision if old else None,
                "trigger": trigger,
                "at": time.time(),
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
            log.info("policy reloaded", extra=self.last_reload)
            if old is not None:
                old.retired = True
                self._retiring.append(old)
                if old.in_flight == 0:
                    await self._close(old)
            return self.last_reload

    def _unchanged(self, revision: str, trigger: str) -> dict[str, Any]:
        """The file holds the running content again: nothing to swap, but a failure is over.

        After a broken edit is reverted, the status must not keep saying "failed" with an error
        that no longer exists; the previous error is cleared and the clearing is logged.
        """
        result: dict[str, Any] = {"result": "unchanged", "revision": revision, "trigger": trigger}
        if self.last_error is None:
            return result
        result.update(at=time.time(), error_cleared=True)
        self.last_error = None
        self.last_reload = result
        log.info(
            "policy restored to the running revision %s; previous error cleared",
            revision,
            extra={"revision": revision, "trigger": trigger},
        )
        return result

    def _failed(self, exc: ConfigError, trigger: str) -> dict[str, Any]:
        self.reloads_failed += 1
        self.last_error = str(exc)
        self.last_reload = {
            "result": "failed",
            "error": str(exc),
            "trigger": trigger,
            "at": time.time(),
            "revision": self._current.revision if self._current else None,
        }
        log.error(
            "policy reload failed; keeping revision %s: %s",
            self._current.revision if self._current else None,
            exc,
        )
        return self.last_reload

    async def _close(self, policy: CompiledPolicy) -> None:
        """Retire ``policy``: close its plugins, give back its resource references."""
        if policy not in self._retiring:
            return
        self._retiring.remove(policy)
        try:
            await policy.aclose()
            await close_items(self.resources.release(policy.used_resources))
        except Exception:
            log.exception("error while retiring policy revision %s", policy.revision)

    async def _close_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        try:
            await close_items(orphans)
        except Exception:
            log.exception("error while closing the resources of a failed compile")

    async def aclose(self) -> None:
        for policy in [*self._retiring, *([self._current] if self._current else [])]:
            await policy.aclose()
        await self.resources.close_unused(set())
        await self._close_orphans()
        await asyncio.to_thread(self.promotions.close)  # pending promotion-state writes

    # -- watching ----------------------------------------------------------------------
    async def watch(self, stop: asyncio.Event, force_polling: bool = False) -> None:
        """Reload when anything in the policy's directory changes (ConfigMap symlink swaps too)."""
        from watchfiles import awatch

        directory = self.path.parent
        try:
            async for _changes in awatch(
                directory, stop_event=stop, debounce=200, step=50, force_polling=force_polling, recursive=True
            ):
                await self.reload("file")
        except Exception:
            log.exception("policy watcher stopped; SIGHUP and admin reload still work")
