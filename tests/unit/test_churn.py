"""The churn watch's pure parts: what an event asks for, tombstones, non-waiting locks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest

from sundial.core.clock import ManualClock
from sundial.operator import churn
from sundial.operator.churn import sort_events, suspending
from sundial.operator.peering import PeeringGate
from sundial.operator.runtime import JobDeps, JobLocks, Tombstones
from tests.unit.test_prime import FakeBroker, FakeStore

FINALIZER = "sundial.dev/finalizer"


def obj(uid: str, **meta: Any) -> dict[str, Any]:
    spec = meta.pop("spec", {"target": "noop", "schedule": "* * * * *", "timeZone": "UTC"})
    return {"metadata": {"uid": uid, "namespace": "ns", "name": f"job-{uid}", "resourceVersion": "7",
                         "generation": 3, **meta}, "spec": spec}


def test_a_change_asks_for_its_spec_armed_at_its_generation() -> None:
    doomed, requests = sort_events([("MODIFIED", obj("a", spec={"target": "noop", "schedule": "* * * * *",
                                                                  "suspend": True}))], FINALIZER, {})
    assert doomed == []
    assert [(r.job.job_id, r.generation, r.spec.suspend) for r in requests] == [("a", 3, True)]


def test_a_generation_armed_already_asks_for_nothing() -> None:
    assert sort_events([("MODIFIED", obj("a"))], FINALIZER, {"a": 3}) == ([], [])
    assert len(sort_events([("MODIFIED", obj("a"))], FINALIZER, {"a": 2})[1]) == 1


def test_an_invalid_spec_is_left_to_the_handlers() -> None:
    assert sort_events([("ADDED", obj("a", spec={"schedule": "61 * * * *"}))], FINALIZER, {}) == ([], [])


def test_a_deletion_waiting_for_our_finalizer_is_released_keeping_the_others() -> None:
    event = obj("a", deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["other/x", FINALIZER],
                annotations={"sundial.dev/history-on-delete": "Retain"})
    doomed, requests = sort_events([("MODIFIED", event)], FINALIZER, {})
    assert requests == []
    assert len(doomed) == 1
    assert (doomed[0].job.job_id, doomed[0].retain_history) == ("a", True)
    assert (doomed[0].resource_version, doomed[0].other_finalizers) == ("7", ("other/x",))


def test_an_object_gone_has_nothing_to_release_and_its_history_goes_by_default() -> None:
    doomed, _ = sort_events([("DELETED", obj("a", finalizers=[FINALIZER]))], FINALIZER, {})
    assert (doomed[0].resource_version, doomed[0].retain_history) == (None, False)


def test_a_deletion_without_our_finalizer_has_nothing_to_release() -> None:
    doomed, _ = sort_events([("MODIFIED", obj("a", deletionTimestamp="2026-01-01T00:00:00Z"))], FINALIZER, {})
    assert doomed[0].resource_version is None


def test_tombstones_are_kept_for_a_while_then_forgotten() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    tombstones = Tombstones(clock, keep_seconds=60)
    tombstones.add("a")
    clock.advance(timedelta(seconds=30))
    tombstones.add("b")
    clock.advance(timedelta(seconds=31))
    tombstones.prune()
    assert "a" not in tombstones
    assert "b" in tombstones
    assert len(tombstones) == 1
    clock.advance(timedelta(seconds=60))
    tombstones.add("c")
    tombstones.prune()
    assert len(tombstones) == 1
    assert "c" in tombstones


@pytest.mark.parametrize(("ages", "at_least", "mass_delete"), [
    ([], 1, False),
    ([0.5, 1.0, 1.5], 3, True),
    ([0.5, 1.0, 1.5], 4, False),
    ([0.5, 1.0, 2.5], 3, False),  # one fell out of the window
    ([3.0, 4.0, 5.0], 1, False),
])
def test_a_mass_delete_is_many_tombstones_within_the_window(ages: list[float], at_least: int,
                                                              mass_delete: bool) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    tombstones = Tombstones(clock)
    now = max(ages, default=0.0)  # seconds since the first deletion

    def advance_to(moment: float) -> None:
        clock.advance(timedelta(seconds=moment - clock.monotonic()))

    for index, age in enumerate(sorted(ages, reverse=True)):
        advance_to(now - age)
        tombstones.add(f"job-{index}")
    advance_to(now)
    assert tombstones.added_since(2.0, at_least) is mass_delete


async def test_hold_free_skips_busy_jobs_and_leaves_the_table_clean() -> None:
    locks = JobLocks()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handler() -> None:
        async with locks.hold("busy"):
            entered.set()
            await release.wait()

    task = asyncio.create_task(handler())
    await entered.wait()
    async with locks.hold_free(["busy", "free", "free"]) as held:
        assert held == ["free"]
        assert locks.busy("free")
    release.set()
    await task
    assert not locks.busy("busy")
    assert not locks.busy("free")


async def test_a_waiter_on_a_job_held_by_hold_free_gets_it_afterwards() -> None:
    locks = JobLocks()
    order: list[str] = []

    async def waiter() -> None:
        async with locks.hold("a"):
            order.append("waiter")

    async with locks.hold_free(["a"]):
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        order.append("batch")
    await task
    assert order == ["batch", "waiter"]
    assert not locks.busy("a")


class OutageOnce(FakeStore):
    """PostgreSQL that fails the first read (a pool timeout, a deadlock), then answers."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def jobs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not self.failed:
            self.failed = True
            raise psycopg.OperationalError("deadlock detected")
        return await super().jobs_by_id(ids)


