"""The run history API on the local control plane: `sundial-runs-api` as a local process,
registered with the kube-apiserver through an APIService, as the chart registers its pod.

The Service is an ExternalName one pointing at `localhost`: with no kube-proxy and no pods,
the kube-apiserver reaches the process on the port the APIService names. The serving
certificate is made for `<service>.<namespace>.svc`, the name the aggregator verifies.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sundial.core.runobjects import GROUP, VERSION
from sundial.devstack.controlplane import ControlPlane, issue_serving_certificate

NAMESPACE: Final = "sundial-system"
SERVICE: Final = "sundial-runs-api"
APISERVICE: Final = f"{VERSION}.{GROUP}"
READY_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class RunsApiLaunch:
    """What starting `sundial-runs-api` takes: its environment, port and the CA that signs it."""

    env: dict[str, str]
    port: int
    ca_pem: bytes

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def prepare(plane: ControlPlane, directory: Path, database_url: str, port: int) -> RunsApiLaunch:
    """A serving certificate and the environment for `sundial-runs-api` on 127.0.0.1:`port`,
    acting (for its SubjectAccessReviews) with the control plane's admin kubeconfig."""
    cert, key, ca_pem = issue_serving_certificate(directory, "runs-api", [f"{SERVICE}.{NAMESPACE}.svc"])
    env = {**plane.env(), "DATABASE_URL": database_url, "SUNDIAL_RUNS_API_HOST": "127.0.0.1",
           "SUNDIAL_RUNS_API_PORT": str(port), "SUNDIAL_RUNS_API_TLS_CERT_FILE": str(cert),
           "SUNDIAL_RUNS_API_TLS_KEY_FILE": str(key)}
    return RunsApiLaunch(env, port, ca_pem)


def manifests(port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"type": "ExternalName", "externalName": "localhost"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
         "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 1000, "versionPriority": 15,
                  "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
                  "caBundle": base64.b64encode(ca_pem).decode()}},
    ]


def wait_healthy(launch: RunsApiLaunch, alive: Any, log: Path) -> None:
    """Poll /healthz until it answers; `alive()` False (the process exited) stops early."""
    context = ssl.create_default_context(cadata=launch.ca_pem.decode())
    context.check_hostname = False
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not alive():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"sundial-runs-api exited; last lines of {log}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{launch.url}/healthz", timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise RuntimeError(f"sundial-runs-api not healthy at {launch.url} after {READY_TIMEOUT:g}s ({last})")


def register(kubectl: list[str], env: dict[str, str], launch: RunsApiLaunch) -> None:
    """Apply the Service and APIService, and wait until the aggregator serves the group."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(launch.port, launch.ca_pem)})
    _run([*kubectl, "apply", "-f", "-"], env, body)
    _run([*kubectl, "wait", "--for=condition=Available", f"apiservice/{APISERVICE}",
          f"--timeout={READY_TIMEOUT:g}s"], env)


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} failed:\n{result.stdout}{result.stderr}")
