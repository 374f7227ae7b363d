"""Shared set-up for benchmarks: private services, fast bulk arming, percentiles."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from redis.asyncio import Redis

from sundial.core.broker import Broker
from sundial.core.jobs import ArmRequest, arm_job, arm_jobs
from sundial.core.keys import Keyspace, run_id_for_manual
from sundial.core.runs import JobRef, RunMessage, RunTemplate, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.devstack.services import Services

WORKER = str(Path(sys.executable).with_name("sundial-worker"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


async def arm_many(broker: Broker, store: Store, schedules: Sequence[str], now: datetime,
                   target: str = "noop") -> list[str]:
    """Arm one job per schedule, 50 at a time (arming 10k one by one takes a while)."""
    ids: list[str] = []

    async def arm(index: int, schedule: str) -> None:
        job_id = str(uuid.uuid4())
        spec = ScheduledJobSpec.model_validate(
            {"target": target, "schedule": schedule, "timeZone": "UTC", "missedRunPolicy": "RunAll"})
        await arm_job(broker, store, JobRef(job_id, "bench", f"job-{index}-{job_id[:6]}"), spec, 1, now)
        ids.append(job_id)

    for start in range(0, len(schedules), 50):
        await asyncio.gather(*(arm(i, s) for i, s in enumerate(schedules[start:start + 50], start)))
    return ids


FILL_CHUNK = 1000


async def fill_queue(broker: Broker, job_ids: Sequence[str], runs: int) -> None:
    """Queue `runs` no-op manual runs of these jobs (armed already), 1,000 a round trip, through the
    enqueue path of backfills and run-now requests (`Broker.enqueue_once`: the ENQUEUE_MANUAL script).

    That path also keeps a dedupe record per request, which the workers' housekeeping scans every
    30 s; a queue of a few hundred thousand run-now requests at once is not what it is sized for,
    and no peer keeps such records, so they are dropped once the queue is filled.
    """
    now_ms = round(time.time() * 1000)
    spec = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "0 0 1 1 *", "timeZone": "UTC"})
    templates = [RunTemplate.from_spec(JobRef(job_id, "bench", f"job-{index}-{job_id[:6]}"), spec)
                 for index, job_id in enumerate(job_ids)]
    for start in range(0, runs, FILL_CHUNK):
        messages = [RunMessage(run_id=run_id_for_manual(job_ids[i % len(job_ids)], f"fill{i}"),
                               template=templates[i % len(job_ids)], trigger=Trigger.MANUAL, attempt=1,
                               logical_ms=now_ms, scheduled_ms=None, enqueued_ms=now_ms)
                    for i in range(start, min(start + FILL_CHUNK, runs))]
        await broker.enqueue_once(messages, now_ms + 3_600_000)
    await broker.redis.delete(*(shard.manual for shard in broker.keys.all_shards()))


# A worker started with one of these in its environment runs under that probe module.
PROBES = {"SUNDIAL_STAGE_PROBE": "bench.stage_probe", "SUNDIAL_CONSUMER_PROBE": "bench.consumer_probe"}


def start_worker(database_url: str, redis_url: str, keyspace: Keyspace, name: str, log: Path,
                 **env: str) -> subprocess.Popen[bytes]:
    """A `sundial-worker`; with SUNDIAL_STAGE_PROBE in `env`, one that notes when it read each
    run (bench.stage_probe); with SUNDIAL_CONSUMER_PROBE, one that counts its batches (bench.consumer_probe)."""
    environment = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                   "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_WORKER_ID": name, "SUNDIAL_METRICS_PORT": "0",
                   "SUNDIAL_LOG_LEVEL": "WARNING", **env}
    command = [WORKER]
    probe = next((module for variable, module in PROBES.items() if variable in env), None)
    if probe is not None:
        command = [sys.executable, "-m", probe]
        root = str(Path(__file__).resolve().parents[1])
        environment["PYTHONPATH"] = ":".join(filter(None, (env.get("PYTHONPATH"), root)))
    return subprocess.Popen(command, env=environment, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def new_keyspace() -> Keyspace:
    return Keyspace(prefix=f"bench{uuid.uuid4().hex[:8]}")


async def arm_bulk(broker: Broker, store: Store, schedules: Sequence[str], now: datetime,
                   target: str = "noop", **spec_fields: object) -> list[str]:
    """`arm_many` through the operator's bulk path, 1,000 jobs per round trip (10k+ jobs in seconds).

    The key space is marked intact, as a deployment's is once running: a bench's fresh key space
    has no marker, so its workers would first "rebuild" it from PostgreSQL, arming every job an
    earlier scenario left there (1 ms of their CPU per job, and those jobs fire too)."""
    await broker.mark_intact(round(now.timestamp() * 1000))
    requests = []
    for index, schedule in enumerate(schedules):
        job_id = str(uuid.uuid4())
        spec = ScheduledJobSpec.model_validate(
            {"target": target, "schedule": schedule, "timeZone": "UTC", "missedRunPolicy": "RunAll", **spec_fields})
        requests.append(ArmRequest(JobRef(job_id, "bench", f"job-{index}-{job_id[:6]}"), spec, 1))
    for start in range(0, len(requests), 1000):
        await arm_jobs(broker, store, requests[start:start + 1000], now, {})
    return [request.job.job_id for request in requests]


def process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and its live descendants (a server and its backends)."""
    stats: dict[int, tuple[int, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the command: state ppid ...; utime and stime are the 12th and 13th.
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= children
        grew = bool(children)
    # Children that exited (PostgreSQL backends closed by a pool) were reaped by their parents,
    # which count them in cutime and cstime: without those, a tree's CPU could fall over a window.
    return sum(stats[pid][1] for pid in tree if pid in stats) + _reaped_children_cpu_seconds(root)


def _reaped_children_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


async def redis_cpu_seconds(redis: Redis) -> float:
    """User + system CPU seconds the Redis server has used so far (`INFO cpu`)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds one process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def baseline_env(baseline: Path | None) -> dict[str, str]:
    """Environment that makes a started worker import an older checkout (`git archive main core
    worker | tar -x -C DIR`) instead of this one, so "before" runs beside "now" in one bench run."""
    return {"PYTHONPATH": f"{baseline / 'core'}:{baseline / 'worker'}"} if baseline else {}


@dataclass
class Armed:
    """A fresh key space with `size` every-second no-op jobs armed in it."""

    keyspace: Keyspace
    broker: Broker
    store: Store
    job_ids: list[str]

    @classmethod
    async def every_second(cls, services: Services, size: int) -> Armed:
        keyspace = new_keyspace()
        broker = Broker.from_url(services.redis.url, keyspace)
        store = await Store.open(services.postgres.dsn, max_size=4)
        job_ids = await arm_bulk(broker, store, ["* * * * * *"] * size, datetime.now(UTC))
        return cls(keyspace, broker, store, job_ids)

    def start_workers(self, services: Services, count: int, logs: Path, **env: str) -> list[subprocess.Popen[bytes]]:
        return [start_worker(services.postgres.dsn, services.redis.url, self.keyspace, f"w{i}", logs / f"w{i}.log",
                             **env)
                for i in range(count)]

    async def forget(self) -> None:
        """Delete the key space's Redis keys, mark its jobs deleted and close the connections.

        The rows must go too: a later scenario's workers start on a key space never rebuilt,
        and the rebuild arms every live enabled job PostgreSQL holds into it (`armable_jobs`),
        which gave each scenario every earlier scenario's schedules as well."""
        keys = [key async for key in self.broker.redis.scan_iter(match=f"*{self.keyspace.prefix}*")]
        if keys:
            await self.broker.redis.delete(*keys)
        await self.store.delete_jobs(self.job_ids, retain_history=True)
        await self.broker.close()
        await self.store.close()


async def until_first_run(store: Store, job_ids: Sequence[str], seconds: float = 120) -> None:
    """Wait until one of these jobs has a run row: on a loaded machine worker start-up takes
    seconds, and neither its CPU nor its lateness belongs in a measured window.

    Raises `TimeoutError` when none has one by then: a window measured after it would hold no
    runs, and a harness going on to its next scenario would only spend its own time limit."""
    for _ in range(round(seconds * 5)):
        async with store.pool.connection() as conn:
            cursor = await conn.execute("SELECT 1 FROM job_runs WHERE job_id = ANY(%s::uuid[]) LIMIT 1",
                                        (list(job_ids),))
            if await cursor.fetchone():
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no run of these {len(job_ids):,} jobs was recorded within {seconds:g} s")


def baseline_store(baseline: Path) -> ModuleType:
    """DIR's `sundial.core.store`, for its statements and its poll."""
    found = importlib.util.spec_from_file_location("baseline_store", baseline / "core/sundial/core/store.py")
    assert found is not None
    assert found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules[found.name] = module  # dataclasses look their module up while it loads
    found.loader.exec_module(module)
    return module


async def job_row_updates(store: Store) -> tuple[int, int]:
    """`scheduled_jobs`' updates so far in the store's database, and how many were HOT (no index
    entry): as far as each backend has flushed its statistics, this one's pending counts included."""
    async with store.pool.connection() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed when this statement ends
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'scheduled_jobs'")
        row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def wal_written(store: Store) -> tuple[int, int, int, int]:
    """The server's WAL so far: bytes, full-page images, and checkpoints timed and requested (a
    requested one means max_wal_size filled before checkpoint_timeout)."""
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT wal_bytes, wal_fpi, checkpoints_timed, checkpoints_req FROM pg_stat_wal, pg_stat_bgwriter")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def reset_statement_stats(store: Store) -> None:
    """Start pg_stat_statements' counts afresh (the server loads it: `Services(statement_stats=True)`)."""
    async with store.pool.connection() as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")


async def busiest_statements(store: Store, count: int) -> list[tuple[str, int, int, float]]:
    """This database's statements by execution time since the reset, busiest first: (the
    statement's opening words, calls, rows, milliseconds executing)."""
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT query, calls, rows, total_exec_time FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY total_exec_time DESC LIMIT %s", (count,))
        rows = await cursor.fetchall()
    return [(" ".join(str(query).split())[:STATEMENT_LABEL], int(calls), int(rows_), float(ms))
            for query, calls, rows_, ms in rows]


# Opening characters a statement is named by: enough to tell the store's WITH statements apart.
STATEMENT_LABEL = 60


def machine_busy_seconds() -> float:
    """CPU-seconds every core of the machine has spent on anything but idling or waiting for I/O."""
    # The first line sums the cores: user nice system idle iowait irq softirq steal guest guest_nice
    # (guest time is inside user's already).
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:3]) + sum(ticks[5:8])) / CLOCK_TICKS
