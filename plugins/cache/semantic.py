"""Optional semantic lookup: a prompt close enough to a cached one gets its answer.

Off by default (``semantic:`` unset). On an exact miss the prompt text is embedded by an
OpenAI-compatible embeddings endpoint, and compared (cosine) with the prompts whose answers
this process stored *in the same scope*: the same caller, route, model, policy fingerprint and
every request field but the messages. So a near-duplicate can never cross a tenant or a policy,
nor match a request with other tools, temperature or response format. The index lives in the
process (bounded, oldest first out); the answers themselves stay in the cache's backend.
A ``mode: shadow`` cache step records semantic would-be hits like exact ones.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from plugins.cache.keys import caller_identity
from proxy.chain import RequestContext, Secret
from proxy.chain.ports import JsonHttp

_FRAMING = frozenset({"stream", "stream_options", "user", "metadata"})


class SemanticConfig(BaseModel):
    """``semantic:`` of a cache step: where prompts are embedded and how close is close enough."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="OpenAI-compatible embeddings endpoint, e.g. https://api.openai.com/v1/embeddings"
    )
    model: str = "text-embedding-3-small"
    api_key: Secret | None = None
    threshold: float = Field(default=0.95, gt=0, le=1, description="cosine similarity for a hit")
    timeout: float = Field(default=2.0, gt=0, description="seconds; a slow or failed call is a miss")
    max_entries: int = Field(default=10_000, ge=1, description="prompts indexed per process")


def scope_of(body: Mapping[str, Any], ctx: RequestContext, fingerprint: str) -> str:
    """Everything but the prompt text that must match for a semantic hit."""
    rest = {
        k: v for k, v in body.items() if k not in ("messages", "stream", "stream_options", "user", "metadata")
    }
    h = hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS))
    for part in (fingerprint, ctx.route.value, ctx.model, ctx.target or "", caller_identity(ctx)):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class SemanticIndex:
    """(scope, vector) -> exact cache key, bounded by entry count (oldest first out)."""

    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[str, tuple[float, ...]]] = OrderedDict()
        self._max = max_entries

    def add(self, scope: str, vector: Sequence[float], key: str) -> None:
        self._items[(scope, key)] = (scope, tuple(vector))
        self._items.move_to_end((scope, key))
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def nearest(self, scope: str, vector: Sequence[float]) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        for (item_scope, key), (_, stored) in self._items.items():
            if item_scope != scope:
                continue
            score = _cosine(vector, stored)
            if best is None or score > best[1]:
                best = (key, score)
        return best


async def embed(http: JsonHttp, cfg: SemanticConfig, text: str) -> list[float] | None:
    """The prompt's vector, or None when the endpoint failed or answered something else."""
    headers = [("content-type", "application/json")]
    if cfg.api_key is not None:
        headers.append(("authorization", f"Bearer {cfg.api_key.get_secret_value()}"))
    answer = await http.post_json(cfg.url, headers, orjson.dumps({"model": cfg.model, "input": text}))
    try:
        vector = answer["data"][0]["embedding"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(vector, list) or not all(isinstance(x, (int, float)) for x in vector):
        return None
    return [float(x) for x in vector]
