"""Throughput: run -> job_runs row committed, with 1, 2 and 4 worker processes.

Two scenarios per process count, each in a fresh key space:

- `drain`: the queue is filled with `--runs` no-op runs first (manual runs of 1,000 jobs, by this
  process through the backfill/run-now enqueue path: `bench.common.fill_queue`),
  then consumer-only workers (ticker off, concurrency 5) empty it; the figure is the rate of
  `success` rows committed in a window after warm-up, which closes early (and says so) if the
  queue runs dry, and every row is kept for the count. This is what BullMQ's "jobs/s" measures.
- `e2e`: `--jobs` no-op jobs fire every second and each worker process runs its ticker and
  its consumer, as in production; the figure is the rate of `success` rows committed. When the
  offered load is above capacity the tickers' firing competes with the consumers for CPU.

Beside each figure: the CPU seconds per second that the workers, Redis and PostgreSQL used
over the window (1.00 = one core busy), the workers' CPU per recorded run, and the load
average: on a shared machine the CPU per run is the steadier figure. A `ceiling:` line names
what ran out (a worker's core, Redis's one thread, PostgreSQL, the machine's cores, or none of
them), and the run ends with the scale-out curve: rate by number of processes beside the
CPU each part used.

PostgreSQL runs durable (fsync, synchronous_commit and full_page_writes on) unless
`--fast-postgres` asks for the test settings; the line printed first says which.

`--probe` runs each worker under `bench.consumer_probe` and prints, per worker and window, how
many messages each queue read, ack and commit carried and how often the consumer waited for
room or started a lane; `--profile DIR` records each worker with py-spy over the window
(`py-spy` on PATH or beside this Python) into DIR, one collapsed-stack file per worker.

    python -m bench.throughput [--runs 300000] [--jobs 4000] [--seconds 20] [--processes 1,2,4]
                               [--fast-postgres] [--baseline DIR] [--probe] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from bench.common import (
    Armed,
    arm_bulk,
    baseline_env,
    fill_queue,
    load_average,
    new_keyspace,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    redis_cpu_seconds,
    start_worker,
    until_first_run,
)
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services

WARM_UP = 3.0
# How often a drain's window checks whether the queue still holds runs no worker has taken.
DRY_CHECK_SECONDS = 0.2
# The largest successfulRunsHistoryLimit a spec takes: a drain's 1,000 jobs keep every row it counts.
MAX_HISTORY = 100_000


async def committed(store: Store, job_ids: list[str]) -> int:
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND status = 'success'", (job_ids,))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Figures:
    """One scenario's rate and where its CPU went, over the measured window."""

    runs: int
    seconds: float
    workers: list[float]  # CPU seconds per second of each worker process
    redis: float
    postgres: float
    load: float  # 1-minute load average when the window closed

    @property
    def rate(self) -> float:
        return self.runs / self.seconds

    @property
    def per_run_us(self) -> float:
        return sum(self.workers) * self.seconds / self.runs * 1e6 if self.runs else float("nan")

    def ceiling(self) -> str:
        """Which resource ran out, read from the CPU figures (1.00 = one core busy)."""
        cores = os.cpu_count() or 1
        used = sum(self.workers) + self.redis + self.postgres
        if max(self.workers, default=0) >= 0.85:
            return "Python: a worker process used its whole core"
        if self.redis >= 0.85:
            return "Redis: its one thread used its whole core"
        if self.postgres >= 0.85 * cores:
            return "PostgreSQL: its processes used the cores"
        if used >= 0.85 * cores:
            return f"the cores: workers, Redis and PostgreSQL used {used:.2f} of {cores}"
        return (f"none of these: they used {used:.2f} of {cores} cores; the rest went to other work on the "
                f"machine (load {self.load:.1f}) or to waiting")

    def line(self) -> str:
        return (f"{self.rate:8.0f} runs/s recorded ({self.runs} in {self.seconds:.1f} s); CPU/s workers "
                f"[{' '.join(f'{w:.2f}' for w in self.workers)}] redis {self.redis:.2f} "
                f"postgres {self.postgres:.2f}; worker CPU {self.per_run_us:.0f} us/run; {load_average()}")


