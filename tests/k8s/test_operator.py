"""The operator end to end: the real kube-apiserver, the real kubectl, real PostgreSQL and Redis,
a real `sundial-operator` and a real `sundial-worker`.

One standalone operator and one worker serve the module in namespace `e2e-*`; the webhook and
HA tests start operators of their own in namespaces of their own, so no two operators ever
handle the same object. Waits poll with deadlines: the machine is small and shared.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sundial.core.broker import Broker
from sundial.core.jobs import ArmRequest, arm_job, arm_jobs, armed_as
from sundial.core.keys import Keyspace
from sundial.core.pools import LAUNCHER_POOL, pool_keyspace
from sundial.core.runs import JobRef
from sundial.core.spec import parse_spec
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import RedisServer, free_port
from sundial.operator.webhook import self_signed
from tests.k8s.conftest import (
    SundialProcess,
    console_script,
    create_namespace,
    eventually,
    operator_process,
    running_operator,
    wait_until,
)

pytestmark = pytest.mark.k8s

EVERY_SECOND = "*/1 * * * * *"
NEVER_IN_A_TEST = "0 0 1 1 *"  # next New Year's midnight


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e2e_namespace(sundial_crds: ControlPlane) -> str:
    return create_namespace(sundial_crds, "e2e")


@pytest.fixture(scope="module")
def operator(
    sundial_env: dict[str, str], process_logs: Path, e2e_namespace: str, sundial_worker: SundialProcess
) -> Iterator[SundialProcess]:
    """The module's operator: standalone, this module's namespace, drift repair every 2 s."""
    with running_operator(
        sundial_env, process_logs / "operator.log",
        "--standalone", "--namespace", e2e_namespace, "--resync-seconds", "2", "--orphan-sweep-seconds", "4",
    ) as proc:
        yield proc


@pytest.fixture
def keyspace(sundial_env: dict[str, str]) -> Keyspace:
    """The processes' own key prefix, so `broker` sees what they wrote."""
    return Keyspace(prefix=sundial_env["SUNDIAL_REDIS_PREFIX"])


class Jobs:
    """ScheduledJobs in one namespace, driven through the real kubectl."""

    def __init__(self, controlplane: ControlPlane, namespace: str) -> None:
        self.cp = controlplane
        self.namespace = namespace

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> Any:
        return self.cp.kubectl(*args, "-n", self.namespace, check=check, input=input)

    @staticmethod
    def manifest(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> str:
        spec.setdefault("target", "noop")
        spec.setdefault("timeZone", "UTC")
        metadata: dict[str, Any] = {"name": name}
        if annotations:
            metadata["annotations"] = annotations
        return json.dumps({"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob", "metadata": metadata,
                           "spec": spec})

    def apply(self, name: str, annotations: dict[str, str] | None = None, **spec: Any) -> str:
        """Apply and return the UID."""
        self.kubectl("apply", "-f", "-", input=self.manifest(name, annotations, **spec))
        return str(self.get(name)["metadata"]["uid"])

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.kubectl("get", "sdj", name, "-o", "json").stdout)
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait(self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0
             ) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            status = self.status(name)
            return status if check(status) else None

        found = wait_until(f"{self.namespace}/{name}: {what}", ok, timeout=timeout, interval=0.3)
        assert isinstance(found, dict)
        return found

    def wait_ready(self, name: str, reason: str, status: str = "True", timeout: float = 60.0) -> dict[str, Any]:
        def matches(current: dict[str, Any]) -> bool:
            condition = ready(current)
            return condition is not None and (condition["status"], condition["reason"]) == (status, reason)

        return self.wait(name, f"Ready={status} {reason}", matches, timeout)

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.kubectl("patch", "sdj", name, "--type=merge", "-p", json.dumps(body))

    def annotate(self, name: str, key: str, value: str) -> None:
        self.kubectl("annotate", "sdj", name, f"{key}={value}", "--overwrite")

    def delete(self, name: str) -> None:
        self.kubectl("delete", "sdj", name, "--wait=true", "--timeout=60s")

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items


def ready(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def ready_message(status: dict[str, Any]) -> str:
    condition = ready(status)
    assert condition is not None, status
    return str(condition["message"])


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def jobs(sundial_crds: ControlPlane, e2e_namespace: str, operator: SundialProcess) -> Jobs:
    return Jobs(sundial_crds, e2e_namespace)


async def runs_of(store: Store, job_id: str, trigger: str | None = None) -> list[dict[str, Any]]:
    runs = await store.runs(job_id, limit=10_000)
    return [r for r in runs if trigger is None or r["trigger_type"] == trigger]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---- apply, run, edit --------------------------------------------------------------------


async def test_apply_arms_the_job_and_reports_next_run(jobs: Jobs, store: Store, broker: Broker) -> None:
    name = unique("arm")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST)
    status = jobs.wait_ready(name, "Scheduled")
    assert status["observedGeneration"] == 1
    next_run = parse_time(status["nextRunTime"])
    assert (next_run.month, next_run.day, next_run.hour, next_run.minute) == (1, 1, 0, 0)
    row = await store.job(uid)
    assert row is not None
    assert (row["namespace"], row["name"], row["generation"], row["enabled"]) == (jobs.namespace, name, 1, True)
    assert row["next_run_at"] == next_run
    entry = await broker.entry(uid)
    assert entry is not None
    assert entry.next_due_ms == int(next_run.timestamp() * 1000)


