"""The ``passthrough:`` section (validation, matching), path checks, ambient headers, base_url."""

from __future__ import annotations

import pytest

from proxy.chain.registry import default_registry
from proxy.errors import ConfigError, InvalidRequest
from proxy.policy.loader import load_policy_text
from proxy.policy.passthrough import PassthroughConfig, PassthroughTable, passthrough_rules
from proxy.policy.schema import build_policy_model
from proxy.routes.paths import passthrough_path
from proxy.upstream.targets import Credentials

MODEL = build_policy_model(default_registry())

BASE = """
version: 1
upstreams:
  keyed: {base_url: "https://api.example.com/v1", api_key: sk-x}
  open: {base_url: "http://127.0.0.1:9/v1"}
default_upstream: keyed
plugins:
  - {type: budget, id: spend, limits: [{name: r, window: minute, requests: 5}]}
  - {type: blocklist, id: words, keywords: [nope]}
  - {type: blocklist, id: chat-only, keywords: [x], when: {routes: [chat.completions]}}
  - {type: blocklist, id: off-step, mode: "off", keywords: [x]}
"""


def _load(passthrough: str) -> object:
    return load_policy_text(BASE + passthrough, "p.yaml", MODEL)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("passthrough: {rules: [{path: /x, methods: [GET], budget: {step: words}}]}", "names no budget step"),
        ("passthrough: {rules: [{path: /x, methods: [GET], guards: [spend], fields: [a]}]}", "names no"),
        ("passthrough: {rules: [{path: /x, methods: [GET], guards: [ghost], fields: [a]}]}", "'ghost'"),
        ("passthrough: {rules: [{path: /x, methods: [GET], guards: [words]}]}", "name the JSON"),
        ("passthrough: {rules: [{path: /x, methods: [GET], fields: [prompt]}]}", "name the guard"),
        ("passthrough: {rules: [{path: /x, methods: [FETCH]}]}", "unknown HTTP method 'FETCH'"),
        ("passthrough: {rules: [{path: x, methods: [GET]}]}", "starts with '/'"),
        ("passthrough: {rules: [{path: /a/../b, methods: [GET]}]}", "'..'"),
        ("passthrough: {rules: [{path: /chat/completions, methods: [POST]}]}", "governed route"),
        ("passthrough: {rules: [{path: /x, methods: [GET], upstream: nowhere}]}", "'nowhere'"),
        (
            "passthrough: {rules: [{path: /x, methods: [POST], guards: [chat-only], fields: [a]}]}",
            "without 'passthrough'",
        ),
        ("passthrough: {rules: [{path: /x, methods: [GET], colour: red}]}", "Extra inputs"),
        ("passthrough: {mode: off}", "passthrough.mode"),
    ],
)
def test_bad_sections_are_load_errors(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(section)
    assert message in str(info.value)
    assert "p.yaml:" in str(info.value)


def _table(section: str) -> PassthroughTable:
    policy = _load(section)
    cfg: PassthroughConfig = policy.passthrough  # type: ignore[attr-defined]
    return PassthroughTable(cfg, {"keyed": "policy", "open": "passthrough"}, "keyed", [])


def test_decide_defaults_and_rules() -> None:
    table = _table(
        """
passthrough:
  rules:
    - {path: "/files*", methods: [get, POST]}
    - {path: /vector_stores/*, methods: ["*"], upstream: open}
"""
    )
    assert table.decide("GET", "/files/file-1/content").kind == "rule"
    assert table.decide("DELETE", "/files/file-1").kind == "refused"
    v = table.decide("PATCH", "/vector_stores/vs_1")
    assert (v.kind, v.upstream, v.auth) == ("rule", "open", "passthrough")
    assert table.decide("GET", "/models").kind == "models"
    assert table.decide("GET", "/models/gpt-4o").kind == "models"
    assert table.decide("GET", "/modelsX").kind == "refused"
    assert table.decide("POST", "/images/generations").kind == "refused"


def test_other_methods_on_governed_paths_may_be_listed() -> None:
    table = _table("passthrough: {rules: [{path: /chat/completions, methods: [GET]}]}")
    assert table.decide("GET", "/chat/completions").kind == "rule"


def test_unlisted_paths_on_a_client_key_upstream_are_open_unless_refused() -> None:
    policy = _load("")
    cfg: PassthroughConfig = policy.passthrough  # type: ignore[attr-defined]
    open_table = PassthroughTable(cfg, {"keyed": "passthrough"}, "keyed", [])
    assert open_table.decide("POST", "/batches").kind == "open"
    strict = PassthroughTable(
        cfg.model_copy(update={"unlisted": "refuse", "models": False}), {"k": "none"}, "k", []
    )
    assert strict.decide("POST", "/batches").kind == "refused"
    assert strict.decide("GET", "/models").kind == "refused"


def test_passthrough_rules_lists_what_applies() -> None:
    policy = _load(
        """
passthrough:
  rules:
    - path: /images/generations
      methods: [POST]
      mode: shadow
      budget: {step: spend, price_usd: 0.04, per_field: n}
      guards: [words, off-step]
      fields: [prompt]
"""
    )
    (rule,) = passthrough_rules(policy.passthrough)  # type: ignore[attr-defined]
    assert rule == {
        "path": "/images/generations",
        "methods": ["POST"],
        "upstream": None,
        "mode": "shadow",
        "steps": ["spend", "words", "off-step"],
        "budget": {"step": "spend", "price_usd": 0.04, "per_field": "n"},
        "guards": ["words", "off-step"],
        "fields": ["prompt"],
    }


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://user:secret@api.example.com/v1", False),
        ("https://:secret@api.example.com/v1", False),
        ("https://api.example.com/v1?key=secret", False),
        ("https://api.example.com/v1#frag", False),
        ("https://api.example.com/v1", True),
        ("http://127.0.0.1:8000/v1", True),
    ],
)
def test_base_url_credentials_and_queries_are_load_errors(url: str, ok: bool) -> None:
    text = f"version: 1\nupstreams:\n  default: {{base_url: '{url}', api_key: sk-x}}\n"
    if ok:
        load_policy_text(text, "p.yaml", MODEL)
        return
    with pytest.raises(ConfigError) as info:
        load_policy_text(text, "p.yaml", MODEL)
    assert "secret" not in str(info.value) and "p.yaml:3:" in str(info.value)


