"""Governed pass-through (issue 15, item 1), end to end: the official openai SDK, a real sidecar on
loopback, a recording fake upstream.

* Under ``auth: policy`` (the sidecar holds the key) unlisted /v1/* paths are refused with 403
  and a decision record; ``GET /models`` stays usable; rules allow, budget and guard paths;
  shadow mode records without refusing.
* Under ``auth: passthrough`` (the client's own key) pass-through stays open but is recorded.
* Paths that could leave the upstream's base path are 400 ``invalid_path`` and never arrive.
* Billing-scope and ambient headers are dropped under ``auth: policy``.
* ``base_url`` credentials are a load error; nothing secret appears in /admin/*.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from proxy.demo.fake_scenario import redact_credential
from tests.harness import SidecarHarness, sidecar_harness

KEY = "sk-policy-secret-0123456789"
HEADER_SECRET = "hv-static-header-secret"

POLICY = f"""
version: 1
upstreams:
  default:
    base_url: {{upstream}}
    api_key: {KEY}
    read_timeout: 5
    headers: {{x-static-secret: {HEADER_SECRET}}}
default_upstream: default
{{passthrough}}
plugins:
  - {{type: headers, id: tenant, tenant_header: x-tenant-id}}
  - type: budget
    id: spend
    limits:
      - {{name: usd, key: [tenant, route], window: minute, cost_usd: 0.1}}
  - type: blocklist
    id: words
    keywords: [forbidden-word]
  - type: pii
    id: pii
    ner: "off"
    entities: {{EMAIL_ADDRESS: redact}}
"""

RULES = """
passthrough:
  rules:
    - path: /files*
      methods: [GET, POST]
    - path: /images/generations
      methods: [POST]
      budget: {step: spend, price_usd: 0.04, per_field: n}
      guards: [tenant, words, pii]
      fields: [prompt]
    - path: /audio/speech
      methods: [POST]
      budget: {step: spend, price_usd: 0.015}
      guards: [words]
      fields: [input]
    - path: /audio/transcriptions
      methods: [POST]
      guards: [words]
      fields: [prompt]
