"""Start-up priming and the handlers' fast path: which objects priming takes, what it writes,
and that kopf then finds nothing left to do. Pure: objects are JSON, kopf's storages are real."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from sundial.core.broker import ArmCommand, Entry
from sundial.core.clock import ManualClock
from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.jobs import Armed, armed_as
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec, parse_spec
from sundial.operator.handlers import FINALIZER, FORGET_ID, KOPF_PREFIX, RECONCILE_ID
from sundial.operator.kopfstate import ProgressAnnotations
from sundial.operator.prime import Candidate, KopfState, Primer, finalizer_patch, triage
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.reconcile import changed_fields, ready_fields
from sundial.operator.status_sync import StatusSync

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
UID = "0b8f3a52-59a5-4f0c-9a43-3c9d1c7e2f10"
WORKERS = {"w1": WorkerHeartbeat(seen_ms=0, targets=("http", "noop"))}


def kopf_state() -> KopfState:
    # As handlers.configure sets them up.
    return KopfState(
        progress=ProgressAnnotations(prefix=KOPF_PREFIX),
        legacy_finalizer=FINALIZER,
        handler_ids=(RECONCILE_ID, FORGET_ID),
    )


def obj(spec: dict[str, Any] | None = None, *, annotations: dict[str, str] | None = None,
        finalizers: list[str] | None = None, status: dict[str, Any] | None = None, generation: int = 1,
        **metadata: Any) -> dict[str, Any]:
    """A ScheduledJob as a LIST returns it."""
    return {
        "apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
        "metadata": {"name": "job", "namespace": "ns", "uid": UID, "generation": generation, "resourceVersion": "42",
                     "labels": {"team": "a"}, "annotations": annotations or {}, "finalizers": finalizers or [],
                     "managedFields": [{"manager": "kubectl"}], **metadata},
        "spec": spec or {"target": "noop", "schedule": "*/5 * * * *", "timeZone": "UTC"},
        **({"status": status} if status is not None else {}),
    }


def apply_merge(raw: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver stores after our merge patch of `metadata` (annotations merge, lists replace)."""
    result = copy.deepcopy(raw)
    meta = result["metadata"]
    for key, value in metadata.items():
        if key == "annotations":
            meta["annotations"] = {**meta.get("annotations", {}), **value}
        else:
            meta[key] = value
    meta["resourceVersion"] = "43"
    return result


# ---- triage ------------------------------------------------------------------------------


def test_a_plain_job_is_primed() -> None:
    candidate = triage(obj(generation=3), kopf_state(), WORKERS)
    assert isinstance(candidate, Candidate)
    assert (candidate.job.job_id, candidate.job.namespace, candidate.job.name) == (UID, "ns", "job")
    assert (candidate.generation, candidate.resource_version) == (3, "42")
    assert candidate.spec.schedule == "*/5 * * * *"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (obj(deletionTimestamp="2026-03-01T11:00:00Z", finalizers=[FINALIZER]), "being deleted"),
        (obj({"target": "noop", "schedule": "61 * * * *", "timeZone": "UTC"}), "invalid spec"),
        (obj({"target": "noop", "schedule": "* * * * *", "timeZone": "Mars/Olympus"}), "invalid spec"),
        (obj(annotations={"sundial.dev/run-now": "ticket-7"}), "run-now requested"),
        (obj(annotations={"sundial.dev/backfill": '{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}'}),
         "backfill requested"),
        (obj({"target": "nobody-offers-this", "schedule": "* * * * *", "timeZone": "UTC"}), "target not offered"),
        (obj(annotations={f"{KOPF_PREFIX}/reconcile": json.dumps({"started": "2026-03-01T11:00:00", "retries": 1})}),
         "handler in progress"),
    ],
)
def test_what_is_left_to_the_handlers(raw: dict[str, Any], why: str) -> None:
    assert triage(raw, kopf_state(), WORKERS) == why


def test_a_run_now_already_handled_and_a_suspended_job_without_workers_are_primed() -> None:
    handled = obj(annotations={"sundial.dev/run-now": "ticket-7"}, status={"lastRunNowRequest": "ticket-7"})
    assert isinstance(triage(handled, kopf_state(), WORKERS), Candidate)
    suspended = obj({"target": "nobody-offers-this", "schedule": "* * * * *", "timeZone": "UTC", "suspend": True})
    assert isinstance(triage(suspended, kopf_state(), {}), Candidate)


# ---- kopf's state ------------------------------------------------------------------------


