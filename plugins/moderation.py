"""``moderation``: a cascade of content checks on prompts and answers, streams included.

Layers (``proxy.detectors.moderation`` for the first two, both offline):
1. rules kept as data (blocklists and regexes, word-boundary aware, leetspeak-tolerant, with a
   benign-context allow-list: "kill the process" is not violence);
2. a per-category classifier shipped in the package, and/or an OpenAI-compatible
   ``/v1/moderations`` endpoint (``endpoint:``): the higher score per category wins;
3. an LLM judge (``judge:``), asked only when the top score falls in its borderline band.

Each category has its own threshold and action (``block`` or ``flag``). Streamed answers are
checked on windows released by the hold-back primitive: ``stream: window`` (default) holds text
until a sentence boundary (or ``window_chars``) and checks it *before* it reaches the client;
``stream: after_release`` lets text through at once and checks each window afterwards, which
adds no latency but may show the client part of a violating sentence before the stream is
ended with an in-band error.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from proxy.chain import (
    Deps,
    Plugin,
    PluginConfig,
    Reply,
    RequestContext,
    Roles,
    Secret,
    StreamFilter,
    SurfaceHooks,
    TextStreamFilter,
    check_names,
)
from proxy.chain.holdback import sentence_boundary
from proxy.detectors import onnx_classifier
from proxy.detectors.moderation import CATEGORIES, ModerationDetector, ModerationResult
from proxy.detectors.onnx_classifier import OnnxSpec
from proxy.detectors.shared import INLINE_CHARS, InlineBudget, ScanCache, scan_all, scan_cache
from proxy.errors import Rejected
from proxy.guards import JUDGE_TEXT_CHARS, AwaitedWindow, RemoteModel, add_flag
from proxy.models import ChatRequest, ChatResponse

# Texts are scored on the event loop while a hook's total stays within INLINE_CHARS (4 KB), the rest
# in the CPU pool: below that the thread hop costs a fifth to a third of the scan it moves and frees
# the loop of little (proxy/detectors/shared.py has the measurements).
INLINE_LIMIT = INLINE_CHARS


def _off_is_text(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false."""
    return "off" if value is False else value


class CategorySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | None = Field(default=None, ge=0, le=1, description="default: the model's")
    action: Annotated[Literal["block", "flag", "off"] | None, BeforeValidator(_off_is_text)] = None


