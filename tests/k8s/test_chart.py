"""The Helm chart (deploy/helm/sundial) against the real kube-apiserver, kubectl and helm.

Renders are validated by the API server itself (`kubectl apply --dry-run=server`, third-party
kinds through stand-in CRDs from tests/k8s/fixtures/); a real `helm install` and `helm upgrade`
go into the local control plane; RBAC is proven with `kubectl auth can-i`, by running the
real operator under its ServiceAccount's token and by impersonating with the dashboard's; Pod
Security "restricted" is enforced on bare Pods made from every rendered pod template. No pod
ever runs here (no kubelet), so hooks are inspected, not executed. Also: the schema's error
messages, the GitOps examples, the Argo CD health check (Lua, through lupa) and the Dockerfile's
user, context and entry points.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Services, free_port
from tests.conftest import mark_prefix_intact, unavailable
from tests.k8s.conftest import SundialProcess, create_namespace, operator_process, wait_until
from tests.k8s.test_runs_api import _cert_user, _job_with_runs, _scheduled_job

pytestmark = pytest.mark.k8s

ROOT = find_repo_root()
CHART = ROOT / "deploy" / "helm" / "sundial"
FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = "sundial"
FULLNAME = "sundial"  # the release name contains the chart name: no "<release>-sundial" prefix

Doc = dict[str, Any]


# ---- helpers -----------------------------------------------------------------------------


class Helm:
    """The real helm binary, with its cache/config/data in a directory of the test's own."""

    def __init__(self, controlplane: ControlPlane, home: Path) -> None:
        self.binary = str(controlplane.bin_dir / "helm")
        self.home = home
        self.env = {
            **controlplane.env(),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def values_file(self, values: Doc) -> str:
        path = self.home / f"values-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(values))  # JSON is YAML
        return str(path)

    def template(self, values: Doc | None = None, namespace: str = "sundial", *extra: str) -> list[Doc]:
        out = self.run("template", RELEASE, str(CHART), "-n", namespace, "-f", self.values_file(values or {}), *extra)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {[d['metadata']['name'] for d in find(docs, kind)]}"
    return found[0]


def container(doc: Doc) -> Doc:
    spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    containers: list[Doc] = spec["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(doc: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc).get("env", [])}


def rules_of(doc: Doc) -> list[Doc]:
    rules: list[Doc] = doc.get("rules") or []
    return rules


def grants(rules: list[Doc], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def pod_templates(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    """(owner, pod spec) for every pod the render would create."""
    found = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((doc, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            found.append((doc, doc["spec"]))
    return found


def kubectl_apply(controlplane: ControlPlane, docs: list[Doc], *args: str, check: bool = True
                  ) -> subprocess.CompletedProcess[str]:
    return controlplane.kubectl("apply", *args, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                             "items": docs}), check=check)


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(controlplane, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def third_party_crds(controlplane: ControlPlane) -> ControlPlane:
    """Stand-ins for the ServiceMonitor, PrometheusRule, ScaledObject/TriggerAuthentication and cert-manager CRDs."""
    path = FIXTURES / "third-party-crds.yaml"
    controlplane.kubectl("apply", "--server-side", "-f", str(path))
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text()) if d]
    controlplane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    wait_until("the stand-in kinds to be served", lambda: controlplane.kubectl(
        "get", "servicemonitors,prometheusrules,scaledobjects,certificates", "-A", check=False).returncode == 0,
        timeout=30)
    return controlplane


@pytest.fixture(scope="module")
def render_namespaces(third_party_crds: ControlPlane) -> dict[str, str]:
    """A release namespace and two to watch, for the server-side dry runs."""
    return {key: create_namespace(third_party_crds, f"chart-{key}") for key in ("release", "team-a", "team-b")}


@dataclass
class Release:
    namespace: str
    watched: list[str]
    install_output: str

    @property
    def operator_sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{FULLNAME}-operator"

    @property
    def worker_sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{FULLNAME}-worker"

    @property
    def dashboard_sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{FULLNAME}-dashboard"


# The APIService v1alpha1.runs.sundial.dev is cluster-scoped: one release per cluster serves run
# history (runs_release below); the others turn it off, as the chart's README asks.
NOT_THE_RUNS_API: Doc = {"runsApi": {"enabled": False}}


@pytest.fixture(scope="module")
def release(helm: Helm, controlplane: ControlPlane) -> Iterator[Release]:
    """A real `helm install`: namespaced mode, watching two namespaces, peering on (the defaults).

    `--no-hooks`: the migration Job would wait forever for a pod no kubelet runs; its spec is
    checked through `helm get hooks` instead.
    """
    namespace = create_namespace(controlplane, "sundial")
    watched = [create_namespace(controlplane, "jobs"), create_namespace(controlplane, "jobs2")]
    values = helm.values_file({"watchNamespaces": watched, **NOT_THE_RUNS_API})
    out = helm.run("install", RELEASE, str(CHART), "-n", namespace, "-f", values, "--no-hooks", "--timeout=90s")
    try:
        yield Release(namespace, watched, out.stdout)
    finally:
        helm.run("uninstall", RELEASE, "-n", namespace, "--no-hooks", check=False)


@pytest.fixture(scope="module")
def clusterwide_release(helm: Helm, controlplane: ControlPlane) -> Iterator[Release]:
    """A second release with the default cluster-wide scope, for its RBAC."""
    namespace = create_namespace(controlplane, "sundial-cw")
    out = helm.run("install", RELEASE, str(CHART), "-n", namespace, "-f", helm.values_file(NOT_THE_RUNS_API),
                   "--no-hooks", "--timeout=90s")
    try:
        yield Release(namespace, [], out.stdout)
    finally:
        helm.run("uninstall", RELEASE, "-n", namespace, "--no-hooks", check=False)


def _install(helm: Helm, controlplane: ControlPlane, prefix: str, values: Doc) -> Iterator[Release]:
    namespace = create_namespace(controlplane, prefix)
    out = helm.run("install", RELEASE, str(CHART), "-n", namespace, "-f",
                   helm.values_file({**values, **NOT_THE_RUNS_API}), "--no-hooks", "--timeout=90s")
    try:
        yield Release(namespace, [], out.stdout)
    finally:
        helm.run("uninstall", RELEASE, "-n", namespace, "--no-hooks", check=False)


@pytest.fixture(scope="module")
def proxy_release(helm: Helm, controlplane: ControlPlane) -> Iterator[Release]:
    """A release whose dashboard impersonates what an authenticating proxy names, any group."""
    yield from _install(helm, controlplane, "sundial-proxy", {"dashboard": {"auth": "proxy"}})


@pytest.fixture(scope="module")
def capped_proxy_release(helm: Helm, controlplane: ControlPlane) -> Iterator[Release]:
    """Proxy mode with the impersonable groups listed."""
    yield from _install(helm, controlplane, "sundial-capped", {"dashboard": {
        "auth": "proxy", "proxy": {"impersonateGroups": ["sundial-admins", "sundial-viewers"]}}})


# ---- the chart's files -------------------------------------------------------------------


def test_chart_crds_are_copies_of_deploy_crds() -> None:
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    deploy_crds = {p.name: p.read_bytes() for p in (ROOT / "deploy" / "crds").iterdir()}
    assert sorted(chart_crds) == sorted(deploy_crds), "the chart's crds/ and deploy/crds/ hold different files"
    for name, content in deploy_crds.items():
        assert not (CHART / "crds" / name).is_symlink(), f"{name}: a symlink breaks `helm package`"
        same = chart_crds[name] == content
        assert same, f"deploy/helm/sundial/crds/{name} drifted: cp deploy/crds/{name} deploy/helm/sundial/crds/"


def test_chart_monitoring_files_are_copies_of_deploy_monitoring() -> None:
    for path in (ROOT / "deploy" / "monitoring").iterdir():
        copy = CHART / "files" / path.name
        assert copy.is_file(), f"the chart has no files/{path.name}: run make crds"
        assert copy.read_bytes() == path.read_bytes(), f"deploy/helm/sundial/files/{path.name} drifted: run make crds"


def test_chart_metadata_for_artifact_hub() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://")
    assert chart["sources"]
    assert all(source.startswith("https://") for source in chart["sources"])
    assert chart["icon"].startswith("https://")
    assert chart["icon"].endswith("/docs/img/sundial-icon.svg")
    assert (ROOT / "docs" / "img" / "sundial-icon.svg").is_file()
    # One project address: the repository the chart names is the default image's organization's,
    # and the icon is served from that repository.
    owner_repo = chart["home"].removeprefix("https://github.com/")
    owner, _, repo = owner_repo.partition("/")
    assert "your-org" not in owner_repo
    assert owner
    assert repo
    assert chart["sources"][0] == chart["home"]
    assert chart["icon"].startswith(f"https://raw.githubusercontent.com/{owner_repo}/")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"].startswith(f"ghcr.io/{owner}/")


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    table = readme.split("\n## Values\n", 1)[1]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", table, flags=re.M))

    def undocumented(node: Any, path: str) -> list[str]:
        if path in documented:
            return []
        if isinstance(node, dict) and node:
            return [m for key, child in node.items() for m in undocumented(child, f"{path}.{key}" if path else key)]
        return [path]

    missing = undocumented(values, "")
    assert not missing, f"values missing from deploy/helm/sundial/README.md: {missing}"
    stale = sorted(p for p in documented if not _has_path(values, p))
    assert not stale, f"README documents values that do not exist: {stale}"


def _has_path(values: Doc, path: str) -> bool:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_image_user_entrypoints_and_context_match_the_chart() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert re.search(r"^USER 10001:10001$", dockerfile, flags=re.M)
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}\$\{PYTHON_DIGEST:\+@\}\$\{PYTHON_DIGEST\} AS build$", dockerfile,
                     flags=re.M)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = set(pyproject["project"]["scripts"])
    assert {"sundial", "sundial-worker", "sundial-operator", "sundial-dashboard"} <= scripts
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "LICENSE", "constraints.txt", "core/", "operator/", "worker/",
                   "dashboard/", "migrations/"):
        assert f"!{needed}" in ignored, f".dockerignore leaves {needed} out of the build context"
    assert re.search(r"^RUN pip wheel --wheel-dir /wheels -c constraints\.txt \. ", dockerfile, flags=re.M), (
        "the image installs the versions CI tested")
    # Every source root the wheel is built from is copied into the build stage before `pip wheel`.
    copied = set(re.findall(r"^COPY (?!--from)(\S+) \./", dockerfile, flags=re.M))
    build_stage = dockerfile.split(" AS runtime", 1)[0]
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        source_root = package.split("/", 1)[0]
        assert source_root in copied, f"the Dockerfile does not COPY {source_root}/ (wheel package {package})"
        assert build_stage.index(f"COPY {source_root} ") < build_stage.index("pip wheel"), source_root
    # The chart's commands exist in the image.
    for template in (CHART / "templates").glob("*.yaml"):
        for command in re.findall(r'command: \["(sundial[-a-z]*)"', template.read_text()):
            assert command in scripts, f"{template.name} runs {command}, which pyproject.toml does not install"


# ---- lint, schema, renders ---------------------------------------------------------------

