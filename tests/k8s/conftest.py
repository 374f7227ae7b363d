"""Fixtures for tests against the local Kubernetes control plane (etcd + kube-apiserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sundial.devstack.controlplane import ControlPlane, ControlPlaneError, controlplane_bin_dir


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """One control plane for the whole session.

    Never skips: when the binaries cannot be built or the server does not come up, every
    test that uses it fails with the reason (locally and in CI alike).
    """
    try:
        bin_dir = controlplane_bin_dir()
    except ControlPlaneError as exc:
        error = (
            "cannot build the local control plane binaries (tools/controlplane/build.sh; set "
            f"SUNDIAL_CONTROLPLANE_BIN or KUBEBUILDER_ASSETS to use prebuilt ones):\n{exc}"
        )
    else:
        plane = ControlPlane(bin_dir=bin_dir)
        try:
            plane.start()
        except ControlPlaneError as exc:
            error = f"cannot start the local control plane:\n{exc}"
        else:
            try:
                yield plane
            finally:
                plane.stop()
            return
    pytest.fail(error, pytrace=False)  # outside `except`: no chained traceback noise


# --------------------------------------------------------------------------------------------
# The operator end to end: CRDs, real sundial-operator and sundial-worker subprocesses.
# --------------------------------------------------------------------------------------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

from sundial.devstack.controlplane import find_repo_root  # noqa: E402
from sundial.devstack.services import Services  # noqa: E402
from sundial.kube.api import KubeApi  # noqa: E402
from sundial.kube.config import load_config  # noqa: E402
from tests.conftest import mark_prefix_intact  # noqa: E402

T = TypeVar("T")

CRD_FILES = ("deploy/crds/sundial.dev_scheduledjobs.yaml", "deploy/crds/sundial.dev_targetpolicies.yaml",
             "deploy/crds/kopf-peering.yaml")


def wait_until(what: str, check: object, timeout: float = 60.0, interval: float = 0.25) -> object:
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout` s."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


async def eventually(what: str, check: Callable[[], Awaitable[T | None]], within: float = 60.0,
                     interval: float = 0.3) -> T:
    """`wait_until` for a coroutine: await `check()` until it returns something truthy; fail with
    `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what} (last: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def sundial_crds(controlplane: ControlPlane) -> ControlPlane:
    """The ScheduledJob and kopf peering CRDs, established and served."""
    root = find_repo_root()
    for name in CRD_FILES:
        controlplane.kubectl("apply", "-f", str(root / name))
    for crd in ("scheduledjobs.sundial.dev", "targetpolicies.sundial.dev", "clusterkopfpeerings.kopf.dev",
                "kopfpeerings.kopf.dev"):
        controlplane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    # Discovery can lag the Established condition by a moment.
    wait_until("the sdj resource to be served",
               lambda: controlplane.kubectl("get", "sdj", "-A", check=False).returncode == 0, timeout=30)
    return controlplane


@pytest.fixture
async def kube(sundial_crds: ControlPlane) -> AsyncIterator[KubeApi]:
    """A Kubernetes client of Sundial's own, in the test's process, against the test control plane."""
    api = KubeApi.connect(load_config(str(sundial_crds.kubeconfig)), component="sundial-tests", instance="test")
    yield api
    await api.aclose()


def console_script(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


class SundialProcess:
    """A real `sundial-operator` or `sundial-worker` in its own process group, logging to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> SundialProcess:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self, *, since_start: bool = False) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[self._offset:] if since_start else text

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        compiled = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if not self.running:
                raise AssertionError(f"{self.argv[0]} exited early:\n{self.log(since_start=True)[-4000:]}")
            return compiled.search(self.log(since_start=True))

        match = wait_until(f"{pattern!r} in {self.log_path.name}", found, timeout=timeout)
        assert isinstance(match, re.Match)
        return match

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `timeout`; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        return self.popen.returncode


@pytest.fixture(scope="module")
def sundial_env(
    sundial_crds: ControlPlane, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for Sundial processes: the control plane, the services and a Redis key
    prefix of the test module's own (SUNDIAL_REDIS_PREFIX)."""
    env = {
        **sundial_crds.env(),
        "DATABASE_URL": services.postgres.dsn,
        "REDIS_URL": services.redis.url,
        "SUNDIAL_REDIS_PREFIX": f"k{uuid.uuid4().hex[:10]}",
        "SUNDIAL_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
        # These deployments let a namespace no TargetPolicy selects use any target (the tests use
        # made-up ones); tests/k8s/test_tenancy.py narrows its namespaces with policies.
        "SUNDIAL_POLICY_DEFAULT_TARGETS": "*",
    }
    for variable in ("SUNDIAL_LOG_FORMAT", "SUNDIAL_LOG_LEVEL"):
        env.pop(variable, None)
    mark_prefix_intact(services.redis.url, env["SUNDIAL_REDIS_PREFIX"])
    return env


@pytest.fixture(scope="module")
def process_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sundial-logs")


@pytest.fixture(scope="module")
def sundial_worker(sundial_env: dict[str, str], process_logs: Path) -> Iterator[SundialProcess]:
    worker = SundialProcess(
        console_script("sundial-worker", "sundial.worker.main"),
        {**sundial_env, "SUNDIAL_WORKER_ID": f"e2e-worker-{uuid.uuid4().hex[:6]}"},
        process_logs / "worker.log",
    ).start()
    try:
        worker.wait_for_log(r"serving targets", timeout=60)
        yield worker
    finally:
        worker.stop()


def operator_process(sundial_env: dict[str, str], log_path: Path, *args: str) -> SundialProcess:
    """An operator (not started) with `args`, e.g. ("--standalone", "--namespace", ns)."""
    return SundialProcess([*console_script("sundial-operator", "sundial.operator.main"), *args],
                          dict(sundial_env), log_path)


@contextlib.contextmanager
def running_operator(sundial_env: dict[str, str], log_path: Path, *args: str) -> Iterator[SundialProcess]:
    """A started operator, ready once its startup handler ran; it must exit cleanly afterwards."""
    proc = operator_process(sundial_env, log_path, *args).start()
    try:
        proc.wait_for_log(r"Activity 'configure' succeeded")
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, f"the operator exited with {code}:\n{proc.log()[-4000:]}"


def kube_spec(controlplane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """A ScheduledJob's spec as the API server holds it, read with the real kubectl."""
    out = controlplane.kubectl("get", "sdj", name, "-n", namespace, "-o", "json").stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


def exists(controlplane: ControlPlane, namespace: str, name: str) -> bool:
    return controlplane.kubectl("get", "sdj", name, "-n", namespace, check=False).returncode == 0


def create_namespace(controlplane: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    controlplane.kubectl("create", "namespace", name)
    return name


# --------------------------------------------------------------------------------------------
# The dashboard: a real sundial-dashboard over an operator and a worker for one namespace.
# --------------------------------------------------------------------------------------------

import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx2  # noqa: E402

from sundial.devstack.services import free_port  # noqa: E402


@dataclass(frozen=True)
class DashboardHandle:
    url: str
    admin_token: str
    namespace: str
    process: SundialProcess


def dashboard_process(sundial_env: dict[str, str], log_path: Path, port: int, **settings: str) -> SundialProcess:
    """A `sundial-dashboard` (not started); `settings` are SUNDIAL_DASHBOARD_* without the prefix."""
    env = {**sundial_env, "SUNDIAL_DASHBOARD_HOST": "127.0.0.1", "SUNDIAL_DASHBOARD_PORT": str(port)}
    env.update({f"SUNDIAL_DASHBOARD_{key.upper()}": value for key, value in settings.items()})
    return SundialProcess(console_script("sundial-dashboard", "sundial.dashboard.main"), env, log_path)


def wait_for_dashboard(dashboard: SundialProcess, port: int) -> None:
    def ready() -> bool:
        if not dashboard.running:
            raise AssertionError(f"sundial-dashboard exited early:\n{dashboard.log(since_start=True)[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until("sundial-dashboard /readyz", ready, timeout=60)


@pytest.fixture(scope="module")
def sundial_dashboard(
    sundial_env: dict[str, str], sundial_crds: ControlPlane, sundial_worker: SundialProcess, process_logs: Path
) -> Iterator[DashboardHandle]:
    """Operator, worker and dashboard for a fresh namespace; the dashboard's default namespace."""
    namespace = create_namespace(sundial_crds, "dash")
    port = free_port()
    with running_operator(sundial_env, process_logs / "dashboard-operator.log", "--standalone", "--namespace",
                          namespace):
        dashboard = dashboard_process(sundial_env, process_logs / "dashboard.log", port,
                                      default_namespace=namespace).start()
        try:
            wait_for_dashboard(dashboard, port)
            yield DashboardHandle(f"http://127.0.0.1:{port}", sundial_crds.admin_token, namespace, dashboard)
        finally:
            code = dashboard.stop()
        assert code == 0, f"sundial-dashboard exited with {code}:\n{dashboard.log()[-4000:]}"


@pytest.fixture(scope="module")
def api(sundial_dashboard: DashboardHandle) -> Iterator[httpx2.Client]:
    """An HTTP client for the dashboard, signed in as the control plane's admin."""
    headers = {"Authorization": f"Bearer {sundial_dashboard.admin_token}"}
    with httpx2.Client(base_url=sundial_dashboard.url, headers=headers, timeout=30) as client:
        yield client


# --------------------------------------------------------------------------------------------
# The run history API (runs.sundial.dev): a real sundial-runs-api behind an APIService.
# --------------------------------------------------------------------------------------------

from sundial.devstack import runsapi as devstack_runs_api  # noqa: E402


@dataclass(frozen=True)
class RunsApiHandle:
    launch: devstack_runs_api.RunsApiLaunch
    process: SundialProcess


@pytest.fixture(scope="session")
def runs_api(sundial_crds: ControlPlane, services: Services, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RunsApiHandle]:
    """`sundial-runs-api` on a free port, registered as the APIService v1alpha1.runs.sundial.dev."""
    directory = tmp_path_factory.mktemp("runs-api")
    launch = devstack_runs_api.prepare(sundial_crds, directory, services.postgres.dsn, free_port())
    process = SundialProcess(console_script("sundial-runs-api", "sundial.dashboard.runsapi"),
                             {**launch.env, "PYTHONUNBUFFERED": "1"}, directory / "runs-api.log").start()
    try:
        devstack_runs_api.wait_healthy(launch, lambda: process.running, process.log_path)
        devstack_runs_api.register([str(sundial_crds.bin_dir / "kubectl")], sundial_crds.env(), launch)
        yield RunsApiHandle(launch, process)
    finally:
        code = process.stop()
    assert code == 0, f"sundial-runs-api exited with {code}:\n{process.log()[-4000:]}"
