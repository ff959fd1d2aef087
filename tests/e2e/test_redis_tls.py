"""Redis over TLS with a client certificate: a redis-server that accepts only TLS clients signed by
a CA this test generates (``cryptography``), reached by budget, idempotency and the PII vault.

The CA and client certificate are given both ways the docs show: URL query (budget) and the
``redis: tls:`` block (idempotency, pii). Without the CA the server cannot be verified, so a
fail_closed budget refuses with 503 and the replica reports not ready.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from proxy.chain.registry import Registry, default_registry
from tests.e2e import redis_topologies as rt
from tests.harness import sidecar_harness

pytestmark = pytest.mark.skipif(rt.MISSING, reason=rt.SKIP)

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "mail a@example.org"}],
    "max_tokens": 5,
}


def _registry() -> Registry:
    from plugins.pii import PiiPlugin

    r = default_registry()
    r.register(PiiPlugin)
    return r


def test_budget_idempotency_and_vault_over_mutual_tls(tmp_path: Path) -> None:
    with rt.tls(tmp_path / "redis") as srv:
        query = f"?ssl_ca_certs={srv.ca}&ssl_certfile={srv.cert}&ssl_keyfile={srv.key}"
        block = f"  redis:\n    tls: {{ca_file: {srv.ca}, cert_file: {srv.cert}, key_file: {srv.key}}}\n"
        plugins = (
            "- type: headers\n  tenant_header: x-tenant-id\n"
            f"- type: pii\n  ner: off\n  backend: redis\n  redis_url: {srv.url}\n  secret: s\n{block}"
            f"- type: budget\n  backend: redis\n  redis_url: '{srv.url}{query}'\n"
            "  on_backend_error: fail_closed\n"
            "  limits:\n    - {name: rph, requests: 3, window: hour}\n"
            f"- type: idempotency\n  backend: redis\n  redis_url: {srv.url}\n{block}"
        )
        with sidecar_harness(tmp_path, plugins, registry=_registry()) as h:
            first = httpx.post(
                f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t", "idempotency-key": "k"}
            )
            again = httpx.post(
                f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t", "idempotency-key": "k"}
            )
            assert first.status_code == again.status_code == 200, first.text
            assert again.headers.get("idempotent-replayed") == "true"
            assert h.fake.requests[-1].json["messages"][0]["content"] == "mail <EMAIL_ADDRESS_1>"
            client = openai.OpenAI(
                base_url=h.v1, api_key="x", max_retries=0, default_headers={"x-tenant-id": "t"}
            )
            client.chat.completions.create(**BODY)  # type: ignore[call-overload]
            with pytest.raises(
                openai.RateLimitError
            ):  # counted over TLS: 3 per hour (the replay counted too)
                client.chat.completions.create(**BODY)  # type: ignore[call-overload]
        keys = rt.cli(srv.port, "KEYS", "sidecar:*", tls=srv.cli_tls).split()
        assert {k.split(":")[1] for k in keys} == {"budget", "idem", "pii"}, keys


def test_an_unverifiable_server_fails_closed_with_a_clear_error(tmp_path: Path) -> None:
    with rt.tls(tmp_path / "redis") as srv:
        # A client certificate but no CA: the server's certificate cannot be verified.
        url = f"{srv.url}?ssl_certfile={srv.cert}&ssl_keyfile={srv.key}"
        plugins = (
            f"- type: budget\n  backend: redis\n  redis_url: '{url}'\n  on_backend_error: fail_closed\n"
            "  limits:\n    - {name: rph, requests: 5, window: hour}\n"
        )
        with sidecar_harness(tmp_path, plugins) as h:
            r = httpx.post(f"{h.v1}/chat/completions", json=BODY)
            assert r.status_code == 503 and r.json()["error"]["code"] == "budget_unavailable", r.text
            assert httpx.get(f"{h.base_url}/readyz").status_code == 503