async def test_a_batch_that_met_a_backend_outage_is_tried_again_not_left_to_kopf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(churn, "RETRY_SECONDS", 0.01)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    store, broker = OutageOnce(), FakeBroker()
    deps = JobDeps(cast(Any, store), cast(Any, broker), cast(Any, None), PeeringGate(None, "me", 0, clock),
                   JobLocks(), Tombstones(clock), {}, clock, 600.0)
    watch = churn.ChurnWatch(deps, namespaces=["ns"], legacy_finalizer=FINALIZER)
    actions = asyncio.create_task(watch._act())
    try:
        watch.note("ADDED", obj("a"))
        for _ in range(200):
            if "a" in broker.entries_:
                break
            await asyncio.sleep(0.01)
        assert store.failed
        assert "a" in broker.entries_, "the batch was dropped"
        assert deps.armed_generations == {"a": 3}
    finally:
        actions.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await actions


def test_a_suspension_disarms_first_unless_a_newer_generation_is_armed() -> None:
    suspended = {"target": "noop", "schedule": "* * * * *", "suspend": True}
    _, requests = sort_events([("MODIFIED", obj("a", spec=suspended)), ("MODIFIED", obj("b", spec=suspended)),
                               ("MODIFIED", obj("c"))], FINALIZER, {})
    # a: nothing armed yet; b: generation 4 armed (this view is 3, older); c: not suspended.
    assert suspending(requests, {"b": 4}) == ["a"]
    assert suspending(requests, {"a": 3, "b": 3}) == ["a", "b"]


def test_a_known_object_missing_from_a_new_list_counts_as_deleted_keeping_its_history_policy() -> None:
    retained = obj("a", annotations={"sundial.dev/history-on-delete": "Retain", "other": "x" * 1000})
    elsewhere = {**obj("c"), "metadata": {**obj("c")["metadata"], "namespace": "other"}}
    known = {o["metadata"]["uid"]: ("ADDED", churn.identity(o)) for o in (retained, obj("b"), elsewhere)}
    assert len(str(known["a"])) < 400, "only what a deletion needs is kept"
    gone = churn.vanished(known, ["b"], "ns")
    assert [(kind, o["metadata"]["uid"]) for kind, o in gone] == [("DELETED", "a")], "c is another namespace's"
    doomed, requests = sort_events(gone, FINALIZER, {})
    assert (doomed[0].job.job_id, doomed[0].retain_history, doomed[0].resource_version) == ("a", True, None)
    assert requests == []
    assert {o["metadata"]["uid"] for _, o in churn.vanished(known, [], None)} == {"a", "b", "c"}


async def test_the_watch_forgets_deleted_objects_and_finds_the_ones_a_new_list_misses() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    deps = JobDeps(cast(Any, FakeStore()), cast(Any, FakeBroker()), cast(Any, None), PeeringGate(None, "me", 0, clock),
                   JobLocks(), Tombstones(clock), {}, clock, 600.0)
    watch = churn.ChurnWatch(deps, namespaces=["ns"], legacy_finalizer=FINALIZER)
    watch.note("ADDED", obj("a"))
    watch.note("ADDED", obj("b"))
    watch.note("DELETED", obj("b"))

    class Relist:
        async def list_scheduledjobs(self, namespace: str | None, size: int, sink: Any) -> str:
            return "99"  # neither is there any more

    object.__setattr__(deps, "kube", Relist())
    assert await watch._list("ns") == "99"
    assert watch._pending["a"][0] == "DELETED"
    assert watch._pending["b"][0] == "DELETED", "its own event"
    assert watch._known == {}


async def test_a_view_left_for_after_a_handler_is_not_armed_again_once_the_handler_armed_it() -> None:
    class NoReads(FakeStore):
        async def jobs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
            raise AssertionError("the handler armed this generation: nothing to read")

    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    deps = JobDeps(cast(Any, NoReads()), cast(Any, FakeBroker()), cast(Any, None), PeeringGate(None, "me", 0, clock),
                   JobLocks(), Tombstones(clock), {}, clock, 600.0)
    watch = churn.ChurnWatch(deps, namespaces=["ns"], legacy_finalizer=FINALIZER)
    _, [request] = sort_events([("ADDED", obj("a"))], FINALIZER, {})
    async with deps.locks.hold("a"):  # a handler arming generation 3
        waiting = asyncio.create_task(watch._arm_after(request))
        await asyncio.sleep(0)
        deps.armed_generations["a"] = 3
    await asyncio.wait_for(waiting, 5)
