"""Coverage report and policy warnings: what each surface gets, and model globs that match nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.chain.registry import default_registry
from proxy.policy.coverage import (
    Surface,
    SurfaceCoverage,
    api_surfaces,
    coverage,
    passthrough_surfaces,
    render,
)
from proxy.policy.lint import glob_covered, globs_overlap
from proxy.policy.store import PolicyStore

POLICIES = Path(__file__).resolve().parents[2] / "policies"

GAP = """\
version: 1
upstreams:
  default:
    base_url: builtin:demo
plugins:
  - type: budget
    limits:
      - {name: rpm, requests: 100, window: minute}
  - type: injection
    when: {routes: [chat.completions]}
  - type: blocklist
    id: secrets
    keywords: [sk-live]
    when: {streaming: false}
  - type: moderation
    mode: shadow
    when: {routes: [responses]}
  - type: schema
    stream: skip
    when: {routes: [messages], models: ["claude-*"]}
    canary: 20
"""


def _compiled(tmp_path: Path, text: str) -> PolicyStore:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    store = PolicyStore(path, default_registry())
    store.load_initial()
    return store


def _by_label(rows: list[SurfaceCoverage]) -> dict[str, SurfaceCoverage]:
    return {r.surface.label: r for r in rows}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60)


def test_every_api_surface_is_listed(tmp_path: Path) -> None:
    store = _compiled(tmp_path, (POLICIES / "default.yaml").read_text())
    labels = [s.label for s in api_surfaces(store.current)]
    assert labels == [
        "chat.completions (non-stream)",
        "chat.completions (stream)",
        "responses (non-stream)",
        "responses (stream)",
        "messages (non-stream)",
        "messages (stream)",
        "embeddings (non-stream)",  # embeddings have no streamed form
    ]


def test_default_policy_covers_every_surface(tmp_path: Path) -> None:
    store = _compiled(tmp_path, (POLICIES / "default.yaml").read_text())
    rows = _by_label(coverage(store.current, [api_surfaces]))
    for label, row in rows.items():
        assert row.flags == (), label
        steps = {s.id: s for s in row.steps}
        assert steps["headers"].hooks == ("request",) and steps["headers"].mode == "enforce"
        assert steps["secrets"].guard and steps["secrets"].condition == ""
    assert rows["chat.completions (stream)"].steps[1].hooks == ("request", "stream")
    assert rows["chat.completions (non-stream)"].steps[1].hooks == ("request", "response")
    assert rows["embeddings (non-stream)"].steps[1].hooks == ("request",)  # vectors: no text to read


def test_strict_policy_shows_the_tenant_condition(tmp_path: Path) -> None:
    store = _compiled(tmp_path, (POLICIES / "strict.yaml").read_text())
    for row in coverage(store.current, [api_surfaces]):
        steps = {s.id: s for s in row.steps}
        assert steps["restricted-topics"].condition == "some tenants: external-*"
        assert steps["secrets"].condition == "" and row.flags == ()


def test_gaps_are_flagged(tmp_path: Path) -> None:
    store = _compiled(tmp_path, GAP)
    rows = _by_label(coverage(store.current))
    chat = rows["chat.completions (non-stream)"]
    assert [s.id for s in chat.steps] == ["budget", "injection", "secrets"] and chat.flags == ()
    chat_stream = rows["chat.completions (stream)"]
    assert [s.id for s in chat_stream.steps] == ["budget", "injection"] and chat_stream.flags == ()
    assert rows["responses (stream)"].flags == (
        "guards run in shadow only: nothing is refused or redacted here",
    )
    assert rows["responses (non-stream)"].flags == ()  # secrets (non-stream) enforces
    messages = rows["messages (stream)"]
    schema = next(s for s in messages.steps if s.id == "schema")
    assert schema.mode == "canary 20%" and schema.condition == "some models: claude-*"
    assert schema.hooks == ("request",) and schema.skipped
    assert messages.flags == (
        "enforcing guards apply only to some models/tenants",
        "schema (schema) does not check streamed answers here (stream: skip)",
    )
    assert rows["embeddings (non-stream)"].flags == ()  # secrets reads embeddings input
    budget_only_policy = _compiled(tmp_path, GAP.split("  - type: injection")[0]).current
    budget_only = _by_label(coverage(budget_only_policy, [api_surfaces]))
    assert all(r.flags == ("no guard covers this surface",) for r in budget_only.values())


def test_more_surfaces_come_from_a_source(tmp_path: Path) -> None:
    store = _compiled(tmp_path, GAP)
    extra = Surface("POST /v1/images/generations", "passthrough", False)
    rows = coverage(store.current, [lambda _c: [extra]])
    assert len(rows) == 1 and rows[0].surface is extra
    assert [s.id for s in rows[0].steps] == ["budget", "secrets"]  # no when.routes excludes it
    scoped = Surface("GET /v1/files", "passthrough", False, steps=store.current.chain.steps[:1])
    assert [s.id for s in coverage(store.current, [lambda _c: [scoped]])[0].steps] == ["budget"]


def test_render_and_cli(tmp_path: Path) -> None:
    store = _compiled(tmp_path, GAP)
    text = render(coverage(store.current))
    assert "messages (stream)\n" in text
    assert "  ! schema (schema) does not check streamed answers here (stream: skip)" in text
    # 7 API surfaces + model listing + unlisted pass-through (open: the demo upstream takes the
    # client's own key), which is the third flagged surface
    assert text.endswith("9 surfaces, 3 flagged")

    path = tmp_path / "policy.yaml"
    done = _cli("check", "--coverage", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {path} revision ")
    assert text in done.stdout
    as_json = json.loads(_cli("check", "--coverage", "--json", str(path)).stdout)
    assert len(as_json) == 9 and as_json[0]["surface"] == "chat.completions"
    assert as_json[0]["steps"][0] == {
        "id": "budget",
        "type": "budget",
        "mode": "enforce",
        "hooks": ["request", "response"],
        "condition": "always",
        "note": "",
        "guard": False,
    }


# default.yaml serves the demo upstream with the client's own key: unlisted pass-through is open
# (forwarded and recorded), and the report says so.
EXPECTED_SUMMARY = {"default.yaml": "9 surfaces, 1 flagged", "strict.yaml": "9 surfaces, none flagged"}


@pytest.mark.parametrize("name", ["default.yaml", "strict.yaml"])
def test_cli_coverage_of_shipped_policies(name: str) -> None:
    done = _cli("check", "--coverage", str(POLICIES / name))
    assert done.returncode == 0 and done.stderr == ""
    assert "embeddings (non-stream)\n" in done.stdout
    assert "passthrough, any other /v1/* path\n" in done.stdout
    assert done.stdout.rstrip().endswith(EXPECTED_SUMMARY[name])


# -- warnings --------------------------------------------------------------------------

ROUTED = """\
version: 1
upstreams:
  default:
    base_url: builtin:demo
  openai:
    base_url: https://api.openai.com/v1
    models: ["gpt-4o*"]
  mini:
    base_url: https://example.com/v1
    models: ["gpt-4o-mini"]
