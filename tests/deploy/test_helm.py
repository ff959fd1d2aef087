"""The Helm chart: lint and render every ``ci/`` values file, validate every manifest against the
Kubernetes schemas (offline), and assert on what was rendered.

Rendering uses ``helm-python-sdk`` (Helm v4's Go SDK through a bundled C library, no ``helm``
binary); validation uses ``kubernetes-validate``. Without them those tests skip, and the
structural checks at the bottom (values schema, no subPath mounts, ...) still run.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "policy-sidecar"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
EXAMPLE_APP = ROOT / "examples" / "kubernetes" / "my-app"
KUBE_VERSION = "1.30.0"

try:
    import helm_python

    helm_python.helm_sdk_version()  # loads the native library
    HELM_SKIP = ""
except Exception as exc:  # missing package or a library that cannot load on this platform
    helm_python = None
    HELM_SKIP = f"helm-python-sdk unavailable ({type(exc).__name__}: {exc}); pip install helm-python-sdk"

try:
    import kubernetes_validate

    KV_SKIP = ""
except ImportError:
    kubernetes_validate = None
    KV_SKIP = "kubernetes-validate not installed; pip install kubernetes-validate"

needs_helm = pytest.mark.skipif(bool(HELM_SKIP), reason=HELM_SKIP)

Docs = list[dict[str, Any]]


def _values(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return data


def _render(chart: Path, values: dict[str, Any] | None) -> Docs:
    assert helm_python is not None
    loaded = helm_python.Chart.load(chart)
    loaded.validate_schema(values)
    out = loaded.render(values, name="rel", namespace="apps", is_install=True)
    docs: Docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="module")
def render() -> Callable[..., Docs]:
    cache: dict[str, Docs] = {}

    def _get(name: str, **overrides: Any) -> Docs:
        key = json.dumps([name, overrides], sort_keys=True)
        if key not in cache:
            values = _values(name)
            for dotted, value in overrides.items():
                node = values
                *parents, leaf = dotted.split("__")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = value
            cache[key] = _render(CHART, values)
        return cache[key]

    return _get


def _kinds(docs: Docs) -> list[str]:
    return sorted(d["kind"] for d in docs)


def _one(docs: Docs, kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {_kinds(docs)}"
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def assert_sidecar_pod(pod: dict[str, Any], configmap: str) -> dict[str, Any]:
    """The sidecar container and its volumes, as every mode must render them."""
    sidecar = next(c for c in pod["containers"] if c["name"] == "policy-sidecar")
    assert ":latest" not in sidecar["image"]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = _env(sidecar)
    assert env["SIDECAR_HOST"]["value"] == "0.0.0.0"
    assert env["TIKTOKEN_CACHE_DIR"]["value"] == ""
    assert float(env["SIDECAR_GRACE_SECONDS"]["value"]) > 0
    policy_file = Path(env["SIDECAR_POLICY"]["value"])

    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    policy_mount = next(m for m in mounts.values() if "configMap" in volumes[m["name"]])
    # A directory mount (kubelet's ..data symlink swap reaches it), never subPath.
    assert "subPath" not in policy_mount and "subPathExpr" not in policy_mount
    assert Path(policy_mount["mountPath"]) == policy_file.parent
    assert policy_mount["readOnly"] is True
    assert volumes[policy_mount["name"]]["configMap"]["name"] == configmap
    items = volumes[policy_mount["name"]]["configMap"].get("items", [])
    assert all(i["path"] == policy_file.name for i in items)
    tmp = next(m for m in mounts.values() if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    # Everything the root filesystem would need is covered: no other writable mount is needed.
    assert len(mounts) == 2
    # The pod gives the drain + grace period time to finish.
    grace = float(env["SIDECAR_DRAIN_DELAY"]["value"]) + float(env["SIDECAR_GRACE_SECONDS"]["value"])
    assert pod["terminationGracePeriodSeconds"] > grace
    return sidecar


# --- helm lint / render / kubernetes validation -------------------------------------------------


@needs_helm
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_is_clean(values_file: Path) -> None:
    assert helm_python is not None
    report = helm_python.lint(CHART, _values(values_file.name), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@needs_helm
@pytest.mark.skipif(bool(KV_SKIP), reason=KV_SKIP)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_rendered_manifests_are_valid_kubernetes(values_file: Path, render: Callable[..., Docs]) -> None:
    assert kubernetes_validate is not None
    docs = render(values_file.name)
    assert docs, "nothing rendered"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)  # raises on any schema error


@needs_helm
def test_sidecar_mode_renders_configmap_and_example_only(render: Callable[..., Docs]) -> None:
    docs = render("sidecar-values.yaml")
    assert _kinds(docs) == ["ConfigMap", "Deployment"]
    cm = _one(docs, "ConfigMap")
    assert cm["data"]["policy.yaml"] == _values("sidecar-values.yaml")["policy"]["inline"]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = assert_sidecar_pod(pod, cm["metadata"]["name"])
    env = _env(sidecar)
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-provider-keys",
        "key": "openai",
    }
    assert env["SIDECAR_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "policy-sidecar-admin"
    assert env["SIDECAR_ADMIN_PORT"]["value"] == "9090"
    assert env["SIDECAR_ADMIN_HOST"]["value"] == "127.0.0.1"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318"
    assert "OTEL_SERVICE_NAME" in env
    app = next(c for c in pod["containers"] if c["name"] == "app")
    assert _env(app)["OPENAI_BASE_URL"]["value"] == "http://127.0.0.1:8080/v1"


@needs_helm
def test_the_pod_assertions_catch_a_subpath_mount(render: Callable[..., Docs]) -> None:
    docs = render("sidecar-values.yaml")
    pod = copy.deepcopy(_one(docs, "Deployment")["spec"]["template"]["spec"])
    sidecar = next(c for c in pod["containers"] if c["name"] == "policy-sidecar")
    sidecar["volumeMounts"][0]["subPath"] = "policy.yaml"
    with pytest.raises(AssertionError):
        assert_sidecar_pod(pod, _one(docs, "ConfigMap")["metadata"]["name"])


@needs_helm
def test_sidecar_mode_without_example_renders_only_the_configmap(render: Callable[..., Docs]) -> None:
    assert _kinds(render("sidecar-values.yaml", example__enabled=False)) == ["ConfigMap"]


@needs_helm
def test_gateway_mode_renders_deployment_service_hpa_pdb(render: Callable[..., Docs]) -> None:
    docs = render("gateway-values.yaml")
    assert _kinds(docs) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    cm = _one(docs, "ConfigMap")
    assert cm["data"]["policy.yaml"].strip() == (CHART / "files" / "policy.yaml").read_text().strip()
    deploy = _one(docs, "Deployment")
    assert "replicas" not in deploy["spec"]  # the HPA owns the replica count
    pod = deploy["spec"]["template"]["spec"]
    sidecar = assert_sidecar_pod(pod, cm["metadata"]["name"])
    assert sidecar["image"].endswith("@sha256:" + "0" * 64)
    env = _env(sidecar)
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "policy-sidecar-redis", "key": "url"}
    assert env["SIDECAR_DRAIN_DELAY"]["value"] == "10"
    assert pod["terminationGracePeriodSeconds"] >= 10 + 40

    selector = deploy["spec"]["selector"]["matchLabels"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    svc = _one(docs, "Service")
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        _one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    )
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2 and pdb["spec"]["selector"]["matchLabels"] == selector


@needs_helm
def test_gateway_mode_without_hpa_and_pdb(render: Callable[..., Docs]) -> None:
    docs = render(
        "gateway-values.yaml",
        gateway__autoscaling={"enabled": False},
        gateway__podDisruptionBudget={"enabled": False},
    )
    assert _kinds(docs) == ["ConfigMap", "Deployment", "Service"]
    assert _one(docs, "Deployment")["spec"]["replicas"] == 3


@needs_helm
def test_existing_configmap_is_mounted_and_none_is_rendered(render: Callable[..., Docs]) -> None:
    docs = render("existing-configmap-values.yaml")
    assert "ConfigMap" not in _kinds(docs)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = assert_sidecar_pod(pod, "team-llm-policy")
    env = _env(sidecar)
    assert env["REDIS_URL"]["value"] == "redis://redis.shared:6379/0"
    assert "SIDECAR_ADMIN_PORT" not in env  # admin.port 0: /admin stays on the API port
    assert [p["name"] for p in sidecar["ports"]] == ["http"]


@needs_helm
@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"inline": "version: 1", "existingConfigMap": "x"}, "at most one of"),
        ({"inline": "version: 1", "file": "files/policy.yaml"}, "at most one of"),
        ({"file": "files/missing.yaml"}, "missing or empty"),
    ],
)
def test_policy_sources_must_not_conflict(policy: dict[str, str], message: str) -> None:
    assert helm_python is not None
    with pytest.raises(helm_python.HelmError, match=message):
        _render(CHART, {"policy": policy})


@needs_helm
@pytest.mark.parametrize("values", [None, {}, {"mode": "gateway"}], ids=["none", "empty", "gateway"])
def test_a_first_install_with_no_values_uses_the_bundled_policy(
    values: dict[str, Any] | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`helm template rel helm/policy-sidecar` (no values) renders, lints, and the policy it
    ships compiles with no Secret in the environment, so the sidecar starts."""
    from proxy.chain.registry import default_registry
    from proxy.policy.store import PolicyStore

    assert helm_python is not None
    docs = _render(CHART, values)
    cm = _one(docs, "ConfigMap")
    bundled = (CHART / "files" / "policy.yaml").read_text()
    assert cm["data"]["policy.yaml"].strip() == bundled.strip()
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report
    if values:
        assert_sidecar_pod(_one(docs, "Deployment")["spec"]["template"]["spec"], cm["metadata"]["name"])
    for name in [n for n in os.environ if n.endswith(("_API_KEY", "REDIS_URL"))]:
        monkeypatch.delenv(name)
    path = tmp_path / "policy.yaml"
    path.write_text(cm["data"]["policy.yaml"])
    assert PolicyStore(path, default_registry()).load_initial().revision


