"""The local control plane serves the real Kubernetes API to the real kubectl."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sundial.devstack.controlplane import ControlPlane

pytestmark = pytest.mark.k8s

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.sundial.dev
spec:
  group: test.sundial.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
"""

WIDGET = """
apiVersion: test.sundial.dev/v1
kind: Widget
metadata: {name: w1, namespace: default}
spec: {size: 3}
"""


def test_kubectl_version_reaches_server(controlplane: ControlPlane) -> None:
    out = json.loads(controlplane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["major"] == "1"
    assert out["serverVersion"]["gitVersion"].startswith("v1.35.")
    assert out["clientVersion"]["gitVersion"].startswith("v1.35.")


def test_kubeconfig_is_self_contained(controlplane: ControlPlane) -> None:
    config = yaml.safe_load(controlplane.kubeconfig.read_text())
    assert config["current-context"] == "sundial"
    assert config["clusters"][0]["cluster"]["server"] == controlplane.server
    assert "certificate-authority-data" in config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    assert {"client-certificate-data", "client-key-data"} <= user.keys()


def test_crd_is_applied_and_served(controlplane: ControlPlane) -> None:
    controlplane.kubectl("apply", "-f", "-", input=CRD)
    controlplane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.sundial.dev", "--timeout=60s"
    )
    # Discovery can lag the Established condition by a moment.
    deadline = time.monotonic() + 30
    while True:
        result = controlplane.kubectl("get", "widgets", "-A", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    controlplane.kubectl("apply", "-f", "-", input=WIDGET)
    widget = json.loads(controlplane.kubectl("get", "widget", "w1", "-n", "default", "-o", "json").stdout)
    assert widget["spec"] == {"size": 3}


def test_serviceaccount_without_rbac_is_denied(controlplane: ControlPlane) -> None:
    sa = "system:serviceaccount:default:nobody"
    result = controlplane.kubectl("auth", "can-i", "list", "pods", "-n", "default", f"--as={sa}", check=False)
    assert result.stdout.strip() == "no", result
    admin = controlplane.kubectl("auth", "can-i", "*", "*", "--all-namespaces")
    assert admin.stdout.strip() == "yes"


def test_admin_token_authenticates(controlplane: ControlPlane) -> None:
    config = yaml.safe_load(controlplane.kubeconfig.read_text())
    context = ssl.create_default_context()
    ca_pem = config["clusters"][0]["cluster"]["certificate-authority-data"]
    context.load_verify_locations(cadata=base64.b64decode(ca_pem).decode())
    request = urllib.request.Request(
        f"{controlplane.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": f"Bearer {controlplane.admin_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        review = json.load(response)
    user = review["status"]["userInfo"]
    assert user["username"] == "admin"
    assert "system:masters" in user["groups"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_cli_up_down_leaves_no_processes(controlplane: ControlPlane, tmp_path: Path) -> None:
    env = {**os.environ, "SUNDIAL_CONTROLPLANE_BIN": str(controlplane.bin_dir)}
    cli = [sys.executable, "-m", "sundial.devstack.controlplane"]
    up = subprocess.run(
        [*cli, "up", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    line = up.stdout.strip().splitlines()[-1]
    assert line == f"KUBECONFIG={tmp_path / 'kubeconfig'}"
    state = json.loads((tmp_path / "controlplane.json").read_text())
    pids = list(state["pids"].values())
    try:
        assert all(_alive(pid) for pid in pids)
        got = subprocess.run(
            [str(controlplane.bin_dir / "kubectl"), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            env={**env, "KUBECONFIG": line.split("=", 1)[1]},
            timeout=60,
            check=False,
        )
        assert got.stdout.strip() == "ok", got.stderr
    finally:
        down = subprocess.run(
            [*cli, "down", "--dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        for pid in pids:  # never leak processes, even when an assertion above failed
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids)
