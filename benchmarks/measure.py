"""Load generation and measuring: rounds, streams, wrappers, the fault storm and profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import payload
import spy
from config import (
    BASELINE,
    CHAT,
    HERE,
    PLUGIN_ROWS,
    QUICK,
    RESILIENCE_PLUGINS,
    ROOT,
    STORM_CONNECTIONS,
    STORM_FAIL_RATIO,
    STORM_SEED,
    Mode,
)
from procs import LOOPBACK, Server, free_port
from rows import Row, _policy, _sidecar, redis_command, redis_commandstats

# -- load generation ----------------------------------------------------------------------


class Loader:
    """wrk with a Lua script when available, else ``load.py`` (Python aiohttp) in its own process."""

    def __init__(self, workdir: Path, force_python: bool) -> None:
        self.body = workdir / "body.json"
        self.body.write_bytes(payload.chat_body())
        self.prose_body = workdir / "body-prose.json"
        self.prose_body.write_bytes(payload.chat_body(prose=True))
        self.stream_body = workdir / "stream-body.json"
        self.stream_body.write_bytes(payload.chat_body(stream=True))
        self.wrk = None if force_python else shutil.which("wrk")
        self.why_python = "--python-load" if force_python else "wrk not found"
        self.lua = workdir / "post.lua"
        self.prose_lua = workdir / "post-prose.lua"
        for lua, body in ((self.lua, self.body), (self.prose_lua, self.prose_body)):
            self._write_lua(lua, body)

    def _write_lua(self, lua: Path, body: Path) -> None:
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in payload.HEADERS.items())
        lua.write_text(
            f"""wrk.method = "POST"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
{payload.WRK_REPORT_LUA}
end
"""
        )

    @property
    def name(self) -> str:
        if self.wrk:
            return "wrk (Lua POST script)"
        return f"Python aiohttp client in its own process ({self.why_python})"

    def load(self, url: str, connections: int, seconds: int, prose: bool = False) -> dict[str, Any]:
        """Closed-loop load; returns requests, seconds, errors, p50_ms, p99_ms. ``prose``: the
        ~2 KB prose body instead of the ~1 KB conversation."""
        if self.wrk:
            cmd = [
                self.wrk,
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(self.prose_lua if prose else self.lua),
                url,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
            if line is None:
                raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
            r = json.loads(line[len("WRKJSON ") :])
            errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
            return {
                "requests": r["requests"],
                "seconds": r["duration_us"] / 1e6,
                "errors": errors,
                "p50_ms": r["p50_us"] / 1000,
                "p99_ms": r["p99_us"] / 1000,
            }
        r = self._python(
            "load",
            url,
            self.prose_body if prose else self.body,
            ["--connections", str(connections), "--duration", str(seconds)],
            seconds + 30,
        )
        return {
            "requests": r["requests"],
            "seconds": r["duration_s"],
            "errors": r["errors"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
        }

    def storm(self, url: str, connections: int, seconds: int) -> dict[str, Any]:
        """``load.py storm``: every answer's status, latency and serving upstream (not wrk: it
        cannot tell which upstream served a request)."""
        extra = ["--connections", str(connections), "--duration", str(seconds)]
        result: dict[str, Any] = self._python("storm", url, self.body, extra, seconds + 60)
        return result

    def ttft(self, urls: list[str], requests: int, scenario: str) -> dict[str, Any]:
        """Per URL: ttft_ms and stream_ms samples; the URLs' requests interleave on one client."""
        extra = ["--requests", str(requests), "--header", f"x-fake-scenario: {scenario}"]
        result: dict[str, Any] = self._python(
            "ttft", urls, self.stream_body, extra, 60 + requests * len(urls)
        )
        return result

    def _python(self, mode: str, url: str | list[str], body: Path, extra: list[str], timeout: float) -> Any:
        headers = [a for k, v in payload.HEADERS.items() for a in ("--header", f"{k}: {v}")]
        urls = [a for u in ([url] if isinstance(url, str) else url) for a in ("--url", u)]
        cmd = [sys.executable, str(HERE / "load.py"), mode, *urls, "--body", str(body), *headers, *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load.py {mode} failed ({out.returncode}): {out.stderr[-800:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an env proxy
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with opener.open(req, timeout=10) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def check_row(row: Row) -> None:
    """One request through the row before measuring: a 200 chat completion (plugins active)."""
    status, headers, data = _post(row.url, payload.chat_body(prose=row.prose), payload.HEADERS)
    body = json.loads(data)
    if status != 200 or not body["choices"][0]["message"]["content"]:
        raise RuntimeError(f"{row.key}: unexpected answer {status} {data[:200]!r}")
    if row.key == "sidecar-default" and headers.get("x-served-by") != "policy-sidecar":
        raise RuntimeError(f"{row.key}: the default policy's headers plugin did not run: {headers}")
    if row.key == "sidecar-resilience" and headers.get("x-sidecar-upstream") != "primary":
        raise RuntimeError(f"{row.key}: not served by the route's primary target: {headers}")
    if row.key.startswith("sidecar-budget") and "x-ratelimit-remaining-requests" not in headers:
        raise RuntimeError(f"{row.key}: the budget plugin did not run (no x-ratelimit headers): {headers}")
    if row.aux is not None and not int(redis_command(row.aux.port, "DBSIZE")):
        raise RuntimeError(f"{row.key}: the budget plugin wrote nothing to Redis (fail-open?): {headers}")


def reset_upstream(upstream: Server) -> None:
    """The fake records every request; clear it so its memory stays flat across rows."""
    _post(upstream.url + "/_fake/reset", b"", {})


def _get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read())


# -- measuring ----------------------------------------------------------------------------


def measure_round(row: Row, upstream: Server, loader: Loader, mode: Mode) -> None:
    """One round of one row: throughput and CPU at 16 connections, then latency at 1."""
    reset_upstream(upstream)
    proc, aux = row.server, row.aux
    before = proc.cpu_split() if proc else (0.0, 0.0)
    cpu_before = proc.cpu_precise() if proc else 0.0
    aux_before = aux.cpu_precise() if aux else 0.0
    calls_before = redis_commandstats(aux.port) if aux else {}
    up_before = upstream.cpu_precise()
    r = loader.load(row.url, 16, mode.d16, row.prose)
    cpu = proc.cpu_precise() - cpu_before if proc else 0.0
    up_cpu = upstream.cpu_precise() - up_before
    after = proc.cpu_split() if proc else (0.0, 0.0)
    user, system = after[0] - before[0], after[1] - before[1]  # clock ticks: for the split only
    if cpu <= 0:  # a thread exited during the run: its time left the schedstat sum
        cpu = user + system
    row.requests16 += r["requests"]
    row.seconds16 += r["seconds"]
    row.cpu16 += cpu
    row.upstream_cpu16 += up_cpu
    if proc and r["requests"]:
        row.round_cpu_us.append(cpu / r["requests"] * 1e6)
        row.round_user_sys_us.append((user / r["requests"] * 1e6, system / r["requests"] * 1e6))
        row.round_upstream_us.append(up_cpu / r["requests"] * 1e6)
    if aux and r["requests"]:
        row.round_aux_us.append((aux.cpu_precise() - aux_before) / r["requests"] * 1e6)
        for name, calls in redis_commandstats(aux.port).items():
            row.redis_calls[name] = row.redis_calls.get(name, 0) + calls - calls_before.get(name, 0)
    if r["errors"]:
        row.errors.append(f"{r['errors']} errors of {r['requests']} at 16 connections")

    if proc:
        drain(proc)
    reset_upstream(upstream)
    cpu_before = proc.cpu_precise() if proc else 0.0
    r = loader.load(row.url, 1, mode.d1, row.prose)
    row.cpu1 += (proc.cpu_precise() - cpu_before) if proc else 0.0
    row.requests1 += r["requests"]
    if r["requests"]:
        row.p50.append(r["p50_ms"])
        row.p99.append(r["p99_ms"])
    else:  # wrk reports 0 ms then: not a latency
        row.errors.append(f"no request completed in {mode.d1}s at 1 connection: this round has no p50")
    if r["errors"]:
        row.errors.append(f"{r['errors']} errors of {r['requests']} at 1 connection")


def drain(proc: Server, limit_s: float = 15.0) -> None:
    """Wait until ``proc`` is idle (under 5 ms of CPU in 100 ms): a slow row still works through
    the requests that were in flight when the 16-connection load stopped, and that would land in
    its own 1-connection latency and in the next row's measurements."""
    deadline = time.monotonic() + limit_s
    last = proc.cpu_precise()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = proc.cpu_precise()
        if now - last < 0.005:
            return
        last = now


def measure_streams(rows: list[Row], loader: Loader, requests: int, scenario: str, paced: bool) -> None:
    """Streamed requests through every row, interleaved request by request on one client."""
    results = loader.ttft([r.url for r in rows], requests, scenario)
    for row in rows:
        t = results[row.url]
        if paced:
            row.paced += list(zip(t["ttft_ms"], t["stream_ms"], strict=True))
        else:
            row.ttft += t["ttft_ms"]
            row.stream_ms += t["stream_ms"]
        if t["errors"]:
            row.errors.append(f"{t['errors']} bad {'paced ' if paced else ''}streams: {t['first_error']}")


def measure_wrappers(workdir: Path, mode: Mode) -> dict[str, Any]:
    """``wrappers.py``: the resilience wrappers' own CPU per call, in-process (stub upstreams)."""
    api = f"http://{LOOPBACK}:9/v1"  # never contacted: wrappers.py replaces the targets with stubs
    bare = _policy(workdir, "wrappers-bare", api, [], api)
    wrapped = _policy(workdir, "wrappers-resilience", api, RESILIENCE_PLUGINS, api)
    calls, blocks = (2000, 5) if mode is QUICK else (4000, 9)
    cmd = [sys.executable, str(HERE / "wrappers.py"), "--bare", str(bare), "--wrapped", str(wrapped)]
    cmd += ["--calls", str(calls), "--blocks", str(blocks)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    if out.returncode != 0:
        return {"error": out.stderr[-800:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- fault storm --------------------------------------------------------------------------


@dataclass
class Storm:
    """The resilience sidecar in front of a flaky primary and a healthy backup (``flaky.py``)."""

    primary: Server
    backup: Server
    sidecar: Server
    fail_ratio: float
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def servers(self) -> list[Server]:
        return [self.primary, self.backup, self.sidecar]


def build_storm(workdir: Path) -> Storm:
    def flaky(name: str, ratio: float) -> Server:
        port = free_port()
        argv = [sys.executable, str(HERE / "flaky.py"), "--port", str(port), "--fail-ratio", str(ratio)]
        argv += ["--seed", str(STORM_SEED)]
        return Server(name, argv, port, workdir / f"{name}.log", cwd=str(ROOT))

    primary, backup = flaky("storm-primary", STORM_FAIL_RATIO), flaky("storm-backup", 0.0)
    policy = _policy(workdir, "storm", primary.url + "/v1", RESILIENCE_PLUGINS, backup.url + "/v1")
    return Storm(primary, backup, _sidecar(workdir, "sidecar-storm", policy), STORM_FAIL_RATIO)


def run_storm(storm: Storm, loader: Loader, seconds: int) -> None:
    """Drive the storm sidecar at a fixed concurrency; count what each upstream received."""
    url = storm.sidecar.url + CHAT
    status, headers, data = _post(url, payload.chat_body(), payload.HEADERS)
    if status != 200 or headers.get("x-sidecar-upstream") not in ("primary", "backup"):
        raise RuntimeError(f"storm sidecar: unexpected answer {status} {headers} {data[:200]!r}")
    for up in (storm.primary, storm.backup):
        _post(up.url + "/_flaky/reset", b"", {})
    cpu_before = storm.sidecar.cpu_precise()
    decisions_before = _decision_counts(storm.sidecar)
    print(f"# fault storm: {seconds}s at {STORM_CONNECTIONS} connections", file=sys.stderr)
    result = loader.storm(url, STORM_CONNECTIONS, seconds)
    cpu = storm.sidecar.cpu_precise() - cpu_before
    after = _decision_counts(storm.sidecar)
    delta = {k: n - decisions_before.get(k, 0) for k, n in after.items()}
    result["decisions"] = {k: n for k, n in delta.items() if n}
    result["primary"] = _get_json(storm.primary.url + "/_flaky/stats")
    result["backup"] = _get_json(storm.backup.url + "/_flaky/stats")
    result["sidecar_cpu_us"] = cpu / result["requests"] * 1e6 if result["requests"] else None
    result["connections"] = STORM_CONNECTIONS
    result["seconds"] = seconds
    storm.result = result


def _decision_counts(sidecar: Server) -> dict[str, int]:
    counts = _get_json(sidecar.url + "/admin/decisions")["counts"]
    return {f"{c['plugin']}/{c['rule']}/{c['action']}": int(c["count"]) for c in counts}


# -- profiling ----------------------------------------------------------------------------


def profile_rows(rows: list[Row], loader: Loader, seconds: int, out_dir: Path, workdir: Path) -> list[str]:
    """py-spy each row under 16-connection load; sidecar rows are diffed against the baseline,
    the plugin rows (resilience, budget) against the empty policy when it was profiled too."""
    if not spy.available():
        return ["- py-spy is not installed (pip install -r benchmarks/requirements.txt)"]
    profiles: dict[str, spy.Profile] = {}
    for row in rows:
        assert row.server is not None
        print(f"# profiling {row.key} with py-spy for {seconds}s", file=sys.stderr)
        raw = workdir / f"profile-{row.key}.raw"
        if loader.wrk:
            lua = loader.prose_lua if row.prose else loader.lua
            load = [loader.wrk, "-t1", "-c16", f"-d{seconds + 2}s", "-s", str(lua), row.url]
        else:
            load = [
                sys.executable,
                str(HERE / "load.py"),
                "load",
                "--url",
                row.url,
                "--body",
                str(loader.prose_body if row.prose else loader.body),
            ]
            load += ["--duration", str(seconds + 2)]
        if spy.record(row.server.pid, seconds, load, raw):
            profiles[row.key] = spy.Profile.parse(
                raw.read_text(), row.label, row.cpu_us or 0.0, row.server.pid
            )
    lines = []
    base = profiles.get(BASELINE)
    for key, prof in profiles.items():
        path = out_dir / f"profile-{key}.txt"
        rows_by_key = {r.key: r for r in rows}
        ref_key = rows_by_key[key].ref if key in PLUGIN_ROWS else BASELINE
        ref = profiles.get(ref_key, base)
        path.write_text(spy.report(prof, ref if key != BASELINE else None))
        lines.append(f"- {key}: {os.path.relpath(path, ROOT)} ({prof.total} samples)")
    return lines
