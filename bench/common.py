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
from sundial.core.jobs import arm_job
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store

WORKER = str(Path(sys.executable).with_name("sundial-worker"))


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
