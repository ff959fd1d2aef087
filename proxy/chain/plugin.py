"""The plugin interface: one config model and one class per plugin.

A plugin is built once per policy revision and shared by all requests on it, so it holds no
per-request state (that lives in ``RequestContext`` or in the per-request ``StreamFilter``).
Plugins *detect*; the chain applies ``mode`` (enforce / shadow / off), ``on_error`` and
``when``. A plugin never implements shadow mode itself (and never reads ``ctx.shadow``): in
shadow the chain runs it on a copy of the request or response, turns whatever it did
(rejections, edits, replies) into "would have" records, and drops its other effects (headers,
request-wide state, tenant / target / deadline) with a scratch buffer in the context.

Hooks are optional: the compiler keeps, per phase, only the plugins that override a hook, so
an absent hook costs nothing per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from proxy.chain.context import RequestContext
from proxy.chain.identity import Identity
from proxy.chain.names import ROUTES, names_validator, yaml_bool_as
from proxy.chain.ports import JsonHttp, JsonHttpFactory
from proxy.chain.promote import PromoteConfig
from proxy.chain.upstream import Upstream
from proxy.models.chat import ChatRequest, ChatResponse
from proxy.models.stream import StreamEvent

ModeName = Literal["enforce", "shadow", "off"]
#: ``mode: off`` unquoted is read by YAML as false: it means "off", as the README shows.
Mode = Annotated[ModeName, BeforeValidator(yaml_bool_as(false="off"))]
OnError = Literal["fail_closed", "fail_open"]
StreamPolicy = Literal["buffer", "skip", "reject"]


class Match(BaseModel):
    """``when:`` — the routes, models (glob) and tenants (glob) a step applies to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: Annotated[tuple[str, ...] | None, AfterValidator(names_validator(ROUTES, "route"))] = Field(
        default=None, description="any of: " + ", ".join(ROUTES)
    )
    models: tuple[str, ...] | None = Field(default=None, description="glob patterns, e.g. gpt-4o*")
    tenants: tuple[str, ...] | None = Field(default=None, description="glob patterns")
    streaming: bool | None = Field(default=None, description="only streamed (true) or non-streamed (false)")


class PluginConfig(BaseModel):
    """Fields every plugin step has; subclasses add their own and narrow ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    id: str | None = Field(default=None, description="unique per policy; defaults to type")
    mode: Mode = "enforce"
    when: Match | None = None
    on_error: OnError = "fail_closed"
    canary: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="enforce on this percent of requests (chosen by a hash of the request id, so "
        "every hook of a request agrees) and run as shadow on the rest; needs mode: enforce",
    )

    promote: PromoteConfig | None = Field(
        default=None,
        description="staged promotion of a shadow step to enforce through canary stages, with "
        "automatic rollback to shadow (docs/promotion.md); needs mode: shadow",
    )

    @model_validator(mode="after")
    def _canary_needs_enforce(self) -> PluginConfig:
        if self.canary is not None and self.mode != "enforce":
            raise ValueError("canary applies to mode: enforce steps (it splits enforce and shadow)")
        if self.promote is not None and self.mode != "shadow":
            raise ValueError("promote starts from mode: shadow (the step is promoted to enforce in stages)")
        return self

    @property
    def step_id(self) -> str:
        return self.id or self.type


@dataclass(slots=True)
class Reply:
    """A local answer: the request is not sent upstream.

    Give ``content`` for an assistant message (the route shapes it as a chat completion, or
    a stream of chunks when the client streams), or ``body`` for a raw JSON body.
    """

    content: str | None = None
    body: dict[str, Any] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: For a streaming chat-completions client: the whole answer, already encoded as OpenAI
    #: ``chat.completion.chunk`` SSE (a cached answer with several choices, tool calls, usage).
    stream: bytes | None = None


@dataclass(slots=True)
class Outcome:
    """How a request ended; handed to every ``on_complete`` hook."""

    status: int
    error: BaseException | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False
    completed: bool = True  # False when the client disconnected or the stream broke
    latency_ms: float = 0.0
    output_text_chars: int = 0


@dataclass(frozen=True, slots=True)
class SurfaceHooks:
    """What one step does on one surface (a route, streamed or not): for ``check --coverage``.

    ``hooks``: among request, response, stream, upstream. ``skipped``: a guard that applies
    here but does not check the content (a stream handling of ``skip``), flagged as a gap.
    """

    hooks: tuple[str, ...]
    note: str = ""
    skipped: bool = False


class StreamFilter(Protocol):
    """Per-request filter over stream events. Return ``[]`` to hold an event back."""

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]: ...

    async def on_end(self) -> Sequence[StreamEvent]: ...


class Resources:
    """Expensive objects shared across policy revisions, keyed by what configures them.

    A reload that does not change a resource's key reuses the live object (HTTP pools, NER
    models, Redis clients), so reloading is cheap. Each policy revision holds one reference to
    every key it uses (``acquire``, through ``Deps.resource``, from the moment it is compiled)
    and gives them back when it retires (``release``); an object is closed when its last
    reference goes. Counting, rather than "close whatever the current revisions do not use",
    keeps a revision that is still compiling safe: when the last request of an old revision
    ended while a newer one was being built, the old rule closed the new revision's fresh
    resources (its HTTP session was then recreated outside the registry and leaked).
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._refs: dict[str, int] = {}
        self._lock = threading.RLock()

    def get_or_create(self, key: str, factory: Callable[[], Any]) -> Any:
        """The object for ``key`` without taking a reference (owners use ``acquire``)."""
        # Reloads compile in a worker thread while requests may create resources on the loop.
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def acquire(self, key: str, factory: Callable[[], Any]) -> Any:
        """The object for ``key`` (created if needed), with one more reference to it."""
        with self._lock:
            item = self.get_or_create(key, factory)
            self._refs[key] = self._refs.get(key, 0) + 1
            return item

    def release(self, keys: set[str]) -> list[Any]:
        """Drop one reference to each key; returns (and forgets) the objects nobody holds now.

        Synchronous, so a failed compile in a worker thread can give its references back; the
        caller closes what is returned with ``close_items``.
        """
        dead: list[Any] = []
        with self._lock:
            for key in keys:
                count = self._refs.get(key, 0) - 1
                if count > 0:
                    self._refs[key] = count
                    continue
                self._refs.pop(key, None)
                if key in self._items:
                    dead.append(self._items.pop(key))
        return dead

    def refs(self, key: str) -> int:
        with self._lock:
            return self._refs.get(key, 0)

    def keys(self) -> set[str]:
        return set(self._items)

    async def close_unused(self, used: set[str]) -> None:
        """Close every object whose key is not in ``used``, references or not (shutdown)."""
        with self._lock:
            dead = [self._items.pop(key) for key in list(self._items) if key not in used]
            for key in list(self._refs):
                if key not in used:
                    del self._refs[key]
        await close_items(dead)


