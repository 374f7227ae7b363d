"""kopf logs in with the cluster sundial.kube.config chose, as the operator's own client does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sundial.kube.config import in_cluster, load_config
from sundial.kube.errors import KubeError, KubeUnreachable
from sundial.operator.login import connection_info


def kubeconfig(path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://api.example:6443", **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "team"}}],
    }))
    return path


def test_client_certificate_files_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"client-certificate": "certs/me.crt", "client-key": "certs/me.key"},
                      {"certificate-authority": "certs/ca.crt"})
    info = connection_info(load_config(str(path)))
    assert info.server == "https://api.example:6443"
    assert info.ca_path == str(tmp_path / "certs" / "ca.crt")
    assert info.certificate_path == str(tmp_path / "certs" / "me.crt")
    assert info.private_key_path == str(tmp_path / "certs" / "me.key")
    assert info.token is None
    assert info.default_namespace == "team"


def test_inline_data_and_token(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "s3cret", "client-certificate-data": "Q0VSVA=="},
                      {"certificate-authority-data": "Q0E=", "insecure-skip-tls-verify": False})
    info = connection_info(load_config(str(path)))
    assert (info.token, info.scheme) == ("s3cret", "Bearer")
    assert info.ca_data == "Q0E="
    assert info.certificate_data == "Q0VSVA=="
    assert info.insecure is None


def test_service_account_token_is_read_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(KubeUnreachable):
        in_cluster(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    (tmp_path / "token").write_text("rotated-token\n")
    config = in_cluster(tmp_path).get()
    assert config is not None
    info = connection_info(config)
    assert info.server == "https://10.0.0.1:443"
    assert info.token == "rotated-token"
    assert info.ca_path == str(tmp_path / "ca.crt")


def test_credential_plugins_are_refused_with_a_reason(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                      "command": "aws"}})
    with pytest.raises(KubeError, match="token or a client certificate"):
        connection_info(load_config(str(path)))
