"""Runs queued ahead of their slot (SUNDIAL_FIRE_AHEAD_SECONDS) start at the slot, never before,
and not at all if their job is deleted meanwhile (but still if Redis lost its data meanwhile).
Real clock, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import cast

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, from_ms, to_ms
from sundial.core.config import Settings
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.schedule import job_phase, staggered_group
from sundial.core.store import Store
from sundial.worker.app import Worker
from tests.integration.engine import armed, new_job, runs_of, settings, worker

pytestmark = pytest.mark.services

AHEAD = 1.5


@pytest.fixture
def ahead_config(database_url: str, redis_url: str, keyspace: Keyspace) -> Settings:
    return settings(database_url, redis_url, keyspace, fire_ahead_seconds=AHEAD, ticker_lookahead_seconds=0.2)


async def _early_in_a_second() -> None:
    """Sleep to 0.2 s past a whole second: the next slot is then 0.8 s away, well inside the lead."""
    await asyncio.sleep((1.2 - time.time() % 1) % 1)


async def _queued(broker: Broker) -> list[tuple[int, dict[str, str]]]:
    """(when it was queued, ms, from the message id; its fields) of each message in the queue."""
    messages = cast(list[tuple[str, dict[str, str]]], await broker.redis.xrange(broker.keys.all_shards()[0].queue))
    return [(int(message_id.split("-")[0]), fields) for message_id, fields in messages]


def _job_pairing_from(slot_ms: int, on_phase: bool) -> JobRef:
    """A new every-second job whose pairs of slots begin (staggered_group) at `slot_ms`, or, off
    its phase, a second later."""
    while True:
        job = new_job()
        if (staggered_group(slot_ms, slot_ms + 1000, 2, job_phase(job.job_id)) == 2) == on_phase:
            return job


async def _fired_ahead(broker: Broker, store: Store, config: Settings, *, on_phase: bool = True,
                       ) -> tuple[JobRef, Worker, list[tuple[int, dict[str, str]]]]:
    """An every-second job whose next slot is inside the lead, and its worker's ticker's pass."""
    await _early_in_a_second()
    next_slot_ms = (to_ms(SYSTEM_CLOCK.now()) // 1000 + 1) * 1000
    job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), job=_job_pairing_from(next_slot_ms, on_phase),
                         schedule="* * * * * *")
    w = worker(broker, store, SYSTEM_CLOCK, config)
    await w.ticker.tick()
    return job, w, await _queued(broker)


@asynccontextmanager
async def _consuming(w: Worker) -> AsyncIterator[None]:
    """The worker's consumer reading its queue, with its recorder, until the block ends."""
    await w.broker.ensure_groups()
    await w.policy.refresh()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.recorder.run()),
             asyncio.create_task(w.consumer.consume(w.broker.keys.all_shards()[0], stop))]
    try:
        yield
    finally:
        stop.set()
        await w.consumer.wait_idle()
        await w.recorder.close()
        await asyncio.gather(*tasks)


async def test_a_run_queued_ahead_starts_at_its_slot_and_not_before(
        broker: Broker, store: Store, ahead_config: Settings) -> None:
    job, w, queued = await _fired_ahead(broker, store, ahead_config)
    assert queued, "the next slot is within the lead: it is queued now"
    for queued_ms, fields in queued:
        assert queued_ms < int(fields["slot"]), "queued ahead of its slot"
    async with _consuming(w):
        await asyncio.sleep(0.1)
        if to_ms(SYSTEM_CLOCK.now()) < int(queued[0][1]["slot"]):
            assert not await runs_of(store, job), "held: not started before its slot"
    runs = await runs_of(store, job)
    assert sorted(run["scheduled_for"] for run in runs) == sorted(from_ms(int(fields["slot"])) for _, fields in queued)
    for run in runs:
        assert run["status"] == "success"
        assert run["started_at"] >= run["scheduled_for"], "never before its slot"
        assert run["started_at"] - run["scheduled_for"] < timedelta(seconds=5)


async def _held_across(broker: Broker, store: Store, config: Settings,
                       happening: Callable[[JobRef], Awaitable[object]]) -> tuple[JobRef, list[int]]:
    """Runs queued ahead (an every-second job's next two slots, fired together), read and held by
    a consumer when `happening` happens; consumed until just past the last one's slot. The job,
    and the runs' slots (ms)."""
    job, w, queued = await _fired_ahead(broker, store, config)
    slots = sorted(int(fields["slot"]) for _, fields in queued)
    assert len(slots) == 2, "the next slot and the one after it, fired together"
    async with _consuming(w):
        await asyncio.sleep(0.1)  # read and held
        await happening(job)
        await asyncio.sleep((slots[-1] - to_ms(SYSTEM_CLOCK.now())) / 1000 + 0.3)
    return job, slots


