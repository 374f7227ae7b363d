"""What the operator's status poll costs PostgreSQL as `scheduled_jobs` grows.

The status sync (sundial.operator.status_sync) calls `Store.job_states_changed_since(cursor -
5 s)` once a second. Whether `updated_at` has an index decides how that query finds the rows
that changed, and whether the ticker's and recorder's updates of a job's row can be HOT
(docs/performance.md, "PostgreSQL per recorded run"). For each `--sizes` table size this bench
upserts that many jobs (a realistic spec, so realistic rows), lets `--hot` of them fire and run
every second for `--seconds` slots through the workers' statements (`RECORD_FIRES` then
`RECORD_RUNS`, batches of 500), then polls as the status sync does and prints PostgreSQL's CPU
per poll (the server's whole process tree, over `--polls` polls) and the plan:

- `steady`: the cursor 5 s behind the newest change, so the poll returns every hot job;
- `idle`: the cursor at the newest change (nothing returned): the cost of finding nothing.

Against a durable PostgreSQL, autovacuum off (the updates' dead rows are what the poll meets
between two autovacuums). `--baseline DIR` migrates a second database with DIR's migrations and
polls both, alternating, so both share the machine's load (printed beside each figure):

    python -m bench.status_poll_cost [--sizes 10000,100000] [--hot 5000] [--seconds 5] [--polls 20]
                                     [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg

from bench.common import baseline_store, job_row_updates, load_average, process_tree_cpu_seconds
from bench.record_cost import records
from sundial.core import store as current
from sundial.core.migrate import migrate
from sundial.core.runs import JobRef, RunStatus
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import FireRecord, Store
from sundial.devstack.services import Postgres

SPEC = {
    "displayName": "Enviar Relatorios", "description": "Envia relatorios aprovados via WhatsApp",
    "category": "biz", "target": "biz:send-reports", "schedule": "* * * * * *", "timeZone": "America/Sao_Paulo",
    "params": {"channel": "whatsapp", "limit": 100},
}
BATCH = 500


async def populate(statements: ModuleType, store: Store, size: int, hot: int, seconds: int,
                   ) -> tuple[list[str], datetime]:
    """`size` jobs, of which the first `hot` fired and ran `seconds` slots; the newest change."""
    spec = ScheduledJobSpec.model_validate(SPEC)
    jobs = [str(uuid.uuid4()) for _ in range(size)]
    for first in range(0, size, 1000):
        await store.upsert_jobs([(JobRef(job_id, "bench", f"job-{first + i}"), spec, 1, None)
                                 for i, job_id in enumerate(jobs[first:first + 1000])])
    # The upserts' changes fall out of the steady poll's window, as they would in a running system.
    await asyncio.sleep(6)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    async with store.pool.connection() as conn:
        for second in range(seconds):
            slot = base + timedelta(seconds=second)
            for first in range(0, hot, BATCH):
                ids = jobs[first:min(first + BATCH, hot)]
                await conn.execute(statements.RECORD_FIRES, current.fire_params(
                    [FireRecord(job_id, slot + timedelta(seconds=1), slot, missed=0) for job_id in ids]))
                await conn.execute(statements.RECORD_RUNS, (current._runs_json(records(ids, len(ids), slot,
                                                                                    RunStatus.SUCCESS)),))
        cursor = await conn.execute("SELECT max(updated_at) FROM scheduled_jobs")
        row = await cursor.fetchone()
    assert row is not None
    return jobs, row[0]


async def poll_cost(server: Postgres, store: Store, since: datetime, polls: int) -> tuple[float, int]:
    """PostgreSQL CPU seconds per poll, and the rows one poll returned."""
    assert server.process is not None
    returned = len(await store.job_states_changed_since(since))  # warm the cache and the plan
    cpu = process_tree_cpu_seconds(server.process.pid)
    for _ in range(polls):
        await store.job_states_changed_since(since)
    return (process_tree_cpu_seconds(server.process.pid) - cpu) / polls, returned


async def plan(statements: ModuleType, store: Store, since: datetime) -> str:
    """The poll's plan, summarised: its nodes and the execution time."""
    changed = getattr(statements, "CHANGED_SINCE",
                      "(%(since)s::timestamptz IS NULL OR updated_at > %(since)s)")  # before migration 0010
    query = (f"EXPLAIN (ANALYZE, BUFFERS) SELECT {statements.JOB_STATE_COLUMNS} FROM scheduled_jobs"
             f" WHERE deleted_at IS NULL AND {changed} ORDER BY updated_at")
    async with store.pool.connection() as conn:
        cursor = await conn.execute(query, {"since": since})
        lines = [str(row[0]) for row in await cursor.fetchall()]
    nodes = [line.strip().split("  (")[0].lstrip("-> ") for line in lines if "(cost=" in line]
    buffers = next((line.strip() for line in lines if line.strip().startswith("Buffers")), "")
    execution = next((line.strip() for line in lines if line.startswith("Execution Time")), "")
    return f"{' / '.join(nodes)}; {buffers}; {execution}"


async def sizes_of(store: Store) -> str:
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT pg_size_pretty(pg_table_size('scheduled_jobs')), pg_size_pretty(pg_indexes_size('scheduled_jobs'))")
        row = await cursor.fetchone()
    assert row is not None
    updated, hot = await job_row_updates(store)
    return f"table {row[0]}, indexes {row[1]}, updates {updated} of which HOT {hot}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="jobs in the table, comma-separated")
    parser.add_argument("--hot", type=int, default=5000, help="jobs that fire and run every second")
    parser.add_argument("--seconds", type=int, default=5, help="slots the hot jobs fire and run before the polls")
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--baseline", type=Path, help="a checkout whose migrations make the second database")
    args = parser.parse_args()
    old = baseline_store(args.baseline) if args.baseline is not None else current
    with tempfile.TemporaryDirectory(prefix="sundial-poll-cost-") as tmp, \
            Postgres(Path(tmp), durable=True) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET autovacuum = off")
            conn.execute("SELECT pg_reload_conf()")
        print(f"PostgreSQL {server.settings}; {args.hot} jobs fire and run every second, {args.seconds} s; "
              f"{load_average()}", flush=True)
        for size in (int(size) for size in args.sizes.split(",")):
            targets: list[tuple[str, str, Path | None, ModuleType]] = [("now", f"now{size}", None, current)]
            if args.baseline is not None:
                targets.insert(0, ("before", f"before{size}", args.baseline / "migrations", old))
            for label, database, migrations, statements in targets:
                with psycopg.connect(server.dsn, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {database}")
                dsn = server.dsn.rsplit("/", 1)[0] + "/" + database
                migrate(dsn, migrations)
                store = await statements.Store.open(dsn, max_size=2)
                try:
                    started = time.monotonic()
                    _, newest = await populate(statements, store, size, min(args.hot, size), args.seconds)
                    print(f"{label:>6} {size:7d} jobs: populated in {time.monotonic() - started:.0f} s; "
                          f"{await sizes_of(store)}", flush=True)
                    for name, since in (("steady", newest - timedelta(seconds=5)), ("idle", newest)):
                        cpu, returned = await poll_cost(server, store, since, args.polls)
                        print(f"{label:>6} {size:7d} jobs {name:<6} {returned:6d} rows  PostgreSQL "
                              f"{cpu * 1e3:6.1f} ms CPU/poll  {load_average()}", flush=True)
                        print(f"{'':>6} {'':7} plan: {await plan(statements, store, since)}", flush=True)
                finally:
                    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
