"""A local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) for tests
and the demo.

This is the envtest approach plus the controllers: etcd, kube-apiserver and the Job, CronJob,
namespace and garbage-collector controllers run, but no kubelet and no container runtime, so
objects are stored, served, owned and deleted, and no pod ever runs (tests move pods to
Succeeded or Failed through the status subresource). The binaries come from
``tools/controlplane/build.sh`` (built from Go modules into a cache outside the repository).

In-process use::

    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", "crd.yaml")

Detached use (``make demo``)::

    python -m sundial.devstack.controlplane up --dir .demo/k8s     # prints KUBECONFIG=...
    python -m sundial.devstack.controlplane down --dir .demo/k8s
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import datetime
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ControlPlane", "ControlPlaneError", "controlplane_bin_dir", "find_repo_root", "issue_client_certificate",
           "issue_serving_certificate", "main"]

BUILD_SCRIPT = Path("tools/controlplane/build.sh")
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
# The controllers Sundial's tests and demo lean on: Jobs make pods and report Complete/Failed,
# the CronJob controller is the peer in the side-by-side benchmark, `kubectl delete namespace`
# finishes, owner references garbage-collect, finished Jobs' TTLs expire. Not `*`: without a
# scheduler or kubelet, Deployments' ReplicaSets and pods would only pile up Pending.
CONTROLLERS = (
    "job-controller", "cronjob-controller", "namespace-controller", "garbage-collector-controller",
    "ttl-after-finished-controller",
)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"
STATE_FILE = "controlplane.json"
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used."""


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def find_repo_root(start: Path | None = None) -> Path:
    """The repository root: the nearest parent of ``start`` (or of this file, then of the
    working directory) that holds ``tools/controlplane/build.sh``."""
    candidates = [start] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in candidates:
        for directory in (origin, *origin.parents):
            if (directory / BUILD_SCRIPT).is_file():
                return directory
    raise ControlPlaneError(
        f"cannot find {BUILD_SCRIPT} above {', '.join(str(c) for c in candidates)}; "
        "run from the Sundial repository or set SUNDIAL_CONTROLPLANE_BIN to a directory "
        f"holding {', '.join(REQUIRED_BINARIES)}"
    )


def _check_bin_dir(bin_dir: Path, origin: str) -> Path:
    missing = [name for name in REQUIRED_BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{origin}: {bin_dir} lacks executable {', '.join(missing)}")
    return bin_dir.resolve()


@functools.cache
def controlplane_bin_dir() -> Path:
    """The directory holding etcd, kube-apiserver, kubectl (and helm).

    ``SUNDIAL_CONTROLPLANE_BIN`` names it directly; otherwise ``tools/controlplane/build.sh``
    builds or finds the binaries (its progress is forwarded to stderr). Cached per process.
    """
    override = os.environ.get("SUNDIAL_CONTROLPLANE_BIN")
    if override:
        return _check_bin_dir(Path(override), "SUNDIAL_CONTROLPLANE_BIN")
    script = find_repo_root() / BUILD_SCRIPT
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as exc:
        raise ControlPlaneError(f"cannot run {script}: {exc}") from exc
    assert proc.stderr is not None
    assert proc.stdout is not None
    with proc:
        for line in proc.stderr:  # stream the (possibly minutes long) build log
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
        stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{script} failed with exit code {proc.returncode}; last lines of its log:\n" + "\n".join(tail)
        )
    lines = stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{script} printed no directory")
    return _check_bin_dir(Path(lines[-1]), str(script))


# --------------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A certificate: self-signed CA when ``issuer`` is None, otherwise a leaf for ``usage``."""
    now = _now()
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    is_ca = issuer is None
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=is_ca,
            crl_sign=is_ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if not is_ca and usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path.resolve()


def _controller_manager_kubeconfig(pki_dir: Path, path: Path, server: str) -> Path:
    """A kubeconfig for kube-controller-manager: a client certificate from the plane's CA."""
    ca_pem = (pki_dir / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    cert = _issue(
        x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, MASTERS_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, CONTROLLER_MANAGER_USER),
        ]),
        key, issuer=ca, issuer_key=ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    cert_path = _write(pki_dir / "controller-manager.crt", _cert_pem(cert), 0o644)
    key_path = _write(pki_dir / "controller-manager.key", _key_pem(key))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sundial", "cluster": {"server": server,
                                                      "certificate-authority": str(pki_dir / "ca.crt")}}],
        "users": [{"name": "controller-manager",
                   "user": {"client-certificate": str(cert_path), "client-key": str(key_path)}}],
        "contexts": [{"name": "sundial", "context": {"cluster": "sundial", "user": "controller-manager"}}],
        "current-context": "sundial",
    }
    return _write(path, yaml.safe_dump(config, sort_keys=False))


