"""Idempotency-Key: one provider call per key, replays for repeats, waiting duplicates."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import SidecarHarness, sidecar_harness

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "charge the card"}]}
PLUGINS = "- {type: idempotency}\n- {type: retry, max_attempts: 2, base_delay: 0.01}\n"


def _post(h: SidecarHarness, key: str, body: dict[str, object] = BODY, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{h.v1}/chat/completions", json=body, headers={"idempotency-key": key, **headers}, timeout=20
    )


def test_repeat_is_replayed_without_reaching_the_provider(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        first = _post(h, "k1")
        again = _post(h, "k1")
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert len(h.fake.requests) == 1
        assert _post(h, "k2").json()["id"] != first.json()["id"]  # another key is another request
        assert len(h.fake.requests) == 2
        # Another caller (another API key) with the same key is not given this answer.
        _post(h, "k1", authorization="Bearer someone-else")
        assert len(h.fake.requests) == 3


def test_streams_are_replayed_whole(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        c = openai.OpenAI(
            base_url=h.v1, api_key="x", max_retries=0, default_headers={"idempotency-key": "s1"}
        )

        def text() -> str:
            stream = c.chat.completions.create(**BODY, stream=True)  # type: ignore[call-overload]
            return "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)

        assert text() == text() == "Hello from the demo upstream. You said: charge the card"
        assert len(h.fake.requests) == 1


def test_concurrent_duplicate_waits_for_the_first(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        h.fake.push({"delay": 0.5})
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(_post(h, "same"))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200, 200, 200]
        assert len({r.json()["id"] for r in results}) == 1
        assert len(h.fake.requests) == 1


def test_key_reused_with_another_body_is_422(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        _post(h, "k")
        other = _post(h, "k", {**BODY, "messages": [{"role": "user", "content": "something else"}]})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("failure", [{"status": 503}, {"status": 503, "stream": True}])
def test_a_failed_first_attempt_releases_the_key(tmp_path: Path, failure: dict[str, object]) -> None:
    with sidecar_harness(tmp_path, "- {type: idempotency}\n") as h:
        h.fake.push({"status": 503})
        body = {**BODY, "stream": bool(failure.get("stream"))}
        assert _post(h, "k", body).status_code == 503
        retried = _post(h, "k", body)
        assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
        assert len(h.fake.requests) == 2
        assert json.dumps(retried.headers.get("idempotent-replayed")) == "null"
