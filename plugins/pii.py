"""``pii``: detect personal data with Presidio, replace it before the provider sees it, restore it after.

* Request: every prompt text (all roles by default, so a resent history is redacted the same
  way) is analysed in one engine call: in the CPU pool with the NER model or above 4 KB,
  inline below that (see ``_detect_async``). Per entity type: ``redact`` (a reversible placeholder
  ``<EMAIL_ADDRESS_1>``), ``mask`` (``****``), ``hash`` (a stable keyed token), ``block`` (400)
  or ``allow``. Same value -> same placeholder across messages and turns of a conversation.
* Response / stream: placeholders are restored to the values *this request* sent (streams hold
  back only from an unclosed ``<`` or ``[``, at most 64 characters); anything else that looks
  like a placeholder stays as it is and is counted.
* Placeholder-shaped text typed by the user (``<PERSON_1>``) is itself replaced by a placeholder
  whose value is that literal text, so it comes back verbatim and can never be restored to
  data it did not come from.
* ``scan_output``: PII in the answer that was not in the prompt is flagged or redacted; streams
  hold each sentence until it is scanned (``_OutputScan``), through the same inline-or-pool
  path as requests, so a model call never runs on the event loop.

Decision records carry entity types and counts, never values.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from proxy.chain import (
    ROLES,
    Deps,
    HoldBack,
    Plugin,
    PluginConfig,
    RequestContext,
    Roles,
    Secret,
    StateKey,
    StreamFilter,
    TextStreamFilter,
    check_names,
    sentence_boundary,
)
from proxy.chain.context import deadline_exceeded, past
from proxy.detectors.pii import (
    DEFAULT_ENTITIES,
    LITERAL,
    CustomRecognizer,
    MemoryVault,
    NerMode,
    PiiEngine,
    RedisVault,
    Span,
    Vault,
    digest,
    engine_key,
    literal_spans,
    placeholder,
    resolve,
    restore,
    stream_split,
)
from proxy.detectors.pii.engine import BUILTIN_ENTITIES
from proxy.detectors.shared import BATCH_TEXTS, INLINE_TEXTS
from proxy.errors import Rejected
from proxy.models import ChatRequest, ChatResponse, Finish, StreamEvent, TextDelta, ToolCallDelta
from proxy.redis import RedisOptions, connect, parse, target_digest

Action = Literal["redact", "mask", "hash", "block", "allow"]
#: Pattern-only requests up to this many characters are analysed on the event loop (see
#: ``PiiPlugin._detect_async``): ~0.3 ms per KB of prose, ~1-2 ms per KB of PII-dense text.
INLINE_MAX_CHARS = 4096


def _action_shorthand(schema: dict[str, Any]) -> None:
    """The JSON Schema of ``entities`` accepts the shorthand ``TYPE: action`` the model accepts."""
    rule = schema.get("additionalProperties")
    if isinstance(rule, dict):
        schema["additionalProperties"] = {"anyOf": [{"enum": list(get_args(Action)), "type": "string"}, rule]}


class EntityRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action = "redact"
    threshold: float | None = Field(default=None, ge=0, le=1, description="default: default_threshold")


class PiiConfig(PluginConfig):
    """Redact personal data in prompts (reversibly by default) and restore it in answers."""

    type: Literal["pii"] = "pii"
    ner: NerMode = Field(default="auto", description="names/locations/organisations via spaCy NER")
    recognizers: tuple[CustomRecognizer, ...] = Field(default=(), description="custom regex / deny-lists")
    entities: dict[str, EntityRule] = Field(
        default_factory=dict,
        description="per entity type (an action, e.g. CREDIT_CARD: block, or {action, threshold}): "
        + ", ".join(BUILTIN_ENTITIES)
        + ", or a custom recogniser's type",
        json_schema_extra=_action_shorthand,
    )
    detect: Literal["default", "all"] = Field(
        default="default",
        description="default: contact data, person names, government and financial IDs, credentials "
        "(docs/pii.md), plus the types under entities and recognizers; all: every type the engine knows "
        "(also LOCATION, DATE_TIME, ORGANIZATION, NRP, TITLE, AGE, URL, UUID, MAC_ADDRESS)",
    )
    default_action: Action = Field(default="redact", description="for detected types not in entities")
    default_threshold: float = Field(default=0.4, ge=0, le=1)
    roles: Roles = Field(default=ROLES, description="request roles scanned")
    conversation_header: str = "x-conversation-id"
    bind_to_api_key: bool = Field(default=True, description="conversations are scoped per client key too")
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Secret | None = Field(
        default=None,
        description="redis://, rediss://, redis+sentinel://, redis+cluster:// (docs/deployment.md)",
    )
    redis: RedisOptions | None = Field(default=None, description="cluster, sentinel and TLS settings")
    redis_prefix: str = "sidecar:pii:"
    redis_timeout_ms: int = Field(default=200, ge=1, le=5000)
    ttl: float = Field(default=86400, gt=0, description="seconds a conversation's numbering is kept")
    secret: Secret | None = Field(
        default=None, description="key for hash tokens and vault digests; required with redis"
    )
    mask_text: str = "****"
    restore_tool_arguments: bool = False
    scan_output: Literal["off", "flag", "redact"] = "off"
    output_max_hold: int = Field(default=1000, ge=16, description="stream hold-back for scan_output")
    message: str = Field(default="The request was blocked by policy.", description="public error message")

    @field_validator("ner", "scan_output", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare off as false

    @field_validator("entities", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"action": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("entities")
    @classmethod
    def _names(cls, value: dict[str, EntityRule], info: ValidationInfo) -> dict[str, EntityRule]:
        # A misspelt type (EMAIL for EMAIL_ADDRESS) would silently leave that data in clear.
        custom = tuple(r.entity_type for r in info.data.get("recognizers", ()))
        check_names(value, (*BUILTIN_ENTITIES, *custom), "PII entity type")
        return value

    @model_validator(mode="after")
    def _check(self) -> PiiConfig:
        if self.backend == "redis" and (self.redis_url is None or self.secret is None):
            raise ValueError("backend: redis needs redis_url and secret (shared by every replica)")
        if self.redis_url is not None:
            parse(self.redis_url.get_secret_value(), self.redis)  # a URL that cannot work fails here
        return self


@dataclass
class _State:
    mapping: dict[str, str]  # placeholder -> original, only what this request's messages held
    values: set[str] = field(default_factory=set)  # every original value seen in the prompt


STATE: StateKey[_State] = StateKey("pii.state")


def _counts(spans: Sequence[Span]) -> dict[str, int]:
    return dict(Counter(s.entity_type for s in spans))


class PiiPlugin(Plugin[PiiConfig]):
    Config = PiiConfig
    guard = True

    def __init__(self, config: PiiConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        key = engine_key(config.ner, config.recognizers)
        self.engine: PiiEngine = deps.resource(key, lambda: PiiEngine(config.ner, config.recognizers))
        self._secret: bytes = (
            config.secret.get_secret_value().encode()
            if config.secret is not None
            else deps.resource("pii-process-secret", lambda: _Bytes(os.urandom(32))).value
        )
        if config.backend == "redis" and config.redis_url is not None:
            target, prefix = parse(config.redis_url.get_secret_value(), config.redis), config.redis_prefix
            timeout = config.redis_timeout_ms / 1000
            vkey = f"pii-vault:redis:{target_digest(target)}:{prefix}:{config.ttl}"
            self.vault: Vault = deps.resource(
                vkey,
                lambda: RedisVault(
                    connect(target, connect_timeout=timeout, socket_timeout=timeout), config.ttl, prefix
                ),
            )
        else:
            self.vault = deps.resource(f"pii-vault:memory:{config.ttl}", lambda: MemoryVault(config.ttl))
        scope = self.engine.entities | set(config.entities)
        if config.detect == "default":
            scope &= DEFAULT_ENTITIES | set(config.entities) | {r.entity_type for r in config.recognizers}
        self._rules = {name: self._rule(name) for name in scope}
        active = [n for n, (action, _) in self._rules.items() if action != "allow"]
        narrowed = config.detect == "default" or config.default_action == "allow" or config.entities
        self._entities = active if narrowed else None
        self.engine.prepare(self._entities)  # the one-pass pre-scan, compiled now, not in a request
        self._min = min((t for a, t in self._rules.values() if a != "allow"), default=1.0)
        self._roles = frozenset(config.roles)
        # Shared by every pii step and policy reload in the process: one model call at a time.
        self._model_gate: asyncio.Semaphore = deps.resource("pii-model-gate", lambda: asyncio.Semaphore(1))

    def _rule(self, name: str) -> tuple[Action, float]:
        rule = self.config.entities.get(name)
        action = rule.action if rule else self.config.default_action
        threshold = rule.threshold if rule and rule.threshold is not None else self.config.default_threshold
        return action, threshold

    # -- detection (inline or in the CPU pool: see _detect_async) ----------------------
    def _spans(self, text: str, literals: bool) -> list[Span]:
        return self._keep(text, self.engine.analyze(text, self._entities, self._min), literals)

    def _detect(
        self, texts: Sequence[str], literals: bool, deadline: float | None = None
    ) -> list[list[Span]]:
        """The texts of one request in engine calls of ``BATCH_TEXTS`` (the NER model batches
        them), stopping with the request's timeout once ``deadline`` has passed."""
        found: list[list[Span]] = []
        for start in range(0, len(texts), BATCH_TEXTS):
            if past(deadline):
                raise deadline_exceeded()
            found += self.engine.analyze_many(texts[start : start + BATCH_TEXTS], self._entities, self._min)
        return [self._keep(t, spans, literals) if t else [] for t, spans in zip(texts, found, strict=True)]

    def _keep(self, text: str, spans: list[Span], literals: bool) -> list[Span]:
        kept = [
            s
            for s in spans
            if (r := self._rules.get(s.entity_type)) is not None and r[0] != "allow" and s.score >= r[1]
        ]
        return resolve([*kept, *literal_spans(text)] if literals else kept, text)

    async def _detect_async(
        self, texts: Sequence[str], literals: bool, deadline: float | None = None
    ) -> list[list[Span]]:
        """Pattern-only analysis of a small request runs inline; the rest goes to the CPU pool.

        Why inline: the pattern engine costs ~0.3 ms per KB of prose (benchmarks/pii_micro.py),
        less than the hop to a pool thread and back (wake-ups, GIL hand-offs): measured on a 2 KB
        prose request through the real sidecar, +1.9 ms p50 inline vs +3.0 ms offloaded. A pool
        thread competes with the event loop for the GIL anyway. Above ``INLINE_MAX_CHARS``
        (a few ms of work at worst) or with the NER model (~20 ms per KB) the call is
        offloaded, so one big prompt never stalls the loop, and ``run_cpu``'s semaphore bounds
        how many run at once. So is a request of more than ``INLINE_TEXTS`` texts: each scan has a
        fixed cost (~60 µs), and 2,048 one-character embeddings inputs took ~120 ms inline.
        ``deadline`` (request side): the pool work stops with a 504 once it has passed.

        Model calls additionally go one at a time (``_model_gate``): spaCy's NER holds the GIL,
        so a second concurrent call adds no throughput (measured 16.1 analyses/s with one
        thread, 14.5 with two) but is one more thread the event loop has to win the GIL from,
        and it would take the pool thread other plugins need.
        """
        if not self.engine.uses_model:
            if len(texts) <= INLINE_TEXTS and sum(len(t) for t in texts) <= INLINE_MAX_CHARS:
                return self._detect(texts, literals)
            found: list[list[Span]] = await self.deps.run_cpu(self._detect, texts, literals, deadline)
            return found
        async with self._model_gate:
            found = await self.deps.run_cpu(self._detect, texts, literals, deadline)
        return found

    def _action(self, entity_type: str) -> Action:
        return "redact" if entity_type == LITERAL else self._rules[entity_type][0]

    def _hash(self, entity_type: str, value: str) -> str:
        return f"[{entity_type}:{digest(self._secret, 'hash:' + entity_type, value)[:12]}]"

    def conversation_key(self, req: ChatRequest, ctx: RequestContext) -> str:
        conv = ctx.headers.get(self.config.conversation_header)
        if not conv:
            first = next((s.text for s in req.text_slots() if s.role == "user"), "")
            conv = "first:" + hashlib.sha256(first.encode()).hexdigest()
        who = ""
        if self.config.bind_to_api_key and ctx.identity is not None:
            who = "id:" + ctx.identity.key_id  # clients: the verified key, stable across token refreshes
        elif self.config.bind_to_api_key:
            h = ctx.headers
            raw = h.get("authorization") or h.get("api-key") or h.get("x-api-key")
            who = hashlib.sha256((raw or "").encode()).hexdigest()
        blob = json.dumps([ctx.tenant or "", who, conv])
        return hmac.new(self._secret, blob.encode(), hashlib.sha256).hexdigest()

    # -- hooks ---------------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> None:
        slots = [s for s in req.text_slots() if s.role in self._roles]
        ctx.check_deadline()
        found = await self._detect_async([s.text for s in slots], True, ctx.deadline)
        every = [s for spans in found for s in spans]
        state = _State({})
        ctx.set(STATE, state)
        if not every:
            return
        pii = [s for s in every if s.entity_type != LITERAL]
        detail: dict[str, Any] = {"entities": _counts(pii)}
        if len(pii) < len(every):
            detail["placeholder_literals"] = len(every) - len(pii)
        blocked = [s for s in pii if self._action(s.entity_type) == "block"]
        if blocked:
            ctx.record("request_pii", "block", detail={"entities": _counts(blocked)})
            raise Rejected(self.config.message, code="pii_blocked")
        # Number every reversible value (one vault call per request).
        items: dict[tuple[str, str], str] = {}
        for slot, spans in zip(slots, found, strict=True):
            for s in spans:
                value = slot.text[s.start : s.end]
                state.values.add(value)
                if self._action(s.entity_type) == "redact":
                    items[(s.entity_type, digest(self._secret, s.entity_type, value))] = value
        keys = list(items)
        # In shadow too: like a shadow budget's counters, the vault numbers "as if enforced" so
        # the would-be placeholders match what enforcing would produce; the edit itself happens
        # on the chain's copy of the request and never reaches the provider.
        numbers = await self.vault.assign(self.conversation_key(req, ctx), keys)
        token: dict[tuple[str, str], str] = {}
        for (etype, dig), n in zip(keys, numbers, strict=True):
            token[(etype, dig)] = ph = placeholder(etype, n)
            state.mapping[ph] = items[(etype, dig)]
        actions: Counter[str] = Counter()
        for slot, spans in zip(slots, found, strict=True):
            text = slot.text
            for s in reversed(spans):
                value, action = text[s.start : s.end], self._action(s.entity_type)
                actions[action] += 1
                if action == "redact":
                    new = token[(s.entity_type, digest(self._secret, s.entity_type, value))]
                elif action == "mask":
                    new = self.config.mask_text
                else:
                    new = self._hash(s.entity_type, value)
                text = text[: s.start] + new + text[s.end :]
            slot.set(text)
        detail["actions"] = dict(actions)
        main = "redact" if actions["redact"] else max(actions, key=lambda a: actions[a])
        ctx.record("request_pii", main, detail=detail)

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        state = ctx.get(STATE)
        if state is None:
            return
        restored = unknown = 0
        messages = []
        for slot in resp.text_slots():
            if slot.kind == "message":
                messages.append(slot)
            elif not (slot.kind == "tool_arguments" and self.config.restore_tool_arguments):
                continue
            text, r, u = restore(slot.text, state.mapping, escape=slot.kind == "tool_arguments")
            restored, unknown = restored + r, unknown + u
            if r:
                slot.set(text)
        _record_restore(ctx, restored, unknown)
        if self.config.scan_output != "off" and messages:
            texts, hits = await self.scan_output([s.text for s in messages], state)
            for slot, text in zip(messages, texts, strict=True):
                if text is not slot.text:
                    slot.set(text)
            self._record_output(ctx, hits)

    def _record_output(self, ctx: RequestContext, hits: Sequence[Span]) -> None:
        if hits:
            ctx.record("output_pii", self.config.scan_output, detail={"entities": _counts(hits)})

    async def scan_output(self, texts: Sequence[str], state: _State) -> tuple[list[str], list[Span]]:
        """Output scan of answer texts: PII the prompt did not hold is counted (and redacted).

        Shared by whole answers and by stream windows, so both go through ``_detect_async``:
        with the NER model (or above ``INLINE_MAX_CHARS``) in the CPU pool, model calls one at a
        time, never on the event loop. Returns the texts (the same objects when unchanged) and
        the new spans.
        """
        found = await self._detect_async(texts, False)
        out: list[str] = []
        hits: list[Span] = []
        for text, spans in zip(texts, found, strict=True):
            new = [s for s in spans if _is_new(text[s.start : s.end], state.values)]
            hits += new
            out.append(_redact_output(text, new) if new and self.config.scan_output == "redact" else text)
        return out, hits

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        state = ctx.get(STATE)
        if state is None or (not state.mapping and self.config.scan_output == "off"):
            return None
        return _PiiStream(self, ctx, state)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class _Bytes:
    value: bytes


