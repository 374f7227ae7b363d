"""Run history as the aggregated API runs.sundial.dev, on the real kube-apiserver.

A real `sundial-runs-api` sits behind an APIService; the callers are real kubectl and the CLI
with credentials of the kinds kubectl accepts (client certificates, a ServiceAccount token),
and RBAC alone decides who reads which namespace's runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sundial.core.keys import run_id_for_slot
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import RunRecord, Store
from sundial.devstack.controlplane import ControlPlane, issue_client_certificate
from tests.k8s.conftest import RunsApiHandle, create_namespace, wait_until

pytestmark = pytest.mark.k8s

SUNDIAL = str(Path(sys.executable).with_name("sundial"))
BASE = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NIGHTLY_A = 7
HOURLY_A = 2
NIGHTLY_B = 3
RUNS = "scheduledjobruns"


@dataclass(frozen=True)
class History:
    a: str
    b: str


@dataclass(frozen=True)
class Users:
    alice: Path  # client certificate; a Role allows runs in namespace a only
    mallory: Path  # client certificate; no role at all
    reader: Path  # ServiceAccount token bound to the same Role in a


def _spec() -> ScheduledJobSpec:
    return ScheduledJobSpec.model_validate({"schedule": "0 * * * *", "target": "noop", "timeZone": "UTC"})


def _scheduled_job(plane: ControlPlane, namespace: str, name: str) -> JobRef:
    """The ScheduledJob itself (no operator runs here: the rows below stand for its history)."""
    manifest = {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"schedule": "0 * * * *", "target": "noop", "timeZone": "UTC"}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    uid = plane.kubectl("get", "sdj", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    return JobRef(uid, namespace, name)


async def _job_with_runs(store: Store, job: JobRef, count: int, failed_every: int = 3) -> None:
    await store.upsert_job(job, _spec(), 1, None)
    records = []
    for index in range(count):
        slot = BASE - timedelta(hours=index)
        status = RunStatus.FAILED if index % failed_every == 1 else RunStatus.SUCCESS
        records.append(RunRecord(
            run_id=run_id_for_slot(job.job_id, int(slot.timestamp() * 1000)), job_id=job.job_id, logical_time=slot,
            scheduled_for=slot, trigger=Trigger.SCHEDULED, status=status, attempt=1, started_at=slot,
            completed_at=slot + timedelta(seconds=2), duration_ms=2000, worker="worker-a",
            error="boom" if status is RunStatus.FAILED else None,
        ))
    await store.record_runs(records)


@pytest.fixture(scope="module")
async def history(sundial_crds: ControlPlane, database_url: str) -> History:
    a, b = create_namespace(sundial_crds, "runs-a"), create_namespace(sundial_crds, "runs-b")
    store = await Store.open(database_url)
    try:
        for namespace, name, count in ((a, "nightly", NIGHTLY_A), (a, "hourly", HOURLY_A), (b, "nightly", NIGHTLY_B)):
            await _job_with_runs(store, _scheduled_job(sundial_crds, namespace, name), count)
    finally:
        await store.close()
    return History(a, b)


def _kubeconfig(plane: ControlPlane, path: Path, user: dict[str, str]) -> Path:
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    config = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
              "users": [{"name": "u", "user": user}],
              "contexts": [{"name": "c", "context": {"cluster": "sundial", "user": "u", "namespace": "default"}}],
              "current-context": "c"}
    path.write_text(yaml.safe_dump(config))
    return path


def _cert_user(plane: ControlPlane, directory: Path, name: str) -> Path:
    cert, key = issue_client_certificate(plane.work_dir / "pki", name, [])
    return _kubeconfig(plane, directory / f"{name}.kubeconfig", {
        "client-certificate-data": base64.b64encode(cert).decode(),
        "client-key-data": base64.b64encode(key).decode()})


@pytest.fixture(scope="module")
def users(sundial_crds: ControlPlane, history: History, runs_api: RunsApiHandle,
          tmp_path_factory: pytest.TempPathFactory) -> Users:
    plane, ns = sundial_crds, history.a
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "run-reader", "namespace": ns},
            "rules": [{"apiGroups": ["runs.sundial.dev"], "resources": [RUNS], "verbs": ["get", "list"]},
                      {"apiGroups": ["sundial.dev"], "resources": ["scheduledjobs"], "verbs": ["get", "list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "run-reader", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-reader"},
               "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
                            {"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}
    # alice may watch too; the reader account may only get and list.
    watcher = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "run-watcher", "namespace": ns},
               "rules": [{"apiGroups": ["runs.sundial.dev"], "resources": [RUNS], "verbs": ["watch"]}]}
    watching = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "run-watcher", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-watcher"},
                "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}
    plane.kubectl("create", "serviceaccount", "reader", "-n", ns)
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": [role, binding, watcher, watching]}))
    token = plane.kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    directory = tmp_path_factory.mktemp("run-users")
    return Users(alice=_cert_user(plane, directory, "alice"), mallory=_cert_user(plane, directory, "mallory"),
                 reader=_kubeconfig(plane, directory / "reader.kubeconfig", {"token": token}))


def kubectl_as(plane: ControlPlane, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(plane.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [item["metadata"]["name"] for item in json.loads(result.stdout)["items"]]


# ---- RBAC decides --------------------------------------------------------------------------


def test_a_role_in_one_namespace_reads_its_runs_and_is_forbidden_in_another(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    mine = names(kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "-o", "json"))
    assert len(mine) == NIGHTLY_A + HOURLY_A
    newest = int(BASE.timestamp() * 1000)
    # Newest slot first; two jobs' runs of the same slot come in run id order.
    assert set(mine[:2]) == {f"nightly-{newest}-1", f"hourly-{newest}-1"}
    slots = [int(name.split("-")[1]) for name in mine]
    assert slots == sorted(slots, reverse=True)
    theirs = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.b)
    assert theirs.returncode == 1
    assert "Forbidden" in theirs.stderr or "forbidden" in theirs.stderr, theirs.stderr
    everywhere = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-A")
    assert everywhere.returncode == 1
    assert "forbidden" in everywhere.stderr.lower()


def test_a_user_with_no_role_is_forbidden(sundial_crds: ControlPlane, history: History, users: Users) -> None:
    result = kubectl_as(sundial_crds, users.mallory, "get", RUNS, "-n", history.a)
    assert result.returncode == 1
    assert 'User "mallory" cannot list resource "scheduledjobruns"' in result.stderr, result.stderr


def test_a_service_account_token_reads_like_a_certificate(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    assert len(names(kubectl_as(sundial_crds, users.reader, "get", RUNS, "-n", history.a, "-o", "json"))) == 9
    denied = kubectl_as(sundial_crds, users.reader, "get", RUNS, "-n", history.b)
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr.lower()


def _direct(runs_api: RunsApiHandle, path: str, client_cert: tuple[Path, Path] | None,
            headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cadata=runs_api.launch.ca_pem.decode())
    context.check_hostname = False
    if client_cert is not None:
        context.load_cert_chain(*map(str, client_cert))
    request = urllib.request.Request(f"{runs_api.launch.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_trusts_only_the_front_proxy_and_asks_rbac_itself(
    sundial_crds: ControlPlane, history: History, users: Users, runs_api: RunsApiHandle
) -> None:
    """Straight to the server, past the kube-apiserver's own checks: the headers count only over
    the front proxy's certificate, and the server's SubjectAccessReview still says no."""
    path = f"/apis/runs.sundial.dev/v1alpha1/namespaces/{history.a}/{RUNS}"
    proxy = sundial_crds.front_proxy
    assert proxy is not None
    no_cert, body = _direct(runs_api, path, None, {"X-Remote-User": "alice"})
    assert (no_cert, body["reason"]) == (401, "Unauthorized")
    admin_cert = (sundial_crds.work_dir / "pki" / "admin.crt", sundial_crds.work_dir / "pki" / "admin.key")
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # signed by the cluster CA, not the front proxy's
        _direct(runs_api, path, admin_cert, {"X-Remote-User": "alice"})
    front = (proxy.client_cert, proxy.client_key)
    denied, body = _direct(runs_api, path, front, {"X-Remote-User": "mallory"})
    assert (denied, body["reason"]) == (403, "Forbidden")
    allowed, body = _direct(runs_api, path, front, {"X-Remote-User": "alice"})
    assert allowed == 200
    assert len(body["items"]) == 9


# ---- what kubectl sees ---------------------------------------------------------------------


def test_kubectl_get_prints_a_table_and_selects_by_job_and_phase(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    table = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "JOB", "PHASE", "TRIGGER", "ATTEMPT", "DURATION", "AGE"]
    assert len(rows) == 9
    assert rows[0].split()[2:6] == ["Succeeded", "Scheduled", "1", "2s"]
    wide = kubectl_as(sundial_crds, users.alice, "get", "sdjr", "-n", history.a, "-o", "wide")
    assert wide.stdout.splitlines()[0].split()[-2:] == ["WORKER", "ERROR"]
    hourly = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "-l", "sundial.dev/job=hourly",
                        "-o", "json")
    assert [name.split("-")[0] for name in names(hourly)] == ["hourly", "hourly"]
    failed = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "--field-selector",
                        "status.phase=Failed", "-o", "json")
    phases = {item["status"]["phase"] for item in json.loads(failed.stdout)["items"]}
    assert (phases, len(names(failed))) == ({"Failed"}, 3)
    first = names(kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "-o", "json"))[0]
    one = kubectl_as(sundial_crds, users.alice, "get", RUNS, first, "-n", history.a, "-o", "json")
    obj = json.loads(one.stdout)
    assert (obj["kind"], obj["metadata"]["name"], obj["status"]["durationMs"]) == ("ScheduledJobRun", first, 2000)
    assert first.startswith(obj["spec"]["jobRef"]["name"] + "-")
    missing = kubectl_as(sundial_crds, users.alice, "get", RUNS, "nightly-1-1", "-n", history.a)
    assert (missing.returncode == 1 and "NotFound" in missing.stderr) or "not found" in missing.stderr


def test_pages_follow_the_continue_token_without_gaps_or_repeats(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    path = f"/apis/runs.sundial.dev/v1alpha1/namespaces/{history.a}/{RUNS}"
    whole = names(kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "-o", "json"))
    paged: list[str] = []
    token = ""
    pages = 0
    while True:
        query = f"?limit=4&continue={token}" if token else "?limit=4"
        answer = json.loads(kubectl_as(sundial_crds, users.alice, "get", "--raw", path + query).stdout)
        paged += [item["metadata"]["name"] for item in answer["items"]]
        pages += 1
        token = answer["metadata"].get("continue", "")
        if not token:
            break
    assert (pages, paged) == (3, whole)
    chunked = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a, "--chunk-size=2")
    assert len(chunked.stdout.splitlines()) == 1 + 9


# ---- the CLI with Kubernetes credentials only ----------------------------------------------


def test_cli_runs_needs_no_database_url(sundial_crds: ControlPlane, history: History, users: Users) -> None:
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(users.alice), "NO_COLOR": "1", "HOME": "/nonexistent"}
    result = subprocess.run([SUNDIAL, "runs", "nightly", "-n", history.a, "--limit", "3"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["SLOT", "TRIGGER", "STATUS", "ATTEMPT", "DURATION", "ERROR"]
    assert [row.split()[3:5] for row in rows] == [["Scheduled", "Succeeded"], ["Scheduled", "Failed"],
                                                   ["Scheduled", "Succeeded"]]
    assert result.stderr == ""
    namespace = subprocess.run([SUNDIAL, "runs", "-n", history.a, "--status", "Failed", "-o", "json"], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
    assert namespace.returncode == 0, namespace.stderr
    found = {(run["job"], run["status"]) for run in json.loads(namespace.stdout)}
    assert found == {("nightly", "Failed"), ("hourly", "Failed")}
    forbidden = subprocess.run([SUNDIAL, "runs", "-n", history.b], env=env, capture_output=True, text=True,
                               timeout=60, check=False)
    assert forbidden.returncode == 1
    assert "forbidden" in forbidden.stderr.lower()
    assert "PostgreSQL" not in forbidden.stderr


# ---- watch ---------------------------------------------------------------------------------


def _record(job: JobRef, slot: datetime, status: RunStatus) -> RunRecord:
    return RunRecord(
        run_id=run_id_for_slot(job.job_id, int(slot.timestamp() * 1000)), job_id=job.job_id, logical_time=slot,
        scheduled_for=slot, trigger=Trigger.SCHEDULED, status=status, attempt=1, started_at=slot,
        completed_at=None if status is RunStatus.RUNNING else slot + timedelta(seconds=1),
        duration_ms=None if status is RunStatus.RUNNING else 1000, worker="worker-w", error=None)


async def _write(database_url: str, records: list[RunRecord]) -> None:
    store = await Store.open(database_url)
    try:
        await store.record_runs(records)
    finally:
        await store.close()


def _job_ref(plane: ControlPlane, namespace: str, name: str) -> JobRef:
    uid = plane.kubectl("get", "sdj", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    return JobRef(uid, namespace, name)


def _watch_events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_a_watch_streams_added_and_modified_runs_of_its_namespace_only(
    sundial_crds: ControlPlane, history: History, users: Users, database_url: str
) -> None:
    path = f"/apis/runs.sundial.dev/v1alpha1/namespaces/{history.a}/{RUNS}"
    nightly_a, nightly_b = _job_ref(sundial_crds, history.a, "nightly"), _job_ref(sundial_crds, history.b, "nightly")
    running, fresh = BASE + timedelta(minutes=30), BASE + timedelta(hours=1)
    await _write(database_url, [_record(nightly_a, running, RunStatus.RUNNING)])
    listed = json.loads(kubectl_as(sundial_crds, users.alice, "get", "--raw", path).stdout)
    since = listed["metadata"]["resourceVersion"]
    assert since.isdigit(), listed["metadata"]
    assert int(listed["items"][0]["metadata"]["resourceVersion"]) <= int(since)
    await _write(database_url, [_record(nightly_a, fresh, RunStatus.SUCCESS), _record(nightly_b, fresh,
                                                                                      RunStatus.RUNNING)])
    await _write(database_url, [_record(nightly_a, running, RunStatus.FAILED)])  # listed as Running
    streamed = kubectl_as(sundial_crds, users.alice, "get", "--raw",
                          f"{path}?watch=1&resourceVersion={since}&timeoutSeconds=3")
    events = _watch_events(streamed)
    seen = [(e["type"], e["object"]["metadata"]["name"], e["object"]["status"]["phase"]) for e in events]
    assert seen == [("ADDED", f"nightly-{int(fresh.timestamp() * 1000)}-1", "Succeeded"),
                    ("MODIFIED", f"nightly-{int(running.timestamp() * 1000)}-1", "Failed")], seen
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > int(since)
    # From the last event on, nothing more; a bookmark tells the current version when asked.
    quiet = _watch_events(kubectl_as(sundial_crds, users.alice, "get", "--raw", f"{path}?watch=1&resourceVersion="
                                     f"{versions[-1]}&timeoutSeconds=7&allowWatchBookmarks=true"))
    assert [e["type"] for e in quiet] == ["BOOKMARK"], quiet
    assert int(quiet[0]["object"]["metadata"]["resourceVersion"]) >= versions[-1]


async def test_a_watch_sends_deleted_for_runs_retention_removes(
    sundial_crds: ControlPlane, history: History, users: Users, database_url: str
) -> None:
    """Informers mirror what they are sent: a run retention deletes must reach them (migration 0009)."""
    path = f"/apis/runs.sundial.dev/v1alpha1/namespaces/{history.a}/{RUNS}"
    nightly_a = _job_ref(sundial_crds, history.a, "nightly")
    doomed = BASE + timedelta(hours=2)
    await _write(database_url, [_record(nightly_a, doomed, RunStatus.SUCCESS)])
    listed = json.loads(kubectl_as(sundial_crds, users.alice, "get", "--raw", path).stdout)
    since = listed["metadata"]["resourceVersion"]
    name = f"nightly-{int(doomed.timestamp() * 1000)}-1"
    assert name in [item["metadata"]["name"] for item in listed["items"]]
    store = await Store.open(database_url)
    try:
        async with store.pool.connection() as conn:  # what retention's DELETE does to this one run
            await conn.execute("DELETE FROM job_runs WHERE job_id = %s AND logical_time = %s",
                               (nightly_a.job_id, doomed))
    finally:
        await store.close()
    events = _watch_events(kubectl_as(sundial_crds, users.alice, "get", "--raw",
                                      f"{path}?watch=1&resourceVersion={since}&timeoutSeconds=3"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", name)], events
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > int(since)
    assert events[0]["object"]["metadata"]["namespace"] == history.a


def test_a_too_old_resource_version_is_gone_and_watching_needs_the_watch_verb(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    path = f"/apis/runs.sundial.dev/v1alpha1/namespaces/{history.a}/{RUNS}"
    gone = kubectl_as(sundial_crds, users.alice, "get", "--raw", f"{path}?watch=1&resourceVersion=1")
    assert gone.returncode == 1
    assert "too old resource version" in gone.stderr, gone.stderr
    lister = kubectl_as(sundial_crds, users.reader, "get", "--raw", f"{path}?watch=1&timeoutSeconds=1")
    assert lister.returncode == 1
    assert 'cannot watch resource "scheduledjobruns"' in lister.stderr, lister.stderr
    outsider = kubectl_as(sundial_crds, users.mallory, "get", RUNS, "-n", history.a, "--watch-only",
                          "--request-timeout=5s")
    assert outsider.returncode == 1
    assert "forbidden" in outsider.stderr.lower()


def test_kubectl_get_watch_prints_each_new_run(
    sundial_crds: ControlPlane, history: History, users: Users, database_url: str
) -> None:
    hourly = _job_ref(sundial_crds, history.a, "hourly")
    watcher = subprocess.Popen(
        [str(sundial_crds.bin_dir / "kubectl"), f"--kubeconfig={users.alice}", "get", RUNS, "-n", history.a, "-w",
         "-l", "sundial.dev/job=hourly"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in watcher.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert lines.get(timeout=30).split()[:3] == ["NAME", "JOB", "PHASE"]
        for _ in range(HOURLY_A):
            assert lines.get(timeout=10).startswith("hourly-")
        slot = BASE + timedelta(hours=2)
        asyncio.run(_write(database_url, [_record(hourly, slot, RunStatus.TIMED_OUT)]))
        printed = lines.get(timeout=15).split()
        assert printed[:3] == [f"hourly-{int(slot.timestamp() * 1000)}-1", "hourly", "TimedOut"], printed
    finally:
        watcher.terminate()
        _, errors = watcher.communicate(timeout=10)
    assert "Warning" not in errors, errors
    assert "error" not in errors.lower(), errors


# ---- OpenAPI -------------------------------------------------------------------------------


def test_kubectl_explain_describes_every_field_without_warnings(
    sundial_crds: ControlPlane, history: History, users: Users
) -> None:
    def explained() -> subprocess.CompletedProcess[str] | None:
        result = sundial_crds.kubectl("explain", RUNS, check=False)
        return result if result.returncode == 0 else None

    whole = wait_until("the aggregator to serve the group's OpenAPI", explained, timeout=90)
    assert isinstance(whole, subprocess.CompletedProcess)
    assert "KIND:       ScheduledJobRun" in whole.stdout or "KIND:     ScheduledJobRun" in whole.stdout, whole.stdout
    assert "runs.sundial.dev" in whole.stdout
    assert whole.stderr == ""
    phase = sundial_crds.kubectl("explain", f"{RUNS}.status.phase")
    assert "Succeeded" in phase.stdout, phase.stdout
    assert "TimedOut" in phase.stdout
    assert phase.stderr == ""
    version = sundial_crds.kubectl("explain", f"{RUNS}.metadata.resourceVersion")
    assert "PostgreSQL transaction" in version.stdout
    v2 = sundial_crds.kubectl("explain", RUNS, "--output=plaintext-openapiv2", check=False)
    assert v2.returncode == 0, v2.stderr
    assert "ScheduledJobRun" in v2.stdout
    table = kubectl_as(sundial_crds, users.alice, "get", RUNS, "-n", history.a)
    assert table.stderr == ""
