"""Schedule policies on real Redis and PostgreSQL, driven by a manual clock and burst-mode workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.config import Settings
from sundial.core.jobs import arm_command, arm_job
from sundial.core.keys import run_id_for_slot
from sundial.core.policies import with_jitter
from sundial.core.schedule import parse_schedule
from sundial.core.store import Store
from sundial.operator.status_builder import build_status
from tests.integration.conftest import T0
from tests.integration.engine import armed, new_job, runs_of, spec, worker

pytestmark = pytest.mark.services

MINUTE = timedelta(minutes=1)
MS = timedelta(milliseconds=1)


def move_to(clock: ManualClock, at: datetime) -> None:
    clock.advance(at - clock.now())


async def test_a_jittered_slot_starts_at_its_delay_and_keeps_the_slot_as_its_id(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *", jitterSeconds=30)
    jittered = with_jitter(parse_schedule("* * * * *", "UTC"), job.job_id, 30)
    slot = datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    start = jittered.fire_time(slot)
    assert start > slot, "this job and slot were picked with a delay; a zero delay proves nothing"
    w = worker(broker, store, clock, config)
    move_to(clock, start - MS)
    assert await w.drain() == 0
    move_to(clock, start)
    assert await w.drain() == 1
    [run] = await runs_of(store, job)
    assert run["run_id"] == run_id_for_slot(job.job_id, to_ms(slot))
    assert (run["logical_time"], run["scheduled_for"], run["trigger_type"]) == (slot, start, "scheduled")
    row = await store.job(job.job_id)
    assert row is not None
    assert row["last_schedule_time"] == slot
    assert row["next_run_at"] == jittered.fire_time(slot + MINUTE)


async def test_every_slot_fires_once_at_its_own_delay(broker: Broker, store: Store, clock: ManualClock,
                                                      config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *", jitterSeconds=50)
    jittered = with_jitter(parse_schedule("* * * * *", "UTC"), job.job_id, 50)
    slots = [datetime(2026, 3, 1, 12, minute, tzinfo=UTC) for minute in range(1, 6)]
    w = worker(broker, store, clock, config)
    for slot in slots:
        move_to(clock, jittered.fire_time(slot))
        assert await w.drain() == 1
        # Re-arming the same spec (an operator resync) keeps the due fire time: nothing doubles.
        await arm_job(broker, store, job, job_spec, 1, clock.now())
        assert await w.drain() == 0
    runs = sorted(await runs_of(store, job), key=lambda run: run["logical_time"])
    assert [run["logical_time"] for run in runs] == slots
    assert [run["scheduled_for"] for run in runs] == [jittered.fire_time(slot) for slot in slots]
    assert len({run["scheduled_for"] - run["logical_time"] for run in runs}) > 1


async def test_after_an_outage_the_catch_up_run_is_named_by_its_slot(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *", jitterSeconds=20)
    jittered = with_jitter(parse_schedule("* * * * *", "UTC"), job.job_id, 20)
    move_to(clock, datetime(2026, 3, 1, 13, 0, 30, tzinfo=UTC))  # every worker was down for an hour
    assert await worker(broker, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    latest = max(slot for slot in (datetime(2026, 3, 1, 13, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 59, tzinfo=UTC))
                 if jittered.fire_time(slot) <= clock.now())
    assert (run["logical_time"], run["trigger_type"]) == (latest, "catchup")
    assert run["run_id"] == run_id_for_slot(job.job_id, to_ms(latest))


def test_arming_resumes_after_a_slot_or_its_jittered_start_alike() -> None:
    job = new_job()
    job_spec = spec(schedule="* * * * *", jitterSeconds=40)
    jittered = with_jitter(parse_schedule("* * * * *", "UTC"), job.job_id, 40)
    slot = datetime(2026, 3, 1, 12, 7, tzinfo=UTC)
    expected = to_ms(jittered.fire_time(slot + MINUTE))
    # PostgreSQL keeps the slot as last_schedule_time and its start as the run's scheduled_for.
    assert arm_command(job, job_spec, T0, slot).next_due_ms == expected
    assert arm_command(job, job_spec, T0, jittered.fire_time(slot)).next_due_ms == expected
    # Created just after a slot, it starts with the next one, even if this one's delay is to come.
    assert arm_command(job, job_spec, slot + MS, None).next_due_ms == expected
    plain = arm_command(job, spec(schedule="* * * * *"), T0, slot)
    assert (plain.next_due_ms, plain.schedule_key) == (to_ms(slot + MINUTE), "* * * * *|UTC")
    assert arm_command(job, job_spec, T0, slot).schedule_key == "* * * * *|UTC|jitter=40"


async def test_a_job_runs_only_inside_its_active_window(broker: Broker, store: Store, clock: ManualClock,
                                                        config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *",
                         startTime="2026-03-01T12:03:00Z", endTime="2026-03-01T12:05:00Z")
    row = await store.job(job.job_id)
    assert row is not None
    assert row["next_run_at"] == datetime(2026, 3, 1, 12, 3, tzinfo=UTC)
    w = worker(broker, store, clock, config)
    for minute in range(1, 9):
        move_to(clock, datetime(2026, 3, 1, 12, minute, tzinfo=UTC))
        assert await w.drain() == (1 if 3 <= minute <= 5 else 0)
    assert sorted(run["logical_time"].minute for run in await runs_of(store, job)) == [3, 4, 5]
    row = await store.job(job.job_id)
    assert row is not None
    assert (row["next_run_at"], row["missed_count"]) == (None, 0)


async def test_a_job_whose_window_has_closed_is_armed_with_no_next_run(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", endTime="2026-03-01T11:00:00Z")
    row = await store.job(job.job_id)
    assert row is not None
    assert row["next_run_at"] is None
    move_to(clock, T0 + timedelta(minutes=5))
    assert await worker(broker, store, clock, config).drain() == 0


async def test_a_run_limit_runs_its_slots_and_status_counts_down(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *",
                         startTime="2026-03-01T12:02:00Z", maxRuns=2)
    other, _ = await armed(broker, store, clock.now(), schedule="* * * * *")
    w = worker(broker, store, clock, config)
    left = []
    for minute in range(1, 6):
        move_to(clock, datetime(2026, 3, 1, 12, minute, tzinfo=UTC))
        await w.drain()
        rows = {row["id"]: row for row in await store.job_states_changed_since(None)}
        left.append(build_status(rows[job.job_id], [], [])["remainingRuns"])
        assert build_status(rows[other.job_id], [], [])["remainingRuns"] is None
        assert rows[other.job_id]["limited_spec"] is None, "only a job with a run limit brings its spec"
    assert left == [2, 1, 0, 0, 0]
    assert sorted(run["logical_time"].minute for run in await runs_of(store, job)) == [2, 3]
    row = await store.job(job.job_id)
    assert row is not None
    assert row["next_run_at"] is None


async def test_after_an_outage_slots_older_than_the_catch_up_window_are_recorded_missed(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *", missedRunPolicy="RunAll",
                         maxCatchUpRuns=100, catchUpWindowSeconds=300)
    move_to(clock, datetime(2026, 3, 1, 13, 0, 30, tzinfo=UTC))  # every worker was down for an hour
    assert await worker(broker, store, clock, config).drain() == 5
    runs = sorted(await runs_of(store, job), key=lambda run: run["logical_time"])
    assert [run["logical_time"].minute for run in runs] == [56, 57, 58, 59, 0]
    assert {run["trigger_type"] for run in runs} == {"catchup"}
    row = await store.job(job.job_id)
    assert row is not None
    assert row["missed_count"] == 55


async def test_several_schedules_run_a_shared_slot_once_and_skip_exclusions(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="*/2 * * * *",
                         schedules=[{"schedule": "*/3 * * * *"}], exclude=["4 12 * * *"])
    w = worker(broker, store, clock, config)
    for minute in range(1, 10):
        move_to(clock, datetime(2026, 3, 1, 12, minute, tzinfo=UTC))
        await w.drain()
    minutes = sorted(run["logical_time"].minute for run in await runs_of(store, job))
    assert minutes == [2, 3, 6, 8, 9], "6 is on both schedules and runs once; 4 is excluded"