def _is_new(value: str, known: set[str]) -> bool:
    return not any(value == v or (len(v) >= 3 and (v in value or value in v)) for v in known)


def _redact_output(text: str, spans: Sequence[Span]) -> str:
    for s in sorted(spans, key=lambda s: s.start, reverse=True):
        text = text[: s.start] + f"[{s.entity_type}]" + text[s.end :]
    return text


def _record_restore(ctx: RequestContext, restored: int, unknown: int) -> None:
    if restored or unknown:
        ctx.record(
            "restore",
            "restore",
            detail={"restored": restored, "unknown_placeholders": unknown},
        )


class _OutputScan:
    """Per-choice sentence windows of the answer, scanned for new PII before they are sent.

    Why not ``TextStreamFilter`` + ``HoldBack(..., transform)``: a hold-back transform is
    synchronous, so the scan (a model call per window with NER, ~20 ms per KB) would run on the
    event loop. Here the hold-back only splits; each released window is awaited through
    ``PiiPlugin.scan_output``, i.e. the request side's bounded CPU-pool path. Order is kept
    because the chain awaits one event at a time, and a window is sent only after its scan, so
    output PII is caught before it leaves. Event handling mirrors ``TextStreamFilter``: an
    event passed unchanged keeps its text-bound fields (logprobs), a held or rewritten one
    loses them, and a tool call or finish of a choice goes out only after that choice's text.
    """

    def __init__(self, plugin: PiiPlugin, state: _State) -> None:
        self._plugin, self._state = plugin, state
        self._split = sentence_boundary(plugin.config.output_max_hold)
        self._held: dict[int, HoldBack] = {}
        self._meta: dict[int, Mapping[str, Any] | None] = {}
        self.hits: list[Span] = []

    async def _scan(self, texts: list[str]) -> list[str]:
        out, hits = await self._plugin.scan_output(texts, self._state)
        self.hits += hits
        return out

    async def _flush(self, indexes: Sequence[int]) -> list[StreamEvent]:
        """The held rest of these choices, scanned in one engine call (one model batch)."""
        rests = [(i, rest) for i in indexes if (hb := self._held.get(i)) is not None and (rest := hb.flush())]
        if not rests:
            return []
        texts = await self._scan([rest for _, rest in rests])
        return [TextDelta(i, t, None, self._meta.get(i)) for (i, _), t in zip(rests, texts, strict=True)]

    async def on_event(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, TextDelta):
            hb = self._held.get(event.index)
            if hb is None:
                hb = self._held[event.index] = HoldBack(self._split)
            if event.meta is not None:
                self._meta[event.index] = event.meta
            untouched = not hb.pending
            released = hb.feed(event.text)
            if released:
                (scanned,) = await self._scan([released])
                if untouched and scanned == event.text:
                    return [event]  # passed as it came: its text-bound fields still apply
                return [TextDelta(event.index, scanned, None, event.meta)]
            if event.extra and "role" in (event.extra.get("delta") or {}):
                return [
                    TextDelta(event.index, "", {"delta": {"role": event.extra["delta"]["role"]}}, event.meta)
                ]
            return []
        if isinstance(event, (Finish, ToolCallDelta)):
            return [*(await self._flush([event.index])), event]
        return [*(await self.on_end()), event]

    async def on_end(self) -> list[StreamEvent]:
        return await self._flush(sorted(self._held))


