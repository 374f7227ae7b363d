"""Arm thousands of jobs in bulk, through the operator's own `arm_jobs` (one round trip per chunk).

`bench.common.arm_many` arms one job at a time (50 in flight); at 10,000 jobs on a loaded
2-core machine that takes a minute, which the side-by-side run would spend waiting.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sundial.core.broker import Broker
from sundial.core.jobs import ArmRequest, arm_jobs
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store

CHUNK = 1000


async def arm_bulk(broker: Broker, store: Store, schedule: str, count: int, now: datetime,
                   target: str = "noop") -> list[str]:
    """Arm `count` new jobs on one schedule whose first slot is the first after `now`; return their ids."""
    spec = ScheduledJobSpec.model_validate(
        {"target": target, "schedule": schedule, "timeZone": "UTC", "missedRunPolicy": "RunAll"})
    job_ids: list[str] = []
    for start in range(0, count, CHUNK):
        requests = []
        for index in range(start, min(count, start + CHUNK)):
            job_id = str(uuid.uuid4())
            requests.append(ArmRequest(JobRef(job_id, "bench", f"job-{index}-{job_id[:6]}"), spec, 1))
            job_ids.append(job_id)
        await arm_jobs(broker, store, requests, now, rows={})
    return job_ids