@dataclass
class Instruments:
    """What else a scenario looks at in its workers: their probe counts, a py-spy profile."""

    probe: bool = False
    profile: Path | None = None
    label: str = ""  # names the files of this scenario's workers

    def env(self, logs: Path, index: int) -> dict[str, str]:
        return {"SUNDIAL_CONSUMER_PROBE": str(self.probe_file(logs, index))} if self.probe else {}

    def probe_file(self, logs: Path, index: int) -> Path:
        return logs / f"{self.label}-w{index}.probe"

    def profile_workers(self, workers: list[subprocess.Popen[bytes]], seconds: float) -> list[subprocess.Popen[bytes]]:
        if self.profile is None:
            return []
        self.profile.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        return [subprocess.Popen([spy, "record", "--pid", str(worker.pid), "--duration", str(round(seconds)),
                                  "--rate", "250", "--nonblocking", "--format", "raw",
                                  "--output", str(self.profile / f"{self.label}-w{index}.txt")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for index, worker in enumerate(workers)]


def read_probe(path: Path) -> dict[str, list[float]]:
    try:
        counts: dict[str, list[float]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    counts.pop("at", None)
    return counts


def probe_line(before: dict[str, list[float]], after: dict[str, list[float]], runs: float) -> str:
    """Calls, items per call and ms awaited per call of each probed method over the window."""
    parts = []
    for name, (calls, items, seconds) in after.items():
        was = before.get(name, [0, 0, 0.0])
        calls, items, seconds = calls - was[0], items - was[1], seconds - was[2]
        if not calls:
            continue
        short = name.split(".")[-1].lstrip("_")
        per_call = f" {items / calls:.0f}/call" if items else ""
        per_k = f" ({calls / runs * 1000:.1f} per 1k runs)" if runs else ""
        parts.append(f"{short} {calls:.0f}{per_call} {seconds / calls * 1000:.1f}ms{per_k}")
    return "; ".join(parts) or "no probe counts (a worker without the probe?)"


@dataclass
class Window:
    """CPU counters of the processes under test, read at the start and at the end of a window."""

    workers: list[subprocess.Popen[bytes]]
    redis: Redis
    postgres_pid: int
    started: float = 0.0
    cpu: tuple[list[float], float, float] = ([], 0.0, 0.0)
    probes: list[Path] = field(default_factory=list)
    probed: list[dict[str, list[float]]] = field(default_factory=list)

    async def read(self) -> tuple[list[float], float, float]:
        return ([process_cpu_seconds(p.pid) for p in self.workers], await redis_cpu_seconds(self.redis),
                process_tree_cpu_seconds(self.postgres_pid))

    async def open(self) -> None:
        self.started, self.cpu = time.time(), await self.read()
        self.probed = [read_probe(path) for path in self.probes]

    async def close(self, runs: int) -> Figures:
        end = await self.read()
        window = time.time() - self.started
        figures = Figures(runs, window, [(b - a) / window for a, b in zip(self.cpu[0], end[0], strict=True)],
                          (end[1] - self.cpu[1]) / window, (end[2] - self.cpu[2]) / window, os.getloadavg()[0])
        cpu = [(b - a) for a, b in zip(self.cpu[0], end[0], strict=True)]
        if self.probes:
            await asyncio.sleep(0.6)  # the probes write every 0.5 s
        for index, (path, before) in enumerate(zip(self.probes, self.probed, strict=True)):
            after = read_probe(path)
            recorded = after.get("Recorder._flush", [0, 0, 0])[1] - before.get("Recorder._flush", [0, 0, 0])[1]
            print(f"       w{index}: {cpu[index]:.2f} CPU-s; {probe_line(before, after, recorded)}", flush=True)
        return figures


def worker_env(baseline: Path | None, **env: str) -> dict[str, str]:
    # Runs never expire here (the overload policy would turn a backlog into `skipped` rows):
    # this measures how many runs a second the workers finish, not how they shed load.
    return {"SUNDIAL_QUEUE_MIN_WAIT_SECONDS": "86400", **env, **baseline_env(baseline)}


async def drain(services: Services, workers: int, runs: int, seconds: float, logs: Path,
                baseline: Path | None, instruments: Instruments) -> Figures:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=4)
    now = SYSTEM_CLOCK.now()
    # Every run's row is kept, so the window's count is what was recorded in it, however many
    # runs the queue held (retention would delete rows beyond the default 100 per job).
    job_ids = await arm_bulk(broker, store, ["0 0 1 1 *"] * 1000, now, successfulRunsHistoryLimit=MAX_HISTORY)
    await broker.ensure_groups()
    await fill_queue(broker, job_ids, runs)
    processes = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"w{i}", logs / f"w{i}.log",
                              **worker_env(baseline, SUNDIAL_TICKER_ENABLED="false", **instruments.env(logs, i)))
                 for i in range(workers)]
    queue = keyspace.all_shards()[0]

    async def ran_dry() -> bool:
        return (await broker.queue_stats(queue, 0)).lag == 0

    figures = await measure(services, broker, store, job_ids, processes, seconds, instruments, logs, ran_dry)
    await Armed(keyspace, broker, store, job_ids).forget()
    return figures