class _PiiStream:
    """Restore (per-choice hold-back) then, optionally, output scanning (per sentence, awaited)."""

    def __init__(self, plugin: PiiPlugin, ctx: RequestContext, state: _State) -> None:
        self._plugin, self._ctx, self._state = plugin, ctx, state
        self._restored = self._unknown = 0
        mapping = state.mapping
        self._restore = (
            TextStreamFilter(lambda: HoldBack(stream_split, self._restore_text)) if mapping else None
        )
        self._scan = _OutputScan(plugin, state) if plugin.config.scan_output != "off" else None
        self._tools: dict[tuple[int, int], HoldBack] = {}
        self._tool_args = plugin.config.restore_tool_arguments and bool(mapping)

    def _restore_text(self, text: str) -> str:
        out, r, u = restore(text, self._state.mapping)
        self._restored += r
        self._unknown += u
        return out

    def _restore_json(self, text: str) -> str:
        out, r, u = restore(text, self._state.mapping, escape=True)
        self._restored += r
        self._unknown += u
        return out

    def _flush_tools(self, index: int | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for (i, call), hb in list(self._tools.items()):
            if index is None or i == index:
                rest = hb.flush()
                if rest:
                    out.append(ToolCallDelta(i, call, rest))
                del self._tools[(i, call)]
        return out

    async def _stages(self, events: Sequence[StreamEvent], end: bool) -> list[StreamEvent]:
        out = list(events)
        stage: TextStreamFilter | _OutputScan | None
        for stage in (self._restore, self._scan):
            if stage is None:
                continue
            nxt: list[StreamEvent] = []
            for ev in out:
                nxt.extend(await stage.on_event(ev))
            if end:
                nxt.extend(await stage.on_end())
            out = nxt
        return out

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        events: list[StreamEvent] = [event]
        if self._tool_args and isinstance(event, ToolCallDelta):
            key = (event.index, event.call_index)
            hb = self._tools.get(key)
            if hb is None:
                hb = self._tools[key] = HoldBack(stream_split, self._restore_json)
            events = [replace(event, arguments=hb.feed(event.arguments))]
        elif self._tool_args and isinstance(event, Finish):
            events = [*self._flush_tools(event.index), event]
        return await self._stages(events, end=False)

    async def on_end(self) -> Sequence[StreamEvent]:
        out = await self._stages(self._flush_tools(None), end=True)
        _record_restore(self._ctx, self._restored, self._unknown)
        if self._scan is not None:
            self._plugin._record_output(self._ctx, self._scan.hits)
        return out
