"""Transparent pass-through, and bad input / dead upstreams answered in the OpenAI error format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.demo.fake_scenario import redact_credential
from tests.harness import SidecarHarness, free_port, serve_in_thread, sidecar_harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(
        tmp_path, "- type: blocklist\n  keywords: [nope]\n", "limits: {max_body_bytes: 4096}"
    ) as hh:
        yield hh


def _error(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_passthrough_preserves_method_query_headers_body_and_status(h: SidecarHarness) -> None:
    r = httpx.request(
        "PATCH",
        f"{h.v1}/files/abc?purpose=fine-tune&x=1",
        content=b"\x00binary\xff",
        headers={
            "x-custom": "yes",
            "authorization": "Bearer sk-client",
            "connection": "keep-alive, x-hop",
            "x-hop": "must-not-pass",
            "x-fake-status": "207",
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 207
    assert r.headers["x-fake-echo"] == "1"
    echo = r.json()
    assert echo["method"] == "PATCH"
    assert echo["path"] == "/v1/files/abc"
    assert echo["query"] == "purpose=fine-tune&x=1"
    assert echo["headers"]["x-custom"] == "yes"
    assert echo["headers"]["authorization"] == redact_credential("Bearer sk-client")  # passthrough auth
    assert "sk-client" not in r.text  # the fake never echoes a credential
    assert "x-hop" not in echo["headers"]  # nominated hop-by-hop header dropped
    assert echo["body"] == "\x00binary\ufffd"


def test_passthrough_streams_the_response(h: SidecarHarness) -> None:
    with httpx.stream("GET", f"{h.v1}/anything", headers={"x-fake-stream": "5"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines == [f"line {i}" for i in range(5)]


def test_passthrough_body_limit(h: SidecarHarness) -> None:
    r = httpx.post(f"{h.v1}/files", content=b"x" * 5000)
    assert r.status_code == 413
    assert _error(r)["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code", "param"),
    [
        (b"{not json", "application/json", 400, "invalid_json", None),
        (b"[1, 2]", "application/json", 400, "invalid_json", None),
        (b'{"messages": []}', "application/json", 400, "missing_required_parameter", "model"),
        (b'{"model": 5, "messages": []}', "application/json", 400, "invalid_type", "model"),
        (b'{"model": "m", "messages": "hi"}', "application/json", 400, "invalid_type", "messages"),
        (
            b'{"model": "m", "messages": [{"role": "wizard"}]}',
            "application/json",
            400,
            "invalid_value",
            "messages[0].role",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": 3}]}',
            "application/json",
            400,
            "invalid_type",
            "messages[0].content",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "application/json",
            400,
            "invalid_type",
            "stream",
        ),
        (b"model=m", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}',
            "application/json",
            413,
            "request_too_large",
            None,
        ),
    ],
)
def test_bad_input_gets_a_clear_openai_error(
    h: SidecarHarness, body: bytes, ctype: str, status: int, code: str, param: str | None
) -> None:
    r = httpx.post(f"{h.v1}/chat/completions", content=body, headers={"content-type": ctype})
    assert r.status_code == status
    err = _error(r)
    assert err["code"] == code and err["param"] == param
    assert err["type"] == "invalid_request_error"
    assert r.headers["x-request-id"]
    assert len(h.fake.requests) == 0


def test_wrong_method_and_unknown_path(h: SidecarHarness) -> None:
    r = httpx.get(f"{h.base_url}/nothing-here")
    assert r.status_code == 404 and _error(r)["code"] == "not_found"


def test_sdk_raises_the_matching_classes(h: SidecarHarness) -> None:
    c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "nope"}])
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="m", messages=[{"role": "bogus", "content": "x"}])  # type: ignore[misc,list-item]
    assert info.value.param == "messages[0].role"


def test_dead_upstream_is_503_and_slow_upstream_is_504(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        h.write_policy(
            h.policy_path.read_text().replace(h.upstream_url, f"http://127.0.0.1:{free_port()}/v1")
        )
        h.wait_for_revision(
            lambda p: (
                "127.0.0.1" in p["upstreams"]["default"]["base_url"]
                and p["upstreams"]["default"]["base_url"] != h.upstream_url
            )
        )
        r = httpx.post(
            f"{h.v1}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 503 and _error(r)["code"] == "upstream_unavailable"
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)

    with sidecar_harness(tmp_path) as h:
        h.write_policy(h.policy_path.read_text().replace("read_timeout: 5", "read_timeout: 0.3"))
        h.wait_for_revision(
            lambda p: True and h.sidecar.store.current.policy.upstreams["default"].read_timeout == 0.3
        )
        r = httpx.post(
            f"{h.v1}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-fake-scenario": json.dumps({"delay": 3})},
            timeout=10,
        )
        assert r.status_code == 504 and _error(r)["code"] == "upstream_timeout"


def test_malformed_upstream_json_is_a_502_when_the_policy_must_inspect_it(h: SidecarHarness) -> None:
    r = httpx.post(
        f"{h.v1}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-fake-scenario": json.dumps({"malformed": "json"})},
    )
    assert r.status_code == 502 and _error(r)["type"] == "upstream_error"


def test_admin_reload_needs_a_token_and_admin_can_have_its_own_port(tmp_path: Path) -> None:
    from proxy.app import build_admin_app

    with sidecar_harness(tmp_path, admin_token="t0ken") as h:
        assert httpx.post(f"{h.base_url}/admin/reload").status_code == 401
        assert (
            httpx.post(f"{h.base_url}/admin/reload", headers={"authorization": "Bearer wrong"}).status_code
            == 401
        )
        ok = httpx.post(f"{h.base_url}/admin/reload", headers={"authorization": "Bearer t0ken"})
        assert ok.status_code == 200 and ok.json()["result"] == "unchanged"
        h.policy_path.write_text("version: 1\nplugins: [{type: nope}]\n")
        bad = httpx.post(f"{h.base_url}/admin/reload", headers={"authorization": "Bearer t0ken"})
        assert bad.status_code == 422 and "policy.yaml:2:" in bad.json()["error"]
        with serve_in_thread(build_admin_app(h.sidecar), lifespan="off") as admin_url:
            info = httpx.get(f"{admin_url}/admin/policy").json()
            assert "policy.yaml:2:" in info["last_error"]
            assert httpx.get(f"{admin_url}/readyz").json()["status"] == "ready"
            assert httpx.get(f"{admin_url}/v1/models").status_code == 404  # no API on the admin port

    with sidecar_harness(tmp_path) as h:
        assert httpx.post(f"{h.base_url}/admin/reload").status_code == 403  # disabled without a token
