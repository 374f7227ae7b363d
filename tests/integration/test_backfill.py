"""Backfill on real Redis and PostgreSQL: each slot of the window runs once, however often asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sundial.core.backfill import BackfillRequest
from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.config import Settings
from sundial.core.jobs import backfill
from sundial.core.keys import run_id_for_slot
from sundial.core.store import Store
from tests.integration.engine import armed, runs_of, worker

pytestmark = pytest.mark.services

NOW = datetime(2026, 3, 2, 12, 0, 0, 500_000, tzinfo=UTC)
HOUR = timedelta(hours=1)
WINDOW = BackfillRequest(datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 1, 5, 59, tzinfo=UTC))
SLOTS = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in range(6)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


async def test_the_same_backfill_twice_runs_each_slot_once(broker: Broker, store: Store, clock: ManualClock,
                                                          config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 * * * *")
    w = worker(broker, store, clock, config)
    first = await backfill(broker, store, job, job_spec, WINDOW, clock.now())
    assert (first.slots, first.queued, first.complete) == (6, 6, True)
    # Asked again before any ran: the queue holds them already.
    again = await backfill(broker, store, job, job_spec, WINDOW, clock.now())
    assert (again.queued, again.complete) == (0, True)
    assert await w.drain(tick=False) == 6
    # And after they ran: PostgreSQL has them.
    clock.advance(HOUR)
    after = await backfill(broker, store, job, job_spec, WINDOW, clock.now())
    assert (after.queued, after.recorded) == (0, 6)
    assert await w.drain(tick=False) == 0
    runs = sorted(await runs_of(store, job), key=lambda run: run["logical_time"])
    assert [run["logical_time"] for run in runs] == SLOTS
    assert {run["trigger_type"] for run in runs} == {"backfill"}
    assert [run["run_id"] for run in runs] == [run_id_for_slot(job.job_id, to_ms(slot)) for slot in SLOTS]


async def test_a_wider_window_adds_only_the_slots_not_yet_run(broker: Broker, store: Store, clock: ManualClock,
                                                             config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 * * * *")
    w = worker(broker, store, clock, config)
    await backfill(broker, store, job, job_spec, WINDOW, clock.now())
    assert await w.drain(tick=False) == 6
    wider = BackfillRequest(WINDOW.start, WINDOW.end + 2 * HOUR)
    progress = await backfill(broker, store, job, job_spec, wider, clock.now())
    assert (progress.slots, progress.queued, progress.recorded) == (8, 2, 6)
    assert await w.drain(tick=False) == 2
    assert len(await runs_of(store, job)) == 8


async def test_sequential_backfill_queues_the_next_slot_only_when_the_last_has_ended(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 * * * *", exclude=["0 3 * * *"])
    w = worker(broker, store, clock, config)
    request = BackfillRequest(WINDOW.start, WINDOW.end, sequential=True)
    seen = []
    for _ in range(5):
        progress = await backfill(broker, store, job, job_spec, request, clock.now())
        # Asked again while it waits in the queue: still that one slot, nothing more.
        assert (await backfill(broker, store, job, job_spec, request, clock.now())).queued == 0
        assert progress.queued == 1
        assert await w.drain(tick=False) == 1
        seen.append(max(run["logical_time"] for run in await runs_of(store, job)))
    assert progress.complete
    assert seen == [slot for slot in SLOTS if slot.hour != 3], "the excluded 03:00 slot is no slot"
    assert (await backfill(broker, store, job, job_spec, request, clock.now())).queued == 0


async def test_forbid_runs_a_backfill_one_slot_at_a_time(broker: Broker, store: Store, clock: ManualClock,
                                                         config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 * * * *", concurrencyPolicy="Forbid")
    progress = await backfill(broker, store, job, job_spec, WINDOW, clock.now())
    assert (progress.queued, progress.complete) == (1, False)


@pytest.mark.parametrize(("policy", "sequential"), [("Allow", True), ("BufferAll", False), ("BufferOne", False)])
async def test_the_next_slot_waits_for_an_earlier_slots_retry(
        broker: Broker, store: Store, clock: ManualClock, config: Settings, policy: str, sequential: bool) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 * * * *", concurrencyPolicy=policy,
                                target="fail", params={"message": "boom"},
                                retry={"attempts": 2, "backoff": {"type": "Fixed", "delaySeconds": 60}})
    w = worker(broker, store, clock, config)
    request = BackfillRequest(SLOTS[0], SLOTS[1], sequential=sequential)
    first = await backfill(broker, store, job, job_spec, request, clock.now())
    assert (first.queued, first.complete) == (1, False)
    assert await w.drain() == 1  # 00:00 fails; its retry waits 60 s
    held = await backfill(broker, store, job, job_spec, request, clock.now())
    assert (held.queued, held.complete) == (0, False), "01:00 waits while 00:00 waits for its retry"
    clock.advance(timedelta(seconds=61))
    assert await w.drain() == 1  # the retry (the last attempt) fails for good
    clock.advance(timedelta(seconds=1))
    last = await backfill(broker, store, job, job_spec, request, clock.now())
    assert (last.queued, last.complete) == (1, True)
    assert await w.drain() == 1
    runs = sorted(await runs_of(store, job), key=lambda run: (run["started_at"], run["attempt"]))
    assert [(run["logical_time"], run["attempt"]) for run in runs] == [(SLOTS[0], 1), (SLOTS[0], 2), (SLOTS[1], 1)]
    assert runs[2]["started_at"] > runs[1]["completed_at"]