class _Pki:
    """CA, apiserver serving cert, service-account key, admin client cert and token file."""

    def __init__(self, directory: Path, admin_token: str) -> None:
        ca_key = _new_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sundial-controlplane-ca")])
        ca = _issue(ca_name, ca_key, issuer=None, issuer_key=ca_key)

        serving_key = _new_key()
        serving = _issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            serving_key,
            issuer=ca,
            issuer_key=ca_key,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ],
        )

        admin_key = _new_key()
        admin = _issue(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, MASTERS_GROUP),
                    x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_USER),
                ]
            ),
            admin_key,
            issuer=ca,
            issuer_key=ca_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

        self.ca_pem = _cert_pem(ca)
        self.admin_cert_pem = _cert_pem(admin)
        self.admin_key_pem = _key_pem(admin_key)
        self.ca_cert = _write(directory / "ca.crt", self.ca_pem, 0o644)
        _write(directory / "ca.key", _key_pem(ca_key))
        self.serving_cert = _write(directory / "apiserver.crt", _cert_pem(serving), 0o644)
        self.serving_key = _write(directory / "apiserver.key", _key_pem(serving_key))
        # kube-apiserver accepts the private key as --service-account-key-file too.
        self.sa_key = _write(directory / "sa-signer.key", _key_pem(_new_key()))
        self.admin_cert = _write(directory / "admin.crt", self.admin_cert_pem, 0o644)
        self.admin_key = _write(directory / "admin.key", self.admin_key_pem)
        self.token_file = _write(
            directory / "tokens.csv", f'{admin_token},{ADMIN_USER},{ADMIN_USER},"{MASTERS_GROUP}"\n'
        )


class _FrontProxyPki:
    """The front proxy's own CA and the client certificate the kube-apiserver presents to
    aggregated API servers (APIServices), as kubeadm makes them: a CA apart from the cluster's,
    so that no ordinary client certificate can pose as the proxy."""

    CLIENT_NAME = "front-proxy-client"

    def __init__(self, directory: Path) -> None:
        ca_key = _new_key()
        ca = _issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sundial-front-proxy-ca")]), ca_key,
                    issuer=None, issuer_key=ca_key)
        client_key = _new_key()
        client = _issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.CLIENT_NAME)]), client_key,
                        issuer=ca, issuer_key=ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        self.ca_cert = _write(directory / "front-proxy-ca.crt", _cert_pem(ca), 0o644)
        self.client_cert = _write(directory / "front-proxy-client.crt", _cert_pem(client), 0o644)
        self.client_key = _write(directory / "front-proxy-client.key", _key_pem(client_key))

    def apiserver_flags(self) -> list[str]:
        """Serve aggregated APIs. No --enable-aggregator-routing: it routes to a Service's
        endpoints, and Endpoints refuse loopback addresses, while the only addresses here are
        loopback ones; an ExternalName Service (`localhost`) reaches a local process instead."""
        return [
            f"--requestheader-client-ca-file={self.ca_cert}",
            f"--requestheader-allowed-names={self.CLIENT_NAME}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={self.client_cert}",
            f"--proxy-client-key-file={self.client_key}",
        ]


def issue_serving_certificate(directory: Path, name: str, dns_names: list[str]) -> tuple[Path, Path, bytes]:
    """A self-signed serving certificate for `dns_names` (and 127.0.0.1): (cert file, key file,
    the PEM to trust, e.g. an APIService's caBundle)."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    ca = _issue(subject, key, issuer=None, issuer_key=key)
    leaf_key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = _issue(subject, leaf_key, issuer=ca, issuer_key=key, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)
    cert = _write(directory / f"{name}.crt", _cert_pem(leaf) + _cert_pem(ca), 0o644)
    return cert, _write(directory / f"{name}.key", _key_pem(leaf_key)), _cert_pem(ca)


def issue_client_certificate(pki_dir: Path, user: str, groups: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `user` in `groups`, signed by the cluster CA in `pki_dir`."""
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                         x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = _issue(subject, key, issuer=ca, issuer_key=ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return _cert_pem(cert), _key_pem(key)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, e.g. under a PID 1 that does not reap, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _pid_alive(pgid)


def _kill_group(pgid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process group ``pgid``, then SIGKILL it after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.1)
            else:
                time.sleep(0.1)
            if (proc is None or proc.poll() is not None) and not _group_alive(pgid):
                return
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


class _Process:
    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log: IO[bytes] = log_path.open("ab")
        try:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills the whole group
                close_fds=True,
            )
        except OSError as exc:
            raise ControlPlaneError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        finally:
            log.close()
        self.pid = self.popen.pid

    def failed(self) -> str | None:
        code = self.popen.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{_tail(self.log_path)}"

    def stop(self, timeout: float) -> None:
        _kill_group(self.pid, self.popen, timeout)


