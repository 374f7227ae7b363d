"""Shared set-up for benchmarks: private services, fast bulk arming, percentiles."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sundial.core.broker import Broker
from sundial.core.jobs import ArmRequest, arm_job, arm_jobs
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store

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


def start_worker(database_url: str, redis_url: str, keyspace: Keyspace, name: str, log: Path,
                 **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                   "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_WORKER_ID": name, "SUNDIAL_METRICS_PORT": "0",
                   "SUNDIAL_LOG_LEVEL": "WARNING", **env}
    return subprocess.Popen([WORKER], env=environment, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def new_keyspace() -> Keyspace:
    return Keyspace(prefix=f"bench{uuid.uuid4().hex[:8]}")


async def arm_bulk(broker: Broker, store: Store, schedules: Sequence[str], now: datetime,
                   target: str = "noop", **spec_fields: object) -> list[str]:
    """`arm_many` through the operator's bulk path, 1,000 jobs per round trip (10k+ jobs in seconds)."""
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
    return sum(stats[pid][1] for pid in tree if pid in stats)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds one process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def baseline_env(baseline: Path | None) -> dict[str, str]:
    """Environment that makes a started worker import an older checkout (`git archive main core
    worker | tar -x -C DIR`) instead of this one, so "before" runs beside "now" in one bench run."""
    return {"PYTHONPATH": f"{baseline / 'core'}:{baseline / 'worker'}"} if baseline else {}
