"""Job targets end to end: a real operator, a real launcher holding only the chart's launcher
Role (a ServiceAccount token, not the admin), the real Job and garbage-collector controllers of
kube-controller-manager, real PostgreSQL and Redis.

No kubelet runs, so pods never start: the tests move them to Succeeded or Failed through the
status subresource, as envtest suites do, and the Job controller turns that into the Job's
Complete or Failed condition, which the launcher records into job_runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
import yaml

from sundial.core.crd import API_VERSION
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import free_port
from tests.k8s.conftest import (
    SundialProcess,
    console_script,
    create_namespace,
    dashboard_process,
    running_operator,
    wait_for_dashboard,
    wait_until,
)

pytestmark = [pytest.mark.k8s, pytest.mark.services]

CHART = find_repo_root() / "deploy" / "helm" / "sundial"
NEVER = "0 0 1 1 *"
POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}


def kubectl_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def namespace(sundial_crds: ControlPlane) -> str:
    return create_namespace(sundial_crds, "jobs")


@pytest.fixture(scope="module")
def launcher_kubeconfig(sundial_crds: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's own launcher ServiceAccount, Role and RoleBinding for `namespace`, and a
    kubeconfig holding that account's token (TokenRequest), so the launcher runs with exactly
    the chart's verbs."""
    helm = sundial_crds.bin_dir / "helm"
    rendered = subprocess.run(
        [str(helm), "template", "sundial", str(CHART), "-n", namespace, "--show-only", "templates/launcher.yaml",
         "--set", f"watchNamespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rbac = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] != "Deployment"]
    assert sorted(doc["kind"] for doc in rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    sundial_crds.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    token = sundial_crds.kubectl("create", "token", "sundial-launcher", "-n", namespace,
                                 "--duration=2h").stdout.strip()
    admin = yaml.safe_load(sundial_crds.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "launcher", "user": {"token": token}}],
        "contexts": [{"name": "launcher", "context": {"cluster": cluster["name"], "user": "launcher",
                                                      "namespace": namespace}}],
        "current-context": "launcher",
    }
    path = tmp_path_factory.mktemp("launcher") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(
    sundial_env: dict[str, str], sundial_crds: ControlPlane, namespace: str, launcher_kubeconfig: Path,
    process_logs: Path,
) -> Iterator[SundialProcess]:
    launcher = SundialProcess(
        console_script("sundial-launcher", "sundial.launcher.main"),
        {**sundial_env, "KUBECONFIG": str(launcher_kubeconfig), "SUNDIAL_WORKER_ID": "e2e-launcher",
         "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "1"},
        process_logs / "launcher.log",
    ).start()
    try:
        launcher.wait_for_log(r"serving targets: sundial:kubernetes-job", timeout=60)
        with running_operator(sundial_env, process_logs / "jobs-operator.log", "--standalone", "--namespace",
                              namespace):
            yield launcher
    finally:
        launcher.stop()


def apply_job(plane: ControlPlane, namespace: str, name: str, **spec: Any) -> str:
    body = {
        "apiVersion": API_VERSION, "kind": "ScheduledJob", "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": NEVER, "timeZone": "UTC", "retry": {"attempts": 1},
                 "jobTemplate": {"spec": {"template": {"spec": POD}}}, **spec},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(body))
    uid: str = kubectl_json(plane, "get", "sdj", name, "-n", namespace)["metadata"]["uid"]
    return uid


def run_now(plane: ControlPlane, namespace: str, name: str) -> None:
    plane.kubectl("annotate", "--overwrite", "sdj", name, "-n", namespace, f"sundial.dev/run-now={uuid.uuid4().hex}")


def jobs_of(plane: ControlPlane, namespace: str, uid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(plane, "get", "jobs", "-n", namespace, "-l",
                                                f"sundial.dev/job-uid={uid}")["items"]
    return items


def started_job(plane: ControlPlane, namespace: str, name: str, **spec: Any) -> tuple[str, dict[str, Any]]:
    """Apply the ScheduledJob, ask for a run now, and wait for its one Job: (uid, the Job)."""
    uid = apply_job(plane, namespace, name, **spec)
    run_now(plane, namespace, name)
    jobs = wait_until("the Job", lambda: jobs_of(plane, namespace, uid), timeout=60)
    assert isinstance(jobs, list)
    assert len(jobs) == 1
    return uid, jobs[0]


def one_pod(plane: ControlPlane, namespace: str, job: str) -> str:
    def pod() -> str | None:
        items = kubectl_json(plane, "get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}")
        return str(items["items"][0]["metadata"]["name"]) if items["items"] else None

    return str(wait_until(f"a pod of Job {job}", pod, timeout=60))


def finish_pod(plane: ControlPlane, namespace: str, pod: str, exit_code: int) -> None:
    """What a kubelet would report: the pod's phase and its container's exit code."""
    state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}}
    status = {"status": {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
        {"name": "main", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0, "state": state}]}}
    plane.kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p",
                  json.dumps(status))


