"""Building blocks for engine tests: jobs armed straight into real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sundial.core.broker import Broker
from sundial.core.clock import Clock
from sundial.core.config import Settings
from sundial.core.jobs import arm_job
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.worker.app import Worker
from sundial.worker.targets.registry import load_targets


def new_job(name: str = "job") -> JobRef:
    job_id = str(uuid.uuid4())
    return JobRef(job_id=job_id, namespace="tests", name=f"{name}-{job_id[:8]}")


def spec(**fields: Any) -> ScheduledJobSpec:
    fields.setdefault("target", "noop")
    fields.setdefault("schedule", "* * * * * *")
    fields.setdefault("timeZone", "UTC")
    return ScheduledJobSpec.model_validate(fields)


async def armed(
    broker: Broker, store: Store, now: datetime, name: str = "job", *, job: JobRef | None = None, **fields: Any
) -> tuple[JobRef, ScheduledJobSpec]:
    job = job or new_job(name)
    job_spec = spec(**fields)
    await arm_job(broker, store, job, job_spec, 1, now)
    return job, job_spec


def settings(database_url: str, redis_url: str, keyspace: Keyspace, **overrides: Any) -> Settings:
    # No look-ahead by default: the manual clock never reaches a slot a ticker waits for.
    overrides.setdefault("ticker_lookahead_seconds", 0)
    overrides.setdefault("fire_ahead_seconds", 0)
    # Engine tests use made-up targets in namespaces no policy names; test_tenancy narrows its own.
    overrides.setdefault("policy_default_targets", ["*"])
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=keyspace.prefix,
        redis_shards=keyspace.shards,
        metrics_port=0,
        **overrides,
    )


def worker(broker: Broker, store: Store, clock: Clock, config: Settings) -> Worker:
    return Worker(config, broker, store, load_targets(), clock)


async def runs_of(store: Store, job: JobRef, limit: int = 1000) -> list[dict[str, Any]]:
    return await store.runs(job.job_id, limit=limit)
