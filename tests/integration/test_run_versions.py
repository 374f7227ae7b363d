"""Run resourceVersions and tombstones (migrations 0007, 0009, 0012): every write of `job_runs` leaves
the writing transaction's id on the row, and every deletion a tombstone, so the runs API's
watch (sundial.dashboard.runswatch) sees each change once it passes the horizon."""

from __future__ import annotations

import inspect
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from sundial.core import store as store_module
from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.config import Settings
from sundial.core.keys import run_id_for_slot
from sundial.core.migrate import discover, migrate
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.store import TRIM_TOMBSTONES, FireRecord, RunRecord, RunRow, Store
from tests.integration.engine import armed, spec, worker

COMPACT_TOMBSTONES = 12  # the migration that folds tombstones per job


def _record(job: JobRef, slot: datetime, status: RunStatus, **fields: object) -> RunRecord:
    return RunRecord(run_id=f"{job.job_id}:{int(slot.timestamp() * 1000)}", job_id=job.job_id, logical_time=slot,
                     scheduled_for=slot, trigger=Trigger.SCHEDULED, status=status, attempt=1, started_at=slot,
                     **fields)  # type: ignore[arg-type]


async def _changed(store: Store, after: int, job: JobRef) -> list[RunRow]:
    rows, _ = await store.runs_changed(after)
    return [row for row in rows if row.job_id == job.job_id]


async def _tombstone_rows(store: Store, job: JobRef) -> int:
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM job_run_tombstones WHERE job_id = %s", (job.job_id,))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _version_of(store: Store, job: JobRef) -> tuple[int, int]:
    """The job's run's versions (the newest of each, when it has several runs)."""
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT max(resource_version), max(created_version) FROM job_runs WHERE job_id = %s", (job.job_id,))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_every_store_write_of_a_run_moves_its_version_past_the_horizon(
    broker: Broker, store: Store, clock: ManualClock,
) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    slot = clock.now()
    before_start = await store.run_version_horizon()
    await store.record_runs([_record(job, slot, RunStatus.RUNNING)])
    inserted, created = await _version_of(store, job)
    assert inserted == created >= before_start, "an insert carries its transaction's id"
    assert [(r.status, r.deleted) for r in await _changed(store, before_start, job)] == [("running", False)]

    before_end = await store.run_version_horizon()
    await store.record_runs([_record(job, slot, RunStatus.SUCCESS, completed_at=slot)])
    ended, still_created = await _version_of(store, job)
    assert ended >= before_end > inserted, "an update moves the version on"
    assert still_created == created, "an update keeps the version that created the row"
    assert [r.status for r in await _changed(store, before_end, job)] == ["success"]

    # The ticker's fire record writes skipped runs through the same statement, in its own transaction.
    skipped_slot = slot + timedelta(minutes=1)
    before_skip = await store.run_version_horizon()
    await store.record_fires([FireRecord(job.job_id, None, skipped_slot, 0, skipped=(
        _record(job, skipped_slot, RunStatus.SKIPPED, reason="ConcurrencyForbid"),))])
    assert [r.status for r in await _changed(store, before_skip, job)] == ["skipped"]


async def test_an_update_that_forgets_the_version_still_moves_it(broker: Broker, store: Store,
                                                                clock: ManualClock) -> None:
    """Migration 0009's safety net: any other UPDATE of job_runs gets its version from a trigger."""
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    await store.record_runs([_record(job, clock.now(), RunStatus.RUNNING)])
    inserted, _ = await _version_of(store, job)
    async with store.pool.connection() as conn:
        await conn.execute("UPDATE job_runs SET worker = 'elsewhere' WHERE job_id = %s", (job.job_id,))
    updated, _ = await _version_of(store, job)
    assert updated > inserted


def test_every_update_of_job_runs_in_the_store_sets_the_version() -> None:
    """The store's writers never lean on the safety net (it costs a plpgsql call per row)."""
    source = inspect.getsource(store_module)
    statements = [text for text in re.findall(r'"""(.*?)"""', source, re.S)
                  if re.search(r"\bjob_runs\b", text) and re.search(r"\bUPDATE\b", text)]
    updates = [text for text in statements if re.search(r"UPDATE job_runs|INSERT INTO job_runs.*DO UPDATE", text, re.S)]
    assert updates, "RECORD_RUNS writes job_runs with ON CONFLICT DO UPDATE"
    for text in updates:
        assert "resource_version = " in text, text
    assert not re.search(r'"[^"\n]*UPDATE job_runs', source), "an UPDATE of job_runs outside the checked statements"


async def test_retention_and_deleted_jobs_leave_tombstones_the_watch_reads(
    broker: Broker, store: Store, clock: ManualClock,
) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    slots = [clock.now() + timedelta(seconds=i) for i in range(3)]
    await store.record_runs([_record(job, s, RunStatus.SUCCESS, completed_at=s) for s in slots])
    _, created = await _version_of(store, job)

    before_prune = await store.run_version_horizon()
    assert await store.prune_histories({job.job_id: (1, 1)}) == 2
    [kept] = await store.runs(job.job_id)
    assert kept["logical_time"] == slots[-1]
    gone = await _changed(store, before_prune, job)
    assert sorted((r.logical_time, r.deleted, r.namespace, r.job_name, r.created_version) for r in gone) == [
        (slot, True, job.namespace, job.name, created) for slot in slots[:2]]
    assert len({r.resource_version for r in gone}) == 1, "one deleting transaction"
    assert gone[0].resource_version >= before_prune
    assert await _tombstone_rows(store, job) == 1, "one row for the job's attempts the prune deleted (0012)"

    before_delete = await store.run_version_horizon()
    await store.delete_jobs([job.job_id], retain_history=False)
    [last] = await _changed(store, before_delete, job)
    assert (last.logical_time, last.deleted, last.job_name) == (slots[-1], True, job.name), \
        "a job deleted with its history: named although its row is gone"