def _scope(raw: bytes) -> dict[str, object]:
    return {"type": "http", "path": raw.decode("latin-1"), "raw_path": raw}


@pytest.mark.parametrize(
    "raw",
    [
        b"/v1/..%2f..%2flatest/meta-data",
        b"/v1/a%2Fb",
        b"/v1/a%5Cb",
        b"/v1/a\\b",
        b"/v1/%2e%2e/admin",
        b"/v1/../admin",
        b"/v1/a/./b",
        b"/v1//a",
        b"/v1/a//b",
        b"/v1/a%00",
        b"/v1/a%0d%0aX: y",
        b"/v1/a%ff",
        b"/%761/files",
    ],
)
def test_suspicious_paths_are_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        passthrough_path(_scope(raw))
    assert info.value.code == "invalid_path" and info.value.status == 400


def test_plain_paths_keep_their_encoding_for_forwarding() -> None:
    assert passthrough_path(_scope(b"/v1/files/a%20b/")) == ("/files/a b/", "/files/a%20b/")
    assert passthrough_path(_scope(b"/v1/files?x=1")) == ("/files", "/files")
    assert passthrough_path({"path": "/v1/files/a b"}) == ("/files/a b", "/files/a%20b")
    assert passthrough_path(_scope(b"/v1")) == ("/", "/")


def test_policy_auth_drops_billing_and_ambient_headers_unless_set_by_the_policy() -> None:
    sent = [
        ("Authorization", "Bearer client"),
        ("OpenAI-Organization", "org-client"),
        ("OpenAI-Project", "proj-client"),
        ("Cookie", "s=1"),
        ("x-other", "kept"),
    ]
    policy = Credentials("policy", "sk-p", "authorization", "Bearer", {"OpenAI-Project": "proj-policy"})
    assert policy.apply(list(sent), {}) == [
        ("x-other", "kept"),
        ("authorization", "Bearer sk-p"),
        ("openai-project", "proj-policy"),
    ]
    client = Credentials("passthrough", None, "authorization", "Bearer", {})
    assert client.apply(list(sent), {}) == sent
    none = Credentials("none", None, "authorization", "Bearer", {})
    assert [k for k, _ in none.apply(list(sent), {})] == [
        "OpenAI-Organization",
        "OpenAI-Project",
        "Cookie",
        "x-other",
    ]
