"""PostgreSQL's CPU per recorded run: what a run's row costs the database, apart from the workers.

Writes no-op scheduled runs of `--jobs` jobs straight through the statements the workers'
recorders send (runs written untallied, and every `--jobs` x 5 rows the fold that counts them into
their jobs' rows, as a recorder folds every-second jobs' ends once per 5 s period; a baseline
from before migration 0013 counts them as it writes them), from `--writers` concurrent
connections in batches of `--batch`, against a durable PostgreSQL (fsync, synchronous_commit and
full_page_writes on), and reads the CPU seconds of the server's whole process tree (backends, WAL
writer, checkpointer) per row:

- `insert`: each run written once, finished (a short run's start and end collapse in one batch);
- `start+end`: each run's start and its end in separate batches (a run longer than a batch);
- `fires`: the ticker's fire records alone (`RECORD_FIRES`: each job's next run, last slot and
  missed count), per job row updated, every job once per slot;
- `fire+run`: what an every-second job costs per slot on the hot path: its fire record, then its
  finished run, per run;
- `retention`: `Store.prune_histories` down to `--keep` successes per job (100), per deleted row;
  with `--jobs 2500 --keep 20` each job loses its 30 oldest runs, as in retention's steady state
  at every-second jobs (one pass each 30 s).

Each phase ends with a VACUUM of what it left, counted in it (autovacuum is off).

Counting CPU over a fixed amount of work, not a rate, keeps the figure steady on a shared
machine. `--baseline DIR` (a checkout: `git archive main | tar -x -C DIR`) puts a second database
in the same server, migrated with DIR's migrations and written with DIR's statements, and the
rounds alternate between the two, so "before" and "now" share the machine's load (printed
beside each figure):

    python -m bench.record_cost [--runs 100000] [--jobs 250] [--batch 100] [--writers 2] [--rounds 2]
                                [--keep 100] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg

from bench.common import baseline_store, job_row_updates, load_average, process_tree_cpu_seconds
from sundial.core import store as current
from sundial.core.config import JOB_ROW_INTERVAL_SECONDS
from sundial.core.migrate import migrate
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import FireRecord, RunRecord, Store
from sundial.devstack.services import Postgres
from sundial.worker.app import PRUNE_CHUNK_JOBS


@dataclass
class Target:
    """One schema and the statements that write it: this checkout's, or the baseline's."""

    label: str
    store: Store
    record_runs: str
    record_fires: str
    statements: ModuleType  # its `Store` prunes
    trim: str | None  # the tombstone trim retention runs first (migration 0009), if any
    # The fold that counts the runs' ends into their jobs' rows (migration 0013), every
    # `fold_rows` rows written, as the recorders fold once a period; None: counted as written.
    tally: str | None = None
    fold_rows: int = 0

    deadlocks: list[int] = field(default_factory=list)
    _since_fold: int = field(default=0, init=False)

    async def record(self, rows: Sequence[RunRecord]) -> None:
        """Written as the recorder does: a batch that fails is sent again (the recorder waits 1 s)."""
        while True:
            try:
                async with self.store.pool.connection() as conn:
                    await conn.execute(self.record_runs, (current._runs_json(rows),))
                break
            except psycopg.errors.DeadlockDetected:
                self.deadlocks.append(len(rows))
        self._since_fold += len(rows)
        if self._since_fold >= self.fold_rows:
            await self.fold()

    async def fold(self) -> None:
        """Count what was written since the last fold (a phase ends with one, so its cost is the phase's)."""
        self._since_fold = 0
        if self.tally is not None:
            async with self.store.pool.connection() as conn:
                # Every fold of this bench is due (migration 0014's spacing 0); older trees' take no parameter.
                await conn.execute(self.tally, {"spacing": 0} if "%(spacing)s" in self.tally else None)

    async def fire(self, fires: Sequence[tuple[str, datetime]]) -> None:
        """One ticker flush: each (job, slot) fired, its next run a second later, none missed."""
        params = current.fire_params([FireRecord(job_id, slot + timedelta(seconds=1), slot, missed=0)
                                      for job_id, slot in fires])
        while True:
            try:
                async with self.store.pool.connection() as conn:
                    await conn.execute(self.record_fires, params)
                return
            except psycopg.errors.DeadlockDetected:
                self.deadlocks.append(len(fires))

    async def prune(self, jobs: Sequence[str], keep: int) -> None:
        """As a worker's pass does: the trim, then the jobs' histories a batch at a time."""
        if self.trim is not None:
            async with self.store.pool.connection() as conn:
                await conn.execute(self.trim, {"keep": current.TOMBSTONE_KEEP_SECONDS})
        pruner = self.statements.Store(self.store.pool)
        for first in range(0, len(jobs), PRUNE_CHUNK_JOBS):
            await pruner.prune_histories({job_id: (keep, 200) for job_id in jobs[first:first + PRUNE_CHUNK_JOBS]})


@dataclass(frozen=True)
class Phase:
    name: str
    rows: int
    cpu_seconds: float
    seconds: float

    def line(self) -> str:
        per_row = self.cpu_seconds / self.rows * 1e6 if self.rows else float("nan")
        return (f"{self.name:<10} {self.rows:7d} rows  PostgreSQL {per_row:6.1f} us CPU/row  "
                f"({self.cpu_seconds:.2f} CPU-s in {self.seconds:.1f} s)  {load_average()}")


async def phase(name: str, server: Postgres, target: Target, rows: int, work: Awaitable[int | None]) -> Phase:
    """`work`'s PostgreSQL CPU over `rows` rows (or the count it returns)."""
    assert server.process is not None
    async with target.store.pool.connection() as conn:
        await conn.execute("CHECKPOINT")  # every phase starts with the same full-page-write debt
    cpu, started = process_tree_cpu_seconds(server.process.pid), time.monotonic()
    done = await work
    await target.fold()
    async with target.store.pool.connection() as conn:
        await conn.execute("VACUUM")  # the dead rows the phase left are its cost too
    return Phase(name, rows if done is None else int(done), process_tree_cpu_seconds(server.process.pid) - cpu,
                 time.monotonic() - started)


def records(jobs: Sequence[str], runs: int, first_slot: datetime, status: RunStatus) -> list[RunRecord]:
    """`runs` runs spread over `jobs`, one slot a second per job, finished at once."""
    out = []
    for index in range(runs):
        job_id = jobs[index % len(jobs)]
        slot = first_slot + timedelta(seconds=index // len(jobs))
        finished = status is not RunStatus.RUNNING
        out.append(RunRecord(
            run_id=f"{job_id}:{int(slot.timestamp() * 1000)}", job_id=job_id, logical_time=slot, scheduled_for=slot,
            trigger=Trigger.SCHEDULED, status=status, attempt=1, started_at=slot,
            completed_at=slot + timedelta(milliseconds=3) if finished else None, duration_ms=3 if finished else None,
            worker="w0"))
    return out


async def write(target: Target, rows: list[RunRecord], batch: int, writers: int) -> None:
    """Every row in batches of `batch`, `writers` statements in flight at a time, as the recorders do."""
    queue: asyncio.Queue[list[RunRecord]] = asyncio.Queue()
    for first in range(0, len(rows), batch):
        queue.put_nowait(rows[first:first + batch])

    async def writer() -> None:
        while not queue.empty():
            await target.record(queue.get_nowait())

    await asyncio.gather(*(writer() for _ in range(writers)))


async def fire_slots(target: Target, jobs: Sequence[str], slots: Sequence[datetime], batch: int, writers: int,
                     runs: bool) -> None:
    """Each slot's fire records for every job (batches of `batch`, `writers` in flight), then,
    with `runs`, each job's finished run of that slot, as an every-second job's slot goes."""
    for slot in slots:
        fires = [(job_id, slot) for job_id in jobs]
        queue: asyncio.Queue[list[tuple[str, datetime]]] = asyncio.Queue()
        for first in range(0, len(fires), batch):
            queue.put_nowait(fires[first:first + batch])

        async def writer(queue: asyncio.Queue[list[tuple[str, datetime]]]) -> None:
            while not queue.empty():
                await target.fire(queue.get_nowait())

        await asyncio.gather(*(writer(queue) for _ in range(writers)))
        if runs:
            await write(target, records(jobs, len(jobs), slot, RunStatus.SUCCESS), batch, writers)


async def history_rows(store: Store, jobs: Sequence[str]) -> int:
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM job_runs WHERE job_id = ANY(%s::uuid[])", (list(jobs),))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def one_round(server: Postgres, target: Target, args: argparse.Namespace, round_no: int) -> list[Phase]:
    jobs = [str(uuid.uuid4()) for _ in range(args.jobs)]
    spec = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "* * * * * *", "timeZone": "UTC"})
    await target.store.upsert_jobs([(JobRef(job_id, "bench", f"job-{round_no}-{i}"), spec, 1, None)
                                    for i, job_id in enumerate(jobs)])
    base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=round_no)
    half = args.runs // 2
    later = base + timedelta(seconds=half // args.jobs + 1)
    finished = records(jobs, half, base, RunStatus.SUCCESS)
    starts = records(jobs, half, later, RunStatus.RUNNING)
    ends = records(jobs, half, later, RunStatus.SUCCESS)
    phases = [
        await phase("insert", server, target, len(finished), write(target, finished, args.batch, args.writers)),
        await phase("start+end", server, target, len(ends), _start_then_end(target, starts, ends, args)),
    ]
    # Fewer slots than runs: a fire record is a job row update only, and the pair below is the
    # hot path's per-slot cost; both after the runs above, on their jobs' rows.
    slots = max(1, args.runs // 4 // args.jobs)
    fired = later + timedelta(seconds=half // args.jobs + 1)
    phases.append(await phase("fires", server, target, slots * len(jobs), fire_slots(
        target, jobs, [fired + timedelta(seconds=i) for i in range(slots)], args.batch, args.writers, False)))
    paired = fired + timedelta(seconds=slots)
    phases.append(await phase("fire+run", server, target, slots * len(jobs), fire_slots(
        target, jobs, [paired + timedelta(seconds=i) for i in range(slots)], args.batch, args.writers, True)))
    before = await history_rows(target.store, jobs)

    async with target.store.pool.connection() as conn:
        await conn.execute("ANALYZE job_runs")  # as autovacuum would have by then: the plans of a live table

    async def prune() -> int:
        await target.prune(jobs, args.keep)
        return before - await history_rows(target.store, jobs)

    phases.append(await phase("retention", server, target, 0, prune()))
    return phases


async def _start_then_end(target: Target, starts: list[RunRecord], ends: list[RunRecord],
                          args: argparse.Namespace) -> None:
    step = args.batch * args.writers * 4
    for first in range(0, len(starts), step):
        await write(target, starts[first:first + step], args.batch, args.writers)
        await write(target, ends[first:first + step], args.batch, args.writers)


async def targets(server: Postgres, baseline: Path | None, pool_size: int, fold_rows: int) -> list[Target]:
    migrate(server.dsn)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        # Each phase vacuums what it left itself: an autovacuum worker starting at random
        # would land its cost on whichever phase runs then.
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")
    now = Target("now", await Store.open(server.dsn, max_size=pool_size), current.RECORD_UNTALLIED_RUNS,
                 current.RECORD_FIRES, current, current.TRIM_TOMBSTONES, current.TALLY_RUNS, fold_rows)
    if baseline is None:
        return [now]
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE before")
    dsn = server.dsn.rsplit("/", 1)[0] + "/before"
    migrate(dsn, baseline / "migrations")
    old = baseline_store(baseline)
    tally = getattr(old, "TALLY_RUNS", None)
    before = Target("before", await Store.open(dsn, max_size=pool_size),
                    old.RECORD_UNTALLIED_RUNS if tally else old.RECORD_RUNS, old.RECORD_FIRES, old,
                    getattr(old, "TRIM_TOMBSTONES", None), tally, fold_rows)
    return [before, now]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="rows per round (half inserted, half started+ended)")
    parser.add_argument("--jobs", type=int, default=250, help="jobs the runs spread over (400 rows each by default)")
    parser.add_argument("--batch", type=int, default=100, help="records per statement (the recorder's batch)")
    parser.add_argument("--writers", type=int, default=2, help="statements in flight (worker processes)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=int, default=100, help="successes each job keeps when retention prunes")
    parser.add_argument("--baseline", type=Path, help="a checkout whose schema and statements run beside these")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-record-cost-") as tmp, \
            Postgres(Path(tmp), durable=True) as server:
        # An every-second job's ends are folded once per period of the recorder's.
        fold_rows = round(args.jobs * JOB_ROW_INTERVAL_SECONDS)
        both = await targets(server, args.baseline, args.writers + 1, fold_rows)
        try:
            print(f"PostgreSQL {server.settings}; {args.jobs} jobs, batches of {args.batch}, {args.writers} writers; "
                  f"{load_average()}", flush=True)
            for round_no in range(args.rounds):
                for target in both if round_no % 2 == 0 else both[::-1]:
                    for result in await one_round(server, target, args, round_no):
                        print(f"{target.label:>6} round {round_no + 1} {result.line()}", flush=True)
                    updated, hot = await job_row_updates(target.store)
                    print(f"{target.label:>6} round {round_no + 1} scheduled_jobs: {updated} updates, {hot} HOT",
                          flush=True)
                    if target.deadlocks:
                        print(f"{target.label:>6} round {round_no + 1} deadlocks so far: {len(target.deadlocks)} "
                              "batches failed and were sent again", flush=True)
        finally:
            for target in both:
                await target.store.close()


if __name__ == "__main__":
    asyncio.run(main())
