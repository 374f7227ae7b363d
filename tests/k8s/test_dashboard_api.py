"""The dashboard's REST API against the local control plane, PostgreSQL and Redis.

Writes must land on the ScheduledJob (checked with the real kubectl), each caller gets exactly
what their RBAC allows, and every failure is a JSON error naming its cause.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.keys import Keyspace, run_id_for_manual
from sundial.core.pools import LAUNCHER_POOL, pool_keyspace
from sundial.core.runs import JobRef, RunMessage, RunTemplate, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import Services, free_port
from tests.k8s.conftest import (
    DashboardHandle,
    SundialProcess,
    dashboard_process,
    exists,
    kube_spec,
    wait_for_dashboard,
    wait_until,
)

pytestmark = pytest.mark.k8s

VIEWER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: sj-viewer, namespace: {ns}}}
rules:
- apiGroups: [sundial.dev]
  resources: [scheduledjobs]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: sj-viewer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: sj-viewer}}
subjects:
- {{kind: ServiceAccount, name: viewer, namespace: {ns}}}
"""


def job_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"name": name, "spec": {"target": "noop", "schedule": "0 3 * * *", "category": "biz", **spec}}


def assert_error(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert error["reason"] == reason
    assert error["message"]
    return error


@pytest.fixture(scope="module")
def viewer_token(sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane) -> str:
    """A ServiceAccount allowed to read ScheduledJobs in the dashboard's namespace, nothing else."""
    ns = sundial_dashboard.namespace
    sundial_crds.kubectl("create", "serviceaccount", "viewer", "-n", ns)
    sundial_crds.kubectl("apply", "-f", "-", input=VIEWER_ROLE.format(ns=ns))
    return sundial_crds.kubectl("create", "token", "viewer", "-n", ns).stdout.strip()


@pytest.fixture(scope="module")
def nobody_token(sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane) -> str:
    sundial_crds.kubectl("create", "serviceaccount", "nobody", "-n", sundial_dashboard.namespace)
    return sundial_crds.kubectl("create", "token", "nobody", "-n", sundial_dashboard.namespace).stdout.strip()


def as_token(dashboard: DashboardHandle, token: str) -> httpx.Client:
    return httpx.Client(base_url=dashboard.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# ---- page, documents, identity -----------------------------------------------------------


def test_page_is_served_under_both_names(sundial_dashboard: DashboardHandle) -> None:
    for path in ("/agendamentos", "/schedules"):
        response = httpx.get(sundial_dashboard.url + path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert httpx.get(sundial_dashboard.url + "/").headers["location"] == "/agendamentos"


def test_openapi_documents_every_endpoint(sundial_dashboard: DashboardHandle) -> None:
    paths = httpx.get(sundial_dashboard.url + "/api/openapi.json").json()["paths"]
    for path in ("/api/jobs", "/api/jobs/{namespace}/{name}", "/api/jobs/uid:{uid}", "/api/jobs/{namespace}/{name}/run",
                 "/api/jobs/{namespace}/{name}/enable", "/api/jobs/{namespace}/{name}/disable",
                 "/api/jobs/{namespace}/{name}/runs", "/api/jobs/{namespace}/{name}/logs",
                 "/api/jobs/{namespace}/{name}/backfill", "/api/queue", "/api/runs/{run_id}/retry", "/api/deadletters"):
        assert path in paths
    assert {"get", "patch", "delete"} <= set(paths["/api/jobs/{namespace}/{name}"])


def test_no_credentials_is_401(sundial_dashboard: DashboardHandle) -> None:
    error = assert_error(httpx.get(sundial_dashboard.url + "/api/jobs"), 401, "Unauthorized")
    assert "bearer token" in error["message"]
    bad = as_token(sundial_dashboard, "not-a-token").get("/api/jobs")
    assert_error(bad, 401, "Unauthorized")


def test_me_names_the_caller(api: httpx.Client, sundial_dashboard: DashboardHandle) -> None:
    me = api.get("/api/me").json()
    assert me["user"] == "admin"
    assert "system:masters" in me["groups"]
    assert me == {**me, "readOnly": False, "authMode": "token", "defaultNamespace": sundial_dashboard.namespace}


# ---- create, read, update, delete -------------------------------------------------------


def test_create_writes_the_resource_and_reads_back_status(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("pipeline")
    created = api.post("/api/jobs", json=job_body(name, schedule="0 12,18,20 * * *", displayName="Pipeline BIZ"))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["id"] == f"{sundial_dashboard.namespace}/{name}"
    assert job["scheduleForm"] == {"mode": "times", "cron": "0 12,18,20 * * *", "times": ["12:00", "18:00", "20:00"],
                                   "intervalMinutes": None}
    assert job["scheduleText"]["pt-BR"] == "12:00, 18:00, 20:00"
    spec = kube_spec(sundial_crds, sundial_dashboard.namespace, name)
    assert spec["schedule"] == "0 12,18,20 * * *"
    assert spec["displayName"] == "Pipeline BIZ"
    assert spec["retry"]["attempts"] == 3  # the CRD's default, applied by the API server

    def armed() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/jobs/{job['id']}").json()
        return body if body["status"].get("nextRunTime") else None

    shown = wait_until("status.nextRunTime through the API", armed, timeout=60)
    assert isinstance(shown, dict)
    assert shown["ready"]["status"] == "True"
    listed = api.get("/api/jobs", params={"category": "biz"}).json()
    assert job["id"] in [item["id"] for item in listed]
    assert api.get("/api/jobs", params={"category": "nope"}).json() == []


def test_invalid_input_is_a_400_naming_the_field(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("bad")
    cases = [
        (job_body(name, schedule="61 * * * *"), "spec.schedule"),
        (job_body(name, timeZone="Mars/Olympus"), "spec.timeZone"),
        (job_body(name, retry={"attempts": 0}), "spec.retry.attempts"),
        (job_body(name, timeoutSeconds="soon"), "spec.timeoutSeconds"),
        ({**job_body(name), "name": "Not_A_Name"}, "name"),
        ({"name": name, "spec": {"schedule": "@daily"}}, "spec.target"),
    ]
    for body, field in cases:
        error = assert_error(api.post("/api/jobs", json=body), 400, "Invalid")
        assert field in [f["field"] for f in error["fields"]], (field, error)
    assert not exists(sundial_crds, sundial_dashboard.namespace, name)


def test_dry_run_validates_without_creating(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("dry")
    response = api.post("/api/jobs", params={"dryRun": "true"}, json=job_body(name))
    assert response.status_code == 200, response.text
    assert response.json()["name"] == name
    assert not exists(sundial_crds, sundial_dashboard.namespace, name)


def test_taken_name_is_409(api: httpx.Client) -> None:
    body = job_body(unique("twice"))
    assert api.post("/api/jobs", json=body).status_code == 201
    assert_error(api.post("/api/jobs", json=body), 409, "Conflict")


def test_patch_edits_the_spec_and_a_stale_generation_is_409(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("edit")
    job = api.post("/api/jobs", json=job_body(name)).json()
    path = f"/api/jobs/{job['id']}"
    edited = api.patch(path, json={"generation": job["generation"],
                                   "spec": {"schedule": "*/5 * * * *", "retry": {"attempts": 5}}})
    assert edited.status_code == 200, edited.text
    assert edited.json()["scheduleText"] == {"pt-BR": "A cada 5 minutos", "en": "Every 5 minutes"}
    spec = kube_spec(sundial_crds, sundial_dashboard.namespace, name)
    assert (spec["schedule"], spec["retry"]["attempts"]) == ("*/5 * * * *", 5)
    assert spec["retry"]["backoff"]["delaySeconds"] == 5  # merged, not replaced

    stale = api.patch(path, json={"generation": job["generation"], "spec": {"schedule": "@hourly"}})
    assert_error(stale, 409, "Conflict")
    assert kube_spec(sundial_crds, sundial_dashboard.namespace, name)["schedule"] == "*/5 * * * *"

    invalid = api.patch(path, json={"spec": {"schedule": "not cron"}})
    assert "spec.schedule" in [f["field"] for f in assert_error(invalid, 400, "Invalid")["fields"]]


def test_enable_and_disable_flip_suspend(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("toggle")
    job = api.post("/api/jobs", json=job_body(name)).json()
    assert api.post(f"/api/jobs/{job['id']}/disable").json()["enabled"] is False
    assert kube_spec(sundial_crds, sundial_dashboard.namespace, name)["suspend"] is True
    assert api.post(f"/api/jobs/{job['id']}/enable").json()["enabled"] is True
    assert kube_spec(sundial_crds, sundial_dashboard.namespace, name)["suspend"] is False


def test_delete_removes_the_resource(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane
) -> None:
    name = unique("gone")
    job = api.post("/api/jobs", json=job_body(name)).json()
    assert api.delete(f"/api/jobs/{job['id']}").json() == {"success": True, "job": job["id"]}
    wait_until("the resource is gone", lambda: not exists(sundial_crds, sundial_dashboard.namespace, name))
    assert_error(api.get(f"/api/jobs/{job['id']}"), 404, "NotFound")


# ---- runs --------------------------------------------------------------------------------


def wait_for_runs(api: httpx.Client, path: str, count: int = 1, **params: Any) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api.get(path, params=params).json()["items"]
        done = [run for run in items if run["status"] != "running"]
        return done if len(done) >= count else None

    found = wait_until(f"{count} finished run(s) at {path}", finished, timeout=60)
    assert isinstance(found, list)
    return found


def test_run_now_records_a_manual_run_with_who_asked(api: httpx.Client) -> None:
    job = api.post("/api/jobs", json=job_body(unique("now"))).json()
    accepted = api.post(f"/api/jobs/{job['id']}/run")
    assert accepted.status_code == 202, accepted.text
    request = accepted.json()["request"]
    assert request.startswith("run now by admin at ")
    [run] = wait_for_runs(api, f"/api/jobs/{job['id']}/runs")
    assert (run["trigger"], run["status"], run["reason"], run["attempt"]) == ("manual", "success", request, 1)
    page = api.get(f"/api/jobs/uid:{job['uid']}/runs", params={"limit": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (1, 1, 0)
    assert page["items"][0]["runId"] == run["runId"]


def test_backfill_runs_each_slot_of_the_window_once_however_often_asked(api: httpx.Client) -> None:
    job = api.post("/api/jobs", json=job_body(unique("backfill"), schedule="0 3 * * *", timeZone="UTC")).json()
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T23:59:59Z"}
    # A dry run (the page's preview) lists the slots and asks for nothing.
    dry = api.post(f"/api/jobs/{job['id']}/backfill", json=window, params={"dryRun": "true"})
    assert dry.status_code == 200, dry.text
    assert (dry.json()["slots"], [slot[:16] for slot in dry.json()["slotTimes"]]) == (
        3, ["2026-01-01T03:00", "2026-01-02T03:00", "2026-01-03T03:00"])
    accepted = api.post(f"/api/jobs/{job['id']}/backfill", json=window)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["slots"] == 3
    assert json.loads(accepted.json()["request"])["id"].startswith("backfill by admin at ")
    runs = wait_for_runs(api, f"/api/jobs/{job['id']}/runs", count=3)
    assert {(run["trigger"], run["status"]) for run in runs} == {("backfill", "success")}
    assert sorted(run["logicalTime"][:10] for run in runs) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    # The same window again, and a wider one: only the slot without a run is added.
    assert api.post(f"/api/jobs/{job['id']}/backfill", json=window).status_code == 202
    wider = api.post(f"/api/jobs/{job['id']}/backfill", json={**window, "to": "2026-01-04T12:00:00Z"})
    assert wider.json()["slots"] == 4
    runs = wait_for_runs(api, f"/api/jobs/{job['id']}/runs", count=4)
    assert len(runs) == 4
    error = assert_error(api.post(f"/api/jobs/{job['id']}/backfill",
                                  json={"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}), 400, "Invalid")
    assert "more than 1000 slots" in error["message"]
    future = assert_error(api.post(f"/api/jobs/{job['id']}/backfill",
                                   json={"from": "2026-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}), 400, "Invalid")
    assert "in the future" in future["message"]
    assert [field["field"] for field in future["fields"]] == ["to"], "the reason goes beside its field"


def test_uid_form_names_the_same_job(api: httpx.Client) -> None:
    job = api.post("/api/jobs", json=job_body(unique("byuid"))).json()
    assert api.get(f"/api/jobs/uid:{job['uid']}").json()["id"] == job["id"]
    assert_error(api.get(f"/api/jobs/uid:{uuid.uuid4()}"), 404, "NotFound")
    assert_error(api.get("/api/jobs/uid:not-a-uid"), 404, "NotFound")


def test_failed_runs_show_in_the_queue_and_can_be_retried(api: httpx.Client) -> None:
    job = api.post("/api/jobs", json=job_body(unique("broken"), target="fail", params={"permanent": True},
                                              retry={"attempts": 1})).json()
    api.post(f"/api/jobs/{job['id']}/run")
    [failed] = wait_for_runs(api, f"/api/jobs/{job['id']}/runs")
    assert failed["status"] == "failed"
    assert "failed on request" in failed["errorMessage"]

    queue = api.get("/api/queue").json()
    assert failed["runId"] in [run["runId"] for run in queue["failed"]]
    assert any("fail" in worker["targets"] for worker in queue["workers"])
    assert {"waiting", "inFlight", "delayed", "delayedTotal"} <= set(queue)

    retried = api.post(f"/api/runs/{failed['runId']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["request"].startswith(f"retry of {failed['runId']} by admin")
    wait_for_runs(api, f"/api/jobs/{job['id']}/runs", count=2)
    assert_error(api.post(f"/api/runs/{uuid.uuid4().hex}/retry"), 404, "NotFound")


async def test_the_queue_shows_each_pool_the_launchers_included(
    api: httpx.Client, sundial_env: dict[str, str], services: Services,
) -> None:
    base = Keyspace(sundial_env["SUNDIAL_REDIS_PREFIX"])
    launcher = Broker.from_url(services.redis.url, pool_keyspace(base, LAUNCHER_POOL))
    try:
        now_ms = to_ms(SYSTEM_CLOCK.now())
        await launcher.heartbeat_worker("launcher-1", WorkerHeartbeat(
            seen_ms=now_ms, targets=("sundial:kubernetes-job",), concurrency=100, in_flight=0))
        await launcher.ensure_groups()
        await launcher.redis.xadd(launcher.keys.all_shards()[0].queue, {"run": "waiting"}, id=f"{now_ms - 30_000}-0")
        queue = api.get("/api/queue").json()
    finally:
        await launcher.redis.delete(*(shard.queue for shard in launcher.keys.all_shards()), launcher.keys.workers)
        await launcher.close()
    pools = {pool["pool"]: pool for pool in queue["pools"]}
    assert [pool["pool"] for pool in queue["pools"]][:2] == ["default", "launcher"]
    assert any("fail" in worker["targets"] for worker in pools["default"]["workers"])
    assert [worker["id"] for worker in pools["launcher"]["workers"]] == ["launcher-1"]
    assert pools["launcher"]["waiting"] == 1
    assert 29_000 <= pools["launcher"]["oldestWaitingMs"] < 120_000
    assert queue["waiting"] == sum(pool["waiting"] for pool in queue["pools"])
    assert "launcher-1" in [worker["id"] for worker in queue["workers"]]


def test_only_failed_runs_can_be_retried(api: httpx.Client) -> None:
    job = api.post("/api/jobs", json=job_body(unique("fine"))).json()
    api.post(f"/api/jobs/{job['id']}/run")
    [run] = wait_for_runs(api, f"/api/jobs/{job['id']}/runs")
    assert_error(api.post(f"/api/runs/{run['runId']}/retry"), 409, "Conflict")


def test_targets_come_from_live_workers(api: httpx.Client) -> None:
    assert {"noop", "fail", "http", "sleep"} <= set(api.get("/api/targets").json())


def test_schedule_preview(api: httpx.Client) -> None:
    ok = api.post("/api/schedule/preview", json={"schedule": "*/10 * * * *", "timeZone": "UTC"}).json()
    assert ok["valid"] is True
    assert ok["text"]["en"] == "Every 10 minutes"
    assert len(ok["nextRuns"]) == 3
    bad = api.post("/api/schedule/preview", json={"schedule": "0 25 * * *"}).json()
    assert (bad["valid"], bad["errorField"]) == (False, "spec.schedule")
    assert "hour" in bad["error"]
    zone = api.post("/api/schedule/preview", json={"schedule": "@daily", "timeZone": "Nowhere/City"}).json()
    assert (zone["valid"], zone["errorField"]) == (False, "spec.timeZone")


# ---- authorization ------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_write(
    api: httpx.Client, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane, viewer_token: str
) -> None:
    name = unique("guarded")
    job = api.post("/api/jobs", json=job_body(name)).json()
    before = kube_spec(sundial_crds, sundial_dashboard.namespace, name)
    path = f"/api/jobs/{job['id']}"
    with as_token(sundial_dashboard, viewer_token) as viewer:
        assert viewer.get(path).status_code == 200
        assert job["id"] in [item["id"] for item in viewer.get("/api/jobs").json()]
        assert viewer.get(path + "/runs").status_code == 200
        for response in (
            viewer.patch(path, json={"spec": {"schedule": "@hourly"}}),
            viewer.post(path + "/disable"),
            viewer.post(path + "/run"),
            viewer.delete(path),
            viewer.post("/api/jobs", json=job_body(unique("sneaky"))),
        ):
            error = assert_error(response, 403, "Forbidden")
            assert "forbidden" in error["message"]
    after = kube_spec(sundial_crds, sundial_dashboard.namespace, name)
    assert after == before
    annotations = json.loads(sundial_crds.kubectl("get", "sdj", name, "-n", sundial_dashboard.namespace, "-o",
                                                  "json").stdout)["metadata"].get("annotations", {})
    assert "sundial.dev/run-now" not in annotations


POISON_REASON = "delivered 5 times and never finished: every worker that took it died or failed to record it"


async def bury_dead_letters(redis_url: str, prefix: str, job: dict[str, Any]) -> str:
    """A poison run of `job` and a malformed message, dead-lettered as a worker does; the run id."""
    broker = Broker.from_url(redis_url, Keyspace(prefix))
    try:
        namespace, name = job["id"].split("/")
        ref = JobRef(job["uid"], namespace, name)
        spec = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "0 0 1 1 *",
                                                "params": {"report": "quarterly " * 40}})
        now_ms = to_ms(SYSTEM_CLOCK.now())
        message = RunMessage(run_id=run_id_for_manual(ref.job_id, uuid.uuid4().hex[:12]),
                             template=RunTemplate.from_spec(ref, spec), trigger=Trigger.MANUAL, attempt=1,
                             logical_ms=now_ms, scheduled_ms=None, enqueued_ms=now_ms)
        shard = broker.keys.for_job(ref.job_id)
        # Ids of messages no longer in the queue: only the dead-letter stream changes.
        await broker.dead_letter(shard, "1-1", "malformed run message: KeyError: 'run'", {"junk": "1"})
        await broker.dead_letter(shard, "1-2", POISON_REASON, message.to_fields())
        return message.run_id
    finally:
        await broker.close()


async def test_dead_letters_of_visible_jobs_are_listed_read_only(
    api: httpx.Client, sundial_env: dict[str, str], services: Services,
) -> None:
    job = api.post("/api/jobs", json=job_body(unique("poisoned"))).json()
    run_id = await bury_dead_letters(services.redis.url, sundial_env["SUNDIAL_REDIS_PREFIX"], job)
    body = api.get("/api/deadletters").json()
    assert body["total"] >= 2
    [letter] = [item for item in body["items"] if item["runId"] == run_id]
    assert (letter["job"], letter["jobId"], letter["reason"]) == (job["id"], job["uid"], POISON_REASON)
    assert letter["excerpt"].startswith('{"attempt": "1"')
    assert len(letter["excerpt"]) == 200
    assert body["hidden"] >= 1, "the malformed one names no job"
    assert all(item["jobId"] for item in body["items"])
    assert api.get("/api/deadletters", params={"limit": 0}).status_code == 400
    assert api.delete("/api/deadletters").status_code == 405


def test_a_user_without_rights_sees_nothing(
    api: httpx.Client, sundial_dashboard: DashboardHandle, nobody_token: str
) -> None:
    job = api.post("/api/jobs", json=job_body(unique("hidden"))).json()
    with as_token(sundial_dashboard, nobody_token) as nobody:
        assert_error(nobody.get("/api/jobs"), 403, "Forbidden")
        assert_error(nobody.get(f"/api/jobs/{job['id']}"), 403, "Forbidden")
        assert_error(nobody.get(f"/api/jobs/{job['id']}/runs"), 403, "Forbidden")
        assert_error(nobody.get("/api/queue"), 403, "Forbidden")
        assert_error(nobody.get("/api/deadletters"), 403, "Forbidden")


@pytest.fixture(scope="module")
def second_dashboard(
    sundial_env: dict[str, str], sundial_dashboard: DashboardHandle, process_logs: Path
) -> Iterator[tuple[str, SundialProcess, SundialProcess]]:
    """A read-only dashboard and one behind an authenticating proxy, on the same stack."""
    ro_port, proxy_port = free_port(), free_port()
    read_only = dashboard_process(sundial_env, process_logs / "dashboard-ro.log", ro_port, read_only="true",
                                  default_namespace=sundial_dashboard.namespace).start()
    proxied = dashboard_process(sundial_env, process_logs / "dashboard-proxy.log", proxy_port, auth="proxy",
                                default_namespace=sundial_dashboard.namespace).start()
    try:
        wait_for_dashboard(read_only, ro_port)
        wait_for_dashboard(proxied, proxy_port)
        yield f"http://127.0.0.1:{ro_port}", read_only, proxied
    finally:
        read_only.stop()
        proxied.stop()


def test_read_only_mode_refuses_every_write(
    second_dashboard: tuple[str, SundialProcess, SundialProcess], sundial_dashboard: DashboardHandle
) -> None:
    url = second_dashboard[0]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {sundial_dashboard.admin_token}"}) as admin:
        assert admin.get("/api/jobs").status_code == 200
        assert admin.get("/api/me").json()["readOnly"] is True
        assert_error(admin.post("/api/jobs", json=job_body(unique("ro"))), 403, "ReadOnly")
        assert_error(admin.post(f"/api/jobs/{sundial_dashboard.namespace}/x/run"), 403, "ReadOnly")
        assert admin.post("/api/schedule/preview", json={"schedule": "@daily"}).json()["valid"] is True


def test_proxy_mode_impersonates_the_forwarded_user(
    api: httpx.Client,
    second_dashboard: tuple[str, SundialProcess, SundialProcess],
    sundial_dashboard: DashboardHandle,
    viewer_token: str,
) -> None:
    proxied = second_dashboard[2]
    port = proxied.env["SUNDIAL_DASHBOARD_PORT"]
    job = api.post("/api/jobs", json=job_body(unique("proxied"))).json()
    viewer = f"system:serviceaccount:{sundial_dashboard.namespace}:viewer"
    headers = {"X-Forwarded-User": viewer, "X-Forwarded-Groups": "system:serviceaccounts,system:authenticated"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        assert client.get("/api/me").json()["user"] == viewer
        assert client.get(f"/api/jobs/{job['id']}").status_code == 200
        error = assert_error(client.post(f"/api/jobs/{job['id']}/disable"), 403, "Forbidden")
        assert viewer in error["message"]
    assert_error(httpx.get(f"http://127.0.0.1:{port}/api/jobs"), 401, "Unauthorized")