"""


def _policy(passthrough: str = "") -> str:
    return POLICY.replace("{passthrough}", passthrough.strip())


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, policy=_policy(RULES)) as h:
        yield h


@pytest.fixture
def unlisted(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, policy=_policy()) as h:
        yield h


def _client(h: SidecarHarness, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-client-key", max_retries=0, **kw)


def _decisions(h: SidecarHarness, plugin: str | None = None) -> list[dict[str, Any]]:
    recent: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return [d for d in recent if plugin is None or d["plugin"] == plugin]


def _paths(h: SidecarHarness) -> list[str]:
    return [r.path for r in h.fake.requests]


def _raw_request(base_url: str, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as given (httpx would resolve '..' and re-encode first)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


# -- refused by default ------------------------------------------------------------------------


def test_unlisted_paths_are_refused_with_403_and_recorded_under_policy_auth(unlisted: SidecarHarness) -> None:
    h = unlisted
    c = _client(h)
    with pytest.raises(openai.PermissionDeniedError) as info:
        c.files.list()
    assert info.value.code == "passthrough_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        c.files.create(file=("a.jsonl", b'{"x": 1}\n'), purpose="batch")
    with pytest.raises(openai.PermissionDeniedError):
        c.images.generate(prompt="a cat", model="dall-e-3")
    with pytest.raises(openai.PermissionDeniedError):
        c.audio.speech.create(model="tts-1", voice="alloy", input="hello")
    assert list(h.fake.requests) == []  # nothing reached the provider with the sidecar's key

    refused = [d for d in _decisions(h, "passthrough") if d["rule"] == "not_allowed"]
    assert len(refused) == 4
    assert {d["action"] for d in refused} == {"block"} and {d["mode"] for d in refused} == {"enforce"}
    assert {d["detail"]["path"] for d in refused} == {"/files", "/images/generations", "/audio/speech"}
    assert refused[0]["detail"]["auth"] == "policy"
    metrics = httpx.get(f"{h.base_url}/metrics").text
    assert 'plugin="passthrough",rule="not_allowed"' in metrics
    assert 'route="passthrough",status="403"' in metrics


def test_model_listing_stays_usable_by_default_and_is_recorded(unlisted: SidecarHarness) -> None:
    h = unlisted
    models = _client(h).models.list()
    assert len(models.data) > 0
    assert h.fake.requests[-1].headers["authorization"] == redact_credential(f"Bearer {KEY}")
    assert [d["rule"] for d in _decisions(h, "passthrough")] == ["models"]
    with pytest.raises(openai.PermissionDeniedError):
        _client(h).models.delete("ft:my-model")  # only GET is allowed by default


# -- listed rules: allowed, budgeted, guarded, recorded ---------------------------------------


def test_listed_upload_streams_through_with_the_policy_key_and_is_recorded(listed: SidecarHarness) -> None:
    h = listed
    c = _client(h)
    payload = b'{"custom_id": "1"}\n' * 2000
    c.files.create(file=("batch.jsonl", payload), purpose="batch")
    c.files.list()
    upload, listing = h.fake.requests
    assert upload.method == "POST" and upload.path == "/v1/files"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert payload in upload.body  # the multipart body arrived whole
    assert upload.headers["authorization"] == redact_credential(f"Bearer {KEY}")
    assert listing.method == "GET" and listing.path == "/v1/files"
    allowed = _decisions(h, "passthrough")
    assert [(d["rule"], d["action"], d["detail"]["rule"]) for d in allowed] == [
        ("allowed", "allow", "/files*"),
        ("allowed", "allow", "/files*"),
    ]


def test_listed_images_are_budgeted_per_image_and_refused_after_the_limit(listed: SidecarHarness) -> None:
    h = listed
    c = _client(h)
    c.images.generate(prompt="a cat", model="dall-e-3", n=2)  # 0.08 of 0.10
    with pytest.raises(openai.RateLimitError) as info:
        c.images.generate(prompt="a dog", model="dall-e-3", n=1)  # 0.12 > 0.10
    assert info.value.response.headers["retry-after"]
    assert _paths(h) == ["/v1/images/generations"]
    limited = [d for d in _decisions(h, "spend") if d["action"] == "limit"]
    assert len(limited) == 1 and limited[0]["rule"] == "usd"
    # audio is priced 0.015: it still fits (0.08 + 0.015), once
    speech = c.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
    assert speech.read()  # the fake's echo, streamed back as bytes
    with pytest.raises(openai.RateLimitError):
        c.audio.speech.create(model="tts-1", voice="alloy", input="and again")
    assert _paths(h) == ["/v1/images/generations", "/v1/audio/speech"]
    # the headers step named by the images rule sets the tenant: another tenant has its own budget
    _client(h, default_headers={"x-tenant-id": "team-b"}).images.generate(prompt="a cat", n=2)
    assert _paths(h)[-1] == "/v1/images/generations"


def test_a_failed_upstream_call_refunds_the_pass_through_charge(listed: SidecarHarness) -> None:
    h = listed
    c = _client(h)

    def used() -> float:
        report = httpx.get(
            f"{h.base_url}/admin/plugins/spend", params={"tenant": "anonymous", "route": "passthrough"}
        ).json()
        return float(next(lim["used"] for lim in report["limits"] if lim["name"] == "usd"))

    raw = c.images.with_raw_response.generate(prompt="a cat", n=1)
    assert raw.headers["x-ratelimit-remaining-usd"] == "0.060000"
    assert used() == pytest.approx(0.04)
    with pytest.raises(openai.InternalServerError):
        c.images.generate(prompt="a cat", extra_headers={"x-fake-status": "500"})
    assert len(h.fake.requests) == 2  # it was sent, and failed
    assert used() == pytest.approx(0.04)  # ... so it was given back


def test_guards_read_named_fields_block_and_redact(listed: SidecarHarness) -> None:
    h = listed
    c = _client(h)
    with pytest.raises(openai.BadRequestError):
        c.images.generate(prompt="draw a forbidden-word please", model="dall-e-3")
    assert list(h.fake.requests) == []
    assert any(d["action"] == "block" for d in _decisions(h, "words"))
    # the refused request was refunded: two images (0.08) still fit the 0.10 budget
    c.images.generate(prompt="mail the picture to bob@example.com", model="dall-e-3", n=2)
    sent = h.fake.requests[-1].json
    assert "bob@example.com" not in sent["prompt"] and "<EMAIL_ADDRESS_1>" in sent["prompt"]
    assert sent["n"] == 2 and sent["model"] == "dall-e-3"  # the rest of the body is untouched
    assert any(d["action"] == "redact" for d in _decisions(h, "pii"))


def test_a_rule_that_reads_fields_refuses_a_non_json_body(listed: SidecarHarness) -> None:
    h = listed
    with pytest.raises(openai.APIStatusError) as info:
        _client(h).audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF...."), prompt="hi")
    assert info.value.status_code == 415
    assert list(h.fake.requests) == []


def test_shadow_section_records_refusals_but_forwards(tmp_path: Path) -> None:
    shadow = "passthrough:\n  mode: shadow\n"
    with sidecar_harness(tmp_path, policy=_policy(shadow)) as h:
        _client(h).images.generate(prompt="a cat", model="dall-e-3")
        assert _paths(h) == ["/v1/images/generations"]
        (d,) = _decisions(h, "passthrough")
        assert (d["rule"], d["action"], d["mode"]) == ("not_allowed", "block", "shadow")


def test_shadow_rule_runs_its_guards_without_refusing(tmp_path: Path) -> None:
    rule = """
