"""The headers plugin: tenant from a header, header edits both ways (through a real server)."""

from __future__ import annotations

from pathlib import Path

import httpx

from proxy.demo.fake_scenario import redact_credential
from tests.harness import sidecar_harness

PLUGINS = """
- type: headers
  tenant_header: x-tenant-id
  require_tenant: true
  set_upstream: {x-added: "1", authorization: "Bearer replaced"}
  strip_upstream: [x-internal]
  set_response: {x-served-by: sidecar}
- type: blocklist
  id: external-only
  keywords: [roadmap]
  when: {tenants: ["external-*"]}
"""

BODY = {"model": "m", "messages": [{"role": "user", "content": "the roadmap"}]}


def test_tenant_and_header_edits(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, PLUGINS) as h:
        missing = httpx.post(f"{h.v1}/chat/completions", json=BODY)
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_tenant"

        ok = httpx.post(
            f"{h.v1}/chat/completions",
            json=BODY,
            headers={"x-tenant-id": "internal-a", "x-internal": "secret", "authorization": "Bearer c"},
        )
        assert ok.status_code == 200 and ok.headers["x-served-by"] == "sidecar"
        seen = h.fake.requests[-1].headers
        assert seen["x-added"] == "1"
        assert seen["authorization"] == redact_credential("Bearer replaced")
        assert "x-internal" not in seen

        # The tenant set by the headers step drives `when:` of later steps.
        external = httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "external-b"})
        assert external.status_code == 400 and external.json()["error"]["code"] == "content_blocked"
        assert external.headers["x-served-by"] == "sidecar"  # set before the rejection
