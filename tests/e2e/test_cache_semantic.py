"""Semantic lookup: near-duplicate prompts hit, within the same tenant and policy only.

A real embeddings server on loopback (bag of lower-cased words hashed into 64 dimensions), so
"What is the capital of France?" and "what is the capital of france" embed identically and
"tell me a joke" does not; the sidecar reaches it through its pooled JSON client.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.e2e.test_cache import ask, decisions, policy
from tests.harness import SidecarHarness, free_port, serve_in_thread, sidecar_harness

CALLS: list[str] = []


def _vector(text: str) -> list[float]:
    v = [0.0] * 64
    for word in re.findall(r"[a-z]+", text.lower()):
        v[hashlib.sha256(word.encode()).digest()[0] % 64] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


async def _embeddings(request: Request) -> JSONResponse:
    body = await request.json()
    CALLS.append(body["input"])
    return JSONResponse({"object": "list", "data": [{"index": 0, "embedding": _vector(body["input"])}]})


@pytest.fixture
def semantic(tmp_path: Path) -> Iterator[SidecarHarness]:
    app = Starlette(routes=[Route("/v1/embeddings", _embeddings, methods=["POST"])])
    with serve_in_thread(app) as embed_url:
        cache = f"{{type: cache, semantic: {{url: '{embed_url}/v1/embeddings', threshold: 0.99}}}}"
        with sidecar_harness(tmp_path, policy=policy(cache)) as h:
            yield h


def _body(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": text}]}


def test_a_near_duplicate_prompt_hits_and_another_does_not(semantic: SidecarHarness) -> None:
    semantic.fake.push({"content": "Paris."}, {"content": "A joke."})
    assert ask(semantic, _body("What is the capital of France?"))[1]["x-sidecar-cache"] == "miss"
    text, headers = ask(semantic, _body("what is the capital of france"))
    assert (text, headers["x-sidecar-cache"]) == ("Paris.", "hit")
    text, headers = ask(semantic, _body("tell me a joke"))
    assert (text, headers["x-sidecar-cache"]) == ("A joke.", "miss")
    assert len(semantic.fake.requests) == 2
    assert "what is the capital of france" in CALLS  # the prompt text is what gets embedded
    near = [d for d in decisions(semantic) if d["rule"] == "semantic_hit"]
    assert len(near) == 1 and near[0]["detail"]["similarity"] >= 0.99


def test_semantic_hits_stay_within_the_tenant_and_the_request_parameters(semantic: SidecarHarness) -> None:
    ask(semantic, _body("What is the capital of France?"), **{"x-tenant-id": "a"})
    _, headers = ask(semantic, _body("what is the capital of france"), **{"x-tenant-id": "b"})
    assert headers["x-sidecar-cache"] == "miss"
    other_params = {**_body("what is the capital of france"), "max_tokens": 5}
    _, headers = ask(semantic, other_params, **{"x-tenant-id": "a"})
    assert headers["x-sidecar-cache"] == "miss"
    assert len(semantic.fake.requests) == 3


def test_embeddings_endpoint_down_is_a_plain_miss_with_a_record(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/embeddings"  # nothing listens there
    cache = f"{{type: cache, semantic: {{url: '{url}', timeout: 1}}}}"
    with sidecar_harness(tmp_path, policy=policy(cache)) as h:
        assert ask(h, _body("hello there"))[1]["x-sidecar-cache"] == "miss"
        assert ask(h, _body("hello there"))[1]["x-sidecar-cache"] == "hit"  # exact hits still work
        assert ask(h, _body("Hello, there!"))[1]["x-sidecar-cache"] == "miss"
        down = [d for d in decisions(h) if d["rule"] == "embeddings_unavailable"]
        assert len(down) == 2 and down[0]["mode"] == "enforce"
