"""Verified callers end to end: real uvicorn sidecar, real SDKs, a recording fake upstream.

Keys and signing keys are generated per test (``tests.auth_support``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proxy.demo.fake_scenario import redact_credential
from tests.auth_support import AUDIENCE, ISSUER, SigningKey, jwks, key_entry, rsa_key, write_keys
from tests.harness import SidecarHarness, serve_in_thread, sidecar_harness

UPSTREAM_KEY = "sk-upstream-policy"


def _policy(clients: str, plugins: str = "  []\n", provider: str = "openai") -> str:
    return (
        "version: 1\nupstreams:\n  default:\n    base_url: {upstream}\n    read_timeout: 5\n"
        f"    provider: {provider}\n    api_key: {UPSTREAM_KEY}\n"
        f"clients:\n{clients}plugins:\n{plugins}"
    )


KEYS_CLIENTS = "  keys_file: keys.json\n  check_interval: 0\n"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[SidecarHarness]:
    write_keys(
        tmp_path / "keys.json",
        key_entry("sk-acme", "acme-svc", "acme", user="svc"),
        key_entry("sk-old", "old", "acme", expires="2001-01-01T00:00:00Z"),
        key_entry("sk-mini", "mini", "acme", models=["gpt-4o-mini"], routes=["chat.completions"]),
    )
    with sidecar_harness(tmp_path, policy=_policy(KEYS_CLIENTS)) as h:
        yield h


def _client(h: SidecarHarness, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key=key, max_retries=0)


def _chat(h: SidecarHarness, key: str, model: str = "gpt-4o", **kw: Any) -> Any:
    return _client(h, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kw
    )


def test_openai_sdk_valid_key_and_the_key_never_reaches_the_upstream(keyed: SidecarHarness) -> None:
    assert _chat(keyed, "sk-acme").choices[0].message.content
    forwarded = keyed.fake.requests[-1].headers
    assert forwarded["authorization"] == redact_credential(f"Bearer {UPSTREAM_KEY}")
    assert "sk-acme" not in json.dumps(forwarded)


@pytest.mark.parametrize("key", ["sk-wrong", "sk-old"], ids=["unknown", "expired"])
def test_openai_sdk_raises_authentication_error(keyed: SidecarHarness, key: str) -> None:
    before = len(keyed.fake.requests)
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(keyed, key)
    assert info.value.status_code == 401
    body = info.value.response.json()
    assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == "invalid_api_key"
    assert info.value.response.headers["www-authenticate"].startswith("Bearer")
    assert len(keyed.fake.requests) == before  # nothing went upstream
    recent = httpx.get(f"{keyed.base_url}/admin/decisions").json()["recent"]
    reason = "unknown_key" if key == "sk-wrong" else "expired"
    assert any(d["plugin"] == "clients" and d["rule"] == reason and d["action"] == "block" for d in recent)


def test_missing_credential_on_every_api_route(keyed: SidecarHarness) -> None:
    for method, path in [
        ("POST", "/chat/completions"),
        ("POST", "/responses"),
        ("POST", "/embeddings"),
        ("POST", "/messages"),
        ("GET", "/files"),
        ("POST", "/images/generations"),
    ]:
        r = httpx.request(method, f"{keyed.v1}{path}", json={"model": "gpt-4o"})
        assert r.status_code == 401, path
    assert list(keyed.fake.requests) == []
    # Health stays open.
    assert httpx.get(f"{keyed.base_url}/healthz").status_code == 200


def test_model_and_route_allowances_are_403(keyed: SidecarHarness) -> None:
    assert _chat(keyed, "sk-mini", model="gpt-4o-mini").choices
    with pytest.raises(openai.PermissionDeniedError) as info:
        _chat(keyed, "sk-mini", model="gpt-4o")
    assert info.value.response.json()["error"]["code"] == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        _client(keyed, "sk-mini").embeddings.create(model="gpt-4o-mini", input="x")
    r = httpx.get(f"{keyed.v1}/files", headers={"authorization": "Bearer sk-mini"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_passthrough_with_a_valid_key_forwards_the_policy_key_only(keyed: SidecarHarness) -> None:
    r = httpx.get(f"{keyed.v1}/models", headers={"x-api-key": "sk-acme"})
    assert r.status_code == 200
    forwarded = keyed.fake.requests[-1].headers
    assert forwarded["authorization"] == redact_credential(f"Bearer {UPSTREAM_KEY}")
    assert "x-api-key" not in forwarded


def test_anthropic_sdk_on_messages(tmp_path: Path) -> None:
    write_keys(tmp_path / "keys.json", key_entry("sk-ant-client", "ant", "acme"))
    with sidecar_harness(tmp_path, policy=_policy(KEYS_CLIENTS)) as h:
        good = anthropic.Anthropic(base_url=h.base_url, api_key="sk-ant-client", max_retries=0)
        msg = good.messages.create(
            model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        assert msg.content[0].type == "text"
        bad = anthropic.Anthropic(base_url=h.base_url, api_key="sk-ant-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        body = info.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert len(h.fake.requests) == 1


# -- forged tenant headers ---------------------------------------------------------------------


FORGE_PLUGINS = """\
  - type: headers
    tenant_header: x-tenant-id
  - type: headers
    id: tier-b
    when: {tenants: [tenant-b]}
    set_response: {x-tier: b}
  - type: budget
    tenant_from: header:x-tenant-id
    limits:
      - {name: per-tenant, requests: 1, window: minute}
