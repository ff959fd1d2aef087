"""Coverage report: for every surface a request can arrive on, which steps apply, how, and gaps.

The policy's promise is that every request passes the policy; a ``when:`` clause, a shadow
mode or a guard's ``stream: skip`` can each quietly leave a surface (say, streamed Responses
API calls) with no guard at all. ``policy-sidecar check --coverage`` makes that visible.

A *surface* is a route, streamed or not. For each, every step of the compiled chain is
evaluated: its ``when`` (routes and streaming decide; model and tenant globs make it
conditional: "some models"), its mode (enforce / shadow / canary P%), and the hooks it runs
there (``Plugin.surface_hooks``: a plugin whose config narrows what it checks says so). A
surface where no guard (a plugin with ``guard = True``: blocklist, injection, moderation,
pii, schema) runs a content hook is flagged, as is a stream where a guard skips the answer.

Surfaces come from ``SURFACE_SOURCES``: functions of the compiled policy returning
``Surface`` objects. The built-in API routes are one source; another section of the policy
(pass-through paths, say) adds its own source, with its own steps if it has them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.chain.chain import Step
from proxy.models.chat import Route
from proxy.policy.compiler import CompiledPolicy


@dataclass(frozen=True)
class Surface:
    """Where requests arrive: a route (the ``when.routes`` name), streamed or not.

    ``steps``: the steps that can apply there; None means the policy's main chain.
    """

    name: str
    route: str
    stream: bool
    steps: tuple[Step, ...] | None = None
    #: gaps the surface itself has, whatever its steps (e.g. unlisted pass-through paths left open)
    flags: tuple[str, ...] = ()
    streams: bool = True  # False: the stream / non-stream distinction does not apply
    #: a surface with no steps by design (refused or only listed): only ``flags`` and ``note`` apply
    stepless: bool = False
    note: str = ""  # what happens there, shown but not a gap

    @property
    def label(self) -> str:
        if not self.streams:
            return self.name
        return f"{self.name} ({'stream' if self.stream else 'non-stream'})"


@dataclass(frozen=True)
class StepCoverage:
    id: str
    type: str
    mode: str  # enforce | shadow | canary P% (enforce on P% of requests, shadow on the rest)
    hooks: tuple[str, ...]
    condition: str  # "" (always) or e.g. "some models: gpt-4o*"
    note: str = ""
    guard: bool = False
    skipped: bool = False

    @property
    def guards(self) -> bool:
        """A guard that reads content here (a request, response or stream hook)."""
        return self.guard and any(h in ("request", "response", "stream") for h in self.hooks)


@dataclass(frozen=True)
class SurfaceCoverage:
    surface: Surface
    steps: tuple[StepCoverage, ...]
    flags: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "surface": self.surface.name,
            "route": self.surface.route,
            "stream": self.surface.stream,
            "steps": [
                {
                    "id": s.id,
                    "type": s.type,
                    "mode": s.mode,
                    "hooks": list(s.hooks),
                    "condition": s.condition or "always",
                    "note": s.note,
                    "guard": s.guard,
                }
                for s in self.steps
            ],
            "flags": list(self.flags),
            **({"note": self.surface.note} if self.surface.note else {}),
        }


#: The governed API routes; embeddings have no streamed form.
API_SURFACES: tuple[tuple[str, bool], ...] = (
    (Route.CHAT.value, True),
    (Route.RESPONSES.value, True),
    (Route.MESSAGES.value, True),
    (Route.EMBEDDINGS.value, False),
)


def api_surfaces(_compiled: CompiledPolicy) -> Iterable[Surface]:
    for route, streams in API_SURFACES:
        yield Surface(route, route, False)
        if streams:
            yield Surface(route, route, True)


def passthrough_surfaces(compiled: CompiledPolicy) -> Iterable[Surface]:
    """One surface per ``passthrough:`` rule (its own steps), then model listing and the rest.

    A rule's steps are the ones it names, already in shadow for a shadow rule, and only their
    request and complete hooks run (pass-through answers are forwarded as bytes). What unlisted
    paths get depends on the default upstream's auth mode: refused when the sidecar holds the
    key, forwarded and recorded with the client's own key.
    """
    table = compiled.passthrough
    config = table.config
    pt = Route.PASSTHROUGH.value
    for rule in table.rules:
        methods = ",".join(rule.config.methods)
        note = ""
        if rule.config.mode == "shadow" or config.mode == "shadow":
            note = "rule in shadow: its steps only record what they would do"
        yield Surface(f"passthrough {methods} /v1{rule.config.path}", pt, False, rule.steps, streams=False,
                      note=note)  # fmt: skip
    auth = compiled.policy.upstreams[compiled.policy.default_upstream].auth_mode
    if config.models:
        note = "GET only, forwarded and recorded (passthrough.models: true)"
        yield Surface("passthrough /v1/models*", pt, False, (), streams=False, stepless=True, note=note)
    rest = "passthrough, any other /v1/* path"
    if config.unlisted == "auto" and auth != "policy":
        flag = (
            f"open: forwarded with the client's own key (default upstream auth: {auth}) and recorded, "
            "with no guard; passthrough.unlisted: refuse closes it"
        )
        yield Surface(rest, pt, False, (), (flag,), streams=False, stepless=True)
    elif config.mode == "shadow":
        flag = "would be refused, but passthrough.mode: shadow forwards them (recorded)"
        yield Surface(rest, pt, False, (), (flag,), streams=False, stepless=True)
    else:
        yield Surface(rest, pt, False, (), streams=False, stepless=True, note="refused (403), recorded")


SurfaceSource = Callable[[CompiledPolicy], Iterable[Surface]]
#: Where surfaces come from; append a source to report more.
SURFACE_SOURCES: list[SurfaceSource] = [api_surfaces, passthrough_surfaces]


def _mode(step: Step) -> str:
    if step.rollout is not None:  # promote: the share enforced right now
        return f"promote {step.rollout.percent:g}%"
    if step.canary is not None:
        return f"canary {step.canary:g}%"  # enforce on that share, shadow on the rest
    return step.mode


def _condition(step: Step, surface: Surface) -> str | None:
    """None when the step's ``when`` excludes the surface; "" when it always applies there."""
    when = step.plugin.config.when
    if when is None:
        return ""
    if when.routes is not None and surface.route not in when.routes:
        return None
    if when.streaming is not None and when.streaming != surface.stream:
        return None
    parts = []
    if when.models is not None:
        parts.append("some models: " + ", ".join(when.models))
    if when.tenants is not None:
        parts.append("some tenants: " + ", ".join(when.tenants))
    return "; ".join(parts)


