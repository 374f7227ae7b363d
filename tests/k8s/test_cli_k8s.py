"""The `sundial` CLI end to end: the real kube-apiserver, PostgreSQL and Redis, a real
`sundial-operator --standalone` and a real `sundial-worker` (JSON logs, /metrics on a port of
its own), and the CLI as a subprocess, exactly as a person or a script runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.keys import Keyspace
from sundial.core.schedule import fire_times, parse_schedule
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import free_port
from sundial.operator.metrics import JobMetrics
from tests.k8s.conftest import (
    RunsApiHandle,
    SundialProcess,
    create_namespace,
    eventually,
    running_operator,
    wait_until,
)

pytestmark = pytest.mark.k8s

NEVER_IN_A_TEST = "0 0 1 1 *"
EVERY_SECOND = "*/1 * * * * *"
SUNDIAL = str(Path(sys.executable).with_name("sundial"))


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespace(sundial_crds: ControlPlane) -> str:
    return create_namespace(sundial_crds, "cli")


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def worker(sundial_env: dict[str, str], process_logs: Path, metrics_port: int) -> Iterator[SundialProcess]:
    """A worker logging JSON and serving /metrics on `metrics_port`."""
    env = {**sundial_env, "SUNDIAL_WORKER_ID": f"cli-worker-{uuid.uuid4().hex[:6]}",
           "SUNDIAL_METRICS_PORT": str(metrics_port), "SUNDIAL_METRICS_HOST": "127.0.0.1",
           "SUNDIAL_LOG_FORMAT": "json",
           # The timeout test leaves a 30 s sleep running; it need not hold up the teardown.
           "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "1"}
    proc = SundialProcess([str(Path(sys.executable).with_name("sundial-worker"))], env,
                          process_logs / "cli-worker.log").start()
    try:
        proc.wait_for_log(r"serving targets", timeout=60)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def operator(sundial_env: dict[str, str], process_logs: Path, namespace: str, worker: SundialProcess
             ) -> Iterator[SundialProcess]:
    with running_operator(sundial_env, process_logs / "cli-operator.log", "--standalone", "--namespace",
                          namespace) as proc:
        yield proc


@pytest.fixture
def keyspace(sundial_env: dict[str, str]) -> Keyspace:
    return Keyspace(prefix=sundial_env["SUNDIAL_REDIS_PREFIX"])


class Cluster:
    """kubectl and the sundial CLI against the control plane, in the module's namespace."""

    def __init__(self, cp: ControlPlane, namespace: str, env: dict[str, str]) -> None:
        self.cp = cp
        self.namespace = namespace
        self.env = {**env, "NO_COLOR": "1"}

    def sundial(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SUNDIAL, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def apply(self, name: str, **spec: Any) -> str:
        spec.setdefault("target", "noop")
        spec.setdefault("timeZone", "UTC")
        manifest = {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob", "metadata": {"name": name},
                    "spec": spec}
        self.cp.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest))
        return str(self.get(name)["metadata"]["uid"])

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.cp.kubectl("get", "sdj", name, "-n", self.namespace, "-o",
                                                         "json").stdout)
        return obj

    def wait_ready(self, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            status = self.get(name).get("status") or {}
            for condition in status.get("conditions") or []:
                if condition["type"] == "Ready" and condition["reason"] == reason:
                    return dict(status)
            return None

        found = wait_until(f"{name} Ready reason {reason}", ready, timeout=timeout, interval=0.3)
        assert isinstance(found, dict)
        return found


@pytest.fixture
def cluster(sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str], operator: SundialProcess,
            runs_api: RunsApiHandle) -> Cluster:
    """The CLI as a person runs it: run history through runs.sundial.dev (DATABASE_URL is set
    too, for the commands that read Redis and PostgreSQL, but `runs` and `run --wait` use it
    only when the cluster serves no run history)."""
    return Cluster(sundial_crds, namespace, sundial_env)


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:5]}"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of series `name` whose labels include `labels`, None when absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(2))
    return None