# --------------------------------------------------------------------------------------------
# ControlPlane
# --------------------------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, with an admin kubeconfig.

    ``work_dir`` holds the PKI, etcd's data, the process logs and the kubeconfig; when None a
    temporary directory is made and removed again by :meth:`stop` (unless ``keep_work_dir``).
    """

    def __init__(
        self,
        work_dir: Path | str | None = None,
        *,
        bin_dir: Path | str | None = None,
        start_timeout: float | None = None,
        stop_timeout: float = 10.0,
        keep_work_dir: bool = False,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        self._requested_dir = Path(work_dir) if work_dir is not None else None
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.start_timeout = (
            start_timeout
            if start_timeout is not None
            else float(os.environ.get("SUNDIAL_CONTROLPLANE_START_TIMEOUT", "90"))
        )
        self.stop_timeout = stop_timeout
        self.keep_work_dir = keep_work_dir
        self.apiserver_args = tuple(apiserver_args)  # extra flags, e.g. a benchmark's audit log
        self._work_dir: Path | None = None
        self._owns_work_dir = False
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._controller_manager: _Process | None = None
        self._detached = False
        self._kubeconfig: Path | None = None
        self.server = ""
        self.controller_manager_url = ""
        self.etcd_url = ""
        self.admin_token = ""
        self.front_proxy: _FrontProxyPki | None = None

    # -- public properties ----------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise ControlPlaneError("control plane not started")
        return self._work_dir

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is None:
            raise ControlPlaneError("control plane not started")
        return self._kubeconfig

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = controlplane_bin_dir()
        return self._bin_dir

    @property
    def running(self) -> bool:
        return self._apiserver is not None and self._apiserver.popen.poll() is None

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in (self._etcd, self._apiserver, self._controller_manager) if p is not None}

    def env(self) -> dict[str, str]:
        """A copy of ``os.environ`` pointing kubectl/helm/kopf at this control plane."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._apiserver is not None:
            raise ControlPlaneError("control plane already started")
        bin_dir = _check_bin_dir(self.bin_dir, "bin_dir")
        if self._requested_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="sundial-controlplane-")).resolve()
            self._owns_work_dir = True
        else:
            self._requested_dir.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._requested_dir.resolve()
        atexit.register(self._atexit)
        try:
            self._start(bin_dir, self._work_dir)
        except BaseException:
            self.stop()
            raise

    def _start(self, bin_dir: Path, work: Path) -> None:
        pki_dir = work / "pki"
        etcd_data = work / "etcd-data"
        shutil.rmtree(etcd_data, ignore_errors=True)  # a fresh cluster every start
        self.admin_token = secrets.token_hex(24)
        pki = _Pki(pki_dir, self.admin_token)
        self.front_proxy = _FrontProxyPki(pki_dir)

        etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._etcd = _Process(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=sundial",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sundial={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            work / "etcd.log",
        )
        self._wait_ready(self._etcd, f"{self.etcd_url}/health", None)

        self.server = f"https://127.0.0.1:{api_port}"
        self._apiserver = _Process(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={pki_dir}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--secure-port={api_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.sa_key}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={pki.token_file}",
                *self.front_proxy.apiserver_flags(),
                *self.apiserver_args,
            ],
            work / "kube-apiserver.log",
        )
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._wait_ready(self._apiserver, f"{self.server}/readyz", context)
        self._kubeconfig = self._write_kubeconfig(work / "kubeconfig", pki)
        self._controller_manager = self._start_controller_manager(bin_dir, work, pki_dir)

    def _start_controller_manager(self, bin_dir: Path, work: Path, pki_dir: Path) -> _Process:
        """kube-controller-manager with its own client certificate (in system:masters: with
        --use-service-account-credentials=false every controller acts as this one user)."""
        kubeconfig = _controller_manager_kubeconfig(pki_dir, work / "controller-manager.kubeconfig", self.server)
        port = _free_port()
        process = _Process(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={work / 'controller-manager-certs'}",
                f"--kube-api-qps={os.environ.get('SUNDIAL_CONTROLLER_MANAGER_QPS', '20')}",
                f"--kube-api-burst={os.environ.get('SUNDIAL_CONTROLLER_MANAGER_BURST', '30')}",
            ],
            work / "kube-controller-manager.log",
        )
        # Its serving certificate is self-signed; /healthz is readable by anyone.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self._wait_ready(process, f"https://127.0.0.1:{port}/healthz", insecure)
        self.controller_manager_url = f"https://127.0.0.1:{port}"  # /metrics with the admin token
        return process

    def _wait_ready(self, process: _Process, url: str, context: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        while True:
            failure = process.failed()
            if failure is not None:
                raise ControlPlaneError(failure)
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                body = exc.read().decode(errors="replace").splitlines()
                failing = [line for line in body if line.startswith("[-]")] or body[-5:]
                last = f"HTTP {exc.code}: " + "; ".join(failing)
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{process.name} not ready at {url} after {self.start_timeout:.0f}s ({last}); "
                    f"last lines of {process.log_path}:\n{_tail(process.log_path)}"
                )
            time.sleep(0.25)

    def _write_kubeconfig(self, path: Path, pki: _Pki) -> Path:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sundial",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(pki.ca_pem)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(pki.admin_cert_pem),
                        "client-key-data": b64(pki.admin_key_pem),
                    },
                },
                {"name": "admin-token", "user": {"token": self.admin_token}},
            ],
            "contexts": [
                {
                    "name": "sundial",
                    "context": {"cluster": "sundial", "user": "admin", "namespace": "default"},
                },
                {
                    "name": "sundial-token",
                    "context": {"cluster": "sundial", "user": "admin-token", "namespace": "default"},
                },
            ],
            "current-context": "sundial",
            "preferences": {},
        }
        return _write(path, yaml.safe_dump(config, sort_keys=False))

    def stop(self) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd (SIGTERM, SIGKILL after
        ``stop_timeout``)."""
        atexit.unregister(self._atexit)
        for process in (self._controller_manager, self._apiserver, self._etcd):
            if process is not None:
                process.stop(self.stop_timeout)
        self._controller_manager = self._apiserver = self._etcd = None
        if self._owns_work_dir and not self.keep_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._kubeconfig = None

    def detach(self) -> dict[str, Any]:
        """Leave the processes running after this Python process exits; returns their state."""
        if self._apiserver is None or self._etcd is None:
            raise ControlPlaneError("control plane not started")
        atexit.unregister(self._atexit)
        self._detached = True
        return {
            "pids": self.pids,
            "server": self.server,
            "etcd_url": self.etcd_url,
            "kubeconfig": str(self.kubeconfig),
            "admin_token": self.admin_token,
            "bin_dir": str(self.bin_dir),
        }

    def _atexit(self) -> None:
        if not self._detached:
            self.stop()

    # -- helpers --------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane (admin). With ``check`` a non-zero
        exit raises :class:`ControlPlaneError` carrying kubectl's output."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.work_dir / 'kube-cache'}",
            *args,
        ]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result


# --------------------------------------------------------------------------------------------
# CLI: python -m sundial.devstack.controlplane up|down --dir DIR
# --------------------------------------------------------------------------------------------


def _is_ours(pid: int, name: str) -> bool:
    """``pid`` is alive and still runs ``name`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return True
    return Path(argv0).name == name


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _cmd_up(directory: Path) -> int:
    directory = directory.resolve()
    state = _read_state(directory)
    if state is not None and all(_is_ours(pid, name) for name, pid in state["pids"].items()):
        print(f"control plane already running at {state['server']}", file=sys.stderr)
        print(f"KUBECONFIG={state['kubeconfig']}")
        return 0
    if state is not None:
        _cmd_down(directory, quiet=True)
    cp = ControlPlane(directory)
    cp.start()
    state = cp.detach()
    _write(directory / STATE_FILE, json.dumps(state, indent=2) + "\n")
    print(f"control plane up at {cp.server} (logs in {directory})", file=sys.stderr)
    print(f"KUBECONFIG={cp.kubeconfig}")
    return 0


def _cmd_down(directory: Path, *, quiet: bool = False, timeout: float = 10.0) -> int:
    directory = directory.resolve()
    state = _read_state(directory)
    if state is None:
        if not quiet:
            print(f"no control plane state in {directory}", file=sys.stderr)
        return 0
    for name in ("kube-controller-manager", "kube-apiserver", "etcd"):  # clients, apiserver, its storage
        pid = state["pids"].get(name)
        if pid is not None and _is_ours(pid, name):
            _kill_group(pid, None, timeout)
    (directory / STATE_FILE).unlink(missing_ok=True)
    if not quiet:
        print(f"control plane in {directory} stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sundial.devstack.controlplane",
        description="Run a local etcd + kube-apiserver (no nodes) in the background.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start detached; prints KUBECONFIG=..."), ("down", "stop it")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", required=True, type=Path, help="state directory (pids, kubeconfig, logs)")
    sub.add_parser("bin-dir", help="build or find the binaries and print their directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _cmd_up(args.dir)
        if args.command == "down":
            return _cmd_down(args.dir)
        print(controlplane_bin_dir())
        return 0
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