async def test_runs_show_up_in_status_and_printer_columns(jobs: Jobs, store: Store, operator: SundialProcess
                                                         ) -> None:
    name = unique("runs")
    uid = jobs.apply(name, schedule=EVERY_SECOND)
    status = jobs.wait(name, "three successful runs",
                       lambda s: s.get("successCount", 0) >= 3 and s.get("lastStatus") == "Succeeded")
    assert status["failCount"] == 0
    assert status["runCount"] >= status["successCount"]
    assert 1 <= len(status["recentRuns"]) <= 5
    finished = [parse_time(r["completionTime"]) for r in status["recentRuns"]]
    assert finished == sorted(finished, reverse=True), "recentRuns newest first"
    assert {r["trigger"] for r in status["recentRuns"]} == {"Scheduled"}
    assert parse_time(status["nextRunTime"]) > parse_time(status["lastScheduleTime"])
    for field in ("lastRunTime", "lastSuccessfulTime", "lastDurationMs"):
        assert status[field] is not None, field
    row = await store.job(uid)
    assert row is not None
    assert row["run_count"] >= status["runCount"], "status trails the database, never leads it"

    # The printer columns read the status: kubectl shows the outcome and the counts.
    table = jobs.kubectl("get", "sdj", name, "-o", "wide").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == [
        "NAME", "READY", "SCHEDULE", "TIMEZONE", "SUSPEND", "LAST STATUS", "LAST RUN", "NEXT RUN", "AGE",
        "MORE SCHEDULES", "EXCLUDE", "RUNS LEFT", "TARGET", "CATEGORY", "SUCCESS", "FAILED"]
    cells = table[1].split()
    assert cells[:2] == [name, "True"], "READY among the default columns"
    assert "Succeeded" in cells
    assert int(cells[-2]) >= 3, "SUCCESS"
    assert cells[-1] == "0", "FAILED"

    # Status writes are coalesced: at most one per object every 2 s however often it runs.
    window = 12
    rv = jobs.get(name)["metadata"]["resourceVersion"]
    watch = jobs.cp.kubectl(
        "get", "--raw",
        f"/apis/sundial.dev/v1alpha1/namespaces/{jobs.namespace}/scheduledjobs"
        f"?watch=true&fieldSelector=metadata.name%3D{name}&resourceVersion={rv}&timeoutSeconds={window}",
        timeout=window + 30,
    )
    writes = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
    modified = [w for w in writes if w["type"] == "MODIFIED"]
    print(f"\nstatus writes to one every-second job: {len(modified)} in {window}s "
          f"({len(modified) / window:.2f}/s)")
    assert 2 <= len(modified) <= window / 2 + 2, [w["object"]["status"].get("runCount") for w in modified]
    # ...and none of those writes made the handlers run again (the churn watch may have armed
    # the job before kopf's handler found it armed already).
    assert len(re.findall(rf"{re.escape(jobs.namespace)}/{name}: (?:already )?armed", operator.log())) == 1
    jobs.delete(name)


async def test_edit_schedule_rearms(jobs: Jobs, broker: Broker) -> None:
    name = unique("edit")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST)
    before = jobs.wait_ready(name, "Scheduled")
    entry_before = await broker.entry(uid)
    assert entry_before is not None
    jobs.patch(name, {"spec": {"schedule": "30 12 * * *"}})
    after = jobs.wait(name, "generation 2 armed",
                      lambda s: s.get("observedGeneration") == 2 and s.get("nextRunTime") != before["nextRunTime"])
    next_run = parse_time(after["nextRunTime"])
    assert (next_run.hour, next_run.minute) == (12, 30)
    assert (ready(after) or {}).get("reason") == "Scheduled"
    entry_after = await broker.entry(uid)
    assert entry_after is not None
    assert entry_after.version != entry_before.version
    assert entry_after.next_due_ms == int(next_run.timestamp() * 1000)


async def test_suspend_stops_runs_and_resume_does_not_burst(jobs: Jobs, store: Store, broker: Broker) -> None:
    name = unique("suspend")
    uid = jobs.apply(name, schedule=EVERY_SECOND)
    jobs.wait(name, "two runs", lambda s: s.get("runCount", 0) >= 2)

    jobs.patch(name, {"spec": {"suspend": True}})
    status = jobs.wait_ready(name, "Suspended")
    suspended_at = datetime.now(UTC)
    assert status.get("nextRunTime") is None
    assert await broker.entry(uid) is None
    row = await store.job(uid)
    assert row is not None
    assert row["enabled"] is False

    # A run fired just before the suspension may still be finishing; after that, nothing.
    await eventually("in-flight runs to finish", lambda: _none_running(store, uid), within=30)
    count = len(await runs_of(store, uid))
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert len(await runs_of(store, uid)) == count, "a suspended job ran"
        await asyncio.sleep(0.5)

    resumed_at = datetime.now(UTC)
    jobs.patch(name, {"spec": {"suspend": False}})
    jobs.wait_ready(name, "Scheduled")
    await eventually("runs after resuming", lambda: _runs_after(store, uid, resumed_at, 3), within=30)
    runs = await runs_of(store, uid)
    slots = [r["scheduled_for"] for r in runs]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert not [s for s in slots if suspended_at < s < resumed_at], "slots of the suspended window ran"
    assert {r["trigger_type"] for r in runs} == {"scheduled"}, "resuming must not catch up"
    jobs.delete(name)


async def _none_running(store: Store, uid: str) -> bool:
    return not await store.running(uid)