"""


def test_forged_tenant_header_cannot_spend_another_tenants_budget(tmp_path: Path) -> None:
    write_keys(
        tmp_path / "keys.json",
        key_entry("sk-a", "key-a", "tenant-a"),
        key_entry("sk-b", "key-b", "tenant-b"),
    )
    with sidecar_harness(tmp_path, policy=_policy(KEYS_CLIENTS, FORGE_PLUGINS)) as h:
        assert _chat(h, "sk-a").choices  # tenant A's one request
        forged = {"x-tenant-id": "tenant-b"}
        create = _client(h, "sk-a").chat.completions.with_raw_response.create
        with pytest.raises(openai.RateLimitError) as info:  # A claims to be B: still A's spent budget
            create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], extra_headers=forged)
        assert "x-tier" not in info.value.response.headers
        # B's budget is untouched, and B is B for `when`.
        resp = _client(h, "sk-b").chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert resp.http_response.status_code == 200 and resp.headers["x-tier"] == "b"
        recent = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
        assert any(d["rule"] == "tenant_header_ignored" for d in recent)
        # The self-report shows the verified caller's own usage, and needs a credential.
        assert httpx.get(f"{h.base_url}/sidecar/budget").status_code == 401
        mine = httpx.get(
            f"{h.base_url}/sidecar/budget",
            headers={"authorization": "Bearer sk-a", "x-tenant-id": "tenant-b"},
        ).json()
        assert mine["identity"]["tenant"] == "tenant-a"
        assert mine["limits"][0]["used"] == 1


def test_key_budget_override_replaces_the_limit(tmp_path: Path) -> None:
    write_keys(
        tmp_path / "keys.json",
        key_entry("sk-small", "small", "t1"),
        key_entry("sk-big", "big", "t2", budget={"per-tenant": 3}),
    )
    plugins = "  - type: budget\n    limits:\n      - {name: per-tenant, requests: 1, window: minute}\n"
    with sidecar_harness(tmp_path, policy=_policy(KEYS_CLIENTS, plugins)) as h:
        for _ in range(3):
            _chat(h, "sk-big")
        with pytest.raises(openai.RateLimitError):
            _chat(h, "sk-big")
        _chat(h, "sk-small")
        with pytest.raises(openai.RateLimitError):
            _chat(h, "sk-small")


# -- key file rotation while serving ----------------------------------------------------------------


def test_key_file_rotated_while_serving(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    write_keys(keys, key_entry("sk-first", "first", "acme"))
    with sidecar_harness(tmp_path, policy=_policy(KEYS_CLIENTS)) as h:
        assert _chat(h, "sk-first").choices
        write_keys(keys, key_entry("sk-second", "second", "acme"))
        assert _chat(h, "sk-second").choices  # the very next request sees the new file
        with pytest.raises(openai.AuthenticationError):
            _chat(h, "sk-first")
        keys.write_text('{"keys": [')  # a broken edit keeps the keys already loaded
        assert _chat(h, "sk-second").choices
        status = httpx.get(f"{h.base_url}/admin/policy").json()["clients"]["keys_file"]
        assert "not valid JSON" in status["error"] and status["keys"] == 1
        assert UPSTREAM_KEY not in json.dumps(httpx.get(f"{h.base_url}/admin/policy").json())


# -- JWT from a JWKS URL ------------------------------------------------------------------------------


class _Idp:
    """A tiny identity provider: serves a JWKS on loopback and counts fetches."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self._lock = threading.Lock()

    async def jwks(self, _: Request) -> JSONResponse:
        with self._lock:
            self.fetches += 1
            return JSONResponse(jwks(*self.keys))


def test_jwt_from_jwks_url_with_openai_sdk(tmp_path: Path) -> None:
    first, second = rsa_key("k1"), rsa_key("k2")
    idp = _Idp(first)
    app = Starlette(routes=[Route("/.well-known/jwks.json", idp.jwks)])
    with serve_in_thread(app, lifespan="off") as idp_url:
        clients = (
            f"  jwt:\n    jwks_url: {idp_url}/.well-known/jwks.json\n    issuer: {ISSUER}\n"
            f"    audience: {AUDIENCE}\n    min_refresh_seconds: 0\n"
        )
        plugins = "  - type: budget\n    limits:\n      - {name: rpm, requests: 100, window: minute}\n"
        with sidecar_harness(tmp_path, policy=_policy(clients, plugins)) as h:
            token = first.token({"tenant": "acme", "sub": "ana"})
            assert _chat(h, token).choices
            assert _chat(h, token).choices
            assert idp.fetches == 1  # cached keys, cached verification
            usage = httpx.get(f"{h.base_url}/admin/plugins/budget", params={"tenant": "acme"}).json()
            assert usage["limits"][0]["used"] == 2
            for bad in (
                first.token(aud="other"),
                first.token(iss="https://evil.test"),
                first.token(exp=1_000_000),
                second.token(kid="k1"),  # forged signature under a known kid
            ):
                with pytest.raises(openai.AuthenticationError):
                    _chat(h, bad)
            # The IdP rotates: a token with the new kid triggers one re-fetch and is accepted.
            idp.keys.append(second)
            assert _chat(h, second.token({"tenant": "globex"})).choices
            assert idp.fetches >= 2
            with pytest.raises(openai.AuthenticationError):
                _chat(h, rsa_key("never-published").token())