def _flags(surface: Surface, steps: Sequence[StepCoverage]) -> list[str]:
    guards = [s for s in steps if s.guards]
    flags = list(surface.flags)
    if surface.stepless:
        return flags
    if not guards:
        flags.append("no guard covers this surface")
    elif all(s.mode == "shadow" for s in guards):
        flags.append("guards run in shadow only: nothing is refused or redacted here")
    elif all(s.condition for s in guards if s.mode != "shadow"):
        flags.append("enforcing guards apply only to some models/tenants")
    for s in steps:
        if s.guard and s.skipped:
            flags.append(f"{s.id} ({s.type}) does not check streamed answers here ({s.note})")
    return flags


def surface_coverage(compiled: CompiledPolicy, surface: Surface) -> SurfaceCoverage:
    rows = []
    for step in surface.steps if surface.steps is not None else compiled.chain.steps:
        condition = _condition(step, surface)
        if condition is None:
            continue
        hooks = step.plugin.surface_hooks(surface.route, surface.stream)
        guard = type(step.plugin).guard
        if guard and surface.route == Route.EMBEDDINGS.value and "response" in hooks.hooks:
            # An embeddings answer is vectors: a guard's response hook has no text to read there.
            hooks = replace(hooks, hooks=tuple(h for h in hooks.hooks if h != "response"))
        if surface.route == Route.PASSTHROUGH.value:
            # Pass-through answers are forwarded as bytes: only request and complete hooks run.
            hooks = replace(hooks, hooks=tuple(h for h in hooks.hooks if h in ("request", "complete")))
        if not hooks.hooks and not hooks.skipped:
            continue  # the step does nothing on this route (e.g. schema on embeddings)
        rows.append(
            StepCoverage(
                step.id,
                step.plugin.config.type,
                _mode(step),
                hooks.hooks,
                condition,
                hooks.note,
                guard,
                hooks.skipped,
            )
        )
    return SurfaceCoverage(surface, tuple(rows), tuple(_flags(surface, rows)))


def coverage(
    compiled: CompiledPolicy, sources: Sequence[SurfaceSource] | None = None
) -> list[SurfaceCoverage]:
    """One row group per surface, in source order."""
    return [
        surface_coverage(compiled, surface)
        for source in (SURFACE_SOURCES if sources is None else sources)
        for surface in source(compiled)
    ]


def _cells(s: StepCoverage) -> tuple[str, ...]:
    applies = (s.condition or "always") + (f" [{s.note}]" if s.note else "")
    return (s.id, s.type, s.mode, ", ".join(s.hooks), applies)


def render(rows: Sequence[SurfaceCoverage]) -> str:
    """A plain-text table: per surface, its steps (id, type, mode, hooks, when), then its flags."""
    header = ("step", "type", "mode", "hooks", "applies")
    cells = [_cells(s) for row in rows for s in row.steps]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(4)]

    def line(c: tuple[str, ...]) -> str:
        return "  " + "  ".join(v.ljust(w) for v, w in zip(c[:4], widths, strict=True)) + "  " + c[4]

    out = [line(header)]
    for row in rows:
        out.append(row.surface.label)
        out.extend(line(_cells(s)) for s in row.steps)
        if not row.steps and not row.surface.stepless:
            out.append("  (no steps)")
        if row.surface.note:
            out.append(f"  = {row.surface.note}")
        out.extend(f"  ! {flag}" for flag in row.flags)
    flagged = sum(1 for row in rows if row.flags)
    out.append(f"{len(rows)} surfaces, {flagged or 'none'} flagged")
    return "\n".join(out)