async def e2e(services: Services, workers: int, jobs: int, seconds: float, logs: Path,
              baseline: Path | None, instruments: Instruments) -> Figures:
    armed = await Armed.every_second(services, jobs)
    processes = [start_worker(services.postgres.dsn, services.redis.url, armed.keyspace, f"w{i}", logs / f"w{i}.log",
                              **worker_env(baseline, **instruments.env(logs, i)))
                 for i in range(workers)]
    figures = await measure(services, armed.broker, armed.store, armed.job_ids, processes, seconds, instruments, logs)
    await armed.forget()
    return figures


async def measure(services: Services, broker: Broker, store: Store, job_ids: list[str],
                  processes: list[subprocess.Popen[bytes]], seconds: float, instruments: Instruments,
                  logs: Path, ran_dry: Callable[[], Awaitable[bool]] | None = None) -> Figures:
    """The window's figures; it closes early, and says so, once `ran_dry` (the queue is empty):
    a window that ran on past the last run would count idle seconds as the workers' rate."""
    assert services.postgres.process is not None
    probes = [instruments.probe_file(logs, i) for i in range(len(processes))] if instruments.probe else []
    window = Window(processes, broker.redis, services.postgres.process.pid, probes=probes)
    await until_first_run(store, job_ids)
    await asyncio.sleep(WARM_UP)
    before = await committed(store, job_ids)
    await window.open()
    spies = instruments.profile_workers(processes, seconds)
    closes = time.monotonic() + seconds
    while time.monotonic() < closes:
        await asyncio.sleep(min(DRY_CHECK_SECONDS, closes - time.monotonic()))
        if ran_dry is not None and await ran_dry():
            print(f"       the queue ran dry {seconds - (closes - time.monotonic()):.1f} s into the window, which"
                  " closed then (a larger --runs gives a longer window)", flush=True)
            break
    figures = await window.close(await committed(store, job_ids) - before)
    for spy in spies:
        spy.wait()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            # On a crowded machine a worker handing its prefetched runs back can take longer;
            # the figures are already taken, and the next scenario needs the cores.
            print(f"       a worker did not stop within 60 s of SIGTERM; killed ({load_average()})", flush=True)
            process.kill()
            process.wait()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300_000, help="runs queued before a drain")
    parser.add_argument("--jobs", type=int, default=4000, help="every-second jobs in the e2e scenario")
    parser.add_argument("--seconds", type=float, default=10, help="measured window per scenario")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--scenarios", default="drain,e2e")
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off, as the tests run it")
    parser.add_argument("--baseline", type=Path, help="a checkout (`git archive main core worker | tar -x -C DIR`)"
                        " whose worker runs beside this one, in the same run")
    parser.add_argument("--probe", action="store_true", help="count each worker's reads, acks and commits")
    parser.add_argument("--profile", type=Path, help="record each worker with py-spy into this folder")
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp), durable_postgres=not args.fast_postgres) as services):
        migrate(services.postgres.dsn)
        print(f"no-op throughput; concurrency 5 per process; PostgreSQL {services.postgres.settings}; "
              f"Redis hz 10, no persistence; {load_average()}", flush=True)
        curve: dict[tuple[str, str], list[tuple[int, Figures]]] = {}
        for workers in (int(n) for n in args.processes.split(",")):
            for name in args.scenarios.split(","):
                for baseline in ([args.baseline] if args.baseline else []) + [None]:
                    version = "before" if baseline else "now"
                    instruments = Instruments(args.probe, args.profile, f"{version}-{name}-{workers}p")
                    if name == "drain":
                        figures = await drain(services, workers, args.runs, args.seconds, Path(tmp), baseline,
                                              instruments)
                    else:
                        figures = await e2e(services, workers, args.jobs, args.seconds, Path(tmp), baseline,
                                            instruments)
                    offered = f"; offered {args.jobs}/s" if name == "e2e" else ""
                    print(f"{version:>6} {name:<5} {workers} process(es): {figures.line()}{offered}", flush=True)
                    print(f"{'':>6} ceiling: {figures.ceiling()}", flush=True)
                    curve.setdefault((version, name), []).append((workers, figures))
        print_curve(curve)


def print_curve(curve: dict[tuple[str, str], list[tuple[int, Figures]]]) -> None:
    """The scale-out curve: rate and CPU by number of worker processes, and what ran out."""
    print("\nscale-out: processes, runs/s, x of 1 process, CPU/s workers (sum) / Redis / PostgreSQL, ceiling")
    for (version, name), points in curve.items():
        one = next((f.rate for n, f in points if n == 1), None)
        for workers, figures in points:
            factor = f"{figures.rate / one:4.2f}x" if one else "  - "
            print(f"{version:>6} {name:<5} {workers} {figures.rate:8.0f} {factor} {sum(figures.workers):5.2f} / "
                  f"{figures.redis:4.2f} / {figures.postgres:4.2f}  {figures.ceiling()}")

if __name__ == "__main__":
    asyncio.run(main())