async def close_items(items: list[Any]) -> None:
    """Close resources (``aclose`` or ``close``, awaited when it is a coroutine)."""
    for item in items:
        closer = getattr(item, "aclose", None) or getattr(item, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result


class Deps:
    """What a plugin may use when it is built: shared resources and bounded CPU offload."""

    def __init__(
        self,
        resources: Resources,
        policy_dir: str = ".",
        cpu_workers: int = 2,
        http: JsonHttpFactory | None = None,
    ) -> None:
        self.resources = resources
        self.policy_dir = policy_dir
        self.used_resources: set[str] = set()
        #: Every step of the policy being compiled, and a digest of its upstreams and routes: what
        #: a response cache binds its keys to (set by the compiler before plugins are built).
        self.steps: tuple[PluginConfig, ...] = ()
        self.routing: str = ""
        self._cpu_workers = cpu_workers
        self._http = http

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """The shared object for ``key``; the revision being built holds a reference to it."""
        if key in self.used_resources:
            return self.resources.get_or_create(key, factory)
        item = self.resources.acquire(key, factory)
        self.used_resources.add(key)
        return item

    def json_http(self, key: str, timeout: float) -> JsonHttp:
        """The runtime's pooled JSON client for ``key`` (one per remote endpoint and timeout).

        Plugins get HTTP through this port (``proxy.chain.ports``) instead of importing
        ``proxy.upstream``; the client is a shared resource, closed when no revision uses it."""
        factory = self._http
        if factory is None:
            raise RuntimeError("no HTTP port: build Deps with http=... (the runtime passes one)")
        client: JsonHttp = self.resource(f"http:{key}:{timeout}", lambda: factory(timeout))
        return client

    async def run_cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU-heavy work off the event loop with bounded concurrency."""
        pool: ThreadPoolExecutor = self.resource(
            "cpu-pool", lambda: ThreadPoolExecutor(self._cpu_workers, thread_name_prefix="cpu")
        )
        sem: asyncio.Semaphore = self.resource("cpu-sem", lambda: asyncio.Semaphore(self._cpu_workers * 4))
        async with sem:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


C = TypeVar("C", bound=PluginConfig)


class Plugin(Generic[C]):
    """Base class. Override only the hooks you need.

    ``needs_full_body``: the plugin must see a whole streamed response; the compiler then
    requires the step to say what happens on streams (``buffer``, ``skip`` or ``reject``).
    """

    Config: ClassVar[type[PluginConfig]]
    needs_full_body: ClassVar[bool] = False
    #: A content guard (reads prompt or answer text and can refuse or rewrite it); the coverage
    #: report flags surfaces that no guard covers.
    guard: ClassVar[bool] = False

    def __init__(self, config: C, deps: Deps) -> None:
        self.config = config
        self.deps = deps

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        return None

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        return None

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        return None

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def surface_hooks(self, route: str, stream: bool) -> SurfaceHooks:
        """The hooks this step runs for a request on ``route`` (streamed or not).

        Default: the hooks the class implements. A plugin whose config narrows that (a guard
        that scans only prompts, a stream handling of ``skip``) overrides this so the coverage
        report tells the truth.
        """
        hooks = [
            name
            for name, hook, wanted in (
                ("request", "on_request", True),
                ("response", "on_response", not stream),
                ("stream", "open_stream", stream),
            )
            if wanted and overrides(self, hook)
        ]
        if isinstance(self, UpstreamPolicy) and type(self).wrap is not UpstreamPolicy.wrap:
            hooks.append("upstream")
        return SurfaceHooks(tuple(hooks))

    async def not_ready(self) -> str | None:
        """Why the sidecar must not take traffic yet (a required dependency is down), or None."""
        return None

    async def admin_report(self, query: Mapping[str, str]) -> dict[str, Any] | None:
        """State for operators (``GET /admin/plugins/{id}``); None when there is nothing to show."""
        return None

    async def self_report(
        self, headers: Mapping[str, str], identity: Identity | None = None
    ) -> dict[str, Any] | None:
        """State a caller may see about *itself* (``GET /sidecar/{id}`` on the API port), never others'.

        ``identity``: the verified caller when ``clients:`` is on (then headers are not trusted)."""
        return None


class UpstreamPolicy(Plugin[C]):
    """A plugin that wraps the upstream call (retry, circuit breaker, fallback, timeout)."""

    def wrap(self, inner: Upstream) -> Upstream:
        return inner


def overrides(plugin: Plugin[Any], hook: str) -> bool:
    """True when the plugin's class implements ``hook`` itself (not the base no-op)."""
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)