# ---- doctor --------------------------------------------------------------------------------


def test_doctor_says_ok_to_everything(cluster: Cluster) -> None:
    result = cluster.sundial("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    verdicts = [line[:23].rstrip() for line in lines[:-1] if not line.startswith(" ")]
    assert verdicts == ["OK     Kubernetes API", "OK     CRD", "OK     PostgreSQL", "OK     Schema", "OK     Redis",
                        "OK     Workers", "OK     Targets", "OK     Clocks", "OK     Queue", "OK     Dead letters",
                        "OK     Missed slots"],\
        result.stdout
    assert lines[1] == "OK     CRD             scheduledjobs.sundial.dev v1alpha1 (served, storage, established)"
    assert "(context sundial)" in lines[0]
    assert lines[-1] == "11 OK"


# ---- run --wait, suspend, resume, describe -------------------------------------------------


async def test_run_wait_follows_a_manual_run_to_success(cluster: Cluster, store: Store) -> None:
    name = unique("ok")
    uid = cluster.apply(name, schedule=NEVER_IN_A_TEST)
    cluster.wait_ready(name, "Scheduled")
    result = cluster.sundial("run", name, "-n", cluster.namespace, "--wait", "--timeout", "60", "--reason", "cli-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note:" not in result.stderr, "followed through runs.sundial.dev: no fallback to DATABASE_URL"
    lines = result.stdout.splitlines()
    request = re.fullmatch(rf"scheduledjob\.sundial\.dev/{name} run requested \(sundial\.dev/run-now=(.+)\)",
                           lines[0])
    assert request is not None, lines
    assert request.group(1).startswith("cli-test ")
    assert re.fullmatch(r"attempt 1/3 succeeded after \d+ms", lines[-1]), lines
    assert cluster.get(name)["metadata"]["annotations"]["sundial.dev/run-now"] == request.group(1)
    [run] = await store.runs(uid)
    assert (run["trigger_type"], run["status"], run["reason"]) == ("manual", "success", request.group(1))

    history = cluster.sundial("runs", name, "-n", cluster.namespace)
    assert history.returncode == 0
    assert history.stderr == "", "resolved through Kubernetes: no fallback note"
    header, row = history.stdout.splitlines()
    assert header.split() == ["SLOT", "TRIGGER", "STATUS", "ATTEMPT", "DURATION", "ERROR"]
    assert row.split()[3:6] == ["Manual", "Succeeded", "1/3"]


def test_run_wait_needs_only_kubernetes_credentials(cluster: Cluster) -> None:
    name = unique("nodb")
    cluster.apply(name, schedule=NEVER_IN_A_TEST)
    cluster.wait_ready(name, "Scheduled")
    env = {key: value for key, value in cluster.env.items() if key != "DATABASE_URL"}
    result = subprocess.run([SUNDIAL, "run", name, "-n", cluster.namespace, "--wait", "--timeout", "60"], env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(r"attempt 1/3 succeeded after \d+ms", result.stdout.splitlines()[-1]), result.stdout


async def test_backfill_runs_the_window_once_and_refuses_a_future_one(cluster: Cluster, store: Store) -> None:
    name = unique("backfill")
    uid = cluster.apply(name, schedule="0 3 * * *")
    cluster.wait_ready(name, "Scheduled")
    window = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T23:59:59Z"]
    result = cluster.sundial("backfill", name, "-n", cluster.namespace, *window)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"scheduledjob.sundial.dev/{name} backfill requested: 2 slots, "), result.stdout
    future = cluster.sundial("backfill", name, "-n", cluster.namespace, "--from", "2026-01-01T00:00:00Z",
                             "--to", "2999-01-01T00:00:00Z")
    assert future.returncode == 1
    assert "is in the future" in future.stderr
    naive = cluster.sundial("backfill", name, "-n", cluster.namespace, "--from", "2026-01-01T00:00", "--to",
                            "2026-01-02T00:00:00Z")
    assert naive.returncode == 2
    assert "needs an offset" in naive.stderr
    async def both_succeeded() -> list[dict[str, Any]] | None:
        runs = await store.runs(uid)
        return runs if len([r for r in runs if r["status"] == "success"]) == 2 else None

    runs = await eventually("both backfilled runs to succeed", both_succeeded)
    assert sorted((r["trigger_type"], r["logical_time"].day) for r in runs) == [("backfill", 1), ("backfill", 2)]


def test_run_wait_exits_non_zero_when_the_run_fails(cluster: Cluster) -> None:
    name = unique("fails")
    cluster.apply(name, schedule=NEVER_IN_A_TEST, target="fail", params={"message": "deliberately broken"},
                  retry={"attempts": 2, "backoff": {"type": "Fixed", "delaySeconds": 1}})
    cluster.wait_ready(name, "Scheduled")
    result = cluster.sundial("run", name, "-n", cluster.namespace, "--wait", "--timeout", "60")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    failures = [line for line in lines if " Failed after " in line]
    assert len(failures) == 2, lines
    error = "DeliberateFailure: deliberately broken"
    assert re.fullmatch(rf"attempt 1/2 Failed after \d+ms: {error}; retry at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        failures[0]), failures
    assert re.fullmatch(rf"attempt 2/2 Failed after \d+ms: {error}", failures[1]), failures


def test_run_wait_times_out(cluster: Cluster) -> None:
    name = unique("slow")
    cluster.apply(name, schedule=NEVER_IN_A_TEST, target="sleep", params={"seconds": 30})
    cluster.wait_ready(name, "Scheduled")
    result = cluster.sundial("run", name, "-n", cluster.namespace, "--wait", "--timeout", "3")
    assert result.returncode == 1
    assert "timed out after 3s waiting for the run" in result.stderr
    missing = cluster.sundial("run", "no-such-job", "-n", cluster.namespace)
    assert missing.returncode == 1
    assert f'scheduledjobs.sundial.dev "no-such-job" not found in namespace {cluster.namespace}' in missing.stderr


def test_suspend_and_resume_patch_the_spec(cluster: Cluster) -> None:
    name = unique("pause")
    cluster.apply(name, schedule="*/5 * * * *")
    cluster.wait_ready(name, "Scheduled")
    suspended = cluster.sundial("suspend", name, "-n", cluster.namespace)
    assert (suspended.returncode, suspended.stdout) == (0, f"scheduledjob.sundial.dev/{name} suspended\n")
    assert cluster.get(name)["spec"]["suspend"] is True
    status = cluster.wait_ready(name, "Suspended")
    assert status.get("nextRunTime") is None
    again = cluster.sundial("suspend", name, "-n", cluster.namespace)
    assert again.stdout == f"scheduledjob.sundial.dev/{name} already suspended (no change)\n"

    resumed = cluster.sundial("resume", name, "-n", cluster.namespace)
    assert (resumed.returncode, resumed.stdout) == (0, f"scheduledjob.sundial.dev/{name} resumed\n")
    assert cluster.get(name)["spec"]["suspend"] is False
    assert cluster.wait_ready(name, "Scheduled").get("nextRunTime")

    # -o as kubectl patch prints: the object after the change, or its name.
    as_json = cluster.sundial("suspend", name, "-n", cluster.namespace, "-o", "json")
    assert json.loads(as_json.stdout)["spec"]["suspend"] is True
    as_name = cluster.sundial("resume", name, "-n", cluster.namespace, "-o", "name")
    assert as_name.stdout == f"scheduledjob.sundial.dev/{name}\n"


def test_kubectl_conventions_through_kubectl_itself(cluster: Cluster) -> None:
    name = unique("conv")
    cluster.apply(name, schedule="0 9 * * *", timeZone="America/New_York")
    cluster.wait_ready(name, "Scheduled")
    # kubectl finds the plugin on PATH, as after `source .sundial/demo.env`.
    path = f"{Path(SUNDIAL).parent}:{cluster.env.get('PATH', '')}"
    plugin = subprocess.run([str(cluster.cp.bin_dir / "kubectl"), "sundial", "next", name, "-n", cluster.namespace,
                             "--count", "2"], env={**cluster.env, "PATH": path}, capture_output=True, text=True,
                            timeout=60)
    assert plugin.returncode == 0, plugin.stderr
    times = plugin.stdout.splitlines()
    assert len(times) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT09:00:00-0[45]:00", time) for time in times), times

    described = cluster.sundial("describe", name, "-n", cluster.namespace, "-o", "yaml")
    assert "kind: ScheduledJob" in described.stdout
    assert "nextRunTime:" in described.stdout

    # --as: the API server authorizes the impersonated user, who may do nothing here.
    denied = cluster.sundial("suspend", name, "-n", cluster.namespace, "--as", "nobody@example.com")
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr
    assert "nobody@example.com" in denied.stderr
    allowed = cluster.sundial("describe", name, "-n", cluster.namespace, "-o", "name", "--as", "someone",
                              "--as-group", "system:masters", "--request-timeout", "30s")
    assert allowed.stdout == f"scheduledjob.sundial.dev/{name}\n", allowed.stderr


def test_describe_shows_conditions_and_the_next_five_fire_times(cluster: Cluster) -> None:
    name = unique("desc")
    cluster.apply(name, schedule="30 9 * * 1-5", timeZone="America/New_York", target="sleep",
                  params={"seconds": 0})
    cluster.wait_ready(name, "Scheduled")
    result = cluster.sundial("describe", name, "-n", cluster.namespace)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"Name:       {name}", f"Namespace:  {cluster.namespace}"]
    assert "Source:     Kubernetes" in lines
    assert "  Schedule:            30 9 * * 1-5 (America/New_York)" in lines
    conditions = lines.index("Conditions:")
    assert lines[conditions + 1].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert lines[conditions + 2].split()[:3] == ["Ready", "True", "Scheduled"]
    heading = lines.index("Next 5 Fire Times (America/New_York):")
    schedule = parse_schedule("30 9 * * 1-5", "America/New_York")
    expected = fire_times(schedule, SYSTEM_CLOCK.now() - timedelta(seconds=30), 6)
    shown = [line.split("   ")[0].strip() for line in lines[heading + 1: heading + 6]]
    assert len(shown) == 5
    # A slot may pass between the CLI's clock read and ours: accept either window.
    candidates = [f"{moment.astimezone(schedule.zone):%Y-%m-%d %H:%M:%S %Z}" for moment in expected]
    assert shown in (candidates[:5], candidates[1:]), shown
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d 09:30:00 E[SD]T", time) for time in shown)
    assert lines[lines.index("Last Runs:") + 1] == "  none yet"


# ---- metrics and logs --------------------------------------------------------------------


async def test_metrics_and_logs_of_a_running_worker(
    cluster: Cluster, worker: SundialProcess, metrics_port: int, store: Store, broker: Broker
) -> None:
    ok, failing, busy, late = unique("m-ok"), unique("m-fail"), unique("m-busy"), unique("m-late")
    cluster.apply(ok, schedule=EVERY_SECOND)
    cluster.apply(failing, schedule=NEVER_IN_A_TEST, target="fail",
                  retry={"attempts": 2, "backoff": {"type": "Fixed", "delaySeconds": 1}})
    cluster.apply(busy, schedule=EVERY_SECOND, target="sleep", params={"seconds": 3}, concurrencyPolicy="Forbid")
    late_uid = cluster.apply(late, schedule="* * * * *", missedRunPolicy="Skip")
    for name in (ok, failing, busy, late):
        cluster.wait_ready(name, "Scheduled")
    assert cluster.sundial("run", failing, "-n", cluster.namespace, "--wait", "--timeout", "60").returncode == 1

    # As if every worker had been down for ten minutes: the entry's due time lies in the past.
    shard = broker.keys.for_job(late_uid)
    past = to_ms(SYSTEM_CLOCK.now() - timedelta(minutes=10))
    await broker.redis.hset(shard.entry(late_uid), "next_due", str(past))
    await broker.redis.zadd(shard.due, {late_uid: past})

    ns = cluster.namespace

    def series() -> str | None:
        text = scrape(metrics_port)
        wanted = [
            (sample(text, "sundial_runs_total", namespace=ns, scheduledjob=ok, status="success") or 0) >= 3,
            sample(text, "sundial_runs_total", namespace=ns, scheduledjob=failing, status="failed") == 2,
            sample(text, "sundial_retries_total", namespace=ns, scheduledjob=failing) == 1,
            (sample(text, "sundial_skipped_runs_total", namespace=ns, scheduledjob=busy) or 0) >= 1,
            (sample(text, "sundial_missed_slots_total", namespace=ns, scheduledjob=late) or 0) >= 8,
            (sample(text, "sundial_fire_lateness_seconds_count") or 0) >= 3,
            sample(text, "sundial_queue_length", shard="0") is not None,
        ]
        return text if all(wanted) else None

    text = wait_until("the worker's metrics to show the runs", series, timeout=60, interval=1)
    assert isinstance(text, str)
    assert (sample(text, "sundial_run_duration_seconds_count", target="noop") or 0) >= 3
    assert (sample(text, "sundial_run_duration_seconds_count", target="fail") or 0) >= 2
    assert sample(text, "sundial_queue_oldest_pending_seconds", shard="0") is not None
    assert sample(text, "sundial_queue_pending", shard="0") is not None
    assert sample(text, "sundial_live_workers") == 1
    assert sample(text, "sundial_reclaimed_runs_total") == 0

    # Every line about a run carries the job, the run id, the slot and the attempt.
    entries = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    about_failing = [e for e in entries if e.get("job") == f"{ns}/{failing}"]
    assert {e["attempt"] for e in about_failing} == {1, 2}
    assert all(e["run_id"].startswith(str(cluster.get(failing)["metadata"]["uid"])) for e in about_failing)
    assert all(e["slot"] is None for e in about_failing), "a manual run has no slot"
    scheduled = next(e for e in entries if e.get("job") == f"{ns}/{ok}")
    assert scheduled["slot"].endswith("+00:00")
    assert scheduled["attempt"] == 1

    # The operator's job gauges, derived from the same rows and heartbeats; a job's row counts its
    # runs at the worker's next fold (SUNDIAL_JOB_ROW_INTERVAL_SECONDS, 5 s).
    exporter = JobMetrics(store, broker, SYSTEM_CLOCK, namespaces=[ns])

    async def exported_success() -> str | None:
        await exporter.export_once()
        exported = generate_latest().decode()
        return exported if sample(exported, "sundial_job_last_success_timestamp_seconds", namespace=ns,
                                  scheduledjob=ok) else None

    exported = await eventually("the operator's last-success gauge", exported_success, within=15, interval=0.5)
    assert (sample(exported, "sundial_job_last_success_timestamp_seconds", namespace=ns, scheduledjob=ok) or 0) > 0
    assert sample(exported, "sundial_job_last_success_timestamp_seconds", namespace=ns, scheduledjob=failing) is None
    # Every second, plus three 300 s attempts and the backoff between them (5 s, then 10 s).
    assert sample(exported, "sundial_job_expected_interval_seconds", namespace=ns, scheduledjob=ok) == 1 + 900 + 15
    assert sample(exported, "sundial_job_expected_interval_seconds", namespace=ns, scheduledjob=late) == 60 + 915
    assert sample(exported, "sundial_target_workers", target="noop") == 1
    assert (sample(exported, "sundial_target_jobs", target="noop") or 0) >= 2
    cluster.sundial("suspend", late, "-n", ns)
    cluster.wait_ready(late, "Suspended")
    await exporter.export_once()
    exported = generate_latest().decode()
    assert sample(exported, "sundial_job_expected_interval_seconds", namespace=ns, scheduledjob=late) is None, (
        "a suspended job is expected to run never")
    for name in (ok, busy):
        cluster.sundial("suspend", name, "-n", ns)