async def _runs_after(store: Store, uid: str, moment: datetime, at_least: int) -> bool:
    return len([r for r in await runs_of(store, uid) if r["scheduled_for"] > moment]) >= at_least


# ---- run now, delete ---------------------------------------------------------------------


async def test_run_now_annotation_runs_once_per_value(jobs: Jobs, store: Store, operator: SundialProcess) -> None:
    name = unique("runnow")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST)
    jobs.wait_ready(name, "Scheduled")

    jobs.annotate(name, "sundial.dev/run-now", "ticket-1")
    manual = await eventually("the manual run", lambda: _manual_done(store, uid, 1))
    assert manual[0]["reason"] == "ticket-1"
    jobs.wait(name, "lastRunNowRequest recorded", lambda s: s.get("lastRunNowRequest") == "ticket-1")

    # An unrelated change reconciles again; the request it still carries must not run again.
    handled = f"/{name}: already armed"
    before = operator.log().count(handled)
    jobs.annotate(name, "example.com/touched", "yes")
    wait_until("the unrelated change to be handled", lambda: operator.log().count(handled) > before)
    jobs.wait(name, "the manual run in status", lambda s: s.get("runCount") == 1)
    assert len(await runs_of(store, uid, "manual")) == 1

    jobs.annotate(name, "sundial.dev/run-now", "ticket-2")
    runs = await eventually("the second manual run", lambda: _manual_done(store, uid, 2))
    assert sorted(r["reason"] for r in runs) == ["ticket-1", "ticket-2"]
    jobs.wait(name, "both manual runs in status", lambda s: s.get("runCount") == 2)
    jobs.delete(name)


async def _manual_done(store: Store, uid: str, count: int) -> list[dict[str, Any]] | None:
    runs = [r for r in await runs_of(store, uid, "manual") if r["status"] == "success"]
    return runs if len(runs) == count else None


async def test_a_sequential_backfill_runs_its_slots_one_after_another(jobs: Jobs, store: Store) -> None:
    name = unique("backfill")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST, concurrencyPolicy="Forbid")
    jobs.wait_ready(name, "Scheduled")
    request = json.dumps({"from": "2023-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z", "id": "t1"})
    jobs.annotate(name, "sundial.dev/backfill", request)
    runs = await eventually("three backfilled runs", lambda: _backfilled(store, uid, 3))
    runs.sort(key=lambda r: r["logical_time"])
    assert [r["logical_time"].year for r in runs] == [2023, 2024, 2025]
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["completed_at"], "Forbid: one slot at a time"
    jobs.wait(name, "lastBackfillRequest recorded", lambda s: s.get("lastBackfillRequest") == request)

    # A refused request is recorded as handled too (with an Event saying why), and runs nothing.
    refused = json.dumps({"from": "2025-01-01T00:00:00Z", "to": "2023-01-01T00:00:00Z"})
    jobs.annotate(name, "sundial.dev/backfill", refused)
    jobs.wait(name, "the refused request recorded", lambda s: s.get("lastBackfillRequest") == refused)
    assert len(await runs_of(store, uid, "backfill")) == 3
    jobs.delete(name)


async def _backfilled(store: Store, uid: str, count: int) -> list[dict[str, Any]] | None:
    runs = [r for r in await runs_of(store, uid, "backfill") if r["status"] == "success"]
    return runs if len(runs) == count else None


async def test_delete_disarms_and_deletes_history_by_default(jobs: Jobs, store: Store, broker: Broker) -> None:
    name = unique("delete")
    uid = jobs.apply(name, {"sundial.dev/run-now": "before-delete"}, schedule=NEVER_IN_A_TEST)
    jobs.wait_ready(name, "Scheduled")
    await eventually("a run in the history", lambda: _manual_done(store, uid, 1))
    assert await broker.entry(uid) is not None
    jobs.delete(name)
    # No finalizer: the object goes at once, and the operator forgets the job on its event.
    await eventually("the row and entry gone", lambda: _forgotten(store, broker, uid), within=30)
    assert await runs_of(store, uid) == []


async def _forgotten(store: Store, broker: Broker, uid: str) -> bool:
    return await store.job(uid) is None and await broker.entry(uid) is None


async def test_delete_can_retain_history(jobs: Jobs, store: Store, broker: Broker) -> None:
    name = unique("retain")
    uid = jobs.apply(name, {"sundial.dev/run-now": "keep-me", "sundial.dev/history-on-delete": "Retain"},
                     schedule=NEVER_IN_A_TEST)
    jobs.wait_ready(name, "Scheduled")
    await eventually("a run in the history", lambda: _manual_done(store, uid, 1))
    jobs.delete(name)
    await eventually("the entry gone", lambda: _no_entry(broker, uid), within=30)
    row = await eventually("the row marked deleted", lambda: _disabled_row(store, uid), within=30)
    assert row is not None, "the row is kept, marked deleted"
    assert await store.job_by_name(jobs.namespace, name) is None, "and no longer live"
    assert len(await runs_of(store, uid)) == 1


# ---- churn: deletions and suspensions take effect at once -----------------------------------

# Slack between the API server accepting a change and a slot that fires after it: the ticker
# may have planned that slot just before the entry went. Generous on this shared machine.
FIRE_SLACK = timedelta(seconds=2)


async def _late_slots(store: Store, uid: str, accepted: datetime) -> list[datetime]:
    """Slots fired later than `accepted` (plus slack): there must be none."""
    return [r["scheduled_for"] for r in await runs_of(store, uid) if r["scheduled_for"] > accepted + FIRE_SLACK]


