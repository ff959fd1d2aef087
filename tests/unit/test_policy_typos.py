"""No typo silently disables a rule: each one fails the load at file:line:col with a did-you-mean.

Every case is checked twice: through the loader (``load_policy_text``) and through the CLI as a
user runs it (``python -m proxy check FILE`` in a subprocess).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.chain.names import check_name, suggest
from proxy.chain.registry import default_registry
from proxy.errors import ConfigError
from proxy.policy.loader import load_policy_text
from proxy.policy.schema import build_policy_model

MODEL = build_policy_model(default_registry())
HEAD = "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\nplugins:\n"

# (id, plugin YAML appended to HEAD (line 6 is the first plugin line), expected message start)
TYPOS = [
    (
        "pii-entity",
        "  - type: pii\n    default_action: allow\n    entities: {EMAIL: redact}\n",
        "p.yaml:8:16: plugins[0].entities.EMAIL: unknown PII entity type 'EMAIL' "
        "(did you mean 'EMAIL_ADDRESS'?)",
    ),
    (
        "pii-entity-block-style",
        "  - type: pii\n    entities:\n      PHONE_NUMBER: redact\n      CREDITCARD: block\n",
        "p.yaml:9:7: plugins[0].entities.CREDITCARD: unknown PII entity type 'CREDITCARD' "
        "(did you mean 'CREDIT_CARD'?)",
    ),
    (
        "when-route",
        "  - type: blocklist\n    keywords: [a]\n    when: {routes: [chat.completion]}\n",
        "p.yaml:8:21: plugins[0].when.routes[0]: unknown route 'chat.completion' "
        "(did you mean 'chat.completions'?)",
    ),
    (
        "when-field",
        "  - type: blocklist\n    keywords: [a]\n    when:\n      tenant: [a-*]\n",
        "p.yaml:9:7: plugins[0].when.tenant: Extra inputs are not permitted (did you mean 'tenants'?); "
        "known fields: routes, models, tenants, streaming",
    ),
    (
        "extra-field",
        "  - type: blocklist\n    keywrds: [a]\n",
        "p.yaml:7:5: plugins[0].keywrds: Extra inputs are not permitted (did you mean 'keywords'?)",
    ),
    (
        "moderation-category",
        "  - type: moderation\n    categories:\n      selfharm: {action: block}\n",
        "p.yaml:8:7: plugins[0].categories.selfharm: unknown moderation category 'selfharm' "
        "(did you mean 'self-harm'?)",
    ),
    (
        "budget-limit-key",
        "  - type: budget\n    limits:\n      - {name: rpm, requests: 5, window: minute, key: [tenants]}\n",
        "p.yaml:8:56: plugins[0].limits[0].key[0]: Input should be 'tenant', 'api_key', 'user', 'model' "
        "or 'route' (did you mean 'tenant'?)",
    ),
    (
        "budget-measure",
        "  - type: budget\n    limits:\n      - {name: rpm, request: 5, window: minute}\n",
        "p.yaml:8:21: plugins[0].limits[0].request: Extra inputs are not permitted "
        "(did you mean 'requests'?)",
    ),
    (
        "role",
        "  - type: injection\n    scan: {roles: [user, tol]}\n",
        "p.yaml:7:26: plugins[0].scan.roles[1]: unknown role 'tol' (did you mean 'tool'?)",
    ),
    (
        "budget-tenant-from",
        "  - type: budget\n    tenant_from: contxt\n    limits: [{name: rpm, requests: 5, window: minute}]\n",
        "p.yaml:7:18: plugins[0].tenant_from: unknown tenant_from 'contxt' (did you mean 'context'?)",
    ),
    (
        "default-upstream",
        "  - type: blocklist\n    keywords: [a]\ndefault_upstream: defualt\n",
        "p.yaml:8:19: default_upstream: unknown upstream 'defualt' (did you mean 'default'?)",
    ),
    (
        "route-target",
        "  - type: blocklist\n    keywords: [a]\n"
        "routes:\n  - match: gpt-4o\n    targets: ['defaul:gpt-4o']\n",
        "p.yaml:10:15: routes[0]: unknown upstream in route 'gpt-4o' target 'defaul' "
        "(did you mean 'default'?)",
    ),
    (
        "upstream-field",
        "  - type: blocklist\n    keywords: [a]\nobservability:\n  tracing: {sample_rate: 0.5}\n",
        "p.yaml:9:13: observability.tracing.sample_rate: Extra inputs are not permitted "
        "(did you mean 'sample_ratio'?); known fields: sample_ratio, content",
    ),
    (
        "plugin-type",
        "  - type: blocklists\n    keywords: [a]\n",
        "p.yaml:6:5: plugins[0]: Input tag 'blocklists' found using 'type' does not match",
    ),
    (
        "mode-literal",
        "  - type: blocklist\n    keywords: [a]\n    mode: shadw\n",
        "p.yaml:8:11: plugins[0].mode: Input should be 'enforce', 'shadow' or 'off' (did you mean 'shadow'?)",
    ),
    (
        "mode-on",
        "  - type: blocklist\n    keywords: [a]\n    mode: on\n",
        "p.yaml:8:11: plugins[0].mode: Input should be 'enforce', 'shadow' or 'off'; YAML reads an unquoted "
        "on/yes/true as a boolean: quote the word",
    ),
    (
        "flow-style-env",
        "  - type: blocklist\n    keywords: [a]\nupstreams_x: {base_url: https://x, api_key: ${KEY}}\n",
        "p.yaml:8:45: invalid YAML: ${...} inside a flow-style {...} or [...] must be quoted, "
        'e.g. {api_key: "${NAME}"}',
    ),
]


def _load_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy_text(text, "p.yaml", MODEL)
    return str(info.value)


@pytest.mark.parametrize(("snippet", "expected"), [t[1:] for t in TYPOS], ids=[t[0] for t in TYPOS])
def test_typo_fails_the_load_with_location_and_suggestion(snippet: str, expected: str) -> None:
    assert _load_error(HEAD + snippet).startswith(expected)


@pytest.mark.parametrize(("snippet", "expected"), [t[1:] for t in TYPOS], ids=[t[0] for t in TYPOS])
def test_typo_fails_check_on_the_command_line(tmp_path: Path, snippet: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + snippet)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: " + expected.replace("p.yaml", str(path), 1)), done.stderr


def test_flow_style_env_in_an_upstream_names_the_fix() -> None:
    text = "version: 1\nupstreams:\n  default: {base_url: https://api.example.com/v1, api_key: ${KEY}}\n"
    msg = _load_error(text)
    assert msg.startswith("p.yaml:3:60: invalid YAML: ${...} inside a flow-style"), msg
    # Quoted as the message says, it loads (and the variable is expanded in the secret field).
    quoted = text.replace("${KEY}", '"${KEY:-sk-test}"')
    policy = load_policy_text(quoted, "p.yaml", MODEL)
    assert policy.upstreams["default"].api_key is not None
    assert policy.upstreams["default"].api_key.get_secret_value() == "sk-test"


def test_unquoted_off_is_off() -> None:
    text = HEAD + "  - type: blocklist\n    keywords: [a]\n    mode: off\n"
    policy = load_policy_text(text, "p.yaml", MODEL)
    assert policy.plugins[0].mode == "off"  # type: ignore[attr-defined]
    quoted = load_policy_text(text.replace("mode: off", "mode: 'off'"), "p.yaml", MODEL)
    assert quoted.plugins[0].mode == "off"  # type: ignore[attr-defined]


def test_unquoted_off_passes_check_and_the_step_is_not_compiled(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "  - type: blocklist\n    keywords: [a]\n    mode: off\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": no plugins")


def test_known_names_still_load() -> None:
    text = HEAD + (
        "  - type: pii\n    entities: {EMAIL_ADDRESS: redact, EMPLOYEE_ID: block}\n"
        "    recognizers:\n      - {entity_type: EMPLOYEE_ID, patterns: [{regex: 'E-[0-9]{6}'}]}\n"
        "    roles: [user, tool]\n"
        "    when: {routes: [chat.completions, responses, messages, embeddings]}\n"
        "  - type: moderation\n    input_roles: [user]\n    categories: {self-harm: {action: block}}\n"
    )
    policy = load_policy_text(text, "p.yaml", MODEL)
    assert set(policy.plugins[0].entities) == {"EMAIL_ADDRESS", "EMPLOYEE_ID"}  # type: ignore[attr-defined]


def test_custom_entity_type_needs_its_recogniser() -> None:
    text = HEAD + "  - type: pii\n    entities: {EMPLOYEE_ID: block}\n"
    assert "unknown PII entity type 'EMPLOYEE_ID'" in _load_error(text)


def test_decision_log_actions_are_checked() -> None:
    text = "version: 1\nobservability:\n  decision_log: {path: stdout, actions: [block, flagg]}\n"
    msg = _load_error(text)
    assert msg.startswith("p.yaml:3:49: observability.decision_log.actions[1]: unknown decision action"), msg
    assert "(did you mean 'flag'?)" in msg


def test_pii_entity_list_matches_what_the_engine_detects() -> None:
    from proxy.detectors.pii.engine import BUILTIN_ENTITIES, NER_ENTITIES, PiiEngine

    assert set(BUILTIN_ENTITIES) == set(PiiEngine("off").entities) | NER_ENTITIES


def test_check_name_and_suggest() -> None:
    assert check_name("user", ("user", "tool"), "role") == "user"
    with pytest.raises(ValueError, match=r"unknown role 'usr' \(did you mean 'user'\?\); known: user, tool"):
        check_name("usr", ("user", "tool"), "role")
    assert suggest("email_address", ["EMAIL_ADDRESS", "URL"]) == " (did you mean 'EMAIL_ADDRESS'?)"
    assert suggest("EMAIL", ["EMAIL_ADDRESS", "URL"]) == " (did you mean 'EMAIL_ADDRESS'?)"
    assert suggest("zzzz", ["EMAIL_ADDRESS", "URL"]) == ""
