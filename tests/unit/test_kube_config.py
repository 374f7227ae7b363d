"""sundial.kube.config chooses the cluster as kubectl does, for the CLI and the dashboard alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sundial.kube.config import in_cluster, load_config
from sundial.kube.errors import KubeError, KubeUnreachable
from sundial.kube.resources import scheduled_jobs_path


def kubeconfig(path: Path, server: str, namespace: str = "team") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": namespace}},
                     {"name": "other", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_explicit_then_kubeconfig_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a", "https://a.example:6443")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}")
    assert load_config().cluster.server == "https://a.example:6443"
    assert load_config().namespace == "team"
    explicit = kubeconfig(tmp_path / "b", "https://b.example:6443")
    assert load_config(str(explicit), "other").cluster.server == "https://b.example:6443"
    with pytest.raises(KubeError, match="does not exist"):
        load_config(str(tmp_path / "nope"))
    with pytest.raises(KubeError):
        load_config(str(explicit), "no-such-context")


def test_in_cluster_with_or_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KubeUnreachable, match="no Kubernetes configuration"):
        load_config()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    (tmp_path / "ca.crt").write_text("")
    config = in_cluster(tmp_path).get()
    assert config is not None
    assert config.user is not None
    assert (config.cluster.server, config.namespace, config.user.token_file) == ("https://[fd00::1]:443", "default",
                                                                                 None)
    (tmp_path / "token").write_text("secret")
    (tmp_path / "namespace").write_text("sundial\n")
    config = in_cluster(tmp_path).get()
    assert config is not None
    assert config.user is not None
    assert (config.namespace, config.user.token_file) == ("sundial", str(tmp_path / "token"))


def test_scheduled_jobs_path() -> None:
    assert scheduled_jobs_path("team") == "/apis/sundial.dev/v1alpha1/namespaces/team/scheduledjobs"
    assert scheduled_jobs_path(None) == "/apis/sundial.dev/v1alpha1/scheduledjobs"