async def test_moving_rows_into_a_new_partition_is_no_change(broker: Broker, store: Store,
                                                            clock: ManualClock) -> None:
    """A run far ahead lands in the default partition; creating its month moves it there
    without a tombstone or a new version (it was not deleted, nor changed)."""
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    far = datetime(2031, 5, 17, 3, 0, tzinfo=clock.now().tzinfo)
    await store.record_runs([_record(job, far, RunStatus.SUCCESS, completed_at=far)])
    written, _ = await _version_of(store, job)
    before_move = await store.run_version_horizon()
    assert await store.ensure_partitions(far, 1) in (0, 1)
    assert await _version_of(store, job) == (written, written)
    assert await _changed(store, before_move, job) == []
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT tableoid::regclass::text FROM job_runs WHERE job_id = %s", (job.job_id,))
        assert await cursor.fetchone() == ("job_runs_2031_05",)


async def test_tombstones_are_trimmed_after_their_keep(broker: Broker, store: Store, clock: ManualClock) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    await store.record_runs([_record(job, clock.now(), RunStatus.SUCCESS, completed_at=clock.now())])
    await store.delete_jobs([job.job_id], retain_history=False)

    await store.trim_tombstones()
    assert await _tombstone_rows(store, job) == 1, "kept for TOMBSTONE_KEEP_SECONDS"
    async with store.pool.connection() as conn:
        await conn.execute(TRIM_TOMBSTONES, {"keep": 0})
    assert await _tombstone_rows(store, job) == 0


async def test_tombstones_written_before_0012_read_back_the_same_after_it(database_url: str, tmp_path: Path) -> None:
    """0012 folds 0009's tombstone per attempt into one row per job and deleting transaction."""
    name = f"tombstones_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = conninfo.make_conninfo(database_url, dbname=name)
    before_0012 = tmp_path / "migrations"
    before_0012.mkdir()
    for migration in discover():
        if migration.version < COMPACT_TOMBSTONES:
            (before_0012 / f"{migration.name}.sql").write_text(migration.sql)
    migrate(dsn, before_0012)
    store = await Store.open(dsn, max_size=2)
    try:
        job = JobRef(str(uuid.uuid4()), "tenant", "pruned")
        slot = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
        await store.upsert_job(job, spec(), 1, slot)
        slots = [slot + timedelta(seconds=i) for i in range(4)]
        # Written, pruned and deleted in SQL of 0011's schema: this checkout's statements need its own.
        async with store.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO job_runs (run_id, job_id, logical_time, scheduled_for, trigger_type, status,"
                " started_at, completed_at) SELECT %s || ':' || s, %s, s, s, 'scheduled', 'success', s, s"
                " FROM unnest(%s::timestamptz[]) AS s", (job.job_id, job.job_id, slots))
        horizon = await store.run_version_horizon()
        async with store.pool.connection() as conn:
            await conn.execute("DELETE FROM job_runs WHERE job_id = %s AND logical_time < %s", (job.job_id, slots[2]))
            await conn.execute("DELETE FROM job_runs WHERE job_id = %s", (job.job_id,))
        async with store.pool.connection() as conn:
            cursor = await conn.execute("SELECT run_id, logical_time, deleted_version FROM job_run_tombstones"
                                        " ORDER BY deleted_version, logical_time")
            per_attempt = await cursor.fetchall()
        assert len(per_attempt) == 4
        migrate(dsn)
        gone = await _changed(store, horizon, job)
        assert [(r.run_id, r.logical_time, r.resource_version) for r in gone] == per_attempt
        assert {(r.deleted, r.namespace, r.job_name) for r in gone} == {(True, job.namespace, job.name)}
        assert await _tombstone_rows(store, job) == 2, "the prune's and the deletion's"
    finally:
        await store.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_every_fired_run_is_named_by_its_job_and_slot(broker: Broker, store: Store, clock: ManualClock,
                                                           config: Settings) -> None:
    """What lets the primary key alone keep one run per (job, slot, attempt) (migration 0009
    dropped job_runs_one_per_slot): a row with a slot has the run id made from its job and slot,
    whoever fired it (the ticker's Lua spells the format again)."""
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", jitterSeconds=1)
    w = worker(broker, store, clock, config)
    for _ in range(3):
        clock.advance(timedelta(seconds=2))
        await w.drain()
    runs = [run for run in await store.runs(job.job_id) if run["scheduled_for"] is not None]
    assert len(runs) >= 3
    for run in runs:
        assert run["run_id"] == run_id_for_slot(job.job_id, to_ms(run["logical_time"])), run