def test_an_object_without_the_old_finalizer_needs_no_metadata_write() -> None:
    # kopf keeps its state in memory (kopfstate.py): nothing of it goes on the object.
    assert finalizer_patch(obj(finalizers=["example.com/other"]), kopf_state()) is None


def test_the_finalizer_an_older_sundial_added_is_removed_and_others_kept() -> None:
    state = kopf_state()
    assert finalizer_patch(obj(finalizers=["example.com/other", FINALIZER]), state) == {
        "finalizers": ["example.com/other"]}
    assert finalizer_patch(obj(finalizers=[FINALIZER]), state) == {"finalizers": []}


# ---- status ------------------------------------------------------------------------------


def spec(**fields: Any) -> ScheduledJobSpec:
    return parse_spec({"target": "noop", "schedule": "*/5 * * * *", "timeZone": "UTC", **fields})


def test_ready_fields_are_what_the_handler_reports() -> None:
    status = ready_fields({}, 2, spec(), NOW)
    assert set(status) == {"observedGeneration", "conditions"}, "nextRunTime comes from the row, by the status sync"
    assert status["observedGeneration"] == 2
    [ready] = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"], ready["observedGeneration"]) == ("Ready", "True",
                                                                                              "Scheduled", 2)
    assert ready["message"] == "armed: */5 * * * * in UTC"
    assert ready["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    suspended = ready_fields({}, 2, spec(suspend=True), NOW)
    assert suspended["conditions"][0]["reason"] == "Suspended"


def test_an_unchanged_status_needs_no_write() -> None:
    first = ready_fields({}, 1, spec(), NOW)
    shown = json.loads(json.dumps(first))  # through the apiserver and back
    later = ready_fields(shown, 1, spec(), NOW + timedelta(hours=1))
    assert changed_fields(shown, later) == {}


def test_clearing_an_absent_field_sends_nothing() -> None:
    assert changed_fields({}, {"nextRunTime": None, "runCount": 0}) == {"runCount": 0}
    assert changed_fields({"nextRunTime": "2026-03-01T12:10:00Z"}, {"nextRunTime": None}) == {"nextRunTime": None}


async def test_a_fresh_job_gets_the_whole_status_of_a_job_that_never_ran() -> None:
    kube = FakeKube([named("a")])
    store, broker = FakeStore(), FakeBroker()
    await primer(kube, store, broker, {}).prime()
    status = kube.objects["a"]["status"]
    assert status["nextRunTime"] == "2026-03-01T12:05:00Z", "from the row priming armed"
    assert (status["runCount"], status["active"], status["recentRuns"], status["observedGeneration"]) == (
        0, [], [], 1)
    assert "lastStatus" not in status, "null fields an object never had are not sent"


# ---- the handlers' fast path -------------------------------------------------------------


def row(the_spec: ScheduledJobSpec, **fields: Any) -> dict[str, Any]:
    """A row as Store.jobs_by_id returns it."""
    base: dict[str, Any] = {
        "id": UID, "namespace": "ns", "name": "job", "generation": 1, "enabled": not the_spec.suspend,
        "spec": json.loads(json.dumps(the_spec.model_dump(mode="json", by_alias=True))), "deleted": False,
        "next_run_at": NOW,
    }
    return {**base, **fields}


def entry(the_spec: ScheduledJobSpec, due: datetime = NOW) -> Entry:
    return Entry(UID, "{}", the_spec.fingerprint(), int(due.timestamp() * 1000), "{}")


def test_a_job_armed_with_this_spec_and_generation_needs_no_arming() -> None:
    current = spec()
    due = NOW + timedelta(minutes=5)
    assert armed_as(row(current), entry(current, due), current, 1) == Armed(due), "the entry says when"
    suspended = spec(suspend=True)
    assert armed_as(row(suspended), None, suspended, 1) == Armed(None)


@pytest.mark.parametrize(
    "change",
    ["no row", "deleted row", "other generation", "other spec", "description only", "suspended since",
     "no entry", "entry of another spec", "entry of a suspended job"],
)
def test_anything_else_is_armed_again(change: str) -> None:
    current = spec()
    the_row: dict[str, Any] | None = row(current)
    the_entry: Entry | None = entry(current)
    wanted, generation = current, 1
    if change == "no row":
        the_row = None
    elif change == "deleted row":
        the_row = row(current, deleted=True)
    elif change == "other generation":
        generation = 2
    elif change == "other spec":
        wanted = spec(schedule="0 * * * *")
    elif change == "description only":
        wanted = spec(description="now with words")  # same fingerprint, but the row must learn it
    elif change == "suspended since":
        wanted = spec(suspend=True)
    elif change == "no entry":
        the_entry = None
    elif change == "entry of another spec":
        the_entry = entry(spec(schedule="0 * * * *"))
    elif change == "entry of a suspended job":
        wanted = spec(suspend=True)
        the_row = row(wanted)
    assert armed_as(the_row, the_entry, wanted, generation) is None


# ---- the Primer against fakes: the paths a live cluster rarely takes -----------------------


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.deleted: list[tuple[str, bool]] = []

    async def jobs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {i: self.rows[i] for i in ids if i in self.rows}

    async def upsert_jobs(self, jobs: Sequence[tuple[JobRef, ScheduledJobSpec, int, datetime | None]], *,
                          armed_at: datetime | None = None) -> None:
        for job, the_spec, generation, next_run_at in jobs:
            self.rows[job.job_id] = {
                "id": job.job_id, "generation": generation, "enabled": not the_spec.suspend, "deleted": False,
                "spec": the_spec.model_dump(mode="json", by_alias=True), "next_run_at": next_run_at,
                "last_schedule_time": None,
            }

    async def delete_job(self, job_id: str, *, retain_history: bool) -> None:
        self.rows.pop(job_id, None)
        self.deleted.append((job_id, retain_history))

    async def forget_buffered_runs(self, job_ids: Sequence[str]) -> None:
        pass  # disarming drops a job's buffered slots; this fake keeps none

    async def running_of(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return {}

    async def latest_runs_of(self, ids: Sequence[str], limit: int) -> dict[str, list[dict[str, Any]]]:
        return {}


class FakeBroker:
    keys = Keyspace()

    def __init__(self) -> None:
        self.entries_: dict[str, Entry] = {}

    def for_keyspace(self, keyspace: Keyspace) -> FakeBroker:
        return self  # every job here is in the default pool

    async def live_workers(self, now_ms: int) -> dict[str, WorkerHeartbeat]:
        return WORKERS

    async def entries(self, ids: Sequence[str]) -> dict[str, Entry | None]:
        return {i: self.entries_.get(i) for i in ids}

    async def arm_many(self, commands: Sequence[ArmCommand]) -> list[int]:
        for c in commands:
            self.entries_[c.job_id] = Entry(c.job_id, c.template_json, c.version, c.next_due_ms, c.plan_json)
        return [c.next_due_ms for c in commands]

    async def disarm_many(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.entries_.pop(i, None)

    async def disarm(self, job_id: str) -> bool:
        return self.entries_.pop(job_id, None) is not None


class FakeKube:
    """Objects by name; `status_outcome` / `metadata_outcome` override what a write answers."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.status_outcome: dict[str, str | None] = {}
        self.metadata_outcome: dict[str, str | Literal[False] | Exception | None] = {}
        self.writes: list[tuple[str, str]] = []
        self._version = 100

    async def scheduledjob_pages(self, namespaces: Sequence[str], size: int) -> AsyncIterator[list[dict[str, Any]]]:
        items = list(self.objects.values())
        for start in range(0, len(items), size):
            yield copy.deepcopy(items[start:start + size])

    def _bump(self, name: str) -> str:
        self._version += 1
        self.objects[name]["metadata"]["resourceVersion"] = str(self._version)
        return str(self._version)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str | None:
        self.writes.append(("status", name))
        if name in self.status_outcome:
            return self.status_outcome[name]
        self.objects[name].setdefault("status", {}).update(status)
        return self._bump(name)

    async def patch_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any], resource_version: str
                             ) -> str | Literal[False] | None:
        self.writes.append(("metadata", name))
        outcome = self.metadata_outcome.get(name, "")
        if isinstance(outcome, Exception):
            raise outcome
        if outcome != "":
            return outcome
        if self.objects[name]["metadata"]["resourceVersion"] != resource_version:
            return False
        self.objects[name] = apply_merge(self.objects[name], dict(metadata))
        return self._bump(name)


def named(name: str, **fields: Any) -> dict[str, Any]:
    raw = obj(**fields)
    raw["metadata"].update(name=name, uid=f"00000000-0000-0000-0000-{len(name):04d}{abs(hash(name)) % 10**8:08d}")
    return raw


def primer(kube: FakeKube, store: FakeStore, broker: FakeBroker, primed: dict[str, str],
           budget: float = 60.0) -> Primer:
    clock = ManualClock(NOW)
    status = StatusSync(cast(Any, store), cast(Any, kube), cast(Any, None), clock, namespaces=["ns"], poll_seconds=1,
                        bucket=TokenBucket(20, 20, clock), spacing=Spacing(2, clock), lookback=timedelta(seconds=5),
                        report_seconds=60, prune_seconds=300)
    return Primer(cast(Any, store), cast(Any, broker), cast(Any, kube), clock, kopf_state(), status,
                  namespaces=["ns"], budget_seconds=budget, primed=primed, queue_grace_seconds=600.0)


async def test_priming_arms_writes_status_then_metadata_and_remembers_what_it_left_complete() -> None:
    # "a" was made by an older Sundial, which added a finalizer: priming removes it.
    kube = FakeKube([named("a", finalizers=[FINALIZER]),
                     named("b", spec={"target": "noop", "schedule": "0 * * * *", "suspend": True}),
                     named("c", spec={"target": "noop", "schedule": "61 * * * *"})])
    store, broker, primed = FakeStore(), FakeBroker(), dict[str, str]()
    report = await primer(kube, store, broker, primed).prime()
    assert (report.complete, report.finished, report.armed, report.status_written, report.metadata_written) == (
        True, True, 2, 2, 1)
    assert report.left_to_kopf == {"invalid spec": 1}
    assert [kind for kind, _ in kube.writes] == ["status", "status", "metadata"], "status first"
    a, b = kube.objects["a"], kube.objects["b"]
    assert primed == {a["metadata"]["uid"]: a["metadata"]["resourceVersion"],
                      b["metadata"]["uid"]: b["metadata"]["resourceVersion"]}
    assert FINALIZER not in a["metadata"]["finalizers"]
    assert a["status"]["conditions"][0]["reason"] == "Scheduled"
    assert b["status"]["conditions"][0]["reason"] == "Suspended"
    assert a["metadata"]["uid"] in broker.entries_
    assert b["metadata"]["uid"] not in broker.entries_
    assert set(report.statuses) == {o["metadata"]["uid"] for o in kube.objects.values()}
    assert a["status"]["runCount"] == 0, "with the run-derived fields of its new row"

    # A second start over the same objects reads, and writes nothing.
    kube.writes.clear()
    primed.clear()
    again = await primer(kube, store, broker, primed).prime()
    assert (again.armed, again.already_armed, kube.writes) == (0, 2, [])
    assert primed[a["metadata"]["uid"]] == a["metadata"]["resourceVersion"]


async def test_objects_deleted_or_changed_while_priming() -> None:
    old = [FINALIZER]  # the metadata write priming makes: an older Sundial's finalizer goes
    kube = FakeKube([named("gone-early"), named("gone-late", finalizers=old,
                                                annotations={"sundial.dev/history-on-delete": "Retain"}),
                     named("edited", finalizers=old), named("kept", finalizers=old), named("plain")])
    kube.status_outcome["gone-early"] = None  # deleted before its status write
    kube.metadata_outcome["gone-late"] = None  # deleted before its metadata write
    kube.metadata_outcome["edited"] = False  # edited after the LIST: kopf's
    store, broker, primed = FakeStore(), FakeBroker(), dict[str, str]()
    report = await primer(kube, store, broker, primed).prime()
    uid = {name: o["metadata"]["uid"] for name, o in kube.objects.items()}
    assert report.gone == 2
    assert sorted(store.deleted) == sorted([(uid["gone-early"], False), (uid["gone-late"], True)])
    assert uid["gone-early"] not in broker.entries_, "a deleted object's job is disarmed on the spot"
    assert uid["gone-late"] not in broker.entries_
    assert report.left_to_kopf == {"changed since listed": 1}
    assert uid["edited"] in broker.entries_, "armed for the spec it had; kopf handles the edit"
    assert set(primed) == {uid["kept"], uid["plain"]}


async def test_metadata_refused_leaves_the_state_to_kopf() -> None:
    kube = FakeKube([named("a", finalizers=[FINALIZER]), named("b", finalizers=[FINALIZER])])
    kube.metadata_outcome["a"] = ApiError(status=Status(code=500, message="webhook down"))
    store, broker, primed = FakeStore(), FakeBroker(), dict[str, str]()
    report = await primer(kube, store, broker, primed).prime()
    assert (report.complete, report.finished, report.armed, report.status_written) == (True, False, 2, 2)
    assert primed == {}


async def test_the_budget_leaves_the_rest_to_the_handlers() -> None:
    kube = FakeKube([named(f"job-{i}") for i in range(3)])
    report = await primer(kube, FakeStore(), FakeBroker(), {}, budget=-1).prime()
    assert (report.complete, report.finished) == (False, False)
    assert report.armed == 3, "the first page in flight is finished, no more"
