"""Which cluster, as kubectl chooses: --kubeconfig, else KUBECONFIG, else ~/.kube/config, else
the pod's own environment (KUBERNETES_SERVICE_HOST, the mounted CA, and the token when there is
one: the dashboard in token mode mounts only the CA, and forwards each caller's token)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from lightkube import ConfigError, KubeConfig, SingleConfig
from lightkube.config.models import Cluster, User

from sundial.kube.errors import KubeError, KubeUnreachable

DEFAULT_KUBECONFIG: Final = "~/.kube/config"
DEFAULT_NAMESPACE: Final = "default"
SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def load_config(kubeconfig: str | None = None, context: str | None = None) -> SingleConfig:
    """The selected context. A file named explicitly must exist; an implicit one may not."""
    if kubeconfig:
        if not Path(kubeconfig).expanduser().is_file():
            raise KubeError(f"kubeconfig {kubeconfig} does not exist")
        return _select(_read(Path(kubeconfig).expanduser()), context)
    for candidate in implicit_kubeconfigs():
        if candidate.is_file():
            return _select(_read(candidate), context)
    return _select(in_cluster(), context)


def implicit_kubeconfigs() -> list[Path]:
    # KUBECONFIG may list several files; kubectl merges them, we take the first that exists,
    # which is where kubectl finds the current context in the usual single-file case.
    listed = os.environ.get("KUBECONFIG", "")
    if listed:
        return [Path(part).expanduser() for part in listed.split(os.pathsep) if part]
    return [Path(DEFAULT_KUBECONFIG).expanduser()]


def in_cluster(account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise KubeUnreachable(
            "no Kubernetes configuration: no --kubeconfig, KUBECONFIG, ~/.kube/config or in-cluster service account"
        )
    host = f"[{host}]" if ":" in host else host
    token_file = account_dir / "token"
    namespace_file = account_dir / "namespace"
    return KubeConfig.from_one(
        cluster=Cluster(server=f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}",
                        certificate_auth=str(account_dir / "ca.crt")),
        user=User(token_file=str(token_file)) if token_file.is_file() else User(),
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else DEFAULT_NAMESPACE,
    )


def _read(path: Path) -> KubeConfig:
    try:
        return KubeConfig.from_file(path)
    except (ConfigError, OSError, ValueError) as exc:
        raise KubeError(f"kubeconfig {path}: {exc}") from exc


def _select(config: KubeConfig, context: str | None) -> SingleConfig:
    try:
        selected = config.get(context)
    except ConfigError as exc:
        raise KubeError(str(exc)) from exc
    if selected is None:
        raise KubeUnreachable("the kubeconfig has no current context: pass --context")
    return selected
