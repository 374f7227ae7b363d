"""Throughput: run -> job_runs row committed, with 1, 2 and 4 worker processes.

Two scenarios per process count, each in a fresh key space:

- `drain`: the queue is filled with `--runs` no-op runs first (manual runs of 1,000 jobs),
  then consumer-only workers (ticker off, concurrency 5) empty it; the figure is the rate of
  `success` rows committed in a window after warm-up. This is what BullMQ's "jobs/s" measures.
- `e2e`: `--jobs` no-op jobs fire every second and each worker process runs its ticker and
  its consumer, as in production; the figure is the rate of `success` rows committed. When the
  offered load is above capacity the tickers' firing competes with the consumers for CPU.

Beside each figure: the CPU seconds per second that the workers, Redis and PostgreSQL used
over the window (1.00 = one core busy), the workers' CPU per recorded run, and the load
average: on a shared machine the CPU per run is the steadier figure.

PostgreSQL runs durable (fsync, synchronous_commit and full_page_writes on) unless
`--fast-postgres` asks for the test settings; the line printed first says which. Beside each
figure: the CPU seconds per second that the workers, Redis and PostgreSQL used over the window
(1.00 = one core busy), which says where the ceiling is, and the load average.

    python -m bench.throughput [--runs 60000] [--jobs 4000] [--seconds 20] [--processes 1,2,4]
                               [--fast-postgres] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.common import (
    Armed,
    arm_bulk,
    baseline_env,
    load_average,
    new_keyspace,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    start_worker,
    until_first_run,
)
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.jobs import run_now
from sundial.core.migrate import migrate
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.devstack.services import Services

WARM_UP = 3.0


async def committed(store: Store, job_ids: list[str]) -> int:
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND status = 'success'", (job_ids,))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def redis_cpu_seconds(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class Window:
    """CPU counters of the processes under test, read at the start and at the end of a window."""

    workers: list[subprocess.Popen[bytes]]
    redis: Redis
    postgres_pid: int
    started: float = 0.0
    cpu: tuple[list[float], float, float] = ([], 0.0, 0.0)

    async def read(self) -> tuple[list[float], float, float]:
        return ([process_cpu_seconds(p.pid) for p in self.workers], await redis_cpu_seconds(self.redis),
                process_tree_cpu_seconds(self.postgres_pid))

    async def open(self) -> None:
        self.started, self.cpu = time.time(), await self.read()

    async def close(self, runs: int) -> str:
        end = await self.read()
        window = time.time() - self.started
        workers = [b - a for a, b in zip(self.cpu[0], end[0], strict=True)]
        per_run = f"{sum(workers) / runs * 1e6:.0f}" if runs else "-"
        return (f"{runs / window:8.0f} runs/s recorded ({runs} in {window:.1f} s); CPU/s workers "
                f"[{' '.join(f'{w / window:.2f}' for w in workers)}] redis {(end[1] - self.cpu[1]) / window:.2f} "
                f"postgres {(end[2] - self.cpu[2]) / window:.2f}; worker CPU {per_run} us/run; {load_average()}")


def worker_env(baseline: Path | None, **env: str) -> dict[str, str]:
    # Runs never expire here (the overload policy would turn a backlog into `skipped` rows):
    # this measures how many runs a second the workers finish, not how they shed load.
    return {"SUNDIAL_QUEUE_MIN_WAIT_SECONDS": "86400", **env, **baseline_env(baseline)}


async def drain(services: Services, workers: int, runs: int, seconds: float, logs: Path,
                baseline: Path | None) -> str:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=4)
    now = SYSTEM_CLOCK.now()
    job_ids = await arm_bulk(broker, store, ["0 0 1 1 *"] * 1000, now)
    specs = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "0 0 1 1 *", "timeZone": "UTC"})
    await broker.ensure_groups()
    for start in range(0, runs, 100):
        await asyncio.gather(*(run_now(broker, JobRef(job_ids[i % 1000], "bench", f"job-{i % 1000}"), specs,
                                       f"r{i}", now) for i in range(start, min(start + 100, runs))))
    processes = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"w{i}", logs / f"w{i}.log",
                              **worker_env(baseline, SUNDIAL_TICKER_ENABLED="false"))
                 for i in range(workers)]
    line = await measure(services, broker, store, job_ids, processes, seconds)
    await Armed(keyspace, broker, store, job_ids).forget()
    return line


async def e2e(services: Services, workers: int, jobs: int, seconds: float, logs: Path,
              baseline: Path | None) -> str:
    armed = await Armed.every_second(services, jobs)
    processes = armed.start_workers(services, workers, logs, **worker_env(baseline))
    line = await measure(services, armed.broker, armed.store, armed.job_ids, processes, seconds)
    await armed.forget()
    return f"{line}; offered {jobs}/s"


async def measure(services: Services, broker: Broker, store: Store, job_ids: list[str],
                  processes: list[subprocess.Popen[bytes]], seconds: float) -> str:
    assert services.postgres.process is not None
    window = Window(processes, broker.redis, services.postgres.process.pid)
    await until_first_run(store, job_ids)
    await asyncio.sleep(WARM_UP)
    before = await committed(store, job_ids)
    await window.open()
    await asyncio.sleep(seconds)
    line = await window.close(await committed(store, job_ids) - before)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(60)
    return line


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60000, help="runs queued before a drain")
    parser.add_argument("--jobs", type=int, default=4000, help="every-second jobs in the e2e scenario")
    parser.add_argument("--seconds", type=float, default=10, help="measured window per scenario")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--scenarios", default="drain,e2e")
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off, as the tests run it")
    parser.add_argument("--baseline", type=Path, help="a checkout (`git archive main core worker | tar -x -C DIR`)"
                        " whose worker runs beside this one, in the same run")
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp), durable_postgres=not args.fast_postgres) as services):
        migrate(services.postgres.dsn)
        print(f"no-op throughput; concurrency 5 per process; PostgreSQL {services.postgres.settings}; "
              f"Redis hz 10, no persistence; {load_average()}", flush=True)
        for workers in (int(n) for n in args.processes.split(",")):
            for name in args.scenarios.split(","):
                for baseline in ([args.baseline] if args.baseline else []) + [None]:
                    label = f"{'before' if baseline else 'now':>6} {name:<5} {workers} process(es):"
                    if name == "drain":
                        line = await drain(services, workers, args.runs, args.seconds, Path(tmp), baseline)
                    else:
                        line = await e2e(services, workers, args.jobs, args.seconds, Path(tmp), baseline)
                    print(label, line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
