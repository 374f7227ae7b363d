"""End-to-end throughput: fire -> run -> job_runs row committed, with 1, 2 and 4 worker processes.

N no-op jobs fire every second (offered load N runs/s, above what the workers can take), and
the figure is the rate of `success` rows committed in a steady-state window. Each worker
process runs its ticker and its consumer (default concurrency 5), as in production.

PostgreSQL runs durable (fsync, synchronous_commit and full_page_writes on) unless
`--fast-postgres` asks for the test settings; the line printed first says which. Beside each
figure: the CPU seconds per second that the workers, Redis and PostgreSQL used over the window
(1.00 = one core busy), which says where the ceiling is, and the load average.

    python -m bench.throughput [--jobs 20000] [--seconds 20] [--processes 1,2,4] [--fast-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from bench.common import (
    arm_bulk,
    load_average,
    new_keyspace,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    start_worker,
)
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services

WARM_UP = 5.0


async def committed_since(store: Store, job_ids: list[str], since: float) -> int:
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND status = 'success'"
            " AND completed_at >= to_timestamp(%s)",
            (job_ids, since),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def redis_cpu_seconds(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def scenario(services: Services, workers: int, jobs: int, seconds: float, logs: Path,
                   baseline: Path | None = None) -> str:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=4)
    job_ids = await arm_bulk(broker, store, ["* * * * * *"] * jobs, SYSTEM_CLOCK.now())
    # Runs never expire here (the overload policy would turn the backlog into `skipped` rows):
    # this measures how many runs a second the workers finish, not how they shed load.
    env = {"SUNDIAL_QUEUE_MIN_WAIT_SECONDS": "86400"}
    if baseline:
        env["PYTHONPATH"] = f"{baseline / 'core'}:{baseline / 'worker'}"
    processes = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"w{i}", logs / f"w{i}.log", **env)
                 for i in range(workers)]
    assert services.postgres.process is not None
    postgres_group = services.postgres.process.pid
    await asyncio.sleep(WARM_UP)
    window_start = time.time()
    cpu_start = ([process_cpu_seconds(p.pid) for p in processes], await redis_cpu_seconds(broker.redis),
                 process_tree_cpu_seconds(postgres_group))
    await asyncio.sleep(seconds - WARM_UP)
    cpu_end = ([process_cpu_seconds(p.pid) for p in processes], await redis_cpu_seconds(broker.redis),
               process_tree_cpu_seconds(postgres_group))
    window = time.time() - window_start
    load = load_average()
    done = await committed_since(store, job_ids, window_start)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(60)
    backlog = (await broker.queue_stats(broker.keys.all_shards()[0], 0)).length
    await broker.redis.delete(*[key async for key in broker.redis.scan_iter(match=f"*{keyspace.prefix}*")])
    await broker.close()
    await store.close()
    worker_cpu = " ".join(f"{(end - start) / window:.2f}" for start, end in zip(cpu_start[0], cpu_end[0], strict=True))
    label = "before" if baseline else "now"
    return (f"{label:>6} {workers} worker process(es): {done / window:8.0f} runs/s recorded "
            f"(offered {jobs}/s, {done} runs in {window:.1f} s, queue left {backlog}); "
            f"CPU/s workers [{worker_cpu}] redis {(cpu_end[1] - cpu_start[1]) / window:.2f} "
            f"postgres {(cpu_end[2] - cpu_start[2]) / window:.2f}; {load}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off, as the tests run it")
    parser.add_argument("--baseline", type=Path, help="a checkout (e.g. `git archive main core worker`) whose"
                        " worker runs beside this one, in the same run")
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp), durable_postgres=not args.fast_postgres) as services):
        migrate(services.postgres.dsn)
        print(f"end-to-end no-op throughput, {args.jobs} jobs firing every second; concurrency 5 per process; "
              f"PostgreSQL {services.postgres.settings}; Redis hz 10, no persistence; {load_average()}", flush=True)
        for workers in (int(n) for n in args.processes.split(",")):
            if args.baseline:
                print(await scenario(services, workers, args.jobs, args.seconds, Path(tmp), args.baseline), flush=True)
            print(await scenario(services, workers, args.jobs, args.seconds, Path(tmp)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