def _manifests(jobs: Jobs, names: list[str], labels: dict[str, str], **spec: Any) -> str:
    items = []
    for name in names:
        item = json.loads(jobs.manifest(name, **spec))
        item["metadata"]["labels"] = labels
        items.append(item)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


async def test_a_deleted_job_is_disarmed_and_never_fires_again(jobs: Jobs, store: Store, broker: Broker) -> None:
    name = unique("gone")
    uid = jobs.apply(name, {"sundial.dev/history-on-delete": "Retain"}, schedule=EVERY_SECOND)
    jobs.wait(name, "two runs", lambda s: s.get("runCount", 0) >= 2)
    jobs.kubectl("delete", "scheduledjobs", name, "--wait=false")
    accepted = datetime.now(UTC)
    await eventually("the entry gone", lambda: _no_entry(broker, uid), within=30)
    def gone() -> bool:
        return not jobs.kubectl("get", "scheduledjobs", name, "--ignore-not-found", "-o", "name").stdout.strip()

    wait_until("the object gone", gone)
    await asyncio.sleep(3)  # a slot fired late would have landed by now
    assert await _late_slots(store, uid, accepted) == [], "a deleted job fired"
    row = await store.job(uid)
    assert row is not None, "its history is retained, as annotated"
    assert row["enabled"] is False


async def _no_entry(broker: Broker, uid: str) -> bool:
    return await broker.entry(uid) is None


async def _disabled_row(store: Store, uid: str) -> dict[str, Any] | None:
    row = await store.job(uid)
    return row if row is not None and row["enabled"] is False else None


async def test_a_job_suspended_while_the_operator_is_busy_stops_at_once(
    jobs: Jobs, store: Store, broker: Broker
) -> None:
    name = unique("busy")
    uid = jobs.apply(name, schedule=EVERY_SECOND)
    jobs.wait(name, "two runs", lambda s: s.get("runCount", 0) >= 2)
    label = unique("burst")
    burst = [f"{label}-{i:03d}" for i in range(150)]
    # A burst of new objects fills kopf's queue; the suspension must not wait behind it.
    jobs.kubectl("apply", "-f", "-", input=_manifests(jobs, burst, {"burst": label}, schedule=NEVER_IN_A_TEST))
    jobs.patch(name, {"spec": {"suspend": True}})
    accepted = datetime.now(UTC)
    await eventually("the entry gone", lambda: _no_entry(broker, uid), within=30)
    jobs.wait_ready(name, "Suspended", timeout=120)
    await asyncio.sleep(3)
    assert await _late_slots(store, uid, accepted) == [], "a suspended job fired"
    row = await store.job(uid)
    assert row is not None
    assert row["enabled"] is False
    jobs.kubectl("delete", "scheduledjobs", "-l", f"burst={label}", "--timeout=120s")
    jobs.delete(name)


async def test_a_mass_delete_completes_and_leaves_no_rows_or_entries(
    jobs: Jobs, store: Store, broker: Broker
) -> None:
    label = unique("mass")
    names = [f"{label}-{i:03d}" for i in range(200)]
    jobs.kubectl("apply", "-f", "-", input=_manifests(jobs, names, {"mass": label}, schedule=EVERY_SECOND))
    listed = json.loads(jobs.kubectl("get", "scheduledjobs", "-l", f"mass={label}", "-o", "json").stdout)["items"]
    uids = [str(item["metadata"]["uid"]) for item in listed]
    assert len(uids) == len(names)
    await eventually("every job armed", lambda: _all_armed(store, broker, uids), within=120)

    jobs.kubectl("delete", "scheduledjobs", "-l", f"mass={label}", "--timeout=120s")
    assert jobs.kubectl("get", "scheduledjobs", "-l", f"mass={label}", "-o", "name").stdout.strip() == ""
    await eventually("every row gone", lambda: _no_rows(store, uids), within=60)
    entries = await broker.entries(uids)
    assert [uid for uid, entry in entries.items() if entry is not None] == [], "entries left behind"
    assert not (set(uids) & await broker.armed_job_ids()), "due-index members left behind"


async def _no_rows(store: Store, uids: list[str]) -> bool:
    return await store.jobs_by_id(uids) == {}


async def _all_armed(store: Store, broker: Broker, uids: list[str]) -> bool:
    rows = await store.jobs_by_id(uids)
    entries = await broker.entries(uids)
    return len(rows) == len(uids) and all(entries.values())


# ---- invalid specs and unknown targets -----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({"schedule": "61 * * * *"}, "InvalidSchedule", "spec.schedule: invalid minute field '61'"),
        ({"schedule": "* * * * *", "timeZone": "Mars/Olympus"}, "UnknownTimeZone",
         "spec.timeZone: unknown time zone 'Mars/Olympus'"),
    ],
)
async def test_invalid_spec_without_webhook_is_a_condition_and_an_event(
    jobs: Jobs, store: Store, spec: dict[str, Any], reason: str, message: str
) -> None:
    name = unique("invalid")
    jobs.apply(name, **spec)
    status = jobs.wait_ready(name, reason, status="False")
    assert message in ready_message(status)
    assert status["observedGeneration"] == 1
    assert await store.job_by_name(jobs.namespace, name) is None, "nothing armed"
    events = wait_until("a Warning Event", lambda: [e for e in jobs.events(name) if e["reason"] == reason])
    assert isinstance(events, list)
    assert events[0]["type"] == "Warning"
    assert message in events[0]["message"]

    # Fixing the spec is an update: the job gets armed after all.
    jobs.patch(name, {"spec": {"schedule": NEVER_IN_A_TEST, "timeZone": "UTC"}})
    fixed = jobs.wait_ready(name, "Scheduled")
    assert fixed["observedGeneration"] == 2
    jobs.delete(name)


