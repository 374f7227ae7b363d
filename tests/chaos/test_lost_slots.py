"""A run that sat in a dead worker's pending list when Redis lost its data runs late, once.

The full kill soak lost 2 slots this way: slot S1 fired, its message was delivered to a worker
killed before it started the run and waited in that worker's pending list to be reclaimed; a
later slot S2 of the same job ran and got its row; then Redis restarted empty. The rebuild
re-armed the job after S2, the last slot with a row, and S1 was never run nor recorded. Now the
rebuild queues again the slots since the job was last armed as it is that have neither a row
nor a worker holding their run, and no other: a job suspended and resumed between two rows
skipped its slots on purpose. Deterministic: a manual clock, burst-mode workers and the real
services (a Redis of this test's own).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.jobs import ArmRequest, arm_jobs
from sundial.core.keys import run_id_for_slot
from sundial.core.recovery import LOST_RUN_REASON
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.devstack.services import RedisServer
from tests.chaos.test_intact_marker import fire_without_consuming, half_a_second_before_a_slot, worker_of
from tests.integration.engine import new_job, runs_of, spec

pytestmark = pytest.mark.services


async def arm(broker: Broker, store: Store, job: JobRef, job_spec: ScheduledJobSpec, generation: int,
              clock: ManualClock) -> None:
    """What the operator does on a create, a suspend or a resume."""
    rows = await store.jobs_by_id([job.job_id])
    await arm_jobs(broker, store, [ArmRequest(job, job_spec, generation)], clock.now(), rows)


@pytest.mark.parametrize("between_the_rows", ["a run lost in a dead worker's list", "suspended, then resumed"])
async def test_a_run_lost_with_redis_before_a_recorded_slot_runs_once(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, between_the_rows: str,
) -> None:
    broker, store = own_broker, own_store
    clock, first = half_a_second_before_a_slot()
    slots = [to_ms(first) + 1000 * i for i in range(12)]
    job, job_spec = new_job("gap"), spec(missedRunPolicy="RunAll")
    await arm(broker, store, job, job_spec, 1, clock)
    fleet = worker_of(broker, store, own_redis, clock, "w1")
    await fleet._repair_redis()  # the deployment's first start

    clock.advance(timedelta(seconds=3))
    await fleet.drain()  # slots 0..2 run
    if between_the_rows == "a run lost in a dead worker's list":
        clock.advance(timedelta(seconds=1))
        await fire_without_consuming(fleet)  # slot 3 (S1) fired ...
        shard = broker.keys.for_job(job.job_id)
        taken = await broker.read(shard, "killed-worker", 10, block_ms=None)
        assert [d.raw["run"] for d in taken] == [run_id_for_slot(job.job_id, slots[3])]  # ... and never started
        clock.advance(timedelta(seconds=1))
        await fleet.drain()  # slot 4 (S2) runs and is recorded; S1 waits to be reclaimed
        expected = slots[:8]
    else:
        await arm(broker, store, job, spec(missedRunPolicy="RunAll", suspend=True), 2, clock)
        clock.advance(timedelta(seconds=3))  # slots 3..5 never fire
        await arm(broker, store, job, job_spec, 3, clock)
        clock.advance(timedelta(seconds=2))
        await fleet.drain()  # slots 6 and 7 run
        expected = slots[:3] + slots[6:11]
    await broker.redis.flushall()

    requeued_before = REGISTRY.get_sample_value("sundial_lost_runs_requeued_total") or 0.0
    restarted = worker_of(broker, store, own_redis, clock, "w2")
    await restarted._repair_redis()
    requeued_by_rebuild = (REGISTRY.get_sample_value("sundial_lost_runs_requeued_total") or 0.0) - requeued_before
    assert await broker.is_intact()
    clock.advance(timedelta(seconds=3))
    await fleet.drain()  # the lost S1, if any, late; then the slots since

    runs = await runs_of(store, job)
    run_ids = sorted(run["run_id"] for run in runs)
    assert run_ids == [run_id_for_slot(job.job_id, slot) for slot in expected], "each slot once, no other"
    assert {run["status"] for run in runs} == {RunStatus.SUCCESS.value}
    requeued = [run for run in runs if run["reason"] == LOST_RUN_REASON]
    if between_the_rows == "a run lost in a dead worker's list":
        [lost] = requeued
        assert requeued_by_rebuild == 1
        assert lost["run_id"] == run_id_for_slot(job.job_id, slots[3])
        assert lost["trigger_type"] == Trigger.SCHEDULED.value
        assert to_ms(lost["scheduled_for"]) == to_ms(lost["logical_time"]) == slots[3]
    else:
        assert requeued == [], "a suspension's gap is no loss"
        assert requeued_by_rebuild == 0