@needs_helm
@pytest.mark.parametrize(
    "values",
    [
        {"image": {"repository": "x", "tag": "latest"}},
        {"mode": "daemonset"},
        {"securityContext": {"runAsNonRoot": False}},
        {"providerKeys": [{"name": "OPENAI_API_KEY", "secretName": "s"}]},
    ],
    ids=["latest-tag", "bad-mode", "root", "incomplete-secret-ref"],
)
def test_values_schema_rejects(values: dict[str, Any]) -> None:
    assert helm_python is not None
    with pytest.raises(helm_python.HelmError):
        helm_python.Chart.load(CHART).validate_schema({"policy": {"inline": "version: 1"}, **values})


@needs_helm
def test_rendered_policies_compile(
    render: Callable[..., Docs], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.chain.registry import default_registry
    from proxy.policy.store import PolicyStore

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for name in ("sidecar-values.yaml", "gateway-values.yaml"):
        path = tmp_path / name
        path.write_text(_one(render(name), "ConfigMap")["data"]["policy.yaml"])
        assert PolicyStore(path, default_registry()).load_initial().revision


@needs_helm
def test_example_application_chart(tmp_path: Path) -> None:
    # What `helm dependency build` does for the file:// dependency: the chart under charts/.
    app = tmp_path / "my-app"
    shutil.copytree(EXAMPLE_APP, app)
    shutil.copytree(CHART, app / "charts" / "policy-sidecar")
    docs = _render(app, None)
    assert _kinds(docs) == ["ConfigMap", "Deployment"]
    cm = _one(docs, "ConfigMap")
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert_sidecar_pod(pod, cm["metadata"]["name"])
    app_container = next(c for c in pod["containers"] if c["name"] == "app")
    assert _env(app_container)["OPENAI_BASE_URL"]["value"] == "http://127.0.0.1:8080/v1"
    if kubernetes_validate is not None:
        for doc in docs:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# --- structural checks (no helm needed) ---------------------------------------------------------


def test_values_files_match_the_values_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    for values_file in CI_VALUES:
        merged = _deep_merge(defaults, yaml.safe_load(values_file.read_text()))
        jsonschema.validate(merged, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_deep_merge(defaults, {"image": {"tag": "latest"}}), schema)


def test_templates_mount_the_policy_as_a_directory() -> None:
    for tpl in [*(CHART / "templates").iterdir(), *(EXAMPLE_APP / "templates").iterdir()]:
        assert "subPath" not in tpl.read_text().replace("never subPath", "").replace("subPath mounts", ""), (
            f"{tpl} uses subPath: ConfigMap updates would never reach the sidecar"
        )
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    for name in ("policy-sidecar.container", "policy-sidecar.volumes"):
        assert f'define "{name}"' in helpers
    for probe in ("/readyz", "/healthz", "readOnlyRootFilesystem", "SIDECAR_GRACE_SECONDS"):
        assert probe in helpers or probe in (CHART / "values.yaml").read_text()


def test_chart_metadata_and_ci_values_present() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "policy-sidecar"
    assert {p.name for p in CI_VALUES} >= {
        "sidecar-values.yaml",
        "gateway-values.yaml",
        "existing-configmap-values.yaml",
    }
    app_chart = yaml.safe_load((EXAMPLE_APP / "Chart.yaml").read_text())
    assert app_chart["dependencies"][0]["name"] == "policy-sidecar"
    assert app_chart["dependencies"][0]["version"] == chart["version"]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


@needs_helm
def test_client_keys_secret_is_mounted_as_a_directory(render: Callable[..., Docs]) -> None:
    plain = _one(render("gateway-values.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert not any("secret" in v for v in plain["volumes"])  # nothing without clientKeys
    docs = render("gateway-values.yaml", clientKeys__secretName="llm-client-keys")
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "policy-sidecar")
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "policy-sidecar-client-keys")
    assert mount["mountPath"] == "/etc/policy-sidecar-clients" and mount["readOnly"] is True
    assert "subPath" not in mount  # Secret updates reach directory mounts only
    volume = next(v for v in pod["volumes"] if v["name"] == "policy-sidecar-client-keys")
    assert volume["secret"] == {"secretName": "llm-client-keys"}


@needs_helm
def test_redis_tls_material_and_sentinel_password_come_from_secrets(render: Callable[..., Docs]) -> None:
    """Cluster / Sentinel / TLS (issue 23): the URL from a Secret, the CA and client certificate
    mounted from a Secret, the sentinels' own password as an env var from a Secret."""
    plain = _one(render("gateway-values.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert "REDIS_SENTINEL_PASSWORD" not in _env(next(c for c in plain["containers"]))
    docs = render(
        "gateway-values.yaml",
        redis__tls={"secretName": "redis-client-tls", "mountPath": "/etc/policy-sidecar-redis-tls"},
        redis__sentinelPasswordSecret="redis-sentinel",
    )
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "policy-sidecar")
    env = _env(sidecar)
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "policy-sidecar-redis", "key": "url"}
    assert env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-sentinel",
        "key": "sentinel-password",
    }
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "policy-sidecar-redis-tls")
    assert mount == {
        "name": "policy-sidecar-redis-tls",
        "mountPath": "/etc/policy-sidecar-redis-tls",
        "readOnly": True,
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "policy-sidecar-redis-tls")
    assert volume["secret"] == {"secretName": "redis-client-tls"}