async def test_a_run_queued_ahead_does_not_start_if_its_job_is_deleted_meanwhile(
        broker: Broker, store: Store, ahead_config: Settings) -> None:
    async def deleted(job: JobRef) -> None:
        await broker.disarm(job.job_id)  # what deleting or suspending the ScheduledJob does

    job, _ = await _held_across(broker, store, ahead_config, deleted)
    assert not await runs_of(store, job), "the job went inside the lead: neither run started"
    assert await _queued(broker) == [], "and their messages were let go"
    shard = broker.keys.all_shards()[0]
    assert await broker.redis.hlen(shard.active(job.job_id)) == 0, "with its concurrency claim"


async def test_a_run_queued_ahead_still_starts_if_redis_loses_its_data_meanwhile(
        broker: Broker, store: Store, ahead_config: Settings) -> None:
    async def lost(_: JobRef) -> None:
        # As FLUSHALL or a restart without persistence would: the entry goes with the `intact`
        # marker, and PostgreSQL already recorded the slot fired, so no rebuild fires it again.
        async for key in broker.redis.scan_iter(match=f"*{broker.keys.prefix}*"):
            await broker.redis.delete(key)

    job, slots = await _held_across(broker, store, ahead_config, lost)
    runs = await runs_of(store, job)
    assert sorted((run["scheduled_for"], run["status"]) for run in runs) == [
        (from_ms(slot), "success") for slot in slots], "a missing entry in a Redis that lost its data: no deleted job"


async def test_only_concurrency_policy_allow_is_queued_ahead(
        broker: Broker, store: Store, ahead_config: Settings) -> None:
    await _early_in_a_second()
    await armed(broker, store, SYSTEM_CLOCK.now(), schedule="* * * * * *", concurrencyPolicy="Forbid")
    w = worker(broker, store, SYSTEM_CLOCK, ahead_config)
    tick = asyncio.create_task(w.ticker.tick())
    await asyncio.sleep(0.3)
    assert await _queued(broker) == [], "Forbid decides at the slot, against the runs live then"
    await tick
    (queued_ms, fields), = await _queued(broker)
    assert queued_ms >= int(fields["slot"])


async def test_an_every_second_jobs_slots_are_queued_two_at_a_time(
        database_url: str, redis_url: str, keyspace: Keyspace, broker: Broker, store: Store) -> None:
    """SUNDIAL_FIRE_TOGETHER_SECONDS (1 s): one apply queues the next slot and the one after it,
    each expiring at its own next slot (the queue's minimum wait set to 0 to show it)."""
    config = settings(database_url, redis_url, keyspace, fire_ahead_seconds=AHEAD, ticker_lookahead_seconds=0.2,
                      queue_min_wait_seconds=0)
    job, w, queued = await _fired_ahead(broker, store, config)
    first, second = sorted((int(fields["slot"]), int(fields["exp"]), fields["trigger"]) for _, fields in queued)
    assert second[0] == first[0] + 1000
    assert (first[1], second[1]) == (second[0], second[0] + 1000), "each run expires at its own next slot"
    assert first[2] == second[2] == "scheduled"
    entry = await broker.entry(job.job_id)
    assert entry is not None
    assert entry.next_due_ms == second[0] + 1000, "the entry moved past both"
    async with _consuming(w):
        await asyncio.sleep((second[0] - to_ms(SYSTEM_CLOCK.now())) / 1000 + 0.3)
    runs = await runs_of(store, job)
    assert sorted(run["scheduled_for"] for run in runs) == [from_ms(first[0]), from_ms(second[0])]
    for run in runs:
        assert run["status"] == "success"
        assert run["scheduled_for"] <= run["started_at"] < run["scheduled_for"] + timedelta(seconds=1), \
            "each at its own slot, the second held a second longer"


async def test_a_job_off_its_phase_queues_one_slot_then_pairs_on_it(
        database_url: str, redis_url: str, keyspace: Keyspace, broker: Broker, store: Store) -> None:
    """Every-second jobs armed together begin their pairs in alternate seconds (by their ids), so
    each second's pass queues half of them: a job off its phase queues its next slot alone once."""
    config = settings(database_url, redis_url, keyspace, fire_ahead_seconds=AHEAD, ticker_lookahead_seconds=0.2)
    job, w, queued = await _fired_ahead(broker, store, config, on_phase=False)
    (_, alone), = queued
    entry = await broker.entry(job.job_id)
    assert entry is not None
    assert entry.next_due_ms == int(alone["slot"]) + 1000, "the next pair begins a second later"
    await asyncio.sleep((int(alone["slot"]) - to_ms(SYSTEM_CLOCK.now())) / 1000)  # the pair is in the look-ahead
    await w.ticker.tick()
    assert sorted(int(fields["slot"]) for _, fields in (await _queued(broker))[1:]) == [
        entry.next_due_ms, entry.next_due_ms + 1000]


async def test_without_firing_together_one_slot_is_queued_at_a_time(
        database_url: str, redis_url: str, keyspace: Keyspace, broker: Broker, store: Store) -> None:
    config = settings(database_url, redis_url, keyspace, fire_ahead_seconds=AHEAD, ticker_lookahead_seconds=0.2,
                      fire_together_seconds=0)
    _, _, queued = await _fired_ahead(broker, store, config)
    assert len(queued) == 1
