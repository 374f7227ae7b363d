"""Run lateness at scale: N every-second no-op schedules on 2 worker processes (ticker + consumer).

Lateness is what the user feels: when the job's code starts (`job_runs.started_at`, stamped
just before the target is called) minus its slot. Over a window of whole seconds after a
warm-up, every (job, slot) is expected once: `missed` counts slots with no run started (not
fired, still queued, or recorded missed by the overload policy), `duplicates` counts runs
started more than once (`job_runs.deliveries`; the schema allows one row per slot). Beside
them: the workers', Redis' and PostgreSQL's CPU over the window and the load average.

PostgreSQL runs durable (fsync and synchronous_commit on) unless `--fast-postgres`.

    python -m bench.run_lateness [--sizes 1000,5000,10000] [--seconds 20] [--processes 2] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import tempfile
import time
from pathlib import Path

from bench.common import (
    Armed,
    baseline_env,
    load_average,
    percentile,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    until_first_run,
)
from sundial.core.broker import Broker
from sundial.core.migrate import migrate
from sundial.devstack.services import Services

WARM_UP = 5.0
SETTLE = 3.0

WINDOW_SQL = """
SELECT extract(epoch FROM started_at - scheduled_for) * 1000 AS late_ms, status, deliveries
FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND attempt = 1
  AND scheduled_for >= to_timestamp(%s) AND scheduled_for < to_timestamp(%s)
"""


async def scenario(services: Services, size: int, seconds: int, processes: int, logs: Path,
                   baseline: Path | None = None) -> str:
    armed = await Armed.every_second(services, size)
    broker, store, keyspace, job_ids = armed.broker, armed.store, armed.keyspace, armed.job_ids
    workers = armed.start_workers(services, processes, logs, **baseline_env(baseline))
    assert services.postgres.process is not None
    await until_first_run(store, job_ids)
    await asyncio.sleep(WARM_UP)
    window_start = math.ceil(time.time())
    await asyncio.sleep(window_start - time.time())
    cpu = [process_cpu_seconds(p.pid) for p in workers]
    redis_cpu = await _redis_cpu(broker)
    postgres_cpu = process_tree_cpu_seconds(services.postgres.process.pid)
    await asyncio.sleep(seconds)
    cpu = [process_cpu_seconds(p.pid) - before for p, before in zip(workers, cpu, strict=True)]
    redis_cpu = await _redis_cpu(broker) - redis_cpu
    postgres_cpu = process_tree_cpu_seconds(services.postgres.process.pid) - postgres_cpu
    load = load_average()
    lag = (await broker.queue_stats(keyspace.all_shards()[0], int(time.time() * 1000))).lag
    await asyncio.sleep(SETTLE)  # slots at the window's end start and are recorded
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        process.wait(120)
    async with store.pool.connection() as conn:
        rows = await (await conn.execute(WINDOW_SQL, (job_ids, window_start, window_start + seconds))).fetchall()
    started = [float(late) for late, status, _ in rows if status not in ("skipped",) and late is not None]
    duplicates = sum(deliveries - 1 for _, _, deliveries in rows if deliveries > 1)
    missed = size * seconds - len(started)
    await armed.forget()
    p50, p99 = percentile(started, .5), percentile(started, .99)
    return (f"{'before' if baseline else 'now':>6} {size:>6} schedules: lateness_ms p50={p50:7.1f} p99={p99:7.1f} "
            f"max={max(started, default=float('nan')):7.1f} runs={len(started)} missed={missed} "
            f"duplicates={duplicates} queue lag at end={lag}; CPU/s workers "
            f"[{' '.join(f'{c / seconds:.2f}' for c in cpu)}] redis {redis_cpu / seconds:.2f} "
            f"postgres {postgres_cpu / seconds:.2f}; {load}")


async def _redis_cpu(broker: Broker) -> float:
    info = await broker.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off, as the tests run it")
    parser.add_argument("--baseline", type=Path, help="an older checkout whose workers run beside these")
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp), durable_postgres=not args.fast_postgres) as services):
        migrate(services.postgres.dsn)
        print(f"run lateness (code start - slot): every-second no-op schedules, {args.processes} worker processes"
              f" (ticker + consumer, concurrency 5), {args.seconds} s window; PostgreSQL "
              f"{services.postgres.settings}; Redis hz 10, no persistence", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            for baseline in ([args.baseline] if args.baseline else []) + [None]:
                print(await scenario(services, size, args.seconds, args.processes, Path(tmp), baseline), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