routes:
  - match: "gpt-4*"
    targets: [openai]
  - match: gpt-4o
    targets: [openai]
plugins:
  - type: blocklist
    keywords: [x]
    when: {models: ["gpt-4o", "gpt4o*"]}
"""


def test_globs() -> None:
    assert globs_overlap("gpt-*-mini", "gpt-4o*")
    assert globs_overlap("gpt-[34]*", "gpt-4o") and not globs_overlap("gpt-[!4]o", "gpt-4o")
    assert not globs_overlap("gpt4o*", "gpt-4o*") and not globs_overlap("a?c", "ac")
    assert glob_covered("gpt-4o-mini", "gpt-4o*") and not glob_covered("gpt-4o*", "gpt-4o")


def test_unmatched_model_globs_and_shadowed_routes_are_warnings(tmp_path: Path) -> None:
    store = _compiled(tmp_path, ROUTED)  # loads: warnings never fail a policy
    path = store.path
    assert store.current.warnings == [
        f"{path}:19:31: model glob 'gpt4o*' matches no route or upstream model "
        "(gpt-4*, gpt-4o, gpt-4o*, gpt-4o-mini); it applies only to models sent to the default "
        "upstream: check the spelling",
        f"{path}:14:12: route 'gpt-4o' is never used: the earlier route 'gpt-4*' matches its models first",
        f"{path}:10:14: upstream 'mini' model glob 'gpt-4o-mini' never routes: upstream 'openai' "
        "(listed earlier) takes those models first",
    ]
    assert store.current.describe()["warnings"] == store.current.warnings  # /admin/policy shows them
    done = _cli("check", str(path))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [f"warning: {w}" for w in store.current.warnings]


def test_no_warnings_without_configured_models(tmp_path: Path) -> None:
    text = (POLICIES / "default.yaml").read_text() + "    when: {models: ['anything*']}\n"
    assert _compiled(tmp_path, text).current.warnings == []


async def test_reload_keeps_the_warnings_of_the_new_revision(tmp_path: Path) -> None:
    store = _compiled(tmp_path, ROUTED)
    assert len(store.current.warnings) == 3
    store.path.write_text(
        ROUTED.replace('"gpt4o*"', '"gpt-4o*"').replace("  - match: gpt-4o\n", "  - match: o1\n")
    )
    assert (await store.reload("admin"))["result"] == "reloaded"
    assert len(store.current.warnings) == 1 and "upstream 'mini'" in store.current.warnings[0]


def test_price_prefixes_and_allowed_models_are_checked_too(tmp_path: Path) -> None:
    text = ROUTED.split("plugins:")[0].replace("  - match: gpt-4o\n    targets: [openai]\n", "") + (
        "plugins:\n"
        "  - type: budget\n"
        "    limits: [{name: spend, cost_usd: 5, window: day}]\n"
        "    prices:\n"
        "      gpt-4o: {input: 2.5, output: 10}\n"
        "      gtp-4o-mini: {input: 0.15, output: 0.6}\n"
        "  - type: schema\n"
        "    stream: buffer\n"
        "    request: {allowed_models: [gpt-4o-mini, claude-*]}\n"
    )
    store = _compiled(tmp_path, text)
    where = f"{store.path}:"
    found = [w.removeprefix(where).split(" matches")[0].split(" never")[0] for w in store.current.warnings]
    assert found == [
        "19:20: model glob 'gtp-4o-mini*'",  # a price prefix (at its price)
        "22:45: model glob 'claude-*'",
        "10:14: upstream 'mini' model glob 'gpt-4o-mini'",
    ]


def test_passthrough_rules_are_surfaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    text = (POLICIES / "openai.yaml").read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    store = PolicyStore(path, default_registry())
    store.load_initial()
    rows = _by_label(coverage(store.current, [passthrough_surfaces]))
    files = rows["passthrough GET,POST,DELETE /v1/files*"]
    assert files.steps == () and files.flags == ("no guard covers this surface",)
    images = rows["passthrough POST /v1/images/generations"]
    assert [s.id for s in images.steps] == ["headers", "secrets", "spend"]
    # Pass-through answers are forwarded as bytes: no response or stream hooks are claimed.
    assert all(set(s.hooks) <= {"request", "complete"} for s in images.steps)
    assert images.flags == ()
    rest = rows["passthrough, any other /v1/* path"]
    assert rest.flags == () and rest.surface.note == "refused (403), recorded"  # the sidecar holds the key
    assert rows["passthrough /v1/models*"].flags == ()


def test_open_unlisted_passthrough_is_flagged(tmp_path: Path) -> None:
    store = _compiled(tmp_path, GAP)  # builtin:demo: the client's own key
    rest = _by_label(coverage(store.current, [passthrough_surfaces]))["passthrough, any other /v1/* path"]
    assert rest.flags and rest.flags[0].startswith("open: forwarded with the client's own key")
    closed = _compiled(tmp_path, GAP + "passthrough: {unlisted: refuse}\n")
    rest = _by_label(coverage(closed.current, [passthrough_surfaces]))["passthrough, any other /v1/* path"]
    assert rest.flags == ()
    shadow = _compiled(tmp_path, GAP + "passthrough: {unlisted: refuse, mode: shadow}\n")
    rest = _by_label(coverage(shadow.current, [passthrough_surfaces]))["passthrough, any other /v1/* path"]
    assert rest.flags == ("would be refused, but passthrough.mode: shadow forwards them (recorded)",)