async def test_unknown_target_is_armed_but_not_ready(jobs: Jobs, broker: Broker) -> None:
    name = unique("target")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST, target="no-such-target")
    status = jobs.wait_ready(name, "UnknownTarget", status="False")
    text = ready_message(status)
    assert text.startswith("no live worker offers target no-such-target (live workers offer: ")
    assert "noop" in text
    assert status.get("nextRunTime"), "still armed"
    assert await broker.entry(uid) is not None
    jobs.delete(name)


async def test_events_only_on_transitions(jobs: Jobs) -> None:
    name = unique("events")
    jobs.apply(name, schedule=EVERY_SECOND, target="fail", params={"message": "boom"}, retry={"attempts": 1})
    jobs.wait(name, "three failures", lambda s: s.get("failCount", 0) >= 3)
    jobs.patch(name, {"spec": {"target": "noop", "params": {}}})
    jobs.wait(name, "three successes", lambda s: s.get("successCount", 0) >= 3 and s.get("lastStatus") == "Succeeded")
    reasons = [e["reason"] for e in jobs.events(name) if e["reason"] in ("RunFailed", "Recovered")]
    assert sorted(reasons) == ["Recovered", "RunFailed"], "one Event per transition, none per run"
    [failed] = [e for e in jobs.events(name) if e["reason"] == "RunFailed"]
    assert failed["type"] == "Warning"
    assert "boom" in failed["message"]
    jobs.delete(name)


async def test_backend_down_is_a_condition_and_heals(
    sundial_env: dict[str, str], process_logs: Path, sundial_crds: ControlPlane, tmp_path: Path
) -> None:
    """An operator whose Redis goes away reports BackendUnavailable and retries until it is back."""
    namespace = create_namespace(sundial_crds, "backend")
    redis = RedisServer(tmp_path / "redis").start()
    port = redis.port
    proc = operator_process(
        {**sundial_env, "REDIS_URL": redis.url}, process_logs / "operator-backend.log",
        "--standalone", "--namespace", namespace,
    ).start()
    jobs = Jobs(sundial_crds, namespace)
    try:
        proc.wait_for_log(r"Activity 'configure' succeeded")
        redis.stop()
        name = unique("backend")
        jobs.apply(name, schedule=NEVER_IN_A_TEST)
        status = jobs.wait_ready(name, "BackendUnavailable", status="False")
        assert "Redis" in ready_message(status)

        redis = RedisServer(tmp_path / "redis", port=port).start()
        # Back, and armed: this Redis has no worker, hence UnknownTarget rather than Scheduled.
        healed = jobs.wait_ready(name, "UnknownTarget", status="False", timeout=90)
        assert healed.get("nextRunTime")
        jobs.delete(name)
    finally:
        proc.stop()
        redis.stop()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"DATABASE_URL": None}, "sundial-operator: invalid configuration: DATABASE_URL is not set"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "sundial-operator: Redis at redis://127.0.0.1:1/0 is unreachable"),
        ({"KUBECONFIG": "/nonexistent/kubeconfig"}, "sundial-operator: no Kubernetes configuration"),
    ],
)
def test_startup_problems_exit_with_one_readable_line(
    sundial_env: dict[str, str], change: dict[str, str | None], expected: str
) -> None:
    env = {**sundial_env}
    for variable, value in change.items():
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    result = subprocess.run(
        [*console_script("sundial-operator", "sundial.operator.main"), "--standalone"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]


# ---- drift repair ------------------------------------------------------------------------


async def test_lost_entries_are_rearmed_and_orphans_removed(
    jobs: Jobs, store: Store, broker: Broker, operator: SundialProcess
) -> None:
    name = unique("drift")
    uid = jobs.apply(name, schedule=NEVER_IN_A_TEST)
    jobs.wait_ready(name, "Scheduled")
    entry = await broker.entry(uid)
    assert entry is not None
    assert await broker.disarm(uid), "Redis lost the entry"
    rearmed = await eventually("the entry re-armed", lambda: broker.entry(uid), within=30)
    assert rearmed.next_due_ms == entry.next_due_ms
    operator.wait_for_log(rf"re-armed {jobs.namespace}/{name}")

    ghost = JobRef(str(uuid.uuid4()), jobs.namespace, unique("ghost"))
    spec = parse_spec({"target": "noop", "schedule": NEVER_IN_A_TEST, "timeZone": "UTC"})
    await arm_job(broker, store, ghost, spec, 1, datetime.now(UTC))
    await eventually("the orphan removed", lambda: _gone(store, broker, ghost), within=30)
    assert await broker.entry(uid) is not None, "a job that exists is never taken for an orphan"
    assert await store.job_by_name(jobs.namespace, name) is not None
    jobs.delete(name)


async def test_orphans_armed_in_the_launcher_pool_are_removed_too(
    jobs: Jobs, store: Store, broker: Broker, operator: SundialProcess
) -> None:
    launcher = broker.for_keyspace(pool_keyspace(broker.keys, LAUNCHER_POOL))
    spec = parse_spec({"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
                                                                      "restartPolicy": "Never"}}}},
                       "schedule": NEVER_IN_A_TEST, "timeZone": "UTC"})
    ghost = JobRef(str(uuid.uuid4()), jobs.namespace, unique("ghost-job"))
    bare = JobRef(str(uuid.uuid4()), jobs.namespace, unique("bare-entry"))
    for job in (ghost, bare):
        await arm_job(broker, store, job, spec, 1, datetime.now(UTC))
        assert await launcher.entry(job.job_id) is not None, "a jobTemplate job is armed in the launcher's pool"
    await store.delete_job(bare.job_id, retain_history=False)  # only the launcher's keyspace remembers it
    await eventually("both orphans removed", lambda: _all_gone(store, launcher, [ghost, bare]), within=30)