EVERYTHING_ON: Doc = {
    "operator": {"replicas": 2},
    "watchNamespaces": ["team-a", "team-b"],
    "bundled": {"postgresql": {"enabled": True}, "redis": {"enabled": True}},
    "webhook": {"enabled": True},
    "runsApi": {"enabled": True},
    "keda": {"enabled": True},
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "crds": {"install": True},
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                      "dashboardFrom": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]},
    "dashboard": {"auth": "proxy", "replicas": 2, "namespaces": ["team-a", "team-b"],
                  "proxy": {"impersonateGroups": ["sundial-admins"]},
                  "ingress": {"enabled": True, "className": "nginx",
                              "tls": [{"secretName": "sundial-tls", "hosts": ["sundial.example.com"]}]}},
}


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_helm_lint_strict(helm: Helm, values: Doc) -> None:
    out = helm.run("lint", "--strict", str(CHART), "-f", helm.values_file(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("values", "messages"),
    [
        ({"worker": {"replicas": -1}}, ["at '/worker/replicas'", "minimum: got -1, want 0"]),
        ({"operator": {"replicas": 0}}, ["at '/operator/replicas'", "minimum: got 0, want 1"]),
        ({"logging": {"level": "LOUD"}}, ["at '/logging/level'", "value must be one of 'DEBUG', 'INFO'"]),
        ({"worker": {"concurrency": 0}}, ["at '/worker/concurrency'", "minimum: got 0, want 1"]),
        ({"worker": {"concurrency": "lots"}}, ["at '/worker/concurrency'", "got string, want integer"]),
        ({"wrker": {"replicas": 3}}, ["additional properties 'wrker' not allowed"]),
        ({"operator": {"replicas": 2, "peering": {"enabled": False}}},
         ["at '/operator/replicas'", "maximum: got 2, want 1"]),
        ({"webhook": {"certificate": {"source": "vault"}}},
         ["at '/webhook/certificate/source'", "value must be one of 'certManager'"]),
        ({"redis": {"prefix": "a:b"}}, ["at '/redis/prefix'"]),
        ({"worker": {"shutdownGraceSeconds": 400}},
         ["worker.shutdownGraceSeconds (400) must be below worker.terminationGracePeriodSeconds (330)"]),
        ({"webhook": {"enabled": True, "certificate": {"source": "secret"}}},
         ["webhook.certificate.source=secret needs webhook.certificate.secretName"]),
        ({"dashboard": {"auth": "foo"}}, ["at '/dashboard/auth'", "value must be one of 'token', 'proxy'"]),
        ({"dashboard": {"auth": "Token"}}, ["at '/dashboard/auth'", "value must be one of 'token', 'proxy'"]),
        ({"dashboard": {"proxy": {"userHeader": "X User"}}}, ["at '/dashboard/proxy/userHeader'"]),
        ({"dashboard": {"readOnly": "yes"}}, ["at '/dashboard/readOnly'", "got string, want boolean"]),
        ({"dashboard": {"namespaces": ["Team_A"]}}, ["at '/dashboard/namespaces/0'"]),
        ({"dashboard": {"ingress": {"enabled": True, "hosts": [{"host": "a.example.com", "paths": [{"path": "x"}]}]}}},
         ["at '/dashboard/ingress/hosts/0/paths/0/path'"]),
        ({"dashboard": {"ingres": {"enabled": True}}}, ["additional properties 'ingres' not allowed"]),
        ({"dashboard": {"namespaces": ["team-a"], "defaultNamespace": "team-b"}},
         ["dashboard.defaultNamespace (team-b) must be one of dashboard.namespaces (team-a)"]),
    ],
    ids=["negative-replicas", "no-operator", "log-level", "zero-concurrency", "string-concurrency", "typo",
         "standalone-ha", "cert-source", "redis-prefix", "shutdown-grace", "secret-without-name",
         "dashboard-auth", "dashboard-auth-case", "dashboard-header", "dashboard-read-only", "dashboard-namespace",
         "dashboard-ingress-path", "dashboard-typo", "dashboard-default-namespace"],
)
def test_bad_values_fail_helm_install_with_a_readable_message(
    helm: Helm, controlplane: ControlPlane, values: Doc, messages: list[str]
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    result = helm.run("install", name, str(CHART), "-n", "default", "-f", helm.values_file(values), "--no-hooks",
                      check=False)
    assert result.returncode != 0, result.stdout
    for message in messages:
        assert message in result.stderr, result.stderr
    assert helm.run("status", name, "-n", "default", check=False).returncode != 0, "a bad release was installed"


def _check_defaults(docs: list[Doc], ns: dict[str, str]) -> None:
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    args = container(operator)["args"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    assert f"--peering={FULLNAME}" in args
    assert not [a for a in args if a.startswith(("--namespace", "--webhook", "--standalone"))]
    assert operator["spec"]["replicas"] == 1
    assert container(operator)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert [p["name"] for p in container(operator)["ports"]] == ["health", "metrics"]
    assert env_of(operator)["SUNDIAL_METRICS_PORT"] == "9090"
    role = one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-operator")
    assert grants(rules_of(role), "sundial.dev", "scheduledjobs") == {"list", "watch", "patch"}
    assert grants(rules_of(role), "kopf.dev", "clusterkopfpeerings") >= {"list", "watch", "create", "get", "patch"}
    # Namespaces' labels for TargetPolicy selectors, read-only; kopf itself never lists them.
    assert grants(rules_of(role), "", "namespaces") == {"get", "list"}
    assert grants(rules_of(role), "sundial.dev", "targetpolicies") == {"get", "list"}
    assert not find(docs, "Role")

    worker = one(docs, "Deployment", f"{FULLNAME}-worker")
    pod = worker["spec"]["template"]["spec"]
    env = env_of(worker)
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 330
    assert env["SUNDIAL_CONCURRENCY"] == "5"
    assert env["SUNDIAL_SHUTDOWN_GRACE_SECONDS"] == "320"
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "sundial-database", "key": "DATABASE_URL"}}
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "sundial-redis", "key": "REDIS_URL"}}
    assert container(worker)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container(worker)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container(worker)["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    worker_sa = one(docs, "ServiceAccount", f"{FULLNAME}-worker")
    assert worker_sa["automountServiceAccountToken"] is False
    assert not [b for b in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding")
                if any(s["name"] == f"{FULLNAME}-worker" for s in b["subjects"])], "the worker got RBAC"
    for owner, spec in pod_templates(docs):
        c = spec["containers"][0]
        assert c["resources"]["requests"], owner["metadata"]["name"]
        assert c["resources"]["limits"], owner["metadata"]["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    for kind in ("ServiceMonitor", "ScaledObject", "ValidatingWebhookConfiguration", "StatefulSet", "NetworkPolicy",
                 "Ingress", "CustomResourceDefinition", "PrometheusRule"):
        assert not find(docs, kind), f"{kind} rendered by default"
    assert {p["metadata"]["name"] for p in find(docs, "PodDisruptionBudget")} == {
        f"{FULLNAME}-operator", f"{FULLNAME}-worker", f"{FULLNAME}-dashboard"}
    _check_dashboard_token_mode(docs, ns)


CA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _dashboard(docs: list[Doc]) -> tuple[Doc, Doc, dict[str, Any]]:
    """The dashboard Deployment, its pod spec and its container's environment."""
    deployment = one(docs, "Deployment", f"{FULLNAME}-dashboard")
    return deployment, deployment["spec"]["template"]["spec"], env_of(deployment)


def _dashboard_bindings(docs: list[Doc]) -> list[Doc]:
    return [b for b in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding")
            if any(s["name"] == f"{FULLNAME}-dashboard" for s in b["subjects"])]


def _check_dashboard_token_mode(docs: list[Doc], ns: dict[str, str]) -> None:
    deployment, pod, env = _dashboard(docs)
    c = container(deployment)
    assert c["command"] == ["sundial-dashboard"]
    assert deployment["spec"]["replicas"] == 1
    # The same Secrets as the workers, and the shared ConfigMap (Redis prefix and shards).
    worker_env = env_of(one(docs, "Deployment", f"{FULLNAME}-worker"))
    assert env["DATABASE_URL"] == worker_env["DATABASE_URL"]
    assert env["REDIS_URL"] == worker_env["REDIS_URL"]
    assert c["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert {k: v for k, v in env.items() if k.startswith("SUNDIAL_DASHBOARD_")} == {
        "SUNDIAL_DASHBOARD_HOST": "0.0.0.0", "SUNDIAL_DASHBOARD_PORT": "8080", "SUNDIAL_DASHBOARD_AUTH": "token",
        "SUNDIAL_DASHBOARD_READ_ONLY": "false", "SUNDIAL_DASHBOARD_NAMESPACES": "",
        "SUNDIAL_DASHBOARD_DEFAULT_NAMESPACE": "default"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # No token of its own, but the cluster CA where the in-cluster loader reads it.
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == f"{FULLNAME}-dashboard"
    assert {"name": "kube-api-ca", "mountPath": CA_MOUNT, "readOnly": True} in c["volumeMounts"]
    assert {"name": "kube-api-ca", "configMap": {"name": "kube-root-ca.crt", "items": [
        {"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    assert one(docs, "ServiceAccount", f"{FULLNAME}-dashboard")["automountServiceAccountToken"] is False
    assert not _dashboard_bindings(docs), "the dashboard got RBAC in token mode"
    assert not find(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-dashboard")
    service = one(docs, "Service", f"{FULLNAME}-dashboard")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert one(docs, "PodDisruptionBudget", f"{FULLNAME}-dashboard")["spec"]["maxUnavailable"] == 1


def _check_dashboard_proxy_mode(docs: list[Doc], ns: dict[str, str]) -> None:
    _, pod, env = _dashboard(docs)
    assert env["SUNDIAL_DASHBOARD_AUTH"] == "proxy"
    assert env["SUNDIAL_DASHBOARD_USER_HEADER"] == "X-Auth-Request-User"
    assert env["SUNDIAL_DASHBOARD_GROUPS_HEADER"] == "X-Forwarded-Groups"
    assert env["SUNDIAL_DASHBOARD_READ_ONLY"] == "true"
    assert env["SUNDIAL_DASHBOARD_NAMESPACES"] == f"{ns['team-a']},{ns['team-b']}"
    assert env["SUNDIAL_DASHBOARD_DEFAULT_NAMESPACE"] == ns["team-a"]
    # Impersonation is done with its own token: mounted, so no separate CA volume.
    assert pod["automountServiceAccountToken"] is True
    assert one(docs, "ServiceAccount", f"{FULLNAME}-dashboard")["automountServiceAccountToken"] is True
    assert "kube-api-ca" not in [v["name"] for v in pod["volumes"]]
    assert "podAntiAffinity" in pod["affinity"]
    role = one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-dashboard")
    assert rules_of(role) == [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]},
        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["sundial-admins"]},
    ]
    binding = one(docs, "ClusterRoleBinding", f"{ns['release']}-{FULLNAME}-dashboard")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-dashboard",
                                    "namespace": ns["release"]}]
    assert [b["metadata"]["name"] for b in _dashboard_bindings(docs)] == [binding["metadata"]["name"]]
    # Only the proxy reaches it.
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-dashboard")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}],
                                          "from": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]}]


def _check_dashboard_ingress(docs: list[Doc], ns: dict[str, str]) -> None:
    ingress = one(docs, "Ingress", f"{FULLNAME}-dashboard")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert spec["tls"] == [{"secretName": "sundial-tls", "hosts": ["sundial.example.com"]}]
    assert [r["host"] for r in spec["rules"]] == ["sundial.example.com", "sundial.internal"]
    backend = {"service": {"name": f"{FULLNAME}-dashboard", "port": {"name": "http"}}}
    assert spec["rules"][0]["http"]["paths"] == [{"path": "/", "pathType": "Prefix", "backend": backend}]
    assert spec["rules"][1]["http"]["paths"] == [{"path": "/sundial", "pathType": "ImplementationSpecific",
                                                  "backend": backend}]
    _check_dashboard_token_mode(docs, ns)


