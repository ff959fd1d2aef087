"""Honest reload status: restoring the running content after a broken edit clears the failure.

Each trigger is exercised for real: the directory watcher (a real sidecar serving on loopback),
``POST /admin/reload`` and ``SIGHUP`` to a ``policy-sidecar serve`` process. In each case the
status must go failed -> unchanged (error cleared) in ``/admin/policy`` and ``/admin/live.json``,
and the log must say so.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import free_port, sidecar_harness, wait_ready

PLUGINS = "- type: blocklist\n  id: kw\n  keywords: [forbidden]\n"
BROKEN_LINE = "    colour: red\n"


def _assert_cleared(admin: str, revision: str, trigger: str) -> None:
    policy = httpx.get(f"{admin}/admin/policy").json()
    assert policy["revision"] == revision
    assert policy["last_error"] is None
    assert policy["last_reload"]["result"] == "unchanged"
    assert policy["last_reload"]["trigger"] == trigger
    assert policy["last_reload"]["error_cleared"] is True
    assert "error" not in policy["last_reload"]
    live = httpx.get(f"{admin}/admin/live.json").json()["policy"]
    assert live["last_error"] is None and live["last_reload"]["result"] == "unchanged"
    assert live["reloads"]["failed"] == 1  # the failure is still counted, just no longer current


def _assert_failed(admin: str, revision: str) -> None:
    policy = httpx.get(f"{admin}/admin/policy").json()
    assert policy["revision"] == revision
    assert policy["last_reload"]["result"] == "failed"
    assert "colour" in policy["last_error"]
    live = httpx.get(f"{admin}/admin/live.json").json()["policy"]
    assert live["last_reload"]["result"] == "failed" and "colour" in live["last_error"]


def _clearing_logged(caplog: pytest.LogCaptureFixture, revision: str) -> bool:
    return any(
        r.name == "policy_sidecar.policy"
        and r.getMessage() == f"policy restored to the running revision {revision}; previous error cleared"
        for r in caplog.records
    )


def test_file_watch_revert_clears_the_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.policy")
    with sidecar_harness(tmp_path, PLUGINS) as h:
        original = h.policy_path.read_text()
        revision = h.sidecar.store.current.revision
        h.write_policy(original + BROKEN_LINE)
        h.wait_for_revision(lambda p: p["last_reload"]["result"] == "failed")
        _assert_failed(h.base_url, revision)
        h.write_policy(original)
        h.wait_for_revision(lambda p: p["last_reload"]["result"] == "unchanged")
        _assert_cleared(h.base_url, revision, "file")
        assert _clearing_logged(caplog, revision)
        # Still serving the same revision, and its rule still applies.
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "forbidden"}])


def test_admin_reload_revert_clears_the_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.policy")
    auth = {"authorization": "Bearer admin-secret"}
    with sidecar_harness(tmp_path, PLUGINS, watch=False, admin_token="admin-secret") as h:
        original = h.policy_path.read_text()
        revision = h.sidecar.store.current.revision
        # Unchanged with no failure before: nothing to clear, no clearing logged.
        plain = httpx.post(f"{h.base_url}/admin/reload", headers=auth).json()
        assert plain == {"result": "unchanged", "revision": revision, "trigger": "admin"}
        h.write_policy(original + BROKEN_LINE)
        failed = httpx.post(f"{h.base_url}/admin/reload", headers=auth)
        assert failed.status_code == 422 and failed.json()["result"] == "failed"
        _assert_failed(h.base_url, revision)
        assert not _clearing_logged(caplog, revision)
        h.write_policy(original)
        restored = httpx.post(f"{h.base_url}/admin/reload", headers=auth)
        assert restored.status_code == 200
        body: dict[str, Any] = restored.json()
        assert body["result"] == "unchanged" and body["error_cleared"] is True and "error" not in body
        _assert_cleared(h.base_url, revision, "admin")
        assert _clearing_logged(caplog, revision)


def _wait(predicate: Any, admin: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = httpx.get(f"{admin}/admin/policy").json()
        if predicate(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"status did not change in {timeout}s: {info}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sighup_revert_clears_the_failure(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    original = (
        "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\n"
        "plugins:\n  - type: blocklist\n    keywords: [forbidden]\n"
    )
    policy.write_text(original)
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "info"}
    cmd = [sys.executable, "-m", "proxy", "serve", "--policy", str(policy)]
    cmd += ["--port", str(port), "--admin-port", str(admin_port), "--no-watch"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        revision = httpx.get(f"{admin}/admin/policy").json()["revision"]
        policy.write_text(original + BROKEN_LINE)
        proc.send_signal(signal.SIGHUP)
        _wait(lambda p: p["last_reload"]["result"] == "failed", admin)
        _assert_failed(admin, revision)
        policy.write_text(original)
        proc.send_signal(signal.SIGHUP)
        _wait(lambda p: p["last_reload"]["result"] == "unchanged", admin)
        _assert_cleared(admin, revision, "sighup")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        _out, err = proc.communicate(timeout=5)
        assert f"policy restored to the running revision {revision}; previous error cleared" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
