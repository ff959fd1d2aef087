"""The ``pii`` plugin: detect personal data with Presidio, replace it before the provider sees it,
restore it after.

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
  hold each sentence until it is scanned (``stream.PiiStream``), through the same inline-or-pool
  path as requests, so a model call never runs on the event loop.

Decision records carry entity types and counts, never values.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from proxy.chain import Deps, Plugin, RequestContext, StreamFilter
from proxy.chain.context import deadline_exceeded, past
from proxy.detectors.pii import (
    DEFAULT_ENTITIES,
    LITERAL,
    Digester,
    PiiEngine,
    Span,
    Vault,
    engine_key,
    literal_spans,
    placeholder,
    resolve,
    restore,
    splice,
)
from proxy.detectors.shared import BATCH_TEXTS, INLINE_TEXTS
from proxy.errors import Rejected
from proxy.models import ChatRequest, ChatResponse

from .config import Action, PiiConfig
from .stream import PiiStream, record_restore
from .vault import STATE, PiiState, conversation_key, secret_of, vault_of

#: Pattern-only requests up to this many characters are analysed on the event loop (see
#: ``PiiPlugin._detect_async``): ~0.3 ms per KB of prose, ~1-2 ms per KB of PII-dense text.
INLINE_MAX_CHARS = 4096


#: Roles whose text is the application's own instructions: the same text request after request
#: (a support bot sends one system prompt with every call), so its analysis is kept.
INSTRUCTION_ROLES = frozenset({"system", "developer"})
#: Instruction texts kept per step (least recently used first out), and the longest kept.
INSTRUCTION_CACHE_ENTRIES = 256
INSTRUCTION_CACHE_MAX_CHARS = 16384


class _InstructionCache:
    """The spans ``_detect`` found in recent instruction texts (``INSTRUCTION_ROLES``).

    Why: a 230-character system prompt cost ~30 µs of the ~0.6 ms pii step per request, the
    same answer every time (analysis is a pure function of the text for a given step: its
    entities and thresholds are fixed; a policy reload builds a new step and a new cache).
    User and assistant texts are not kept: they rarely repeat verbatim across requests and
    hold the values themselves. Thread-safe (``_detect`` may run in the CPU pool)."""

    def __init__(self) -> None:
        self._found: OrderedDict[tuple[str, bool], tuple[Span, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, literals: bool) -> list[Span] | None:
        with self._lock:
            found = self._found.get((text, literals))
            if found is None:
                return None
            self._found.move_to_end((text, literals))
        return list(found)

    def put(self, text: str, literals: bool, spans: Sequence[Span]) -> None:
        if len(text) > INSTRUCTION_CACHE_MAX_CHARS:
            return
        with self._lock:
            self._found[(text, literals)] = tuple(spans)
            if len(self._found) > INSTRUCTION_CACHE_ENTRIES:
                self._found.popitem(last=False)


def _counts(spans: Sequence[Span]) -> dict[str, int]:
    """Spans per entity type, in first-seen order (``dict(Counter(...))``, without building a
    ``Counter``: it costs more than the few spans it counts)."""
    counts: dict[str, int] = {}
    for s in spans:
        counts[s.entity_type] = counts.get(s.entity_type, 0) + 1
    return counts


class PiiPlugin(Plugin[PiiConfig]):
    Config = PiiConfig
    guard = True

    def __init__(self, config: PiiConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        key = engine_key(config.ner, config.recognizers)
        self.engine: PiiEngine = deps.resource(key, lambda: PiiEngine(config.ner, config.recognizers))
        self._secret = secret_of(config, deps)
        self._digest = Digester(self._secret)  # ``digest`` keyed once: one HMAC per value
        self.vault: Vault = vault_of(config, deps)
        scope = self.engine.entities | set(config.entities)
        if config.detect == "default":
            scope &= DEFAULT_ENTITIES | set(config.entities) | {r.entity_type for r in config.recognizers}
        self._rules = {name: self._rule(name) for name in scope}
        #: each type's action, one dict lookup (the redaction loops ask two or three times per span)
        self._actions: dict[str, Action] = {name: rule[0] for name, rule in self._rules.items()}
        self._actions[LITERAL] = "redact"
        active = [n for n, (action, _) in self._rules.items() if action != "allow"]
        narrowed = config.detect == "default" or config.default_action == "allow" or config.entities
        self._entities = active if narrowed else None
        self.engine.prepare(self._entities)  # the one-pass pre-scan, compiled now, not in a request
        self._min = min((t for a, t in self._rules.values() if a != "allow"), default=1.0)
        self._roles = frozenset(config.roles)
        self._instructions = _InstructionCache()
        # Shared by every pii step and policy reload in the process: one model call at a time.
        self._model_gate: asyncio.Semaphore = deps.resource("pii-model-gate", lambda: asyncio.Semaphore(1))

    @property
    def scan_entities(self) -> list[str] | None:
        """The entity types this step looks for (None: every type its engine knows); sampled
        capture masks the same ones."""
        return self._entities

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

    async def _detect_slots(
        self, texts: Sequence[str], roles: Sequence[str], deadline: float | None
    ) -> list[list[Span]]:
        """``_detect_async`` of a request's texts, instruction texts answered from (and kept in)
        ``_instructions`` when seen before."""
        found: list[list[Span] | None] = [
            self._instructions.get(t, True) if r in INSTRUCTION_ROLES else None
            for t, r in zip(texts, roles, strict=True)
        ]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            fresh = await self._detect_async([texts[i] for i in missing], True, deadline)
            for i, spans in zip(missing, fresh, strict=True):
                found[i] = spans
                if roles[i] in INSTRUCTION_ROLES:
                    self._instructions.put(texts[i], True, spans)
        return [f if f is not None else [] for f in found]

    def _hash(self, entity_type: str, value: str) -> str:
        return f"[{entity_type}:{self._digest('hash:' + entity_type, value)[:12]}]"

    def conversation_key(self, req: ChatRequest, ctx: RequestContext, first_user: str | None = None) -> str:
        return conversation_key(self.config, self._secret, req, ctx, first_user)

    # -- hooks ---------------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> None:
        every_slot = list(req.text_slots())
        slots = [s for s in every_slot if s.role in self._roles]
        ctx.check_deadline()
        found = await self._detect_slots([s.text for s in slots], [s.role for s in slots], ctx.deadline)
        every = [s for spans in found for s in spans]
        state = PiiState({})
        ctx.set(STATE, state)
        if not every:
            return
        pii = [s for s in every if s.entity_type != LITERAL]
        detail: dict[str, Any] = {"entities": _counts(pii)}
        if len(pii) < len(every):
            detail["placeholder_literals"] = len(every) - len(pii)
        action_of = self._actions  # a local: read two or three times per span
        blocked = [s for s in pii if action_of[s.entity_type] == "block"]
        if blocked:
            ctx.record("request_pii", "block", detail={"entities": _counts(blocked)})
            raise Rejected(self.config.message, code="pii_blocked")
        # Number every reversible value (one vault call per request). Each distinct value's
        # digest is computed once per request (a resent history repeats the same values).
        items: dict[tuple[str, str], str] = {}
        digests: dict[tuple[str, str], tuple[str, str]] = {}
        for slot, spans in zip(slots, found, strict=True):
            for s in spans:
                value = slot.text[s.start : s.end]
                state.values.add(value)
                if action_of[s.entity_type] == "redact" and (s.entity_type, value) not in digests:
                    key = digests[(s.entity_type, value)] = (
                        s.entity_type,
                        self._digest(s.entity_type, value),
                    )
                    items[key] = value
        keys = list(items)
        # In shadow too: like a shadow budget's counters, the vault numbers "as if enforced" so
        # the would-be placeholders match what enforcing would produce; the edit itself happens
        # on the chain's copy of the request and never reaches the provider.
        # The texts as the key reads them: no slot is edited before the vault call.
        first_user = next((s.text for s in every_slot if s.role == "user"), "")
        numbers = await self.vault.assign(self.conversation_key(req, ctx, first_user), keys)
        token: dict[tuple[str, str], str] = {}
        for (etype, dig), n in zip(keys, numbers, strict=True):
            token[(etype, dig)] = ph = placeholder(etype, n)
            state.mapping[ph] = items[(etype, dig)]
        actions: dict[str, int] = {}  # a plain dict: ``Counter``'s set-up costs more than the counting
        for slot, spans in zip(slots, found, strict=True):
            if not spans:
                continue
            text = slot.text
            edits: list[tuple[int, int, str]] = []
            for s in reversed(spans):  # from the end: the order actions have always been counted in
                value, action = text[s.start : s.end], action_of[s.entity_type]
                actions[action] = actions.get(action, 0) + 1
                if action == "redact":
                    new = token[digests[(s.entity_type, value)]]
                elif action == "mask":
                    new = self.config.mask_text
                else:
                    new = self._hash(s.entity_type, value)
                edits.append((s.start, s.end, new))
            slot.set(splice(text, edits))
        detail["actions"] = actions
        main = "redact" if "redact" in actions else max(actions, key=lambda a: actions[a])
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
        record_restore(ctx, restored, unknown)
        if self.config.scan_output != "off" and messages:
            texts, hits = await self.scan_output([s.text for s in messages], state)
            for slot, text in zip(messages, texts, strict=True):
                if text is not slot.text:
                    slot.set(text)
            self._record_output(ctx, hits)

    def _record_output(self, ctx: RequestContext, hits: Sequence[Span]) -> None:
        if hits:
            ctx.record("output_pii", self.config.scan_output, detail={"entities": _counts(hits)})

    async def scan_output(self, texts: Sequence[str], state: PiiState) -> tuple[list[str], list[Span]]:
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
        scanning = self.config.scan_output != "off"
        if state is None or (not state.mapping and not scanning):
            return None
        scan = self.scan_output if scanning else None
        tool_args = self.config.restore_tool_arguments
        return PiiStream(ctx, state, scan, self._record_output, self.config.output_max_hold, tool_args)

    async def aclose(self) -> None:
        return None


def _is_new(value: str, known: set[str]) -> bool:
    return not any(value == v or (len(v) >= 3 and (v in value or value in v)) for v in known)


def _redact_output(text: str, spans: Sequence[Span]) -> str:
    for s in sorted(spans, key=lambda s: s.start, reverse=True):
        text = text[: s.start] + f"[{s.entity_type}]" + text[s.end :]
    return text