async def _all_gone(store: Store, broker: Broker, jobs: list[JobRef]) -> bool:
    return all([await _gone(store, broker, job) for job in jobs])


async def _gone(store: Store, broker: Broker, job: JobRef) -> bool:
    return await broker.entry(job.job_id) is None and await store.job_by_name(job.namespace, job.name) is None


# ---- restarts ----------------------------------------------------------------------------


async def test_operator_restart_misses_and_doubles_no_slot(
    jobs: Jobs, store: Store, operator: SundialProcess
) -> None:
    name = unique("restart")
    # RunAll: even if this busy machine delays a slot past the on-time grace, it still runs.
    uid = jobs.apply(name, schedule=EVERY_SECOND, missedRunPolicy="RunAll")
    jobs.wait(name, "two runs", lambda s: s.get("runCount", 0) >= 2)

    assert operator.stop() == 0
    down = len(await runs_of(store, uid))
    await eventually("runs while no operator runs", lambda: _at_least(store, uid, down + 3), within=30)
    operator.start()
    operator.wait_for_log(r"Activity 'configure' succeeded")
    after = len(await runs_of(store, uid))
    await eventually("runs after the restart", lambda: _at_least(store, uid, after + 3), within=30)
    jobs.wait(name, "status caught up", lambda s: s.get("runCount", 0) >= after + 1)
    jobs.patch(name, {"spec": {"suspend": True}})
    jobs.wait_ready(name, "Suspended")
    await eventually("in-flight runs to finish", lambda: _none_running(store, uid), within=30)

    runs = await runs_of(store, uid)
    slots = sorted(r["scheduled_for"] for r in runs if r["attempt"] == 1)
    assert len(slots) >= after + 3
    assert len(slots) == len(set(slots)), "a slot ran twice"
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert set(gaps) == {timedelta(seconds=1)}, f"slots missed: {[str(s) for s in slots]}"
    resumed = re.findall(rf"{re.escape(jobs.namespace)}/{name}: (?:armed|already armed|primed)", operator.log())
    assert len(resumed) >= 2, "resumed by the new operator"
    jobs.delete(name)


async def _at_least(store: Store, uid: str, count: int) -> bool:
    return len(await runs_of(store, uid)) >= count


# ---- priming --------------------------------------------------------------------------------


async def test_priming_arms_what_exists_before_kopf_looks_and_leaves_the_rest_to_the_handlers(
    sundial_env: dict[str, str], process_logs: Path, sundial_crds: ControlPlane, sundial_worker: SundialProcess,
    store: Store, broker: Broker,
) -> None:
    namespace = create_namespace(sundial_crds, "prime")
    jobs = Jobs(sundial_crds, namespace)
    plain = jobs.apply("plain", schedule=NEVER_IN_A_TEST)
    paused = jobs.apply("paused", schedule=NEVER_IN_A_TEST, suspend=True)
    jobs.apply("invalid", schedule="61 * * * *")
    requested = jobs.apply("requested", {"sundial.dev/run-now": "at-start"}, schedule=NEVER_IN_A_TEST)
    unoffered = jobs.apply("unoffered", schedule=NEVER_IN_A_TEST, target="no-such-target")
    with running_operator(sundial_env, process_logs / "operator-prime.log",
                          "--standalone", "--namespace", namespace) as proc:
        summary = proc.wait_for_log(r"primed 5 ScheduledJobs .*")[0]
        assert "2 armed, 0 already armed, 2 status and 0 metadata writes, 0 deleted meanwhile" in summary
        assert "1 invalid spec, 1 run-now requested, 1 target not offered" in summary

        # Done before kopf started watching: armed, Ready, and carrying none of kopf's state.
        status = jobs.status("plain")
        assert (ready(status) or {}).get("reason") == "Scheduled"
        assert status["observedGeneration"] == 1
        assert (status["runCount"], status["recentRuns"], status["active"]) == (0, [], [])
        entry = await broker.entry(plain)
        assert entry is not None
        assert entry.next_due_ms == int(parse_time(status["nextRunTime"]).timestamp() * 1000)
        row = await store.job(plain)
        assert row is not None
        assert (row["generation"], row["enabled"], row["next_run_at"]) == (1, True, parse_time(status["nextRunTime"]))
        metadata = jobs.get("plain")["metadata"]
        assert "sundial.dev/finalizer" not in (metadata.get("finalizers") or [])
        assert not [key for key in metadata.get("annotations") or {} if key.startswith("operator.sundial.dev/")], (
            "kopf keeps its state in memory")
        assert (ready(jobs.status("paused")) or {}).get("reason") == "Suspended"
        assert await broker.entry(paused) is None
        paused_row = await store.job(paused)
        assert paused_row is not None
        assert paused_row["enabled"] is False

        # kopf then resumes them and finds nothing to do.
        proc.wait_for_log(rf"{namespace}/plain: primed")
        proc.wait_for_log(rf"{namespace}/paused: primed")
        version = metadata["resourceVersion"]
        await asyncio.sleep(3)
        assert jobs.get("plain")["metadata"]["resourceVersion"] == version, "nothing rewrote the primed object"

        # The rest went through the handlers, as without priming.
        invalid = jobs.wait_ready("invalid", "InvalidSchedule", status="False")
        assert "invalid minute field '61'" in ready_message(invalid)
        wait_until("a Warning Event", lambda: [e for e in jobs.events("invalid") if e["reason"] == "InvalidSchedule"])
        await eventually("the manual run", lambda: _manual_done(store, requested, 1))
        jobs.wait("requested", "lastRunNowRequest recorded", lambda s: s.get("lastRunNowRequest") == "at-start")
        jobs.wait_ready("unoffered", "UnknownTarget", status="False")
        assert await broker.entry(unoffered) is not None, "armed all the same"
        for name in ("plain", "paused", "invalid", "requested", "unoffered"):
            jobs.delete(name)


