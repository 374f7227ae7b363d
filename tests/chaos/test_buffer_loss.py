"""Runs waiting in a BufferOne/BufferAll buffer survive Redis losing its data, and run once.

A slot fired while its job's run ahead is live waits in a Redis list; FLUSHALL (a restart
without persistence, a failover to an empty replica) empties it. The ticker's fire record also
writes the slot to PostgreSQL (`buffered_runs`), and the workers' rebuild puts every one whose
run never started back into its buffer. Here the runs ahead are held by a worker across the
loss, two workers rebuild at once, and an independent ledger (`tests.chaos.ledger`) counts the
executions: each buffered slot runs exactly once, after the run ahead, and the slots the
BufferOne jobs skipped never run. Deterministic: a manual clock, burst-mode workers and the
real services (a Redis of this test's own).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tests.chaos.ledger  # noqa: F401  (registers the chaos-ledger target in this process)
from sundial.core.broker import Broker, Delivery
from sundial.core.clock import SYSTEM_CLOCK, ManualClock, to_ms
from sundial.core.jobs import ArmRequest, arm_jobs, run_now
from sundial.core.keys import run_id_for_slot
from sundial.core.recovery import Rebuilt, repair_if_lost, restore_buffers
from sundial.core.runs import JobRef, RunStatus
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.devstack.services import RedisServer
from sundial.worker.app import Worker
from tests.chaos.conftest import store_dsn
from tests.chaos.harness import executions
from tests.chaos.ledger import LEDGER_ENV
from tests.integration.engine import new_job, runs_of, settings, spec, worker

pytestmark = pytest.mark.services

BUFFERED_SLOTS = 3  # slots that come due while each job's run ahead is held


def worker_of(broker: Broker, store: Store, redis: RedisServer, clock: ManualClock, name: str) -> Worker:
    return worker(broker, store, clock, settings(store_dsn(store), redis.url, broker.keys, worker_id=name))


async def tick_and_record(fleet: Worker) -> None:
    """One ticker pass whose fire records reach PostgreSQL (the recorder flushes them)."""
    recording = asyncio.create_task(fleet.recorder.run())
    await fleet.ticker.tick()
    await fleet.recorder.close()
    await recording


async def finish(holder: Worker, deliveries: list[Delivery]) -> None:
    """The worker holding the runs ahead runs them to the end and acknowledges them."""
    await holder.policy.refresh()
    recording = asyncio.create_task(holder.recorder.run())
    holder.consumer.start_all(deliveries)
    await holder.consumer.wait_idle()
    await holder.recorder.close()
    await recording


async def test_buffered_runs_survive_flushall_and_run_exactly_once(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker, store = own_broker, own_store
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    clock = ManualClock(datetime.fromtimestamp(to_ms(SYSTEM_CLOCK.now()) // 1000, UTC) + timedelta(milliseconds=500))
    jobs: list[tuple[JobRef, ScheduledJobSpec]] = [
        (new_job(policy.lower()), spec(target="chaos-ledger", concurrencyPolicy=policy, timeoutSeconds=3600))
        for policy in ("BufferAll", "BufferAll", "BufferOne", "BufferOne")]
    await arm_jobs(broker, store, [ArmRequest(job, job_spec, 1) for job, job_spec in jobs], clock.now(), {})
    fleet = worker_of(broker, store, own_redis, clock, "w1")
    await fleet._repair_redis()  # a deployment's first start
    # Each job's run ahead: a manual run a worker has taken and is still running.
    manual = [(await run_now(broker, job, job_spec, "ahead", clock.now()))[0] for job, job_spec in jobs]
    holder = worker_of(broker, store, own_redis, clock, "holder")
    held = [d for shard in broker.keys.all_shards() for d in await broker.read(shard, "holder", 100, None)]
    assert sorted(d.message.run_id for d in held if d.message) == sorted(manual)

    first = clock.now() + timedelta(milliseconds=500)
    slots = [to_ms(first) + 1000 * i for i in range(BUFFERED_SLOTS)]
    for _ in slots:  # one pass a second, so every slot fires (into the buffer) on time
        clock.advance(timedelta(seconds=1))
        await tick_and_record(fleet)
    buffered = {job.job_id: [run_id_for_slot(job.job_id, slot) for slot in slots]
                for job, job_spec in jobs if job_spec.concurrency_policy.value == "BufferAll"}
    buffered |= {job.job_id: [run_id_for_slot(job.job_id, slots[0])]
                 for job, job_spec in jobs if job_spec.concurrency_policy.value == "BufferOne"}
    for job, _ in jobs:
        shard = broker.keys.for_job(job.job_id)
        assert await broker.redis.llen(shard.buffer(job.job_id)) == len(buffered[job.job_id])

    await broker.redis.flushall()

    # Two workers find the marker gone at once; the holder's runs are announced by one of them.
    until = to_ms(clock.now()) + 3_600_000
    announced = [(d.message.job_id, d.message.run_id) for d in held if d.message]
    outcomes = await asyncio.gather(
        repair_if_lost(broker, store, clock, "w1", [], until),
        repair_if_lost(broker, store, clock, "holder", announced, until))
    rebuilt = [outcome for outcome in outcomes if isinstance(outcome, Rebuilt)]
    assert len(rebuilt) == 1, "one worker leads the rebuild"
    assert rebuilt[0].buffered == sum(len(runs) for runs in buffered.values())
    assert await restore_buffers(broker, store, clock.now()) == 0, "restoring again adds nothing"
    for job, _ in jobs:
        shard = broker.keys.for_job(job.job_id)
        assert await broker.redis.llen(shard.buffer(job.job_id)) == len(buffered[job.job_id])

    assert await fleet.drain() == 0, "the buffered runs wait behind the held runs ahead"
    await finish(holder, held)
    for _ in range(2 * BUFFERED_SLOTS):  # a buffered run is released on the pass after the one ahead ends
        await fleet.drain()
    clock.advance(timedelta(seconds=2))  # and the schedule goes on after them, firing nothing twice
    for _ in range(2 * BUFFERED_SLOTS):
        await fleet.drain()

    ran = executions(ledger)
    assert {run_id: len(runs) for run_id, runs in ran.items() if len(runs) > 1} == {}, "nothing ran twice"
    for job, job_spec in jobs:
        runs = {run["run_id"]: run for run in await runs_of(store, job)}
        for run_id in buffered[job.job_id]:
            assert run_id in ran, f"buffered {run_id} was lost with Redis"
            assert runs[run_id]["status"] == RunStatus.SUCCESS.value
        for run_id in {run_id_for_slot(job.job_id, slot) for slot in slots} - set(buffered[job.job_id]):
            assert run_id not in ran, f"{run_id} was skipped by BufferOne, yet ran"
            assert runs[run_id]["status"] == RunStatus.SKIPPED.value
        # The manual clock stood still while they ran: the ledger's wall times give the order.
        order = [ran[run_id][0][1] for run_id in [manual[jobs.index((job, job_spec))], *buffered[job.job_id]]]
        assert order == sorted(order), "the run ahead first, then the buffered slots oldest first"
    assert await store.waiting_buffered_runs(clock.now() - timedelta(days=1)) == []
