"""A PostgreSQL that stops answering (SIGSTOP: a hung primary, a partition) stops neither firing
nor running, and every slot is recorded exactly once when it answers again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.services import Postgres
from tests.conftest import private_postgres_server
from tests.integration.engine import armed, runs_of, settings, worker

pytestmark = pytest.mark.services

JOBS = 10
BEFORE_SECONDS = 3.0
STALL_SECONDS = 6.0
AFTER_SECONDS = 4.0


@pytest.fixture
async def private_postgres(tmp_path: Path) -> AsyncIterator[Postgres]:
    """A PostgreSQL of this test's own, so stopping it stalls no other test."""
    with private_postgres_server(tmp_path / "pg") as server:
        yield server


def _server_processes(root_pid: int) -> list[int]:
    """The postmaster and every backend under it (each runs in a session of its own)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {root_pid}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sorted(tree)


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


async def test_a_stalled_postgres_stops_neither_firing_nor_running(
    broker: Broker, private_postgres: Postgres, redis_url: str, keyspace: Keyspace
) -> None:
    store = await Store.open(private_postgres.dsn, max_size=8)
    jobs = [(await armed(broker, store, SYSTEM_CLOCK.now(), f"stall{i}", schedule="* * * * * *"))[0]
            for i in range(JOBS)]
    first_slot = {job.job_id: (await broker.entry(job.job_id)).next_due_ms for job in jobs}  # type: ignore[union-attr]
    config = settings(private_postgres.dsn, redis_url, keyspace, ticker_lookahead_seconds=1.0)
    serving = worker(broker, store, SYSTEM_CLOCK, config)
    stop = asyncio.Event()
    runner = asyncio.create_task(serving.run(stop))
    assert private_postgres.process is not None
    stalled = _server_processes(private_postgres.process.pid)
    try:
        await asyncio.sleep(BEFORE_SECONDS)
        _signal_all(stalled, signal.SIGSTOP)
        stall_started_ms = to_ms(SYSTEM_CLOCK.now())
        await asyncio.sleep(STALL_SECONDS)
        # While PostgreSQL answers nothing, the ticker keeps firing and the consumer keeps running:
        # the runs of the stalled seconds finished and wait, unacknowledged, for their records.
        queued_during_stall = await broker.queued(keyspace.all_shards()[0])
        slots_fired_in_stall = {int(fields["slot"]) for _, fields in queued_during_stall
                                if int(fields["slot"]) >= stall_started_ms}
        unrecorded = serving.recorder.unrecorded
    finally:
        _signal_all(stalled, signal.SIGCONT)
    try:
        await asyncio.sleep(AFTER_SECONDS)
    finally:
        stop.set()
        await runner
    await serving.drain(tick=False)  # a slot fired as the consumer stopped
    assert len(slots_fired_in_stall) >= STALL_SECONDS - 2, "the ticker stopped firing while PostgreSQL stalled"
    assert unrecorded > JOBS, "the consumer stopped running while PostgreSQL stalled"

    for job in jobs:
        entry = await broker.entry(job.job_id)
        assert entry is not None
        expected = set(range(first_slot[job.job_id], entry.next_due_ms, 1000))
        runs = await runs_of(store, job)
        per_slot = Counter(to_ms(run["scheduled_for"]) for run in runs)
        assert {slot: n for slot, n in per_slot.items() if n > 1} == {}, f"{job.name}: a slot recorded twice"
        assert set(per_slot) == expected, f"{job.name}: slots missing {sorted(expected - set(per_slot))[:3]}"
        assert {run["status"] for run in runs} == {"success"}
        row = await store.job(job.job_id)
        assert row is not None
        assert (row["missed_count"], row["run_count"]) == (0, len(expected))
    assert await broker.queued(keyspace.all_shards()[0]) == []
    await store.close()