async def test_arming_in_bulk_leaves_what_arming_one_at_a_time_leaves(store: Store, broker: Broker) -> None:
    now = datetime.now(UTC)
    specs = [
        parse_spec({"target": "noop", "schedule": "*/5 * * * *", "timeZone": "UTC"}),
        parse_spec({"target": "noop", "schedule": "0 9 * * 1", "timeZone": "America/Sao_Paulo",
                    "concurrencyPolicy": "Forbid", "timeoutSeconds": 60, "missedRunPolicy": "RunAll"}),
        parse_spec({"target": "noop", "schedule": "@every 90s", "suspend": True}),
    ]
    singles = [JobRef(str(uuid.uuid4()), "bulk", unique("single")) for _ in specs]
    bulk = [JobRef(str(uuid.uuid4()), "bulk", unique("bulk")) for _ in specs]
    for job, spec in zip(singles, specs, strict=True):
        await arm_job(broker, store, job, spec, 3, now)
    armed = await arm_jobs(broker, store, [ArmRequest(job, spec, 3) for job, spec in zip(bulk, specs, strict=True)],
                           now, await store.jobs_by_id([job.job_id for job in bulk]))

    rows = await store.jobs_by_id([job.job_id for job in singles + bulk])
    entries = await broker.entries([job.job_id for job in singles + bulk])
    for single, many, spec in zip(singles, bulk, specs, strict=True):
        one, other = rows[single.job_id], rows[many.job_id]
        for key in ("spec", "generation", "enabled", "next_run_at", "deleted"):
            assert one[key] == other[key], key
        assert armed[many.job_id].next_run_at == one["next_run_at"]
        first, second = entries[single.job_id], entries[many.job_id]
        if spec.suspend:
            assert first is None
            assert second is None
        else:
            assert first is not None
            assert second is not None
            assert (first.version, first.next_due_ms, first.plan) == (second.version, second.next_due_ms, second.plan)
        # ...and both read as armed, so neither the handlers nor priming arm them again.
        assert armed_as(one, first, spec, 3) == armed_as(other, second, spec, 3) == armed[many.job_id]
        assert armed_as(one, first, spec, 4) is None

    # Arming again in bulk keeps each entry's due slot, as arm_job does.
    later = await arm_jobs(broker, store, [ArmRequest(job, spec, 4) for job, spec in zip(bulk, specs, strict=True)],
                           now + timedelta(hours=1), await store.jobs_by_id([job.job_id for job in bulk]))
    assert {job_id: a.next_run_at for job_id, a in later.items()} == {
        job_id: a.next_run_at for job_id, a in armed.items()}
    for job in singles + bulk:
        await broker.disarm(job.job_id)
        await store.delete_job(job.job_id, retain_history=False)


# ---- admission webhook -------------------------------------------------------------------


@pytest.fixture
def webhook_operator(
    sundial_env: dict[str, str], process_logs: Path, sundial_crds: ControlPlane, sundial_worker: SundialProcess
) -> Iterator[tuple[SundialProcess, Jobs]]:
    namespace = create_namespace(sundial_crds, "webhook")
    proc = operator_process(
        sundial_env, process_logs / "operator-webhook.log",
        "--standalone", "--namespace", namespace, "--webhook", "--webhook-port", str(free_port()),
    ).start()
    try:
        proc.wait_for_log(r"Reconfiguring the validating webhook")
        yield proc, Jobs(sundial_crds, namespace)
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "61 * * * *"}, "spec.schedule: invalid minute field '61' in '61 * * * *'"),
        ({"schedule": "* * * * *", "timeZone": "Mars/Olympus"}, "spec.timeZone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_webhook_rejects_invalid_specs_with_a_readable_message(
    webhook_operator: tuple[SundialProcess, Jobs], spec: dict[str, Any], message: str
) -> None:
    _, jobs = webhook_operator
    wait_until("the webhook to be registered", lambda: _webhook_url(jobs.cp))
    name = unique("rejected")
    result = jobs.kubectl("apply", "-f", "-", input=Jobs.manifest(name, **spec), check=False)
    assert result.returncode != 0
    assert "denied the request" in result.stderr
    assert message in result.stderr
    assert jobs.kubectl("get", "sdj", name, check=False).returncode != 0, "nothing stored"

    good = unique("accepted")
    jobs.apply(good, schedule=NEVER_IN_A_TEST)
    jobs.wait_ready(good, "Scheduled")
    jobs.delete(good)


