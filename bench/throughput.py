"""End-to-end throughput: fire -> run -> job_runs row committed, with 1 and 2 worker processes.

N no-op jobs fire every second (offered load N runs/s, above what the workers can take), and
the figure is the rate of `success` rows committed in a steady-state window. Each worker
process runs its ticker and its consumer (default concurrency 5), as in production.

    python -m bench.throughput [--jobs 4000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path

from bench.common import arm_many, new_keyspace, start_worker
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


async def scenario(services: Services, workers: int, jobs: int, seconds: float, logs: Path) -> str:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=4)
    job_ids = await arm_many(broker, store, ["* * * * * *"] * jobs, SYSTEM_CLOCK.now())
    processes = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"w{i}", logs / f"w{i}.log")
                 for i in range(workers)]
    await asyncio.sleep(WARM_UP)
    window_start = time.time()
    await asyncio.sleep(seconds - WARM_UP)
    window = time.time() - window_start
    done = await committed_since(store, job_ids, window_start)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(60)
    backlog = (await broker.queue_stats(broker.keys.all_shards()[0], 0)).length
    await broker.close()
    await store.close()
    return (f"{workers} worker process(es): {done / window:8.0f} runs/s recorded "
            f"(offered {jobs}/s, {done} runs in {window:.1f} s, queue left {backlog})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp)) as services:
        migrate(services.postgres.dsn)
        print(f"end-to-end no-op throughput, {args.jobs} jobs firing every second")
        for workers in (1, 2):
            print(await scenario(services, workers, args.jobs, args.seconds, Path(tmp)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