class RemoteSpec(BaseModel):
    """An OpenAI-compatible endpoint: ``/moderations`` (``endpoint``), ``/chat/completions`` (``judge``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str
    api_key: Secret | None = None
    timeout: float = Field(default=3.0, gt=0)
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    band: tuple[float, float] = Field(default=(0.3, 0.7), description="judge only: top scores in [low, high)")


class ModerationConfig(PluginConfig):
    """Moderation of prompts and answers: rules, local classifier, optional endpoint and judge."""

    type: Literal["moderation"] = "moderation"
    check: tuple[Literal["input", "output"], ...] = ("input", "output")
    input_roles: Roles = ("user",)
    default_action: Literal["block", "flag"] = "block"
    categories: dict[str, CategorySpec] = Field(
        default_factory=dict, description="per category, e.g. self-harm"
    )
    stream: Literal["window", "after_release"] = "window"
    window_chars: int = Field(
        default=400, ge=20, le=8000, description="longest window without a sentence end"
    )
    endpoint: RemoteSpec | None = None
    judge: RemoteSpec | None = None
    model: OnnxSpec | None = Field(default=None, description="optional local ONNX safety classifier")
    harmful_request: bool = Field(
        default=False,
        description=(
            "add the packaged harmful-request model to the `illicit` category (opt-in: it flags "
            "5-15% of benign sources it was not trained on; run it in shadow mode first)"
        ),
    )
    message: str = "The content was blocked by policy."

    @field_validator("categories")
    @classmethod
    def _known(cls, value: dict[str, CategorySpec]) -> dict[str, CategorySpec]:
        check_names(value, CATEGORIES, "moderation category")
        return value


def _remote(deps: Deps, spec: RemoteSpec | None) -> RemoteModel | None:
    return RemoteModel(deps, spec.base_url, spec.api_key, spec.timeout, "remote_error") if spec else None


JUDGE_PROMPT = (
    "You are a content moderator. Answer with exactly YES or NO. Does the following text contain {category} "
    "content that a platform's usage policy forbids?\n\n<text>\n{text}\n</text>"
)


class ModerationPlugin(Plugin[ModerationConfig]):
    Config = ModerationConfig
    guard = True

    def __init__(self, config: ModerationConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        if config.harmful_request:
            self.detector: ModerationDetector = deps.resource(
                "moderation:detector:harmful_request", lambda: ModerationDetector(harmful_request=True)
            )
        else:
            self.detector = deps.resource("moderation:detector", ModerationDetector)
        defaults = self.detector.thresholds.combined
        self.thresholds = {
            c: (config.categories.get(c) or CategorySpec()).threshold or defaults[c] for c in CATEGORIES
        }
        self.actions = {
            c: (config.categories.get(c) or CategorySpec()).action or config.default_action
            for c in CATEGORIES
        }
        # Per request only these are read: the categories that can act, with their thresholds, in
        # CATEGORIES order (so ``violations`` keeps that order), and the roles checked on input.
        self._live = tuple((c, self.thresholds[c]) for c in CATEGORIES if self.actions[c] != "off")
        self._input_roles = frozenset(config.input_roles)
        # Without remote layers the local scores are final: read them as they are, no copy.
        self._local_only = config.endpoint is None and config.judge is None and config.model is None
        self._remote_endpoint = _remote(deps, config.endpoint)
        self._remote_judge = _remote(deps, config.judge)
        spec = config.model
        self._onnx = None if spec is None else onnx_classifier.load(spec.onnx, spec.threads)

    # -- scoring -----------------------------------------------------------------------
    async def score(
        self,
        text: str,
        ctx: RequestContext,
        cache: ScanCache | None = None,
        budget: InlineBudget | None = None,
        local: ModerationResult | None = None,
    ) -> Mapping[str, float]:
        """Per-category scores: local layers, raised by the endpoint, settled by the judge in its band.

        ``cache``: the request's shared detector work (an injection step may have folded and hashed
        the same prompt text already). ``budget``: the calling hook's inline allowance (one text on
        its own gets a fresh one): within it the scan runs on the event loop, past it in the CPU
        pool. ``local``: the local layers' result when the caller already scored the text.
        Read-only: without remote layers this is the detector's own table of scores."""
        if local is not None:
            pass
        elif (budget or InlineBudget()).take(text):
            local = self.detector.scan(text, cache)
        else:
            local = await self.deps.run_cpu(self.detector.scan, text, cache)
        if self._local_only:
            return local.combined_scores
        scores = dict(local.combined_scores)
        if self.config.endpoint is not None:
            remote = await self._endpoint(text, ctx)
            if remote is None and self.config.endpoint.on_error == "fail_closed":
                return {c: 1.0 for c in CATEGORIES}
            for cat, value in (remote or {}).items():
                if cat in scores:
                    scores[cat] = max(scores[cat], value)
        await self._ask_model(text, scores, ctx)
        judge = self.config.judge
        if judge is not None:
            top = max(scores, key=lambda c: scores[c])
            if judge.band[0] <= scores[top] < judge.band[1]:
                verdict = await self._judge(text, top, ctx)
                if verdict is None:
                    verdict = judge.on_error == "fail_closed"
                scores[top] = 1.0 if verdict else 0.0
        return scores

    async def _ask_model(self, text: str, scores: dict[str, float], ctx: RequestContext) -> None:
        """The ONNX layer settles the top category when its score is in ``model.band`` (in the CPU
        pool): 1.0 if the model's unsafe probability reaches ``model.threshold``, else 0.0."""
        spec = self.config.model
        if self._onnx is None or spec is None:
            return
        top = max(scores, key=lambda c: scores[c])
        if not spec.band[0] <= scores[top] < spec.band[1]:
            return
        result: onnx_classifier.OnnxScore = await self.deps.run_cpu(self._onnx.score, text)
        unsafe = result.score >= spec.threshold
        scores[top] = 1.0 if unsafe else 0.0
        ctx.record(
            "model_score",
            "flag" if unsafe else "allow",
            score=result.score,
            threshold=spec.threshold,
            latency_ms=result.latency_ms,
            detail={"category": top, "windows": result.windows},
        )

    def violations(self, scores: Mapping[str, float]) -> list[str]:
        """The categories that act (not ``off``) whose score reaches their threshold, in CATEGORIES order."""
        return [c for c, threshold in self._live if scores[c] >= threshold]

    async def check(self, texts: Iterable[str], ctx: RequestContext, where: str) -> None:
        """Score ``texts``; block (raise) or flag according to the categories that hit."""
        flagged: set[str] = set()
        # Prompt text is shared with an injection step; answers are not (they are new text, and an
        # answer that merely repeats the prompt should not look cheaper than it is).
        cache = scan_cache(ctx) if where == "input" else None
        todo = [t for t in texts if t.strip()]
        # Local layers for every text first: inline within one budget per call (a hook's texts
        # together stall the loop by a bound), the rest in batches in the CPU pool, honouring
        # the request deadline. Remote layers and decisions then go text by text, in order.
        started = time.perf_counter()
        scan, run_cpu, on_input = self.detector.scan, self.deps.run_cpu, where == "input"
        local = await scan_all(todo, scan, run_cpu, ctx, cache, InlineBudget(), honour_deadline=on_input)
        for text, result in zip(todo, local, strict=True):
            scores = await self.score(text, ctx, cache, local=result)
            hits = self.violations(scores)
            top = max(hits, key=lambda c: scores[c]) if hits else None
            if ctx.record_scores:  # calibration: every category's score, triggered or not
                for cat in CATEGORIES:
                    if cat != top and self.actions[cat] != "off":
                        ctx.record(
                            f"{where}_{cat}",
                            "allow",
                            score=scores[cat],
                            threshold=self.thresholds[cat],
                            detail={"where": where, "score_only": True},
                            text=text,
                        )
            if top is None:
                continue
            blocking = [c for c in hits if self.actions[c] == "block"]
            detail = {"where": where, "categories": hits, "scores": {c: round(scores[c], 4) for c in hits}}
            ms = (time.perf_counter() - started) * 1000
            action = "block" if blocking else "flag"
            ctx.record(
                f"{where}_{top}",
                action,
                score=scores[top],
                threshold=self.thresholds[top],
                latency_ms=ms,
                detail=detail,
                text=text,
            )
            if blocking:
                raise Rejected(
                    self.config.message, code="content_flagged" if where == "input" else "output_flagged"
                )
            flagged.update(hits)
        if flagged:  # in shadow the chain drops the header with the step's other effects
            add_flag(ctx, "moderation")

    # -- hooks -------------------------------------------------------------------------
    def surface_hooks(self, route: str, stream: bool) -> SurfaceHooks:
        check = self.config.check
        hooks = {"request": "input" in check, "stream" if stream else "response": "output" in check}
        note = f"stream: {self.config.stream}" if stream and "output" in check else ""
        return SurfaceHooks(tuple(h for h, on in hooks.items() if on), note)

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        if "input" in self.config.check:
            roles = self._input_roles
            await self.check([s.text for s in req.text_slots() if s.role in roles], ctx, "input")
        return None

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        if "output" in self.config.check:
            await self.check([s.text for s in resp.text_slots() if s.kind == "message"], ctx, "output")

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        if "output" not in self.config.check:
            return None
        split = sentence_boundary(self.config.window_chars)
        hold = self.config.stream == "window"
        settle = functools.partial(self._check_window, ctx)
        return TextStreamFilter(lambda: AwaitedWindow(split, settle, hold))

    # -- remote layers -----------------------------------------------------------------
    async def _endpoint(self, text: str, ctx: RequestContext) -> dict[str, float] | None:
        spec = self.config.endpoint
        assert spec is not None and self._remote_endpoint is not None
        payload = {"model": spec.model, "input": text[:32000]}
        data = await self._remote_endpoint.post("/moderations", payload, ctx)
        try:
            scores = data["results"][0]["category_scores"]
            return {str(k): float(v) for k, v in scores.items()}
        except (TypeError, KeyError, IndexError, ValueError, AttributeError):
            if data is not None:
                ctx.record(
                    "remote_error", "error", detail={"path": "/moderations", "error": "unexpected body"}
                )
            return None

    async def _judge(self, text: str, category: str, ctx: RequestContext) -> bool | None:
        spec = self.config.judge
        assert spec is not None and self._remote_judge is not None
        prompt = JUDGE_PROMPT.format(category=category, text=text[:JUDGE_TEXT_CHARS])
        return await self._remote_judge.ask_yes_no(spec.model, prompt, ctx)

    async def _check_window(self, ctx: RequestContext, text: str) -> str:
        """A streamed window, checked as output (raises to end the stream); released as it is."""
        await self.check([text], ctx, "output")
        return text