def _webhook_url(controlplane: ControlPlane) -> str | None:
    result = controlplane.kubectl("get", "validatingwebhookconfiguration", "sundial.dev", "-o", "json", check=False)
    if result.returncode != 0:
        return None
    hooks = json.loads(result.stdout).get("webhooks") or []
    return next((h["clientConfig"].get("url") for h in hooks), None)


def test_webhook_configuration_is_emptied_when_the_operator_stops(
    webhook_operator: tuple[SundialProcess, Jobs],
) -> None:
    proc, jobs = webhook_operator
    wait_until("the webhook to be registered", lambda: _webhook_url(jobs.cp))
    assert proc.stop() == 0
    assert _webhook_url(jobs.cp) is None


def test_webhook_with_a_mounted_certificate_leaves_its_configuration_to_the_deployment(
    sundial_env: dict[str, str], process_logs: Path, sundial_crds: ControlPlane, sundial_worker: SundialProcess,
    tmp_path: Path,
) -> None:
    """What the Helm chart does: a certificate from a Secret, the webhook declared by the chart."""
    cert, key = self_signed(["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    namespace = create_namespace(sundial_crds, "certfile")
    port = free_port()
    configuration = unique("deployment-webhook")
    proc = operator_process(
        sundial_env, process_logs / "operator-certfile.log", "--standalone", "--namespace", namespace,
        "--webhook", "--webhook-host", "127.0.0.1", "--webhook-port", str(port),
        "--webhook-certfile", str(tmp_path / "tls.crt"), "--webhook-keyfile", str(tmp_path / "tls.key"),
    ).start()
    jobs = Jobs(sundial_crds, namespace)
    try:
        proc.wait_for_log(r"Activity 'configure' succeeded")
        sundial_crds.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": configuration},
            "webhooks": [{
                "name": "validate-spec.sundial.dev", "sideEffects": "None", "failurePolicy": "Fail",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate-spec",
                                 "caBundle": base64.b64encode(cert).decode()},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "rules": [{"apiGroups": ["sundial.dev"], "apiVersions": ["v1alpha1"], "resources": ["scheduledjobs"],
                           "operations": ["CREATE", "UPDATE"]}],
            }],
        }))

        def rejected() -> str | None:
            result = jobs.kubectl("apply", "-f", "-", check=False, input=Jobs.manifest(
                unique("rejected"), schedule="* * * * *", timeZone="Mars/Olympus"))
            return result.stderr if result.returncode != 0 and "denied the request" in result.stderr else None

        stderr = wait_until("the mounted-certificate webhook to answer", rejected, timeout=60, interval=1.0)
        assert "spec.timeZone: unknown time zone 'Mars/Olympus'" in str(stderr)
        assert "Reconfiguring the validating webhook" not in proc.log(), "the operator managed a webhook"
    finally:
        sundial_crds.kubectl("delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found")
        proc.stop()


# ---- high availability -------------------------------------------------------------------


def test_two_replicas_with_peering_only_one_acts(
    sundial_env: dict[str, str], process_logs: Path, sundial_crds: ControlPlane, sundial_worker: SundialProcess
) -> None:
    namespace = create_namespace(sundial_crds, "ha")
    jobs = Jobs(sundial_crds, namespace)

    def replica(log: str, priority: int) -> SundialProcess:
        return operator_process(sundial_env, process_logs / log, "--namespace", namespace,
                                "--peering", "sundial-ha", "--priority", str(priority))

    high, low = replica("operator-high.log", 200), replica("operator-low.log", 100)
    try:
        high.start().wait_for_log(r"Resuming operations after the pause")
        # With --peering the peering is mandatory: a replica starts paused and says so only
        # when it resumes. The low one must stay paused while the high one keeps alive.
        low.start().wait_for_log(r"Activity 'configure' succeeded")
        peers = wait_until("both replicas in the peering object", lambda: _peers(jobs, 2), timeout=60)
        assert isinstance(peers, dict)
        assert sorted(p["priority"] for p in peers.values()) == [100, 200]

        first = unique("ha")
        jobs.apply(first, schedule=NEVER_IN_A_TEST)
        jobs.wait_ready(first, "Scheduled")
        handled = rf"{namespace}/{first}: (?:already )?armed"
        assert re.search(handled, high.log())
        assert not re.search(handled, low.log()), "the paused replica acted"
        assert "Resuming operations" not in low.log()
        assert "primed" not in low.log(), "a replica that starts next to a live one does not prime"

        assert high.stop() == 0
        low.wait_for_log(r"Resuming operations")
        second = unique("ha")
        jobs.apply(second, schedule=NEVER_IN_A_TEST)
        jobs.wait_ready(second, "Scheduled")
        low.wait_for_log(rf"{namespace}/{second}: (?:already )?armed")
        assert _peers(jobs, 1), "the stopped replica left the peering object"
        for name in (first, second):
            jobs.delete(name)
    finally:
        low.stop()
        high.stop()


def _peers(jobs: Jobs, count: int) -> dict[str, Any] | None:
    result = jobs.kubectl("get", "kopfpeerings.kopf.dev", "sundial-ha", "-o", "json", check=False)
    if result.returncode != 0:
        return None
    peers: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return peers if len(peers) == count else None

