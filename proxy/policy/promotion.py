"""Staged promotion (``promote:``): the state machine that moves a shadow step to enforce.

A promoted step starts in shadow (stage 0). Each stage runs at least ``min_minutes`` and
``min_requests``; then, if the share of requests the step acted on (its block rate, shadow
"would have" decisions included) stayed under ``max_block_rate`` — and, when review labels are
available, the share of its labelled hits marked benign stayed under ``max_false_positive_rate``
— it advances to the next canary percentage of ``steps``. In any canary stage (100% included),
crossing a bound rolls the step back to shadow, and it stays there: a rollback is a finding to
look at, not something to retry automatically. Editing the step (any field) starts a new
promotion, because it is a new rule.

Why here and how it is wired: the chain reads only ``Rollout.percent`` (``proxy.chain.promote``);
the compiler registers each promoted step with the process-wide ``PromotionBook`` the policy
store owns, so the state survives reloads; an observer in ``proxy.observability.promotion``
feeds it each finished request and turns its transitions into log lines, decision records and
metrics. The state is persisted (``promotion.state: file | redis`` in the policy) so it also
survives a restart. The clock is injectable: tests move time, they never sleep.

Labels come through the small ``LabelSource`` protocol, so the review store (issue 19, item 2)
plugs in without this module knowing how labels are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from proxy.chain.promote import PromoteConfig
from proxy.chain.secrets import Secret
from proxy.errors import ConfigError

log = logging.getLogger("policy_sidecar.promotion")

Status = Literal["shadow", "canary", "enforced", "rolled_back"]
HISTORY = 200  # transitions kept (in memory and in the state backend)
LABEL_REFRESH = 30.0  # seconds between two questions to the label source, per step


class PromotionStateConfig(BaseModel):
    """``promotion:`` (top level): where promotion state is kept across restarts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["memory", "file", "redis"] = Field(
        default="memory", description="memory survives reloads; file and redis also survive restarts"
    )
    path: str = Field(default="promotion-state.json", description="state: file; relative to the policy")
    redis_url: Secret = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), description="state: redis; ${ENV} allowed"
    )
    redis_prefix: str = "sidecar:promotion:"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value


class LabelSource(Protocol):
    """Review labels (h16's label store implements this): how many of a step's hits since
    ``since`` (unix time) reviewers labelled, and how many of those they marked benign."""

    def labelled_hits(self, step_id: str, since: float) -> tuple[int, int]:
        """(false positives, labelled hits)."""
        ...


class StateBackend(Protocol):
    def load(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]: ...
    def save(self, states: dict[str, dict[str, Any]], history: list[dict[str, Any]]) -> None: ...