def runs(dsn: str, uid: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT run_id, status, error_message AS error, output, attempt FROM job_runs WHERE job_id = %s "
                    "ORDER BY started_at", (uid,))
        return list(cur.fetchall())


def finished_run(dsn: str, uid: str, count: int = 1) -> dict[str, Any]:
    def done() -> list[dict[str, Any]] | None:
        rows = [row for row in runs(dsn, uid) if row["status"] not in ("running", "queued")]
        return rows if len(rows) >= count else None

    rows = wait_until("the run recorded", done, timeout=90)
    assert isinstance(rows, list)
    return dict(rows[-1])


def test_a_run_creates_one_owned_job_and_records_its_success(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, job = started_job(sundial_crds, namespace, "hello")
    assert job["metadata"]["name"].startswith("hello-m")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("ScheduledJob", "hello", uid)
    assert job["metadata"]["labels"]["sundial.dev/job"] == "hello"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 300
    pod = one_pod(sundial_crds, namespace, job["metadata"]["name"])
    finish_pod(sundial_crds, namespace, pod, 0)
    run = finished_run(sundial_env["DATABASE_URL"], uid)
    assert run["status"] == "success", run
    assert run["output"] == {"job": job["metadata"]["name"], "pods": [pod]}


def test_a_failed_pod_fails_the_run_with_its_exit_code(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, job = started_job(sundial_crds, namespace, "broken")
    pod = one_pod(sundial_crds, namespace, job["metadata"]["name"])
    finish_pod(sundial_crds, namespace, pod, 3)
    run = finished_run(sundial_env["DATABASE_URL"], uid)
    assert run["status"] == "failed", run
    assert "BackoffLimitExceeded" in run["error"]
    assert f"pod {pod} container main exited 3" in run["error"]


def test_a_timeout_deletes_the_job_and_its_pods(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, job = started_job(sundial_crds, namespace, "slow", timeoutSeconds=3)
    assert job["spec"]["activeDeadlineSeconds"] == 3
    run = finished_run(sundial_env["DATABASE_URL"], uid)
    assert run["status"] == "timed_out", run
    wait_until("the Job deleted", lambda: not jobs_of(sundial_crds, namespace, uid), timeout=60)


def test_a_launcher_restart_leaves_the_job_running_and_the_next_launcher_adopts_it(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, job = started_job(sundial_crds, namespace, "survivor")
    assert stack.stop() == 0
    assert [j["metadata"]["uid"] for j in jobs_of(sundial_crds, namespace, uid)] == [job["metadata"]["uid"]]
    stack.start().wait_for_log(r"serving targets", timeout=60)
    finish_pod(sundial_crds, namespace, one_pod(sundial_crds, namespace, job["metadata"]["name"]), 0)
    run = finished_run(sundial_env["DATABASE_URL"], uid)
    assert run["status"] == "success", run
    assert [j["metadata"]["uid"] for j in jobs_of(sundial_crds, namespace, uid)] == [job["metadata"]["uid"]]


def test_history_limits_delete_the_older_finished_jobs_with_their_pods(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, first = started_job(sundial_crds, namespace, "kept", successfulRunsHistoryLimit=1)
    first_pod = one_pod(sundial_crds, namespace, first["metadata"]["name"])
    finish_pod(sundial_crds, namespace, first_pod, 0)
    finished_run(sundial_env["DATABASE_URL"], uid)
    run_now(sundial_crds, namespace, "kept")
    second = wait_until("the second Job", lambda: [j for j in jobs_of(sundial_crds, namespace, uid)
                                                   if j["metadata"]["name"] != first["metadata"]["name"]], timeout=60)
    assert isinstance(second, list)
    finish_pod(sundial_crds, namespace, one_pod(sundial_crds, namespace, second[0]["metadata"]["name"]), 0)
    finished_run(sundial_env["DATABASE_URL"], uid, count=2)
    wait_until("only the newest Job kept", lambda: [j["metadata"]["name"] for j in jobs_of(
        sundial_crds, namespace, uid)] == [second[0]["metadata"]["name"]], timeout=60)
    wait_until("the older Job's pod deleted with it", lambda: not kubectl_json(
        sundial_crds, "get", "pods", "-n", namespace, "--field-selector", f"metadata.name={first_pod}")["items"],
        timeout=90)


def test_running_jobs_do_not_use_up_the_launchers_lanes(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str,
) -> None:
    """A run holds a lane while its Job runs; with a worker's 5 lanes (the launcher's default
    before), the sixth Job running at once waited, and past its next slot was recorded missed,
    which CronJob never does. Unset, the launcher has thousands of lanes."""
    names = [f"wide-{index}" for index in range(8)]
    uids = [apply_job(sundial_crds, namespace, name) for name in names]
    for name in names:
        run_now(sundial_crds, namespace, name)
    wait_until("every Job created while none has finished", lambda: all(
        jobs_of(sundial_crds, namespace, uid) for uid in uids), timeout=90)
    sundial_crds.kubectl("delete", "sdj", *names, "-n", namespace, "--wait=false")


def test_forbid_counts_the_running_job_and_skips_the_slots_behind_it(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid = apply_job(sundial_crds, namespace, "single", schedule="*/2 * * * * *", concurrencyPolicy="Forbid")

    def skipped() -> list[dict[str, Any]]:
        return [row for row in runs(sundial_env["DATABASE_URL"], uid) if row["status"] == "skipped"]

    wait_until("slots skipped while the first Job runs", lambda: len(skipped()) >= 2, timeout=90)
    sundial_crds.kubectl("patch", "sdj", "single", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    assert len(jobs_of(sundial_crds, namespace, uid)) == 1, "one Job runs; the slots behind it made none"
    assert "running" in {row["status"] for row in runs(sundial_env["DATABASE_URL"], uid)}


def test_deleting_the_scheduled_job_garbage_collects_its_jobs(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, _ = started_job(sundial_crds, namespace, "owned")
    sundial_crds.kubectl("delete", "sdj", "owned", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until("the garbage collector to delete the Job", lambda: not jobs_of(sundial_crds, namespace, uid),
               timeout=90)


def test_python_workers_hold_no_job_rights_and_the_launcher_exactly_its_own(
    launcher_kubeconfig: Path, sundial_crds: ControlPlane, namespace: str,
) -> None:
    launcher = f"system:serviceaccount:{namespace}:sundial-launcher"

    def can(verb: str, resource: str, user: str = launcher, where: str = namespace) -> bool:
        answer = sundial_crds.kubectl("auth", "can-i", verb, resource, f"--as={user}", "-n", where, check=False)
        return answer.stdout.strip() == "yes"

    for verb in ("create", "get", "list", "watch", "delete"):
        assert can(verb, "jobs.batch")
    assert can("get", "pods") and can("list", "pods") and can("get", "pods/log")  # noqa: PT018
    for verb, resource in (("update", "jobs.batch"), ("patch", "jobs.batch"), ("create", "pods"),
                           ("delete", "pods"), ("get", "secrets"), ("create", "cronjobs.batch"),
                           ("get", "scheduledjobs.sundial.dev")):
        assert not can(verb, resource), (verb, resource)
    assert not can("create", "jobs.batch", where="default"), "only in the namespaces it serves"
    assert not can("create", "jobs.batch", user=f"system:serviceaccount:{namespace}:sundial-worker")


def test_deleting_a_namespace_completes(sundial_crds: ControlPlane) -> None:
    doomed = create_namespace(sundial_crds, "doomed")
    sundial_crds.kubectl("create", "configmap", "c", "-n", doomed)
    sundial_crds.kubectl("delete", "namespace", doomed, "--wait=true", "--timeout=90s")
    assert sundial_crds.kubectl("get", "namespace", doomed, check=False).returncode != 0


def test_owner_references_garbage_collect(sundial_crds: ControlPlane, namespace: str) -> None:
    sundial_crds.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = kubectl_json(sundial_crds, "get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owned = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "owned", "namespace": namespace,
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]}}
    sundial_crds.kubectl("apply", "-f", "-", input=json.dumps(owned))
    sundial_crds.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until("the owned ConfigMap collected", lambda: sundial_crds.kubectl(
        "get", "configmap", "owned", "-n", namespace, check=False).returncode != 0, timeout=60)


SUNDIAL = str(Path(sys.executable).with_name("sundial"))


def sundial(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUNDIAL, *args], env=plane.env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def test_logs_lists_the_pods_of_the_newest_run_and_of_a_named_one(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
) -> None:
    uid, created = started_job(sundial_crds, namespace, "chatty")
    job = created["metadata"]["name"]
    pod = one_pod(sundial_crds, namespace, job)
    result = sundial(sundial_crds, "logs", "chatty", "-n", namespace)
    assert result.returncode == 0, result.stderr
    # No kubelet: the API server has no log to give, and says why.
    assert f"==> {job}/{pod}/main (Pending) <==\n(no log: the pod is not scheduled to a node" in result.stdout
    finish_pod(sundial_crds, namespace, pod, 0)
    run = finished_run(sundial_env["DATABASE_URL"], uid)
    named = sundial(sundial_crds, "logs", "chatty", "-n", namespace, "--run", run["run_id"])
    assert f"==> {job}/{pod}/main" in named.stdout, named.stderr
    missing = sundial(sundial_crds, "logs", "chatty", "-n", namespace, "--run", f"{uid}:123")
    assert missing.returncode == 1
    assert "no Job of chatty" in missing.stderr


def test_import_cronjob_converts_and_suspends_the_original(sundial_crds: ControlPlane, namespace: str) -> None:
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": namespace,
                                                                  "labels": {"team": "data"}},
        "spec": {"schedule": "30 2 * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
                 "startingDeadlineSeconds": 120, "successfulJobsHistoryLimit": 5, "failedJobsHistoryLimit": 2,
                 "jobTemplate": {"spec": {"activeDeadlineSeconds": 600, "template": {"spec": POD}}}},
    }
    sundial_crds.kubectl("apply", "-f", "-", input=json.dumps(cronjob))
    preview = sundial(sundial_crds, "import", "cronjob", "nightly", "-n", namespace, "--dry-run", "-o", "yaml")
    assert preview.returncode == 0, preview.stderr
    assert yaml.safe_load(preview.stdout)["spec"]["timeZone"] == "Europe/Berlin"
    assert sundial_crds.kubectl("get", "sdj", "nightly", "-n", namespace, check=False).returncode != 0
    done = sundial(sundial_crds, "import", "cronjob", "nightly", "-n", namespace, "--suspend-originals")
    assert done.returncode == 0, done.stderr
    spec = kubectl_json(sundial_crds, "get", "sdj", "nightly", "-n", namespace)["spec"]
    assert {k: spec[k] for k in ("schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds",
                                 "successfulRunsHistoryLimit", "failedRunsHistoryLimit", "timeoutSeconds")} == {
        "schedule": "30 2 * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 120, "successfulRunsHistoryLimit": 5, "failedRunsHistoryLimit": 2,
        "timeoutSeconds": 600}
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"] == "main"
    assert kubectl_json(sundial_crds, "get", "cronjob", "nightly", "-n", namespace)["spec"]["suspend"] is True
    again = sundial(sundial_crds, "import", "cronjob", "-A")
    assert again.returncode == 0, again.stderr
    assert "exists already" in again.stderr


def test_the_page_api_shows_a_runs_pod_logs_as_the_caller(
    stack: SundialProcess, sundial_crds: ControlPlane, namespace: str, sundial_env: dict[str, str],
    launcher_kubeconfig: Path, process_logs: Path,
) -> None:
    _, job = started_job(sundial_crds, namespace, "paged")
    pod = one_pod(sundial_crds, namespace, job["metadata"]["name"])
    port = free_port()
    dashboard = dashboard_process(sundial_env, process_logs / "jobs-dashboard.log", port, auth="token").start()
    try:
        wait_for_dashboard(dashboard, port)
        url = f"http://127.0.0.1:{port}/api/jobs/{namespace}/paged/logs"
        admin = httpx2.get(url, headers={"Authorization": f"Bearer {sundial_crds.admin_token}"}, timeout=30)
        assert admin.status_code == 200, admin.text
        [log] = admin.json()
        assert (log["pod"], log["container"], log["phase"], log["available"]) == (pod, "main", "Pending", False)
        # The launcher's token may read pods but not ScheduledJobs: the caller's rights decide.
        token = yaml.safe_load(launcher_kubeconfig.read_text())["users"][0]["user"]["token"]
        denied = httpx2.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert denied.status_code == 403, denied.text
    finally:
        dashboard.stop()
