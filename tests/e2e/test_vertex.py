"""Gemini on Vertex AI: Google ADC through google-auth, with a service-account key the test makes.

The fake token endpoint (the service account's ``token_uri``) verifies the JWT assertion with
the public half of that key and issues bearer tokens; the fake Vertex endpoint accepts only the
latest one. No real Google endpoint is contacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.cloud_fakes import FakeCloud, fake_cloud
from tests.harness import sidecar_harness


@pytest.fixture
def cloud() -> Iterator[tuple[str, FakeCloud]]:
    with fake_cloud() as pair:
        yield pair


def service_account_file(tmp_path: Path, url: str, cloud: FakeCloud) -> Path:
    """A service-account JSON with a fresh RSA key; the fake trusts its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cloud.public_key_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    info = {
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "kid-1",
        "private_key": pem.decode(),
        "client_email": "sidecar@proj-1.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{url}/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path


def vertex_policy(url: str, credentials: str = "", plugins: str = "  []\n") -> str:
    return (
        f"version: 1\nupstreams:\n  vertex:\n    base_url: {url}/v1\n    provider: vertex\n"
        f"    project: proj-1\n    location: us-central1\n{credentials}"
        "    read_timeout: 5\ndefault_upstream: vertex\n"
        "routes:\n  - match: gemini-pro\n    targets: ['vertex:gemini-1.5-pro']\nplugins:\n" + plugins
    )


def ask(base: str, text: str, key: str = "client-key", **kw: object) -> openai.types.chat.ChatCompletion:
    c = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    return c.chat.completions.create(model="gemini-pro", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[call-overload,no-any-return]


def test_service_account_file_and_token_reuse(tmp_path: Path, cloud: tuple[str, FakeCloud]) -> None:
    url, state = cloud
    sa = service_account_file(tmp_path, url, state)
    with sidecar_harness(tmp_path, policy=vertex_policy(url, f"    credentials_file: {sa}\n")) as h:
        assert ask(h.v1, "one").choices[0].message.content == "You said: one"
        assert ask(h.v1, "two").choices[0].message.content == "You said: two"
        assert state.tokens == ["ya29.fake-1"]  # one token, reused while it is valid
        seen = state.requests[-1]
        prefix = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
        assert seen.path == prefix + "gemini-1.5-pro:generateContent"
        assert seen.headers["authorization"] == "Bearer ya29.fake-1"  # never the client's key
        stream = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0).chat.completions.create(
            model="gemini-pro", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "You said: streamed"


def test_expiring_token_is_refreshed(tmp_path: Path, cloud: tuple[str, FakeCloud]) -> None:
    url, state = cloud
    state.token_expires_in = 60  # inside google-auth's refresh margin: stale at once
    sa = service_account_file(tmp_path, url, state)
    with sidecar_harness(tmp_path, policy=vertex_policy(url, f"    credentials_file: {sa}\n")) as h:
        ask(h.v1, "one")
        ask(h.v1, "two")
        assert state.tokens == ["ya29.fake-1", "ya29.fake-2"]
        assert state.requests[-1].headers["authorization"] == "Bearer ya29.fake-2"


def test_adc_from_the_environment(
    tmp_path: Path, cloud: tuple[str, FakeCloud], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = cloud
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_file(tmp_path, url, state)))
    with sidecar_harness(tmp_path, policy=vertex_policy(url)) as h:
        assert ask(h.v1, "adc").choices[0].message.content == "You said: adc"
        assert state.tokens == ["ya29.fake-1"]


def test_workload_identity_metadata_server(
    tmp_path: Path, cloud: tuple[str, FakeCloud], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key file anywhere: google-auth falls through to the (GKE) metadata server."""
    from google.auth.compute_engine import _metadata

    url, state = cloud
    host = url.removeprefix("http://")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no gcloud user credentials
    monkeypatch.setenv("GCE_METADATA_IP", host)
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)  # read once at import by google-auth
    with sidecar_harness(tmp_path, policy=vertex_policy(url)) as h:
        assert ask(h.v1, "wi").choices[0].message.content == "You said: wi"
        assert ask(h.v1, "wi").choices[0].message.content == "You said: wi"
    assert state.tokens == ["ya29.metadata-1"]
    assert state.requests[-1].headers["authorization"] == "Bearer ya29.metadata-1"


def test_unusable_credentials_are_a_clear_503(tmp_path: Path, cloud: tuple[str, FakeCloud]) -> None:
    url, state = cloud
    sa = service_account_file(tmp_path, url, state)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()  # not the file's key
    state.public_key_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with sidecar_harness(tmp_path, policy=vertex_policy(url, f"    credentials_file: {sa}\n")) as h:
        with pytest.raises(openai.InternalServerError) as info:
            ask(h.v1, "x")
        assert info.value.status_code == 503 and info.value.code == "upstream_credentials_unavailable"
        assert state.requests == [] and state.tokens == []


def test_policy_refuses_a_key_or_missing_project(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nupstreams:\n  v:\n    base_url: https://us-central1-aiplatform.googleapis.com/v1\n"
        "    provider: vertex\n    location: us-central1\ndefault_upstream: v\nplugins: []\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "needs project and location" in out.stdout + out.stderr