class MemoryBackend:
    def load(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        return {}, []

    def save(self, states: dict[str, dict[str, Any]], history: list[dict[str, Any]]) -> None:
        return None


class FileBackend:
    """One JSON file, replaced atomically (write then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, []
        except (OSError, ValueError) as exc:
            log.error("promotion state %s unreadable, starting over: %r", self.path, exc)
            return {}, []
        return dict(data.get("states") or {}), list(data.get("history") or [])

    def save(self, states: dict[str, dict[str, Any]], history: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"states": states, "history": history}, indent=1), encoding="utf-8")
        tmp.replace(self.path)


class RedisBackend:
    """One Redis key holding the same JSON document (replicas share it; a restart reads it back)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._key = f"{prefix}state"

    def load(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        try:
            raw = self._client.get(self._key)
        except Exception as exc:
            log.error("promotion state unavailable in Redis, starting from memory: %r", exc)
            return {}, []
        if not raw:
            return {}, []
        data = json.loads(raw)
        return dict(data.get("states") or {}), list(data.get("history") or [])

    def save(self, states: dict[str, dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self._client.set(self._key, json.dumps({"states": states, "history": history}))


@dataclass
class StepState:
    """Where one promoted step stands; what is persisted."""

    step_id: str
    stage: int = 0  # 0: shadow; i: steps[i - 1] percent
    status: Status = "shadow"
    started: float = 0.0  # promotion start (labels are counted from here)
    stage_started: float = 0.0
    requests: int = 0  # in the current stage window
    hits: int = 0


@dataclass
class Transition:
    """One stage change: a log line, a decision record, a metric and a history entry."""

    step_id: str
    kind: Literal["promote", "rollback"]
    from_percent: float
    to_percent: float
    status: Status
    reason: str
    at: float
    requests: int
    hits: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write(backend: StateBackend, states: dict[str, dict[str, Any]], history: list[dict[str, Any]]) -> None:
    try:
        backend.save(states, history)
    except Exception:
        log.exception("could not persist the promotion state (kept in memory)")


def fingerprint(config: BaseModel) -> str:
    """The step's identity for promotion: any change to its configuration is a new rule."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class StepRollout:
    """``Rollout`` of one registered step: reads its live percentage from the book."""

    __slots__ = ("_book", "key", "step_id")

    def __init__(self, book: PromotionBook, key: str, step_id: str) -> None:
        self._book = book
        self.key = key
        self.step_id = step_id

    @property
    def percent(self) -> float:
        return self._book.percent(self.key)


class PromotionBook:
    """Every promoted step's state, process-wide (owned by the policy store, kept across reloads).

    Mutated on the event loop by the request observer; ``register`` runs where policies compile
    (possibly a worker thread), hence the lock around the dicts.
    """

    def __init__(self, clock: Callable[[], float] = time.time, labels: LabelSource | None = None) -> None:
        self.clock = clock
        self.labels = labels
        self.listeners: list[Callable[[Transition], None]] = []
        self.transitions: Counter[tuple[str, str]] = Counter()  # (step, kind): for metrics
        self.history: list[dict[str, Any]] = []
        self._states: dict[str, StepState] = {}
        self._configs: dict[str, PromoteConfig] = {}
        self._backend: StateBackend = MemoryBackend()
        self._backend_id = "memory"
        self._persisted: dict[str, dict[str, Any]] = {}
        self._last_save = 0.0
        self._dirty = False
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._label_cache: dict[str, tuple[float, tuple[int, int]]] = {}

    # -- configuration (compile time) ------------------------------------------------------
    def configure(self, cfg: PromotionStateConfig, base_dir: str) -> None:
        """Switch the state backend when the policy's ``promotion:`` changed; reads what it holds."""
        path = Path(cfg.path) if Path(cfg.path).is_absolute() else Path(base_dir) / cfg.path
        url = cfg.redis_url.get_secret_value()
        ident = {"file": f"file:{path}", "redis": f"redis:{url}|{cfg.redis_prefix}"}.get(cfg.state, "memory")
        with self._lock:
            if ident == self._backend_id:
                return
            backend: StateBackend = MemoryBackend()
            try:
                if cfg.state == "file":
                    backend = FileBackend(path)
                elif cfg.state == "redis":
                    backend = RedisBackend(url, cfg.redis_prefix)
            except Exception as exc:  # a malformed URL: a load error, never a traceback
                raise ConfigError(f"promotion.state: {cfg.state}: {exc}") from exc
            self._backend, self._backend_id = backend, ident
            self._persisted, history = backend.load()
            if history:
                self.history = history[-HISTORY:]

    def register(self, step_id: str, config: BaseModel, promote: PromoteConfig) -> StepRollout:
        """The rollout for a compiled step; its state continues if the step did not change."""
        key = f"{step_id}@{fingerprint(config)}"
        with self._lock:
            self._configs[key] = promote
            if key not in self._states:
                saved = self._persisted.get(key)
                if saved is not None:
                    self._states[key] = StepState(**saved)
                else:
                    now = self.clock()
                    self._states[key] = StepState(step_id, started=now, stage_started=now)
                    self._dirty = True
        return StepRollout(self, key, step_id)

    # -- hot path ---------------------------------------------------------------------------
    def percent(self, key: str) -> float:
        state = self._states.get(key)
        if state is None or state.stage == 0 or state.status == "rolled_back":
            return 0.0
        return self._configs[key].steps[state.stage - 1]

    def observe(self, key: str, hit: bool) -> None:
        state = self._states.get(key)
        if state is not None and state.status != "rolled_back":
            state.requests += 1
            state.hits += hit
            self._dirty = True

    def tick(self, keys: tuple[str, ...]) -> list[Transition]:
        """Evaluate the given steps now; apply and announce every stage change."""
        now = self.clock()
        done = [t for key in keys if (t := self._evaluate(key, now)) is not None]
        for t in done:
            self._announce(t)
        if done or (self._dirty and now - self._last_save >= 10):
            self.save()
        return done

    # -- the state machine -----------------------------------------------------------------
    def _evaluate(self, key: str, now: float) -> Transition | None:
        state = self._states.get(key)
        cfg = self._configs.get(key)
        if state is None or cfg is None or state.status == "rolled_back":
            return None
        enough = state.requests >= cfg.min_requests
        rate = state.hits / state.requests if state.requests else 0.0
        too_many = enough and rate > cfg.max_block_rate
        fpr = self._false_positive_rate(state, cfg, now)
        fpr_bound = cfg.max_false_positive_rate
        bad_labels = fpr is not None and fpr_bound is not None and fpr > fpr_bound
        if state.stage > 0 and (too_many or bad_labels):
            reason = (
                f"block rate {rate:.4f} > max_block_rate {cfg.max_block_rate} over {state.requests} requests"
                if too_many
                else f"labelled false-positive rate {fpr:.3f} > max_false_positive_rate "
                f"{cfg.max_false_positive_rate}"
            )
            return self._move(key, state, cfg, 0, "rolled_back", "rollback", reason, now, fpr)
        if now - state.stage_started < cfg.min_minutes * 60 or not enough:
            return None
        if too_many or bad_labels or state.stage == len(cfg.steps):
            # Shadow stage over its bound, or the last stage: keep going, with a fresh window so
            # the rate stays a recent one.
            state.stage_started, state.requests, state.hits = now, 0, 0
            return None
        nxt = state.stage + 1
        status: Status = "enforced" if cfg.steps[nxt - 1] >= 100 else "canary"
        reason = (
            f"block rate {rate:.4f} <= {cfg.max_block_rate} over {state.requests} requests "
            f"and {(now - state.stage_started) / 60:.1f} minutes"
        )
        return self._move(key, state, cfg, nxt, status, "promote", reason, now, fpr)

    def _false_positive_rate(self, state: StepState, cfg: PromoteConfig, now: float) -> float | None:
        """From the label source, asked at most every ``LABEL_REFRESH`` seconds per step (ticks
        run per request; a label store may read files)."""
        if self.labels is None or cfg.max_false_positive_rate is None:
            return None
        cached = self._label_cache.get(state.step_id)
        if cached is not None and now - cached[0] < LABEL_REFRESH:
            counts = cached[1]
        else:
            try:
                counts = self.labels.labelled_hits(state.step_id, state.started)
            except Exception:
                log.exception("label source failed; promotion decides on the block rate alone")
                counts = (0, 0)
            self._label_cache[state.step_id] = (now, counts)
        false_positives, labelled = counts
        return false_positives / labelled if labelled >= cfg.min_labels else None

    def _move(
        self,
        key: str,
        state: StepState,
        cfg: PromoteConfig,
        stage: int,
        status: Status,
        kind: Literal["promote", "rollback"],
        reason: str,
        now: float,
        fpr: float | None,
    ) -> Transition:
        before = self.percent(key)
        t = Transition(state.step_id, kind, before, 0.0, status, reason, now, state.requests, state.hits)
        if fpr is not None:
            t.extra["false_positive_rate"] = round(fpr, 4)
        state.stage, state.status = stage, status
        state.stage_started, state.requests, state.hits = now, 0, 0
        t.to_percent = self.percent(key)
        return t

    def _announce(self, t: Transition) -> None:
        self.transitions[(t.step_id, t.kind)] += 1
        self.history = [*self.history, t.as_dict()][-HISTORY:]
        for listener in self.listeners:
            try:
                listener(t)
            except Exception:
                log.exception("promotion listener failed")

    # -- persistence and read-out -------------------------------------------------------------
    def save(self) -> None:
        """Persist a snapshot. On the event loop the write goes to one background thread (a file
        write or a Redis round trip must never stall requests, even with Redis down); writes stay
        in order. Without a loop (tools, tests) it is written right away."""
        with self._lock:
            states = {**self._persisted, **{k: asdict(s) for k, s in self._states.items()}}
            self._persisted = states
            self._dirty = False
            self._last_save = self.clock()
            backend, history = self._backend, list(self.history)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _write(backend, states, history)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="promotion-state")
        self._writer.submit(_write, backend, states, history)

    def close(self) -> None:
        """Wait for pending writes (shutdown): the last transition is on disk / in Redis."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def snapshot(self, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        """What the live page and ``/admin/policy`` show for these steps."""
        out = []
        for key in keys:
            state, cfg = self._states.get(key), self._configs.get(key)
            if state is None or cfg is None:
                continue
            out.append(
                {
                    "step": state.step_id,
                    "status": state.status,
                    "percent": self.percent(key),
                    "stage": state.stage,
                    "steps": list(cfg.steps),
                    "stage_started": state.stage_started,
                    "requests": state.requests,
                    "hits": state.hits,
                    "block_rate": round(state.hits / state.requests, 4) if state.requests else None,
                    "max_block_rate": cfg.max_block_rate,
                    "min_minutes": cfg.min_minutes,
                    "min_requests": cfg.min_requests,
                }
            )
        return out