passthrough:
  rules:
    - {path: /images/generations, methods: [POST], mode: shadow, guards: [words], fields: [prompt]}
"""
    with sidecar_harness(tmp_path, policy=_policy(rule)) as h:
        _client(h).images.generate(prompt="a forbidden-word cat", model="dall-e-3")
        assert h.fake.requests[-1].json["prompt"] == "a forbidden-word cat"
        (block,) = [d for d in _decisions(h, "words") if d["action"] == "block"]
        assert block["mode"] == "shadow"


# -- client's own key: open, recorded -------------------------------------------------------------


def test_client_key_upstreams_stay_open_and_every_call_is_recorded(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:  # no api_key: auth passthrough
        c = _client(h)
        c.files.list()
        c.images.generate(prompt="a cat", model="dall-e-3")
        forwarded = [r.headers["authorization"] for r in h.fake.requests]
        assert forwarded == [redact_credential("Bearer sk-client-key")] * 2
        recorded = _decisions(h, "passthrough")
        assert [(d["rule"], d["action"], d["detail"]["auth"]) for d in recorded] == [
            ("passthrough", "allow", "passthrough")
        ] * 2
        h.write_policy(h.policy_path.read_text() + "passthrough: {unlisted: refuse}\n")
        h.wait_for_revision(lambda p: p["passthrough"]["unlisted"] == "refuse")
        with pytest.raises(openai.PermissionDeniedError):
            c.files.list()


# -- paths that could leave the base path ---------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/..%2f..%2flatest/meta-data",
        "/v1/..%2F..%2Flatest/meta-data",
        "/v1/../admin/policy",
        "/v1/files/../../latest/meta-data",
        "/v1/files/%2e%2e/%2e%2e/admin",
        "/v1/files/..%5c..%5cadmin",
        "/v1/./files",
        "/v1//latest/meta-data",
        "/v1/files//x",
        "/v1/files/%00",
    ],
)
def test_traversal_is_refused_with_400_and_never_reaches_the_upstream(
    unlisted: SidecarHarness, target: str
) -> None:
    h = unlisted  # the path is judged before the allow-list (GET /models/* would be allowed)
    for prefix in ("", "/v1/models"):
        status, body = _raw_request(h.base_url, prefix + target.removeprefix("/v1") if prefix else target)
        assert status == 400
        assert b'"invalid_path"' in body
    assert list(h.fake.requests) == []
    assert [d["rule"] for d in _decisions(h, "passthrough")] == ["invalid_path"] * 2


def test_backslashes_never_reach_the_upstream(unlisted: SidecarHarness) -> None:
    status, _ = _raw_request(unlisted.base_url, "/v1/models\\..\\..\\admin")
    assert status == 400  # the HTTP parser or the sidecar: either way nothing is forwarded
    assert list(unlisted.fake.requests) == []


def test_encoded_characters_are_forwarded_as_sent(unlisted: SidecarHarness) -> None:
    status, _ = _raw_request(unlisted.base_url, "/v1/models/my%20model?x=1")
    assert status == 404  # forwarded; the fake answers like a provider: no such model
    (req,) = unlisted.fake.requests
    assert req.path == "/v1/models/my model" and req.query == "x=1"


# -- headers, credentials, websocket --------------------------------------------------------------


def test_billing_and_ambient_headers_are_dropped_under_policy_auth(unlisted: SidecarHarness) -> None:
    h = unlisted
    c = _client(h, organization="org-client", project="proj-client", default_headers={"Cookie": "s=1"})
    c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    c.models.list()
    assert len(h.fake.requests) == 2
    for req in h.fake.requests:
        assert req.headers["authorization"] == redact_credential(f"Bearer {KEY}")
        for name in ("openai-organization", "openai-project", "cookie"):
            assert name not in req.headers


def test_the_policy_may_set_the_organization_itself(tmp_path: Path) -> None:
    policy = _policy().replace(
        f"headers: {{x-static-secret: {HEADER_SECRET}}}", "headers: {OpenAI-Organization: org-policy}"
    )
    with sidecar_harness(tmp_path, policy=policy) as h:
        c = _client(h, organization="org-client")
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert h.fake.requests[-1].headers["openai-organization"] == "org-policy"


def test_client_key_upstreams_keep_the_clients_headers(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        c = _client(h, organization="org-client", project="proj-client")
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        sent = h.fake.requests[-1].headers
        assert sent["openai-organization"] == "org-client" and sent["openai-project"] == "proj-client"


def test_websocket_upgrades_are_refused_and_recorded(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:  # even with the client's own key
        url = h.base_url.replace("http://", "ws://") + "/v1/realtime?model=gpt-4o-realtime-preview"
        with pytest.raises(InvalidStatus) as info, ws_connect(url, open_timeout=10):
            pass
        assert info.value.response.status_code == 403
        assert b"websocket_not_allowed" in (info.value.response.body or b"")
        assert [d["rule"] for d in _decisions(h, "passthrough")] == ["websocket"]
        assert list(h.fake.requests) == []


def test_credentials_in_base_url_are_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nupstreams:\n  default:\n    base_url: https://user:pa55w0rd@api.example.com/v1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode != 0
    assert "p.yaml:4:" in out.stderr and "api_key" in out.stderr
    assert "pa55w0rd" not in out.stderr + out.stdout


def test_nothing_secret_appears_in_admin(listed: SidecarHarness) -> None:
    h = listed
    c = _client(h)
    c.files.list()
    with pytest.raises(openai.PermissionDeniedError):
        c.batches.list()
    bodies = [httpx.get(f"{h.base_url}/admin/{p}").text for p in ("policy", "decisions", "live.json")]
    for body in bodies:
        assert KEY not in body and HEADER_SECRET not in body
    info = httpx.get(f"{h.base_url}/admin/policy").json()
    assert info["upstreams"]["default"]["auth"] == "policy"
    rules = info["passthrough"]["rules"]
    assert [r["path"] for r in rules] == [
        "/files*",
        "/images/generations",
        "/audio/speech",
        "/audio/transcriptions",
    ]
    assert rules[1]["steps"] == ["spend", "tenant", "words", "pii"] and rules[1]["budget"]["per_field"] == "n"
