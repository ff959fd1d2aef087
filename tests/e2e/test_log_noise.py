"""Log noise at start and per request (issue 22 item 7), on a real ``policy-sidecar serve``.

At INFO: no presidio "Loaded recognizer" / "language not supported" lines, one line saying
that names are found by patterns only when ``ner: auto`` finds no model, and with
``decision_log: {path: stdout}`` each decision printed once (stdout), named once in its
request's access line (stderr), never as a third "decision" log line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from proxy.detectors.pii import ner_module
from tests.harness import free_port, wait_ready

POLICY = """\
version: 1
upstreams:
  default:
    base_url: builtin:demo
observability:
  decision_log: {path: stdout, flush_seconds: 0}
plugins:
  - type: pii
    ner: auto
  - type: blocklist
    id: words
    mode: shadow
    keywords: [forbidden]
    scan_response: false
"""


@pytest.mark.skipif(ner_module() is not None, reason="checks the no-model start-up line")
def test_start_and_decisions_are_logged_once(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "proxy", "serve", "--policy", str(policy), "--port", str(port), "--no-watch"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-client", max_retries=0)
        client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "a forbidden word"}]
        )
        httpx.get(f"{url}/healthz")  # the access line of the chat request is written after its answer
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    stderr = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in stderr]
    assert not [m for m in messages if "Loaded recognizer" in m], messages
    assert not [m for m in messages if "language is not supported" in m], messages
    patterns_only = [m for m in messages if "found by patterns only" in m]
    assert len(patterns_only) == 1, messages
    assert not [m for m in messages if m == "decision"]  # no third copy on stderr
    decisions = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(d["plugin"], d["rule"], d["mode"]) for d in decisions] == [("words", "request_match", "shadow")]
    access = [line for line in stderr if line["msg"] == "request"]
    assert len(access) == 1 and access[0]["decisions"] == [
        {"plugin": "words", "rule": "request_match", "action": "block", "mode": "shadow"}
    ]
