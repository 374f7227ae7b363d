"""kopf's connection to the API server, from the configuration every Sundial client uses.

`sundial.kube.config` chooses the cluster as kubectl does (--kubeconfig, KUBECONFIG,
~/.kube/config, then the pod's service account); the operator's own calls (`sundial.kube.api`)
use that choice, and kopf's watches and patches get the same one here rather than through
kopf's own kubeconfig reader, which looks in another order and at fewer fields.
"""

from __future__ import annotations

from pathlib import Path

import kopf
from lightkube import ConfigError, SingleConfig
from lightkube.config.models import User

from sundial.kube.errors import KubeError


def connection_info(config: SingleConfig) -> kopf.ConnectionInfo:
    """The selected context as kopf's credentials. kopf calls its login again when the API
    server answers 401, so a rotated service-account token file is read afresh then."""
    cluster, user = config.cluster, config.user or User()
    if user.exec is not None or user.auth_provider is not None:
        # kopf has no credential plugins: the operator runs with a token or a certificate.
        raise KubeError(f"kubeconfig context {config.context_name}: the operator needs a token or a client "
                        "certificate, not an exec or auth-provider plugin")
    token = user.token
    if token is None and user.token_file:
        token = _file(config, user.token_file).read_text().strip()
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=_path(config, cluster.certificate_auth),
        ca_data=cluster.certificate_auth_data,
        insecure=cluster.insecure or None,
        username=user.username,
        password=user.password,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=_path(config, user.client_cert),
        certificate_data=user.client_cert_data,
        private_key_path=_path(config, user.client_key),
        private_key_data=user.client_key_data,
        default_namespace=config.namespace,
    )


def _path(config: SingleConfig, name: str | None) -> str | None:
    return None if name is None else str(_file(config, name))


def _file(config: SingleConfig, name: str) -> Path:
    try:
        return Path(config.abs_file(name))
    except ConfigError as exc:
        raise KubeError(f"kubeconfig context {config.context_name}: {exc}") from exc
