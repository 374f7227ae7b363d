"""Redis emptied, then an entry armed before any worker looked: the loss is still rebuilt.

The full kill soak lost 338 slots this way: the operator, still running its resume handlers
when Redis came back empty, re-armed the entries from the jobs' fire records and, as every arm
then did, set the `intact` marker, so no worker ever rebuilt; a worker restarting against the
emptied Redis set the marker too. Now only the rebuild writes the marker, whoever finds it gone
rebuilds, and an arm into a Redis without it resumes where the rebuild would. Deterministic:
a manual clock, burst-mode workers and the real services (a Redis of this test's own).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, ManualClock, to_ms
from sundial.core.jobs import ArmRequest, arm_jobs
from sundial.core.keys import run_id_for_slot
from sundial.core.recovery import DATA_LOST, FIRST_ARM
from sundial.core.runs import JobRef, RunStatus
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.devstack.services import RedisServer
from sundial.worker.app import Worker
from tests.chaos.conftest import store_dsn
from tests.integration.engine import new_job, runs_of, settings, spec, worker

pytestmark = pytest.mark.services

JOBS = 3


def rebuilds() -> dict[str, float]:
    """sundial_redis_rebuilds_total of this process, per cause."""
    return {cause: REGISTRY.get_sample_value("sundial_redis_rebuilds_total", {"cause": cause}) or 0.0
            for cause in (FIRST_ARM, DATA_LOST)}


def worker_of(broker: Broker, store: Store, redis: RedisServer, clock: ManualClock, name: str) -> Worker:
    config = settings(store_dsn(store), redis.url, broker.keys, worker_id=name)
    return worker(broker, store, clock, config)


def half_a_second_before_a_slot() -> tuple[ManualClock, datetime]:
    """A manual clock half a second before the next whole second, and that second: an
    every-second job's first slot."""
    clock = ManualClock(datetime.fromtimestamp(to_ms(SYSTEM_CLOCK.now()) // 1000, UTC) + timedelta(milliseconds=500))
    return clock, clock.now() + timedelta(milliseconds=500)


async def fire_without_consuming(fleet: Worker) -> None:
    """Fire what is due and let PostgreSQL hear of it; the runs stay queued (then lost with Redis)."""
    recording = asyncio.create_task(fleet.recorder.run())
    await fleet.ticker.tick()
    await fleet.recorder.close()
    await recording


@pytest.mark.parametrize("first_after_the_loss", ["operator arms", "a worker looks"])
async def test_every_slot_after_redis_is_emptied_runs_exactly_once(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, first_after_the_loss: str,
) -> None:
    broker, store = own_broker, own_store
    clock, first = half_a_second_before_a_slot()
    jobs: list[tuple[JobRef, ScheduledJobSpec]] = [
        (new_job("loss"), spec(missedRunPolicy="RunAll")) for _ in range(JOBS)]
    await arm_jobs(broker, store, [ArmRequest(job, job_spec, 1) for job, job_spec in jobs], clock.now(), {})
    fleet = worker_of(broker, store, own_redis, clock, "w1")
    before = rebuilds()
    await fleet._repair_redis()  # the first start of a deployment: a rebuild that finds all armed
    assert await broker.is_intact()
    assert rebuilds() == {FIRST_ARM: before[FIRST_ARM] + 1, DATA_LOST: before[DATA_LOST]}, "no job had fired yet"

    clock.advance(timedelta(seconds=3))
    await fleet.drain()  # slots 0..2 run
    clock.advance(timedelta(seconds=2))
    await fire_without_consuming(fleet)  # slots 3 and 4 fired, their messages queued
    await broker.redis.flushall()

    if first_after_the_loss == "operator arms":
        # kopf's resume handlers, before any worker looked: the entries come back from PostgreSQL.
        rows = await store.jobs_by_id([job.job_id for job, _ in jobs])
        await arm_jobs(broker, store, [ArmRequest(job, job_spec, 1) for job, job_spec in jobs], clock.now(), rows)
        assert not await broker.is_intact(), "an arm never hides the loss from the workers"
        assert all(entry is not None for entry in (await broker.entries([job.job_id for job, _ in jobs])).values())
    # A worker restarted against the emptied Redis looks first, then the one that ran on: both
    # find the marker gone, one leads the rebuild and the other leaves it be.
    restarted = worker_of(broker, store, own_redis, clock, "w2")
    await asyncio.gather(restarted._repair_redis(), fleet._repair_redis())
    assert await broker.is_intact(), "the rebuild ran and set the marker"
    assert rebuilds() == {FIRST_ARM: before[FIRST_ARM] + 1, DATA_LOST: before[DATA_LOST] + 1}, "one loss, counted once"
    await restarted._repair_redis()  # and finds nothing more to do

    clock.advance(timedelta(seconds=3))
    await fleet.drain()  # slots 3..7: the two lost with Redis, then the three since
    slots = [to_ms(first) + 1000 * i for i in range(8)]
    for job, _ in jobs:
        runs = await runs_of(store, job)
        assert sorted(run["run_id"] for run in runs) == [run_id_for_slot(job.job_id, slot) for slot in slots]
        assert {run["status"] for run in runs} == {RunStatus.SUCCESS.value}
