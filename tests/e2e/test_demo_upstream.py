"""The embedded demo upstream (``builtin:demo``): provider-like answers, no credential leaks.

Issue 16 item 7 and issue 22 item 8: the demo kept every request (credentials included)
forever and echoed unknown ``/v1`` paths back with the client's Authorization header.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from proxy.app import build_app, build_sidecar
from proxy.demo.fake_scenario import DEFAULT_MAX_RECORDED, FakeState, redact_credential
from proxy.demo.fake_upstream import build_demo_upstream, build_fake_upstream
from proxy.settings import Settings
from tests.harness import serve_in_thread

SECRET = "sk-demo-very-secret-key"


@pytest.fixture
def demo_sidecar(tmp_path: Path):  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\nplugins: []\n")
    sidecar = build_sidecar(Settings(policy_path=policy, log_requests=False))
    with serve_in_thread(build_app(sidecar)) as url:
        yield url, sidecar


def test_unknown_path_is_a_404_in_the_openai_envelope_without_echo(demo_sidecar) -> None:  # type: ignore[no-untyped-def]
    url, _ = demo_sidecar
    r = httpx.post(f"{url}/v1/not-a-thing", json={"x": 1}, headers={"authorization": f"Bearer {SECRET}"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert SECRET not in r.text


def test_models_retrieve_with_the_sdk(demo_sidecar) -> None:  # type: ignore[no-untyped-def]
    url, _ = demo_sidecar
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=SECRET, max_retries=0)
    model = client.models.retrieve("demo-model")
    assert model.id == "demo-model" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_demo_never_stores_credentials_and_keeps_a_bounded_log(demo_sidecar) -> None:  # type: ignore[no-untyped-def]
    url, sidecar = demo_sidecar
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=SECRET, max_retries=0)
    client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "hi"}])
    app = sidecar.store.resources.get_or_create("builtin:demo", lambda: None)
    state: FakeState = app.state.fake
    assert len(state.requests) >= 1
    for recorded in state.requests:
        assert SECRET not in repr(recorded.headers)
    assert state.requests[-1].headers["authorization"] == redact_credential(f"Bearer {SECRET}")
    assert state.requests.maxlen == DEFAULT_MAX_RECORDED


def test_ring_buffer_drops_the_oldest_requests() -> None:
    state = FakeState(max_requests=5)
    app = build_fake_upstream(state)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as c:
            for i in range(12):
                await c.get(f"/v1/models?i={i}", headers={"cookie": "session=abc", "x-api-key": SECRET})

    asyncio.run(run())
    assert len(state.requests) == 5
    assert [r.query for r in state.requests] == [f"i={i}" for i in range(7, 12)]
    assert all(
        "abc" not in r.headers["cookie"] and SECRET not in r.headers["x-api-key"] for r in state.requests
    )


def test_demo_app_and_test_fake_differ_only_on_unknown_paths() -> None:
    async def run() -> tuple[int, int]:
        codes = []
        for app in (build_demo_upstream(), build_fake_upstream()):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fake") as c:
                codes.append((await c.get("/v1/files", headers={"authorization": SECRET})).status_code)
        return codes[0], codes[1]

    assert asyncio.run(run()) == (404, 200)
