"""Libraries only some policies use are imported by those policies, not by every sidecar (issue 17).

redis-py, PyJWT + cryptography and httpx cost ~20 MB of RSS together in a process that already
has aiohttp. A sidecar whose policy has no Redis-backed step, no ``clients: jwt:`` and no sealed
captures must start without them; a policy that uses them still gets them (their own tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAZY = ("redis", "jwt", "cryptography", "httpx")

_PROBE = """
import json, sys, tempfile, pathlib
from proxy.app import build_app, build_sidecar
from proxy.settings import Settings
import proxy.server
policy = pathlib.Path(tempfile.mkdtemp()) / "policy.yaml"
policy.write_text(sys.argv[1])
build_app(build_sidecar(Settings(policy_path=policy, watch=False)))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _modules(policy: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, policy],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_memory_budget_policy_loads_no_redis_jwt_crypto_or_httpx() -> None:
    policy = """
version: 1
upstreams: {default: {base_url: "http://127.0.0.1:9/v1"}}
plugins:
  - {type: budget, limits: [{name: tpm, tokens: 1000000, window: minute}]}
  - {type: blocklist, patterns: ["sk-[A-Za-z0-9]{20,}"]}
"""
    loaded = _modules(policy)
    assert "proxy" in loaded and "tiktoken" in loaded  # the probe did build the policy
    assert not loaded & set(LAZY), f"imported at startup: {sorted(loaded & set(LAZY))}"


def test_a_redis_budget_policy_does_load_redis() -> None:
    """The probe can see an import: a Redis-backed step brings redis-py in (no connection made)."""
    policy = """
version: 1
upstreams: {default: {base_url: "http://127.0.0.1:9/v1"}}
plugins:
  - {type: budget, backend: redis, redis_url: "redis://127.0.0.1:9/0",
     limits: [{name: rpm, requests: 10, window: minute}]}
"""
    assert "redis" in _modules(policy)
