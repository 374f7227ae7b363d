"""Arming that never goes back in time: the one way the operator's parts arm jobs.

Three parts arm jobs: start-up priming, kopf's reconcile and the churn watch, which follows
the objects ahead of kopf's per-object queue. Each may act on an older view of an object than
another one already acted on: kopf's queue can still hold a job's creation when the churn
watch has armed its next generation, or seen it suspended or deleted. So, with the jobs'
locks held by the caller, a job is armed only when its row shows no newer generation and no
deletion (its row marked deleted, or a tombstone): an older view changes nothing.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sundial.core.broker import Broker
from sundial.core.jobs import Armed, ArmRequest, arm_jobs, armed_as, entries_of
from sundial.core.store import Store


@dataclass
class Projection:
    # job id -> what it is armed as now, for every request neither stale nor deleted
    armed: dict[str, Armed] = field(default_factory=dict)
    # the jobs this call had to arm (the rest were armed so already)
    rearmed: set[str] = field(default_factory=set)
    # the jobs that had no row before
    fresh: set[str] = field(default_factory=set)
    # requests older than what is armed, or for deleted jobs: left alone
    stale: set[str] = field(default_factory=set)


async def project(
    store: Store, broker: Broker, requests: Sequence[ArmRequest], now: datetime, tombstones: Container[str], *,
    queue_grace_seconds: float,
) -> Projection:
    """Make PostgreSQL and Redis match these requests, skipping the ones a newer view has
    overtaken. The caller holds the jobs' locks (`JobLocks`)."""
    outcome = Projection()
    live = [r for r in requests if r.job.job_id not in tombstones]
    outcome.stale.update(r.job.job_id for r in requests if r.job.job_id in tombstones)
    if not live:
        return outcome
    ids = [r.job.job_id for r in live]
    rows = await store.jobs_by_id(ids)
    entries = await entries_of(broker, live)
    to_arm: list[ArmRequest] = []
    for request in live:
        job_id = request.job.job_id
        row = rows.get(job_id)
        if row is None:
            outcome.fresh.add(job_id)
        elif row["deleted"] or int(row["generation"]) > request.generation:
            outcome.stale.add(job_id)
            continue
        already = armed_as(row, entries[job_id], request.spec, request.generation)
        if already is None:
            to_arm.append(request)
        else:
            outcome.armed[job_id] = already
    outcome.armed.update(await arm_jobs(broker, store, to_arm, now, rows, queue_grace_seconds=queue_grace_seconds))
    outcome.rearmed.update(r.job.job_id for r in to_arm)
    return outcome