def _check_dashboard_disabled(docs: list[Doc], ns: dict[str, str]) -> None:
    leftovers = [f"{d['kind']} {d['metadata']['name']}" for d in docs
                 if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dashboard"]
    assert not leftovers, leftovers
    for policy in find(docs, "NetworkPolicy"):
        for rule in policy["spec"]["ingress"]:
            assert "dashboard" not in json.dumps(rule), policy["metadata"]["name"]


def _check_ha(docs: list[Doc], ns: dict[str, str]) -> None:
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert f"--peering={FULLNAME}" in container(operator)["args"]
    assert "podAntiAffinity" in operator["spec"]["template"]["spec"]["affinity"]
    assert env_of(operator)["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def _check_standalone(docs: list[Doc], ns: dict[str, str]) -> None:
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert "--standalone" in container(operator)["args"]
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    role = one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-operator")
    assert not grants(rules_of(role), "kopf.dev", "clusterkopfpeerings"), "standalone needs no peering rights"


def _check_namespaced(docs: list[Doc], ns: dict[str, str]) -> None:
    watched = [ns["team-a"], ns["team-b"]]
    # A job created on the page without a namespace lands where the operator reconciles it.
    assert _dashboard(docs)[2]["SUNDIAL_DASHBOARD_DEFAULT_NAMESPACE"] == ns["team-a"]
    assert not _dashboard_bindings(docs), "users and groups are cluster-scoped; token mode has no RBAC at all"
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert [a for a in container(operator)["args"] if a.startswith("--namespace")] == [
        f"--namespace={n}" for n in watched]
    roles = find(docs, "Role", f"{FULLNAME}-operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(watched)
    for role in roles:
        assert grants(rules_of(role), "sundial.dev", "scheduledjobs") == {"list", "watch", "patch"}
        assert grants(rules_of(role), "kopf.dev", "kopfpeerings") >= {"list", "watch", "create", "get", "patch"}
    bindings = find(docs, "RoleBinding", f"{FULLNAME}-operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    cluster = rules_of(one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-operator"))
    assert not grants(cluster, "sundial.dev", "scheduledjobs"), "namespaced mode must not grant jobs cluster-wide"
    assert not grants(cluster, "", "events")
    # kopf's scanning is off: no watch on namespaces; get/list only for TargetPolicy selectors.
    assert grants(cluster, "", "namespaces") == {"get", "list"}
    assert grants(cluster, "sundial.dev", "targetpolicies") == {"get", "list"}


def _check_bundled(docs: list[Doc], ns: dict[str, str]) -> None:
    postgres = one(docs, "StatefulSet", f"{FULLNAME}-postgresql")
    redis = one(docs, "StatefulSet", f"{FULLNAME}-redis")
    assert container(postgres)["image"] == "docker.io/library/postgres:17-alpine"
    assert container(redis)["image"] == "docker.io/library/redis:7.4-alpine"
    secret = one(docs, "Secret", f"{FULLNAME}-bundled")["stringData"]
    assert re.fullmatch(rf"postgresql://sundial:[A-Za-z0-9]{{32}}@{FULLNAME}-postgresql\.{ns['release']}\.svc:5432/"
                        "sundial", secret["DATABASE_URL"])
    assert re.fullmatch(rf"redis://:[A-Za-z0-9]{{32}}@{FULLNAME}-redis\.{ns['release']}\.svc:6379/0",
                        secret["REDIS_URL"])
    worker_env = env_of(one(docs, "Deployment", f"{FULLNAME}-worker"))
    assert worker_env["DATABASE_URL"] == {"secretKeyRef": {"name": f"{FULLNAME}-bundled", "key": "DATABASE_URL"}}
    job = one(docs, "Job", f"{FULLNAME}-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    policies = {p["metadata"]["name"] for p in find(docs, "NetworkPolicy")}
    assert policies == {f"{FULLNAME}-{c}" for c in ("worker", "operator", "dashboard", "postgresql", "redis")}
    redis_from = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")["spec"]["ingress"][0]["from"]
    assert redis_from[1] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    # The dashboard reads history and the queue from the bundled PostgreSQL and Redis.
    for component in ("postgresql", "redis"):
        peers = one(docs, "NetworkPolicy", f"{FULLNAME}-{component}")["spec"]["ingress"][0]["from"][0]
        components = {e["key"]: e["values"] for e in peers["podSelector"]["matchExpressions"]}
        assert "dashboard" in components["app.kubernetes.io/component"], component
    dashboard_env = env_of(one(docs, "Deployment", f"{FULLNAME}-dashboard"))
    assert dashboard_env["REDIS_URL"] == {"secretKeyRef": {"name": f"{FULLNAME}-bundled", "key": "REDIS_URL"}}
    # Without networkPolicy.dashboardFrom anyone in the cluster may reach the dashboard port (token mode).
    assert one(docs, "NetworkPolicy", f"{FULLNAME}-dashboard")["spec"]["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}]}]
    # KEDA reads the bundled Redis with the bundled password.
    trigger = one(docs, "ScaledObject", f"{FULLNAME}-worker")["spec"]["triggers"][0]
    assert trigger["metadata"]["address"] == f"{FULLNAME}-redis.{ns['release']}.svc:6379"
    auth = one(docs, "TriggerAuthentication", f"{FULLNAME}-worker")["spec"]["secretTargetRef"][0]
    assert (auth["name"], auth["key"]) == (f"{FULLNAME}-bundled", "redis-password")


def _check_worker_egress(docs: list[Doc], ns: dict[str, str]) -> None:
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-worker")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    dns, everything_else = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert everything_else["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
                                     {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128", "fe80::/10"]}}]
    for other in ("operator", "dashboard"):
        assert one(docs, "NetworkPolicy", f"{FULLNAME}-{other}")["spec"]["policyTypes"] == ["Ingress"]
    env = env_of(one(docs, "Deployment", f"{FULLNAME}-worker"))
    assert env["SUNDIAL_HTTP_ALLOW_CIDRS"] == "10.20.0.0/16"
    assert env["SUNDIAL_HTTP_DENY_PRIVATE"] == "true"
    denied = env["SUNDIAL_HTTP_DENY_HOSTS"].split(",")
    assert f"{FULLNAME}-operator-metrics.{ns['release']}.svc" in denied
    assert denied[-1] == "vault.internal"
    assert "SUNDIAL_HTTP_DENY_CIDRS" not in env


def _check_webhook_cert_manager(docs: list[Doc], ns: dict[str, str]) -> None:
    config = one(docs, "ValidatingWebhookConfiguration", f"{ns['release']}-{FULLNAME}")
    hook = config["webhooks"][0]
    assert hook["clientConfig"]["service"] == {
        "name": f"{FULLNAME}-webhook", "namespace": ns["release"], "path": "/validate-spec", "port": 443}
    assert hook["failurePolicy"] == "Ignore"
    assert hook["rules"][0]["resources"] == ["scheduledjobs"]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [ns["team-a"]]
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{ns['release']}/{FULLNAME}-webhook"
    certificate = one(docs, "Certificate", f"{FULLNAME}-webhook")
    assert certificate["spec"]["dnsNames"][0] == f"{FULLNAME}-webhook.{ns['release']}.svc"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": f"{FULLNAME}-webhook-ca"}
    args = container(one(docs, "Deployment", f"{FULLNAME}-operator"))["args"]
    assert {"--webhook", "--webhook-port=9443", "--webhook-certfile=/etc/sundial/webhook/tls.crt"} <= set(args)
    cluster = rules_of(one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-operator"))
    assert not grants(cluster, "admissionregistration.k8s.io", "validatingwebhookconfigurations")


def _check_webhook_self_signed(docs: list[Doc], ns: dict[str, str]) -> None:
    assert not find(docs, "ValidatingWebhookConfiguration"), "the operator manages its own configuration"
    args = container(one(docs, "Deployment", f"{FULLNAME}-operator"))["args"]
    assert {"--webhook", "--webhook-host=$(POD_IP)"} <= set(args)
    cluster = rules_of(one(docs, "ClusterRole", f"{ns['release']}-{FULLNAME}-operator"))
    assert grants(cluster, "admissionregistration.k8s.io", "validatingwebhookconfigurations") == {"create", "patch"}
    patch = [r for r in cluster if "validatingwebhookconfigurations" in r["resources"] and "patch" in r["verbs"]]
    assert patch[0]["resourceNames"] == ["sundial.dev"]


def _check_webhook_secret(docs: list[Doc], ns: dict[str, str]) -> None:
    hook = one(docs, "ValidatingWebhookConfiguration", f"{ns['release']}-{FULLNAME}")["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == "Zm9v"
    assert not find(docs, "Certificate")
    volumes = one(docs, "Deployment", f"{FULLNAME}-operator")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "webhook-tls", "secret": {"secretName": "my-webhook-tls"}} in volumes


def _check_runs_api_cert_manager(docs: list[Doc], ns: dict[str, str]) -> None:
    apiservice = one(docs, "APIService", "v1alpha1.runs.sundial.dev")
    assert "caBundle" not in apiservice["spec"], "cert-manager's CA injector fills it in"
    assert apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{ns['release']}/{FULLNAME}-runs-api")
    certificate = one(docs, "Certificate", f"{FULLNAME}-runs-api")
    assert certificate["spec"]["dnsNames"][0] == f"{FULLNAME}-runs-api.{ns['release']}.svc"
    assert certificate["spec"]["secretName"] == f"{FULLNAME}-runs-api-tls"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": f"{FULLNAME}-runs-api-ca"}
    assert one(docs, "Certificate", f"{FULLNAME}-runs-api-ca")["spec"]["isCA"] is True
    assert not [d for d in find(docs, "Secret") if d["metadata"]["name"] == f"{FULLNAME}-runs-api-tls"]
    volumes = one(docs, "Deployment", f"{FULLNAME}-runs-api")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": f"{FULLNAME}-runs-api-tls"}} in volumes


def _check_runs_api_secret(docs: list[Doc], ns: dict[str, str]) -> None:
    assert one(docs, "APIService", "v1alpha1.runs.sundial.dev")["spec"]["caBundle"] == "Zm9v"
    assert not find(docs, "Certificate")
    assert not [d for d in find(docs, "Secret") if "runs-api" in d["metadata"]["name"]]
    volumes = one(docs, "Deployment", f"{FULLNAME}-runs-api")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "my-runs-tls"}} in volumes


def _check_keda(docs: list[Doc], ns: dict[str, str]) -> None:
    scaled = one(docs, "ScaledObject", f"{FULLNAME}-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-worker"
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["stream"] for t in triggers] == ["{sundial:0}:queue", "{sundial:1}:queue"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"workers"}
    assert {t["metadata"]["address"] for t in triggers} == {"redis.example.com:6379"}
    assert {t["authenticationRef"]["name"] for t in triggers} == {f"{FULLNAME}-worker"}
    auth = one(docs, "TriggerAuthentication", f"{FULLNAME}-worker")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "redis-auth", "key": "password"}]
    assert "replicas" not in one(docs, "Deployment", f"{FULLNAME}-worker")["spec"], "KEDA owns the replica count"


def _check_service_monitor(docs: list[Doc], ns: dict[str, str]) -> None:
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    selector = monitor["spec"]["selector"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == ("metrics", "/metrics", True)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"

    def selected(service: Doc) -> bool:
        labels = service["metadata"]["labels"]
        return selector["matchLabels"].items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"])

    scraped = sorted(s["metadata"]["name"] for s in find(docs, "Service") if selected(s))
    assert scraped == [f"{FULLNAME}-operator-metrics", f"{FULLNAME}-worker-metrics"]
    for name in scraped:
        service = one(docs, "Service", name)
        assert service["spec"]["ports"][0]["name"] == "metrics"
        pods = [d for d in find(docs, "Deployment") if service["spec"]["selector"].items()
                <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1
        assert "metrics" in [p["name"] for p in container(pods[0])["ports"]]


def _check_monitoring(docs: list[Doc], ns: dict[str, str]) -> None:
    rule = one(docs, "PrometheusRule", FULLNAME)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    source = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == source["spec"], "the rules render exactly as deploy/monitoring/ has them"
    alerts = [r["annotations"]["summary"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert any("{{ $labels.scheduledjob }}" in summary for summary in alerts), "Prometheus templates left alone"
    dashboard = one(docs, "ConfigMap", f"{FULLNAME}-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Sundial"}
    assert json.loads(dashboard["data"]["sundial.json"]) == json.loads(
        (ROOT / "deploy" / "monitoring" / "grafana-dashboard.json").read_text())


RENDERS: list[tuple[str, Callable[[dict[str, str]], Doc], Callable[[list[Doc], dict[str, str]], None]]] = [
    ("defaults", lambda ns: {}, _check_defaults),
    ("ha", lambda ns: {"operator": {"replicas": 2}}, _check_ha),
    ("standalone", lambda ns: {"operator": {"peering": {"enabled": False}}}, _check_standalone),
    ("namespaced", lambda ns: {"watchNamespaces": [ns["team-a"], ns["team-b"]]}, _check_namespaced),
    ("bundled", lambda ns: {"bundled": {"postgresql": {"enabled": True}, "redis": {"enabled": True}},
                            "keda": {"enabled": True}, "networkPolicy": {"enabled": True, "bundledFrom": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]}},
     _check_bundled),
    ("webhook-cert-manager", lambda ns: {"webhook": {"enabled": True}, "watchNamespaces": [ns["team-a"]]},
     _check_webhook_cert_manager),
    ("webhook-secret", lambda ns: {"webhook": {"enabled": True, "certificate": {
        "source": "secret", "secretName": "my-webhook-tls", "caBundle": "Zm9v"}}}, _check_webhook_secret),
    ("webhook-self-signed", lambda ns: {"webhook": {"enabled": True, "certificate": {"source": "operatorSelfSigned"}}},
     _check_webhook_self_signed),
    ("keda", lambda ns: {"keda": {"enabled": True, "redis": {
        "address": "redis.example.com:6379", "passwordSecret": {"name": "redis-auth", "key": "password"}}},
        "redis": {"shards": 2}}, _check_keda),
    ("service-monitor", lambda ns: {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
     _check_service_monitor),
    ("monitoring", lambda ns: {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                               "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Sundial"}}},
     _check_monitoring),
    ("dashboard-proxy", lambda ns: {
        "dashboard": {"auth": "proxy", "replicas": 2, "readOnly": True, "namespaces": [ns["team-a"], ns["team-b"]],
                      "proxy": {"userHeader": "X-Auth-Request-User", "impersonateGroups": ["sundial-admins"]}},
        "networkPolicy": {"enabled": True,
                          "dashboardFrom": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]}},
     _check_dashboard_proxy_mode),
    ("dashboard-ingress", lambda ns: {"dashboard": {"ingress": {
        "enabled": True, "className": "nginx", "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [{"host": "sundial.example.com", "paths": [{"path": "/"}]},
                  {"host": "sundial.internal", "paths": [{"path": "/sundial", "pathType": "ImplementationSpecific"}]}],
        "tls": [{"secretName": "sundial-tls", "hosts": ["sundial.example.com"]}]}}}, _check_dashboard_ingress),
    ("worker-egress", lambda ns: {"networkPolicy": {"enabled": True}, "worker": {"httpEgress": {
        "allowCidrs": ["10.20.0.0/16"], "denyHosts": ["vault.internal"], "denyPrivate": True}}},
     _check_worker_egress),
    ("runs-api-cert-manager", lambda ns: {"runsApi": {"certificate": {"source": "certManager"}}},
     _check_runs_api_cert_manager),
    ("runs-api-secret", lambda ns: {"runsApi": {"certificate": {
        "source": "secret", "secretName": "my-runs-tls", "caBundle": "Zm9v"}}}, _check_runs_api_secret),
    ("dashboard-disabled", lambda ns: {"dashboard": {"enabled": False}, "networkPolicy": {"enabled": True},
                                       "bundled": {"postgresql": {"enabled": True}}}, _check_dashboard_disabled),
]


@pytest.mark.parametrize(("values", "check"), [(v, c) for _, v, c in RENDERS], ids=[i for i, _, _ in RENDERS])
def test_render_is_accepted_by_the_apiserver(
    helm: Helm, third_party_crds: ControlPlane, render_namespaces: dict[str, str],
    values: Callable[[dict[str, str]], Doc], check: Callable[[list[Doc], dict[str, str]], None],
) -> None:
    namespace = render_namespaces["release"]
    docs = helm.template(values(render_namespaces), namespace)
    check(docs, render_namespaces)
    result = kubectl_apply(third_party_crds, docs, "--dry-run=server", "--server-side", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    accepted = result.stdout.count("serverside-applied (server dry run)")
    assert accepted == len(docs), result.stdout


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "not-kept"])
def test_crds_as_templates_match_deploy_crds_and_are_kept(
    helm: Helm, third_party_crds: ControlPlane, render_namespaces: dict[str, str], keep: bool,
) -> None:
    docs = helm.template({"crds": {"install": True, "keep": keep}}, render_namespaces["release"])
    crds = {d["metadata"]["name"]: d for d in find(docs, "CustomResourceDefinition")}
    files = [doc for path in sorted((ROOT / "deploy" / "crds").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert sorted(crds) == sorted(d["metadata"]["name"] for d in files)
    for source in files:
        rendered = crds[source["metadata"]["name"]]
        assert rendered["spec"] == source["spec"], "the templated CRD is the generated one, unchanged"
        labels = rendered["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels.items() >= source["metadata"].get("labels", {}).items()
        annotations = rendered["metadata"].get("annotations") or {}
        assert (annotations.get("helm.sh/resource-policy") == "keep") is keep
    # The apiserver takes them as an update of the CRDs installed from crds/ (dry run).
    result = kubectl_apply(third_party_crds, list(crds.values()), "--dry-run=server", "--server-side",
                           "--force-conflicts", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not find(helm.template({}, render_namespaces["release"]), "CustomResourceDefinition"), "off by default"


# ---- Pod Security "restricted" ------------------------------------------------------------


def _bare_pod(owner: Doc, spec: Doc, namespace: str) -> Doc:
    """The Pod the owner's controller would create: StatefulSet claims become PVC volumes."""
    spec = copy.deepcopy(spec)
    for claim in owner["spec"].get("volumeClaimTemplates", []) if owner["kind"] == "StatefulSet" else []:
        name = claim["metadata"]["name"]
        spec.setdefault("volumes", []).append(
            {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-{owner['metadata']['name']}-0"}})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{owner['metadata']['name']}-psa", "namespace": namespace}, "spec": spec}


def test_every_pod_passes_the_restricted_pod_security_standard(helm: Helm, controlplane: ControlPlane) -> None:
    namespace = create_namespace(controlplane, "psa")
    controlplane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                         "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/audit=restricted")
    docs = helm.template({**EVERYTHING_ON, "watchNamespaces": [], "keda": {"enabled": False}}, namespace)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "Pod", "ServiceAccount")]
    kinds = sorted({d["kind"] for d in workloads})
    assert kinds == ["Deployment", "Job", "Pod", "ServiceAccount", "StatefulSet"]

    # Controllers: admission only warns about their pod templates...
    applied = kubectl_apply(controlplane, workloads, "--server-side", "-n", namespace)
    assert "PodSecurity" not in applied.stderr, applied.stderr
    # ...so each template also goes in as a bare Pod, where "restricted" is enforced.
    templates = pod_templates(docs)
    assert len(templates) == 9  # operator, worker, launcher, dashboard, runs API, postgresql, redis, migrations,
    # helm test
    for owner, spec in templates:
        pod = _bare_pod(owner, spec, namespace)
        result = controlplane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
        assert result.returncode == 0, f"{owner['kind']} {owner['metadata']['name']}: {result.stderr}"

    # The namespace does enforce: the same pod without its security contexts is refused.
    owner, spec = templates[0]
    insecure = _bare_pod(owner, spec, namespace)
    insecure["spec"].pop("securityContext")
    insecure["spec"]["containers"][0].pop("securityContext")
    refused = controlplane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(insecure), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr


@pytest.mark.parametrize("auth", ["token", "proxy"])
def test_dashboard_pod_passes_the_restricted_pod_security_standard(
    helm: Helm, controlplane: ControlPlane, auth: str
) -> None:
    """Both variants: the kube-root-ca.crt ConfigMap volume (token) and the mounted token (proxy)."""
    namespace = create_namespace(controlplane, f"psa-dashboard-{auth}")
    controlplane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                         "pod-security.kubernetes.io/warn=restricted")
    docs = helm.template({"dashboard": {"auth": auth}}, namespace)
    deployment = one(docs, "Deployment", f"{FULLNAME}-dashboard")
    applied = kubectl_apply(controlplane, [one(docs, "ServiceAccount", f"{FULLNAME}-dashboard"), deployment],
                            "--server-side", "-n", namespace)
    assert "PodSecurity" not in applied.stderr, applied.stderr
    pod = _bare_pod(deployment, deployment["spec"]["template"]["spec"], namespace)
    result = controlplane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode == 0, result.stderr
    c = container(deployment)["securityContext"]
    assert (c["runAsNonRoot"], c["readOnlyRootFilesystem"], c["capabilities"]) == (True, True, {"drop": ["ALL"]})
    assert deployment["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


# ---- a real install and upgrade ------------------------------------------------------------


def test_install_serves_the_crds_and_creates_every_object(
    helm: Helm, controlplane: ControlPlane, release: Release
) -> None:
    status = json.loads(helm.run("status", RELEASE, "-n", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    for crd in ("scheduledjobs.sundial.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        controlplane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    controlplane.kubectl("get", "scheduledjobs", "-n", release.watched[0])

    manifest = [d for d in yaml.safe_load_all(helm.run("get", "manifest", RELEASE, "-n", release.namespace).stdout)
                if d]
    found = controlplane.kubectl("get", "-f", "-", "-o", "name", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": manifest})).stdout.split()
    assert len(found) == len(manifest) >= 15
    kinds = {d["kind"] for d in manifest}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Role", "RoleBinding", "ConfigMap",
            "PodDisruptionBudget", "Service"} <= kinds

    # What to run next: the NOTES.
    assert f"kubectl create secret generic sundial-database -n {release.namespace}" in release.install_output
    assert f"helm test {RELEASE} -n {release.namespace}" in release.install_output
    assert f"kubectl apply -n {release.watched[0]}" in release.install_output
    assert f"kubectl port-forward -n {release.namespace} svc/{FULLNAME}-dashboard 8080:80" in release.install_output
    assert "Sign in with your own Kubernetes bearer token" in release.install_output


def test_proxy_mode_notes_warn_who_may_reach_the_dashboard(proxy_release: Release,
                                                          capped_proxy_release: Release) -> None:
    assert "Only your authenticating proxy may reach it" in proxy_release.install_output
    assert "set networkPolicy.enabled and networkPolicy.dashboardFrom" in proxy_release.install_output
    assert "system:masters included" in proxy_release.install_output
    assert "system:masters included" not in capped_proxy_release.install_output


def test_migration_hook_runs_sundial_migrate_with_the_database_url(helm: Helm, release: Release) -> None:
    hooks = [d for d in yaml.safe_load_all(helm.run("get", "hooks", RELEASE, "-n", release.namespace).stdout) if d]
    job = one(hooks, "Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert int(annotations["helm.sh/hook-weight"]) > int(
        one(hooks, "ServiceAccount", f"{FULLNAME}-migrate")["metadata"]["annotations"]["helm.sh/hook-weight"])
    pod = job["spec"]["template"]["spec"]
    assert container(job)["command"] == ["sundial", "migrate"]
    assert env_of(job)["DATABASE_URL"] == {"secretKeyRef": {"name": "sundial-database", "key": "DATABASE_URL"}}
    assert "envFrom" not in container(job), "nothing of the release exists yet at pre-install"
    assert (pod["restartPolicy"], pod["automountServiceAccountToken"]) == ("Never", False)
    assert pod["serviceAccountName"] == f"{FULLNAME}-migrate"
    assert job["spec"]["backoffLimit"] == 6
    test_pod = one(hooks, "Pod", f"{FULLNAME}-test")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_upgrade_rolls_new_settings(helm: Helm, controlplane: ControlPlane, release: Release) -> None:
    def worker_env() -> dict[str, Any]:
        deployment = json.loads(controlplane.kubectl(
            "get", "deployment", f"{FULLNAME}-worker", "-n", release.namespace, "-o", "json").stdout)
        return env_of(deployment)

    assert worker_env()["SUNDIAL_CONCURRENCY"] == "5"
    helm.run("upgrade", RELEASE, str(CHART), "-n", release.namespace, "--reuse-values", "--no-hooks",
             "--set", "worker.concurrency=9", "--set", "logging.level=DEBUG", "--timeout=90s")
    history = json.loads(helm.run("history", RELEASE, "-n", release.namespace, "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    assert worker_env()["SUNDIAL_CONCURRENCY"] == "9"
    config = json.loads(
        controlplane.kubectl("get", "configmap", FULLNAME, "-n", release.namespace, "-o", "json").stdout)
    assert config["data"]["SUNDIAL_LOG_LEVEL"] == "DEBUG"
    roles = controlplane.kubectl("get", "role", f"{FULLNAME}-operator", "-n", release.watched[1], "-o", "name")
    assert roles.stdout.strip() == f"role.rbac.authorization.k8s.io/{FULLNAME}-operator"


# ---- least privilege -----------------------------------------------------------------------

# (verb and resource as `kubectl auth can-i` takes them, namespace key, allowed?)
# Namespace keys: "watched" (a namespace the operator watches), "release", "other" (unwatched).
NAMESPACED_OPERATOR = [
    ("list", "scheduledjobs.sundial.dev", "watched", True),
    ("watch", "scheduledjobs.sundial.dev", "watched", True),
    ("patch", "scheduledjobs.sundial.dev", "watched", True),
    ("patch", "scheduledjobs.sundial.dev --subresource=status", "watched", True),
    ("update", "scheduledjobs.sundial.dev --subresource=finalizers", "watched", True),
    ("create", "events", "watched", True),
    ("create", "kopfpeerings.kopf.dev", "watched", True),
    ("patch", f"kopfpeerings.kopf.dev/{FULLNAME}", "watched", True),
    ("get", "customresourcedefinitions.apiextensions.k8s.io/scheduledjobs.sundial.dev", None, True),
    ("get", "customresourcedefinitions.apiextensions.k8s.io/kopfpeerings.kopf.dev", None, True),
    ("list", "namespaces", None, True),  # labels, for TargetPolicy namespaceSelector
    ("watch", "namespaces", None, False),  # kopf's scanning is off
    ("list", "targetpolicies.sundial.dev", None, True),
    ("update", "targetpolicies.sundial.dev", None, False),
    ("delete", "targetpolicies.sundial.dev", None, False),
    # never
    ("list", "scheduledjobs.sundial.dev", "other", False),
    ("list", "scheduledjobs.sundial.dev", "release", False),
    ("create", "scheduledjobs.sundial.dev", "watched", False),
    ("update", "scheduledjobs.sundial.dev", "watched", False),
    ("delete", "scheduledjobs.sundial.dev", "watched", False),
    ("create", "events", "other", False),
    ("patch", "kopfpeerings.kopf.dev/someone-else", "watched", False),
    ("delete", "kopfpeerings.kopf.dev", "watched", False),
    ("get", "secrets", "watched", False),
    ("get", "secrets", "release", False),
    ("list", "secrets", "release", False),
    ("get", "configmaps", "release", False),
    ("list", "pods", "watched", False),
    ("create", "pods", "watched", False),
    ("create", "deployments.apps", "release", False),
    ("get", "customresourcedefinitions.apiextensions.k8s.io/certificates.cert-manager.io", None, False),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io/scheduledjobs.sundial.dev", None, False),
    ("update", "customresourcedefinitions.apiextensions.k8s.io/scheduledjobs.sundial.dev", None, False),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None, False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, False),
    ("list", "clusterkopfpeerings.kopf.dev", None, False),
]
CLUSTERWIDE_OPERATOR = [
    ("list", "scheduledjobs.sundial.dev --all-namespaces", None, True),
    ("patch", "scheduledjobs.sundial.dev --subresource=status", "other", True),
    ("create", "events", "other", True),
    ("watch", "clusterkopfpeerings.kopf.dev", None, True),
    ("patch", f"clusterkopfpeerings.kopf.dev/{FULLNAME}", None, True),
    ("get", "customresourcedefinitions.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev", None, True),
    ("patch", "clusterkopfpeerings.kopf.dev/someone-else", None, False),
    ("list", "namespaces", None, True),  # labels, for TargetPolicy namespaceSelector
    ("watch", "namespaces", None, False),  # cluster-wide kopf never watches namespaces
    ("create", "targetpolicies.sundial.dev", None, False),
    ("get", "secrets", "release", False),
    ("list", "secrets --all-namespaces", None, False),
    ("list", "pods --all-namespaces", None, False),
    ("delete", "scheduledjobs.sundial.dev", "other", False),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io/scheduledjobs.sundial.dev", None, False),
]


def _can_i(controlplane: ControlPlane, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    args = ["auth", "can-i", verb, *resource.split(), f"--as={user}"]
    if namespace is not None:
        args += ["-n", namespace]
    result = controlplane.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


def _namespace(release: Release, key: str | None, other: str) -> str | None:
    return {None: None, "watched": release.watched[0] if release.watched else other, "release": release.namespace,
            "other": other}[key]


@pytest.mark.parametrize(("mode", "verb", "resource", "where", "allowed"), [
    *[("namespaced", *row) for row in NAMESPACED_OPERATOR],
    *[("clusterwide", *row) for row in CLUSTERWIDE_OPERATOR],
], ids=[f"{m}:{'yes' if a else 'no'}:{v} {r} {w or ''}".strip() for m, rows in (
    ("namespaced", NAMESPACED_OPERATOR), ("clusterwide", CLUSTERWIDE_OPERATOR)) for v, r, w, a in rows])
def test_operator_has_exactly_what_it_uses(
    controlplane: ControlPlane, release: Release, clusterwide_release: Release,
    mode: str, verb: str, resource: str, where: str | None, allowed: bool,
) -> None:
    subject = release if mode == "namespaced" else clusterwide_release
    namespace = _namespace(subject, where, "default")
    assert _can_i(controlplane, subject.operator_sa, verb, resource, namespace) is allowed


@pytest.mark.parametrize("mode", ["namespaced", "clusterwide"])
def test_worker_can_do_nothing_in_kubernetes(
    controlplane: ControlPlane, release: Release, clusterwide_release: Release, mode: str
) -> None:
    subject = release if mode == "namespaced" else clusterwide_release
    for namespace in {subject.namespace, *subject.watched}:
        listing = controlplane.kubectl("auth", "can-i", "--list", f"--as={subject.worker_sa}", "-n", namespace)
        resources = {line.split()[0] for line in listing.stdout.splitlines()[1:] if line and not line.startswith(" ")}
        # Only what every authenticated user has: asking the API server about itself.
        assert resources <= {"selfsubjectreviews.authentication.k8s.io",
                             "selfsubjectaccessreviews.authorization.k8s.io",
                             "selfsubjectrulesreviews.authorization.k8s.io"}, listing.stdout
        assert not _can_i(controlplane, subject.worker_sa, "get", "scheduledjobs.sundial.dev", namespace)
        assert not _can_i(controlplane, subject.worker_sa, "get", "secrets", namespace)


SELF_REVIEWS = {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                "selfsubjectrulesreviews.authorization.k8s.io"}


def _rights(controlplane: ControlPlane, user: str, namespace: str) -> set[str]:
    listing = controlplane.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace)
    return {line.split()[0] for line in listing.stdout.splitlines()[1:] if line and not line.startswith(" ")}


# What the dashboard may never do itself, in either mode: (verb, resource, namespace key).
DASHBOARD_NEVER = [
    ("get", "scheduledjobs.sundial.dev", "release"),
    ("list", "scheduledjobs.sundial.dev", "other"),
    ("list", "scheduledjobs.sundial.dev --all-namespaces", None),
    ("watch", "scheduledjobs.sundial.dev", "other"),
    ("create", "scheduledjobs.sundial.dev", "other"),
    ("patch", "scheduledjobs.sundial.dev", "other"),
    ("patch", "scheduledjobs.sundial.dev --subresource=status", "other"),
    ("delete", "scheduledjobs.sundial.dev", "other"),
    ("get", "secrets", "release"),
    ("list", "secrets --all-namespaces", None),
    ("list", "pods --all-namespaces", None),
    ("get", "configmaps", "release"),
]
DASHBOARD_NEVER_IDS = [f"{v} {r} {w or ''}".strip() for v, r, w in DASHBOARD_NEVER]


@pytest.mark.parametrize(("verb", "resource", "where"), DASHBOARD_NEVER, ids=DASHBOARD_NEVER_IDS)
@pytest.mark.parametrize("mode", ["token-namespaced", "token-clusterwide", "proxy"])
def test_dashboard_holds_no_rights_over_jobs_in_any_mode(
    controlplane: ControlPlane, release: Release, clusterwide_release: Release, proxy_release: Release,
    mode: str, verb: str, resource: str, where: str | None,
) -> None:
    subject = {"token-namespaced": release, "token-clusterwide": clusterwide_release, "proxy": proxy_release}[mode]
    assert not _can_i(controlplane, subject.dashboard_sa, verb, resource, _namespace(subject, where, "default"))


@pytest.mark.parametrize("mode", ["namespaced", "clusterwide"])
def test_dashboard_in_token_mode_can_do_nothing_in_kubernetes(
    controlplane: ControlPlane, release: Release, clusterwide_release: Release, mode: str
) -> None:
    """It forwards each caller's token: its own ServiceAccount has no rights and no token."""
    subject = release if mode == "namespaced" else clusterwide_release
    for namespace in {subject.namespace, *subject.watched, "default"}:
        assert _rights(controlplane, subject.dashboard_sa, namespace) <= SELF_REVIEWS
    for resource in ("users", "groups", "users/alice", "groups/system:masters", "uids"):
        assert not _can_i(controlplane, subject.dashboard_sa, "impersonate", resource, None), resource
    assert not _can_i(controlplane, subject.dashboard_sa, "impersonate", "serviceaccounts", subject.namespace)
    account = json.loads(controlplane.kubectl(
        "get", "serviceaccount", f"{FULLNAME}-dashboard", "-n", subject.namespace, "-o", "json").stdout)
    assert account["automountServiceAccountToken"] is False
    deployment = json.loads(controlplane.kubectl(
        "get", "deployment", f"{FULLNAME}-dashboard", "-n", subject.namespace, "-o", "json").stdout)
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# (verb, resource, namespace key, allowed?) for the dashboard in proxy mode, any group and capped.
PROXY_DASHBOARD = [
    ("impersonate", "users", None, True),
    ("impersonate", "users/alice", None, True),
    ("impersonate", "groups", None, True),
    ("impersonate", "groups/sundial-viewers", None, True),
    # The documented risk of an uncapped proxy mode (dashboard.proxy.impersonateGroups caps it).
    ("impersonate", "groups/system:masters", None, True),
    # People behind a proxy are never ServiceAccounts: a forged header cannot become one.
    ("impersonate", "serviceaccounts", "release", False),
    ("impersonate", f"serviceaccounts/{FULLNAME}-operator", "release", False),
    ("impersonate", "serviceaccounts", "other", False),
    ("impersonate", "uids", None, False),
    ("impersonate", "userextras.authentication.k8s.io/scopes", None, False),
]
CAPPED_PROXY_DASHBOARD = [
    ("impersonate", "users/alice", None, True),
    ("impersonate", "groups/sundial-admins", None, True),
    ("impersonate", "groups/sundial-viewers", None, True),
    ("impersonate", "groups/system:masters", None, False),
    ("impersonate", "groups/someone-else", None, False),
    ("impersonate", "serviceaccounts", "release", False),
]


@pytest.mark.parametrize(("capped", "verb", "resource", "where", "allowed"), [
    *[(False, *row) for row in PROXY_DASHBOARD],
    *[(True, *row) for row in CAPPED_PROXY_DASHBOARD],
], ids=[f"{m}:{'yes' if a else 'no'}:{v} {r} {w or ''}".strip() for m, rows in (
    ("any-group", PROXY_DASHBOARD), ("capped", CAPPED_PROXY_DASHBOARD)) for v, r, w, a in rows])
def test_dashboard_in_proxy_mode_may_only_impersonate(
    controlplane: ControlPlane, proxy_release: Release, capped_proxy_release: Release,
    capped: bool, verb: str, resource: str, where: str | None, allowed: bool,
) -> None:
    subject = capped_proxy_release if capped else proxy_release
    assert _can_i(controlplane, subject.dashboard_sa, verb, resource, _namespace(subject, where, "default")) is allowed


def test_dashboard_impersonation_through_its_own_token(
    controlplane: ControlPlane, proxy_release: Release, capped_proxy_release: Release, tmp_path: Path
) -> None:
    """What proxy mode does on the wire: the dashboard's ServiceAccount token plus Impersonate-*
    headers reaches exactly what the named user's own RBAC allows, and nothing by itself."""
    jobs = create_namespace(controlplane, "proxy-jobs")
    controlplane.kubectl("create", "role", "sj-reader", "--verb=get,list", "--resource=scheduledjobs.sundial.dev",
                         "-n", jobs)
    controlplane.kubectl("create", "rolebinding", "alice", "--role=sj-reader", "--user=alice", "-n", jobs)
    controlplane.kubectl("create", "rolebinding", "viewers", "--role=sj-reader", "--group=sundial-viewers", "-n", jobs)

    def as_dashboard(subject: Release, *args: str) -> subprocess.CompletedProcess[str]:
        kubeconfig = tmp_path / f"{subject.namespace}.kubeconfig"
        if not kubeconfig.exists():
            _token_kubeconfig(controlplane, subject.namespace, f"{FULLNAME}-dashboard", kubeconfig)
        return subprocess.run([str(controlplane.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}",
                               "get", "scheduledjobs", "-n", jobs, *args],
                              capture_output=True, text=True, timeout=60, check=False)

    itself = as_dashboard(proxy_release)
    assert itself.returncode != 0
    assert f"{proxy_release.dashboard_sa}\" cannot list" in itself.stderr, itself.stderr
    assert as_dashboard(proxy_release, "--as=alice").returncode == 0
    assert as_dashboard(proxy_release, "--as=bob", "--as-group=sundial-viewers").returncode == 0
    bob = as_dashboard(proxy_release, "--as=bob")
    assert '"bob" cannot list' in bob.stderr, bob.stderr
    operator = as_dashboard(proxy_release, f"--as=system:serviceaccount:{proxy_release.namespace}:{FULLNAME}-operator")
    assert "cannot impersonate resource \"serviceaccounts\"" in operator.stderr, operator.stderr

    assert as_dashboard(capped_proxy_release, "--as=bob", "--as-group=sundial-viewers").returncode == 0
    masters = as_dashboard(capped_proxy_release, "--as=mallory", "--as-group=system:masters")
    assert "cannot impersonate resource \"groups\"" in masters.stderr, masters.stderr


def _token_kubeconfig(controlplane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    token = controlplane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(controlplane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError:
        return 0


def _console_script(name: str) -> str:
    script = Path(sys.executable).with_name(name)
    assert script.exists(), f"{name} is not installed next to {sys.executable}"
    return str(script)


def test_operator_under_its_service_account_reconciles_the_examples(
    controlplane: ControlPlane, release: Release, services: Services, tmp_path: Path
) -> None:
    """The real sundial-operator, with the Deployment's own arguments and ConfigMap, talking to
    the API server only with its ServiceAccount's token, reconciles examples/ (a worker, which
    has no kubeconfig at all, offers the targets)."""
    deployment = json.loads(controlplane.kubectl(
        "get", "deployment", f"{FULLNAME}-operator", "-n", release.namespace, "-o", "json").stdout)
    config = json.loads(
        controlplane.kubectl("get", "configmap", FULLNAME, "-n", release.namespace, "-o", "json").stdout)
    health_port, operator_metrics_port = free_port(), free_port()
    args = [f"--liveness=http://127.0.0.1:{health_port}/healthz" if a.startswith("--liveness=") else a
            for a in container(deployment)["args"]]
    assert f"--peering={FULLNAME}" in args
    assert f"--namespace={release.watched[0]}" in args

    base = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG",)
            and not key.startswith("SUNDIAL_")}
    backends = {
        **config["data"],
        "DATABASE_URL": services.postgres.dsn,
        "REDIS_URL": services.redis.url,
        "SUNDIAL_REDIS_PREFIX": f"c{uuid.uuid4().hex[:10]}",
        "PYTHONUNBUFFERED": "1",
    }
    mark_prefix_intact(services.redis.url, backends["SUNDIAL_REDIS_PREFIX"])
    kubeconfig = _token_kubeconfig(controlplane, release.namespace, f"{FULLNAME}-operator", tmp_path / "kubeconfig")
    metrics_port = free_port()
    worker = SundialProcess(
        [_console_script("sundial-worker")],
        {**base, **backends, "SUNDIAL_METRICS_PORT": str(metrics_port), "SUNDIAL_WORKER_ID": "chart-worker",
         "SUNDIAL_LOG_FORMAT": "text"},
        tmp_path / "worker.log",
    ).start()
    operator = operator_process(
        {**base, **backends, "KUBECONFIG": str(kubeconfig), "POD_ID": "sundial-operator-test-0",
         "SUNDIAL_LOG_FORMAT": "text", "SUNDIAL_LOG_LEVEL": "INFO",
         "SUNDIAL_METRICS_PORT": str(operator_metrics_port)},
        tmp_path / "operator.log", *args,
    ).start()
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    namespace = release.watched[0]
    try:
        worker.wait_for_log(r"serving targets", timeout=60)
        operator.wait_for_log(r"Activity 'configure' succeeded", timeout=60)
        # As examples/policies/demo.yaml does for make demo: biz:* is not among a namespace's defaults.
        controlplane.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "sundial.dev/v1alpha1", "kind": "TargetPolicy", "metadata": {"name": namespace},
            "spec": {"namespaces": [namespace], "targets": ["noop", "sleep", "fail", "http", "biz:*"]}}))
        for example in examples:
            controlplane.kubectl("apply", "-n", namespace, "-f", str(example))

        names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in examples]

        def ready_reasons() -> dict[str, str] | None:
            items = json.loads(controlplane.kubectl("get", "sdj", "-n", namespace, "-o", "json").stdout)["items"]
            reasons = {}
            for item in items:
                for condition in (item.get("status") or {}).get("conditions", []):
                    if condition["type"] == "Ready" and condition["status"] == "True":
                        reasons[item["metadata"]["name"]] = condition["reason"]
            return reasons if sorted(reasons) == sorted(names) else None

        reasons = wait_until("every example Ready=True", ready_reasons, timeout=60, interval=0.5)
        assert isinstance(reasons, dict)
        assert reasons["biz-send-reports"] == "Suspended"
        assert {reasons[n] for n in names if n != "biz-send-reports"} == {"Scheduled"}

        # The peering objects the operator created and keeps alive with its narrow rights.
        peering = json.loads(controlplane.kubectl("get", "kopfpeering", FULLNAME, "-n", namespace, "-o", "json").stdout)
        assert "sundial-operator-test-0" in (peering.get("status") or {})
        # The probes and scrapes the chart points at: the operator's kopf endpoint and /metrics,
        # the worker's /healthz, /readyz and /metrics.
        assert _http_status(f"http://127.0.0.1:{health_port}/healthz") == 200
        assert _http_status(f"http://127.0.0.1:{operator_metrics_port}/metrics") == 200
        assert _http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200
        assert _http_status(f"http://127.0.0.1:{metrics_port}/healthz") == 200
        assert _http_status(f"http://127.0.0.1:{metrics_port}/readyz") == 200

        # No finalizer: the objects go at once, and the operator forgets their jobs on the events.
        controlplane.kubectl("delete", "sdj", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    finally:
        operator_code = operator.stop()
        worker.stop()
        controlplane.kubectl("delete", "targetpolicy", namespace, "--ignore-not-found")
    log = operator.log()
    assert operator_code == 0, log[-4000:]
    denied = [line for line in log.splitlines() if re.search(r"forbidden|Not enough permissions", line, re.I)]
    assert not denied, "the operator was refused something:\n" + "\n".join(denied[:10])


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.parametrize("auth", ["token", "proxy"])
def test_dashboard_serves_callers_with_the_charts_settings_and_rights(
    controlplane: ControlPlane, clusterwide_release: Release, proxy_release: Release, services: Services,
    tmp_path: Path, auth: str,
) -> None:
    """The real sundial-dashboard, with the installed Deployment's environment and ConfigMap and
    exactly the credentials the pod would hold (token: the API server and CA only; proxy: its
    ServiceAccount's token), answers each caller with that caller's own rights."""
    subject = clusterwide_release if auth == "token" else proxy_release
    deployment = json.loads(controlplane.kubectl(
        "get", "deployment", f"{FULLNAME}-dashboard", "-n", subject.namespace, "-o", "json").stdout)
    config = json.loads(
        controlplane.kubectl("get", "configmap", FULLNAME, "-n", subject.namespace, "-o", "json").stdout)
    chart_env = {k: v for k, v in env_of(deployment).items() if isinstance(v, str)}
    assert chart_env["SUNDIAL_DASHBOARD_AUTH"] == auth

    jobs = create_namespace(controlplane, f"dash-{auth}")
    controlplane.kubectl("apply", "-n", jobs, "-f", str(ROOT / "examples" / "demo-heartbeat.yaml"))
    controlplane.kubectl("create", "role", "sj-reader", "--verb=get,list", "--resource=scheduledjobs.sundial.dev",
                         "-n", jobs)
    controlplane.kubectl("create", "serviceaccount", "alice", "-n", jobs)
    controlplane.kubectl("create", "rolebinding", "alice", "--role=sj-reader", "--user=alice",
                         f"--serviceaccount={jobs}:alice", "-n", jobs)

    if auth == "token":
        # What the pod has: the API server and its CA, no credentials at all.
        admin = yaml.safe_load(controlplane.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [{"name": "none", "user": {}}],
            "contexts": [{"name": "pod", "context": {"cluster": cluster["name"], "user": "none"}}],
            "current-context": "pod"}))
    else:
        kubeconfig = _token_kubeconfig(controlplane, subject.namespace, f"{FULLNAME}-dashboard",
                                       tmp_path / "kubeconfig")
    port = free_port()
    base = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith("SUNDIAL_")}
    dashboard = SundialProcess([_console_script("sundial-dashboard")], {
        **base, **config["data"], **chart_env,
        "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url, "KUBECONFIG": str(kubeconfig),
        "SUNDIAL_DASHBOARD_HOST": "127.0.0.1", "SUNDIAL_DASHBOARD_PORT": str(port), "PYTHONUNBUFFERED": "1",
    }, tmp_path / "dashboard.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the dashboard's /readyz", lambda: dashboard.running and _http_status(f"{url}/readyz") == 200,
                   timeout=60, interval=0.5)
        assert _http_status(f"{url}/healthz") == 200
        if auth == "token":
            alice = controlplane.kubectl("create", "token", "alice", "-n", jobs, "--duration=1h").stdout.strip()
            as_alice = {"Authorization": f"Bearer {alice}"}
            nobody: dict[str, str] = {}
            as_operator = {"Authorization": "Bearer " + controlplane.kubectl(
                "create", "token", f"{FULLNAME}-dashboard", "-n", subject.namespace, "--duration=1h").stdout.strip()}
        else:
            as_alice = {"X-Forwarded-User": "alice"}
            nobody = {}
            # A forged header naming a ServiceAccount: the dashboard may not impersonate one.
            as_operator = {"X-Forwarded-User": f"system:serviceaccount:{subject.namespace}:{FULLNAME}-operator"}

        status, body = _http(f"{url}/api/jobs?namespace={jobs}", as_alice)
        assert status == 200, body
        assert [job["id"] for job in body] == [f"{jobs}/demo-heartbeat"]
        status, body = _http(f"{url}/api/jobs?namespace={subject.namespace}", as_alice)
        assert (status, body["error"]["reason"]) == (403, "Forbidden"), body
        status, body = _http(f"{url}/api/jobs?namespace={jobs}", nobody)
        assert (status, body["error"]["reason"]) == (401, "Unauthorized"), body
        # token: the dashboard's own token has no rights; proxy: it cannot become a ServiceAccount.
        status, body = _http(f"{url}/api/jobs?namespace={jobs}", as_operator)
        assert status == 403, body
    finally:
        code = dashboard.stop()
    assert code == 0, dashboard.log()[-4000:]


# ---- helm test, GitOps examples, Argo CD health --------------------------------------------


def test_helm_test_pod_checks_the_real_services(helm: Helm, services: Services) -> None:
    pod = one(helm.template({}), "Pod", f"{FULLNAME}-test")
    command = container(pod)["command"]
    assert command[:2] == ["python", "-c"]
    env = {**os.environ, "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url}
    ok = subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, text=True, timeout=60,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    assert "PostgreSQL (migrated) and Redis are reachable" in ok.stdout
    down = subprocess.run([sys.executable, "-c", command[2]], capture_output=True, text=True, timeout=60, check=False,
                          env={**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert down.returncode != 0


def test_gitops_examples_install_this_chart(helm: Helm) -> None:
    gitops = ROOT / "docs" / "gitops"
    application = yaml.safe_load((gitops / "argocd" / "sundial.yaml").read_text())
    source = application["spec"]["source"]
    assert (ROOT / source["path"]).resolve() == CHART.resolve()
    jobs = yaml.safe_load((gitops / "argocd" / "scheduledjobs.yaml").read_text())
    assert (ROOT / jobs["spec"]["source"]["path"] / "demo-heartbeat.yaml").is_file()

    release = yaml.safe_load((gitops / "flux" / "release" / "helmrelease.yaml").read_text())
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"]).resolve() == CHART.resolve()
    kustomizations = list(yaml.safe_load_all((gitops / "flux" / "kustomizations.yaml").read_text()))
    for kustomization in kustomizations:
        assert (ROOT / kustomization["spec"]["path"]).is_dir(), kustomization["spec"]["path"]
    assert kustomizations[1]["spec"]["dependsOn"] == [{"name": kustomizations[0]["metadata"]["name"]}]

    for values in (source["helm"]["valuesObject"], release["spec"]["values"]):
        docs = helm.template(values, "sundial")
        assert one(docs, "Deployment", f"{FULLNAME}-operator")["spec"]["replicas"] == 2


def _lua_runtime() -> Any:
    try:
        return importlib.import_module("lupa.lua51").LuaRuntime(unpack_returned_tuples=True)
    except ImportError as exc:
        unavailable(f"lupa (pip install lupa) runs the Argo CD health check here: {exc}", "library")


def _job(generation: int = 2, suspend: bool = False, status: Doc | None = None) -> Doc:
    obj: Doc = {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
                "metadata": {"name": "j", "generation": generation},
                "spec": {"schedule": "* * * * *", "target": "noop", **({"suspend": True} if suspend else {})}}
    if status is not None:
        obj["status"] = status
    return obj


def _ready(status: str, reason: str, generation: int = 2, message: str = "m") -> Doc:
    return {"observedGeneration": generation, "conditions": [
        {"type": "Ready", "status": status, "reason": reason, "message": message, "observedGeneration": generation}]}


HEALTH_CASES = [
    ("no-status", _job(), "Progressing"),
    ("empty-status", _job(status={}), "Progressing"),
    ("scheduled", _job(status=_ready("True", "Scheduled")), "Healthy"),
    ("stale-generation", _job(generation=3, status=_ready("True", "Scheduled", generation=2)), "Progressing"),
    ("invalid-spec", _job(status=_ready("False", "InvalidSpec")), "Degraded"),
    ("invalid-schedule", _job(status=_ready("False", "InvalidSchedule")), "Degraded"),
    ("unknown-time-zone", _job(status=_ready("False", "UnknownTimeZone")), "Degraded"),
    ("unknown-target", _job(status=_ready("False", "UnknownTarget")), "Degraded"),
    ("fixed-spec-not-yet-observed", _job(generation=3, status=_ready("False", "InvalidSpec", generation=2)),
     "Progressing"),
    ("backend-unavailable", _job(status=_ready("False", "BackendUnavailable")), "Progressing"),
    ("ready-unknown", _job(status=_ready("Unknown", "Reconciling")), "Progressing"),
    ("suspended", _job(suspend=True, status=_ready("True", "Suspended")), "Suspended"),
    ("suspended-before-status", _job(suspend=True), "Suspended"),
    ("suspended-but-broken", _job(suspend=True, status=_ready("False", "InvalidSchedule")), "Degraded"),
]


@pytest.mark.parametrize(("obj", "expected"), [(o, e) for _, o, e in HEALTH_CASES], ids=[i for i, _, _ in HEALTH_CASES])
def test_argocd_health_check(obj: Doc, expected: str) -> None:
    lua = _lua_runtime()
    script = (ROOT / "docs" / "gitops" / "argocd" / "scheduledjob-health.lua").read_text()
    # Argo CD hands the object over as nested tables and runs the script as a chunk.
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script)
    assert result["status"] == expected
    assert result["message"]
    if expected == "Degraded":
        assert obj["status"]["conditions"][0]["reason"] in result["message"]


def test_argocd_cm_embeds_the_health_check_verbatim() -> None:
    argocd = ROOT / "docs" / "gitops" / "argocd"
    config = yaml.safe_load((argocd / "argocd-cm.yaml").read_text())
    embedded = config["data"]["resource.customizations.health.sundial.dev_ScheduledJob"]
    assert embedded == (argocd / "scheduledjob-health.lua").read_text()
    updates = yaml.safe_load(config["data"]["resource.customizations.ignoreResourceUpdates.sundial.dev_ScheduledJob"])
    assert "/status/conditions" not in updates["jsonPointers"], "health must be recomputed on condition changes"


def test_runs_api_renders_an_apiservice_with_delegated_auth(helm: Helm) -> None:
    docs = helm.template({})  # on by default, with a certificate helm makes
    apiservice = one(docs, "APIService", "v1alpha1.runs.sundial.dev")
    service = one(docs, "Service", apiservice["spec"]["service"]["name"])
    assert (apiservice["spec"]["service"]["namespace"], apiservice["spec"]["service"]["port"]) == ("sundial", 443)
    assert service["spec"]["ports"][0]["port"] == 443
    secret = one(docs, "Secret", f"{service['metadata']['name']}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert apiservice["spec"]["caBundle"] == secret["data"]["ca.crt"]
    deployment = one(docs, "Deployment", service["metadata"]["name"])
    assert container(deployment)["command"] == ["sundial-runs-api"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = {(d["kind"], d["metadata"].get("namespace"), d["roleRef"]["name"]) for d in docs
                if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and
                d["subjects"][0].get("name") == account}
    assert bindings == {("ClusterRoleBinding", None, "system:auth-delegator"),
                        ("RoleBinding", "kube-system", "extension-apiserver-authentication-reader")}
    [reader] = [d for d in find(docs, "ClusterRole") if d["rules"][0]["apiGroups"] == ["runs.sundial.dev"]]
    assert reader["rules"][0]["verbs"] == ["get", "list", "watch"]
    assert {label for label in reader["metadata"]["labels"] if "aggregate-to" in label} == {
        f"rbac.authorization.k8s.io/aggregate-to-{role}" for role in ("view", "edit", "admin")}
    assert not find(helm.template(NOT_THE_RUNS_API), "APIService")
    broken = helm.run("template", RELEASE, str(CHART), "-f", helm.values_file(
        {"runsApi": {"enabled": True, "certificate": {"source": "secret"}}}), check=False)
    assert "runsApi.certificate.source=secret needs" in broken.stderr
# ---- worker pools ----------------------------------------------------------------------------


def test_each_worker_pool_is_its_own_deployment_account_and_network_policy(
    helm: Helm, third_party_crds: ControlPlane, render_namespaces: dict[str, str],
) -> None:
    namespace = render_namespaces["release"]
    pools = {"team-a": {"replicas": 2, "secretsNamespace": "team-a", "secrets": {"api-token": "team-a-api-token"},
                        "image": {"repository": "registry.example/team-a-worker", "tag": "1.2"}},
             "batch": {"egressDeny": ["169.254.0.0/16", "10.0.0.0/8"]}}
    docs = helm.template({"workerPools": pools, "networkPolicy": {"enabled": True},
                          "bundled": {"redis": {"enabled": True}}}, namespace)
    team = one(docs, "Deployment", f"{FULLNAME}-worker-team-a")
    assert team["spec"]["replicas"] == 2
    pod = team["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{FULLNAME}-worker-team-a"
    assert pod["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", f"{FULLNAME}-worker-team-a")["automountServiceAccountToken"] is False
    env = env_of(team)
    assert (env["SUNDIAL_WORKER_POOL"], env["SUNDIAL_SECRETS_NAMESPACE"]) == ("team-a", "team-a")
    assert f"{FULLNAME}-dashboard" in env["SUNDIAL_HTTP_DENY_HOSTS"], "the release's own services stay denied"
    assert container(team)["image"] == "registry.example/team-a-worker:1.2"
    [mount] = [m for m in container(team)["volumeMounts"] if m["mountPath"].startswith("/var/run/sundial/secrets/")]
    assert (mount["mountPath"], mount["readOnly"]) == ("/var/run/sundial/secrets/api-token", True)
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": "team-a-api-token"}
    # Each pool's pods only: selectors never overlap the default pool's.
    selectors = [d["spec"]["selector"]["matchLabels"] for d in find(docs, "Deployment") if "worker" in
                 d["metadata"]["name"]]
    assert len({json.dumps(s, sort_keys=True) for s in selectors}) == len(selectors) == 3
    team_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-worker-team-a")
    assert team_policy["spec"]["podSelector"]["matchLabels"] == team["spec"]["selector"]["matchLabels"]
    assert team_policy["spec"]["egress"][1]["to"][0]["ipBlock"]["except"] == [
        "169.254.0.0/16"], "the metadata ranges are denied by default"
    batch_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-worker-batch")
    assert batch_policy["spec"]["egress"][1]["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16", "10.0.0.0/8"]
    redis = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")
    admitted = redis["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][1]["values"]
    assert {"worker-team-a", "worker-batch"} <= set(admitted)
    config = one(docs, "ConfigMap", FULLNAME)["data"]
    assert config["SUNDIAL_POLICY_DEFAULT_TARGETS"] == "noop,sleep,fail,http,sundial:kubernetes-job"
    result = kubectl_apply(third_party_crds, docs, "--dry-run=server", "--server-side", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# (verb, resource, namespace key, allowed?) for the launcher: exactly jobs and reading their pods.
LAUNCHER = [
    *[(verb, "jobs.batch", "watched", True) for verb in ("create", "get", "list", "watch", "delete")],
    ("get", "pods", "watched", True),
    ("list", "pods", "watched", True),
    ("get", "pods/log", "watched", True),
    ("update", "jobs.batch", "watched", False),
    ("patch", "jobs.batch", "watched", False),
    ("create", "pods", "watched", False),
    ("delete", "pods", "watched", False),
    ("create", "cronjobs.batch", "watched", False),
    ("get", "secrets", "watched", False),
    ("get", "scheduledjobs.sundial.dev", "watched", False),
    ("create", "jobs.batch", "release", False),
]


@pytest.mark.parametrize(("verb", "resource", "where", "allowed"), LAUNCHER,
                         ids=[f"{'yes' if a else 'no'}:{v} {r} {w}" for v, r, w, a in LAUNCHER])
def test_launcher_has_exactly_what_it_uses(
    controlplane: ControlPlane, release: Release, verb: str, resource: str, where: str, allowed: bool
) -> None:
    launcher = f"system:serviceaccount:{release.namespace}:{FULLNAME}-launcher"
    for namespace in release.watched if where == "watched" else [release.namespace]:
        assert _can_i(controlplane, launcher, verb, resource, namespace) is allowed
    if allowed:  # and the Python workers, never
        assert not _can_i(controlplane, release.worker_sa, verb, resource, release.watched[0])


def test_clusterwide_launcher_creates_jobs_anywhere_and_nothing_else(
    controlplane: ControlPlane, clusterwide_release: Release
) -> None:
    launcher = f"system:serviceaccount:{clusterwide_release.namespace}:{FULLNAME}-launcher"
    assert _can_i(controlplane, launcher, "create", "jobs.batch", "default")
    assert not _can_i(controlplane, launcher, "list", "secrets --all-namespaces", None)
    assert not _can_i(controlplane, clusterwide_release.worker_sa, "create", "jobs.batch", "default")


# ---- the runs API of a default install, served -------------------------------------------------

RUNS_APISERVICE = "v1alpha1.runs.sundial.dev"


@dataclass
class RunsRelease:
    namespace: str
    secret: Doc
    process: SundialProcess


def _saved_apiservice(controlplane: ControlPlane) -> Doc | None:
    """Another registration of the group (the devstack's runs_api fixture), put aside while the
    chart owns the name and restored after."""
    found = controlplane.kubectl("get", "apiservice", RUNS_APISERVICE, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    saved: Doc = json.loads(found.stdout)
    saved["metadata"] = {"name": RUNS_APISERVICE}
    saved.pop("status", None)
    controlplane.kubectl("delete", "apiservice", RUNS_APISERVICE, "--wait")
    return saved


def _serve_locally(controlplane: ControlPlane, namespace: str) -> None:
    """No kube-proxy and no kubelet here: the Service points at the local process instead."""
    patch = {"spec": {"type": "ExternalName", "externalName": "localhost", "clusterIP": None, "clusterIPs": None,
                      "selector": None, "ipFamilies": None, "ipFamilyPolicy": None, "internalTrafficPolicy": None}}
    controlplane.kubectl("patch", "service", f"{FULLNAME}-runs-api", "-n", namespace, "--type=merge",
                         "-p", json.dumps(patch))


@pytest.fixture(scope="module")
def runs_release(helm: Helm, controlplane: ControlPlane, services: Services,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunsRelease]:
    """A default `helm install` (only the Service port differs: the local process cannot bind 443),
    whose runs API runs here under the chart's ServiceAccount with the certificate helm made."""
    saved = _saved_apiservice(controlplane)
    namespace = create_namespace(controlplane, "sundial-runs")
    port = free_port()
    directory = tmp_path_factory.mktemp("chart-runs-api")
    helm.run("install", RELEASE, str(CHART), "-n", namespace, "-f",
             helm.values_file({"runsApi": {"servicePort": port}}), "--no-hooks", "--timeout=90s")
    process: SundialProcess | None = None
    try:
        secret = json.loads(controlplane.kubectl("get", "secret", f"{FULLNAME}-runs-api-tls", "-n", namespace,
                                                 "-o", "json").stdout)
        for key in ("tls.crt", "tls.key"):
            (directory / key).write_bytes(base64.b64decode(secret["data"][key]))
        _serve_locally(controlplane, namespace)
        kubeconfig = _token_kubeconfig(controlplane, namespace, f"{FULLNAME}-runs-api", directory / "kubeconfig")
        env = {**controlplane.env(), "KUBECONFIG": str(kubeconfig), "DATABASE_URL": services.postgres.dsn,
               "SUNDIAL_RUNS_API_HOST": "127.0.0.1", "SUNDIAL_RUNS_API_PORT": str(port),
               "SUNDIAL_RUNS_API_TLS_CERT_FILE": str(directory / "tls.crt"),
               "SUNDIAL_RUNS_API_TLS_KEY_FILE": str(directory / "tls.key"), "PYTHONUNBUFFERED": "1"}
        process = SundialProcess([_console_script("sundial-runs-api")], env, directory / "runs-api.log").start()
        process.wait_for_log("serving runs.sundial.dev/v1alpha1", timeout=60)
        controlplane.kubectl("wait", "--for=condition=Available", f"apiservice/{RUNS_APISERVICE}", "--timeout=60s")
        yield RunsRelease(namespace, secret, process)
    finally:
        if process is not None:
            process.stop()
        helm.run("uninstall", RELEASE, "-n", namespace, "--no-hooks", check=False)
        if saved is not None:
            kubectl_apply(controlplane, [saved])
            controlplane.kubectl("wait", "--for=condition=Available", f"apiservice/{RUNS_APISERVICE}",
                                 "--timeout=60s")


def test_default_install_serves_run_history_to_a_user_with_only_a_role(
    helm: Helm, controlplane: ControlPlane, runs_release: RunsRelease, services: Services,
    tmp_path: Path,
) -> None:
    apiservice = json.loads(controlplane.kubectl("get", "apiservice", RUNS_APISERVICE, "-o", "json").stdout)
    assert apiservice["spec"]["caBundle"] == runs_release.secret["data"]["ca.crt"]
    team = create_namespace(controlplane, "chart-runs-team")
    job = _scheduled_job(controlplane, team, "nightly")

    async def seed() -> None:
        store = await Store.open(services.postgres.dsn)
        try:
            await _job_with_runs(store, job, 4)
        finally:
            await store.close()

    asyncio.run(seed())
    # Only a Role in the team's namespace (the chart's reader ClusterRole aggregates into `view`
    # too; no aggregation controller runs here).
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "runs", "namespace": team},
            "rules": [{"apiGroups": ["runs.sundial.dev"], "resources": ["scheduledjobruns"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": ["sundial.dev"], "resources": ["scheduledjobs"], "verbs": ["get", "list"]}]}
    kubectl_apply(controlplane, [role])
    controlplane.kubectl("create", "rolebinding", "runs", "-n", team, "--role=runs", "--user=carol")
    carol = _cert_user(controlplane, tmp_path, "carol")
    kubectl = [str(controlplane.bin_dir / "kubectl"), f"--kubeconfig={carol}"]
    table = subprocess.run([*kubectl, "get", "scheduledjobruns", "-n", team], capture_output=True, text=True,
                           timeout=60, check=False)
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == 1 + 4
    assert "Succeeded" in table.stdout
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(carol), "NO_COLOR": "1", "HOME": str(tmp_path)}
    cli = subprocess.run([_console_script("sundial"), "runs", "nightly", "-n", team], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr
    assert len(cli.stdout.splitlines()) == 1 + 4
    assert cli.stderr == ""
    elsewhere = subprocess.run([*kubectl, "get", "scheduledjobruns", "-n", runs_release.namespace],
                               capture_output=True, text=True, timeout=60, check=False)
    assert elsewhere.returncode == 1
    assert "forbidden" in elsewhere.stderr.lower()


def test_upgrade_keeps_the_runs_api_certificate(
    helm: Helm, controlplane: ControlPlane, runs_release: RunsRelease
) -> None:
    namespace = runs_release.namespace
    # The chart's Service back as the chart made it, so helm's server-side apply meets no other owner's value.
    controlplane.kubectl("patch", "service", f"{FULLNAME}-runs-api", "-n", namespace, "--type=merge",
                         "-p", json.dumps({"spec": {"type": "ClusterIP", "externalName": None}}))
    helm.run("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", "--no-hooks",
             "--set", "logging.level=DEBUG", "--timeout=90s")
    secret = json.loads(controlplane.kubectl("get", "secret", f"{FULLNAME}-runs-api-tls", "-n", namespace,
                                             "-o", "json").stdout)
    assert secret["data"] == runs_release.secret["data"], "helm made a new certificate on upgrade"
    apiservice = json.loads(controlplane.kubectl("get", "apiservice", RUNS_APISERVICE, "-o", "json").stdout)
    assert apiservice["spec"]["caBundle"] == secret["data"]["ca.crt"]
    _serve_locally(controlplane, namespace)  # the upgrade put the Service back
    controlplane.kubectl("wait", "--for=condition=Available", f"apiservice/{RUNS_APISERVICE}", "--timeout=60s")
    controlplane.kubectl("get", "scheduledjobruns", "-A")
