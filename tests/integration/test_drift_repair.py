"""The operator's drift repair never fires a slot twice.

A ticker fires first and tells PostgreSQL afterwards (buffered, so firing never waits for it):
under load or a slow database the job row's last fired slot lags the runs. A lost entry
re-armed from that record alone fires again slots that already ran: one way a soak saw slots
executed twice. The repair resumes after the latest of the fire record, the last run row and
the last slot a worker holds; and after a loss of all Redis data it leaves the re-arming to the
workers' rebuild, which knows the runs they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, from_ms, to_ms
from sundial.core.config import QUEUE_GRACE_SECONDS
from sundial.core.keys import run_id_for_slot
from sundial.core.runs import RunStatus, Trigger
from sundial.core.store import FireRecord, RunRecord, Store
from sundial.kube.api import KubeApi
from sundial.operator.peering import PeeringGate
from sundial.operator.resync import DriftRepair
from sundial.operator.runtime import JobDeps, JobLocks, Tombstones
from tests.integration.engine import armed

pytestmark = pytest.mark.services


class Cluster:
    """The Kubernetes API as the repair reads it: these ScheduledJobs exist."""

    def __init__(self, uids: Sequence[str]) -> None:
        self.uids = set(uids)

    async def job_uids(self, namespaces: Sequence[str]) -> set[str]:
        return set(self.uids)


def drift_repair(store: Store, broker: Broker, uids: Sequence[str], tombstones: Tombstones | None = None
                 ) -> DriftRepair:
    deps = JobDeps(store, broker, cast(KubeApi, Cluster(uids)), PeeringGate(None, "test", 0, SYSTEM_CLOCK),
                   JobLocks(), tombstones or Tombstones(SYSTEM_CLOCK), {}, SYSTEM_CLOCK, QUEUE_GRACE_SECONDS)
    return DriftRepair(deps, namespaces=(), resync_seconds=1.0, sweep_seconds=1.0)


async def test_a_lost_entry_resumes_after_what_ran_though_the_fire_record_lags(store: Store, broker: Broker) -> None:
    job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="* * * * * *")
    now_slot = to_ms(SYSTEM_CLOCK.now()) // 1000 * 1000
    # Fired up to now_slot - 1 s; PostgreSQL heard only of the fires up to 10 s ago.
    await store.record_fires([FireRecord(job.job_id, from_ms(now_slot - 9000), from_ms(now_slot - 10_000), 0)])
    ran = now_slot - 3000
    await store.record_runs([RunRecord(
        run_id=run_id_for_slot(job.job_id, ran), job_id=job.job_id, logical_time=from_ms(ran),
        scheduled_for=from_ms(ran), trigger=Trigger.SCHEDULED, status=RunStatus.SUCCESS, attempt=1,
        started_at=from_ms(ran), completed_at=from_ms(ran + 10))])
    # A worker is executing the run of now_slot - 1 s: its claim is in Redis, its row not yet written.
    await broker.announce_active([(job.job_id, run_id_for_slot(job.job_id, now_slot - 1000))], now_slot + 60_000)
    assert await broker.disarm(job.job_id), "Redis lost the entry (an eviction: the rest is intact)"

    assert await drift_repair(store, broker, [job.job_id]).repair_once() == 1
    entry = await broker.entry(job.job_id)
    assert entry is not None
    assert entry.next_due_ms == now_slot, "resumed right after the slot a worker holds, none fired again"


async def test_after_redis_lost_all_its_data_the_workers_rebuild(store: Store, broker: Broker) -> None:
    job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="* * * * * *")
    await broker.disarm(job.job_id)
    await broker.redis.delete(broker.keys.intact)  # FLUSHALL, a restart without persistence

    assert await drift_repair(store, broker, [job.job_id]).repair_once() == 0
    assert await broker.entry(job.job_id) is None, "left to the workers, whose rebuild knows the runs they hold"
    assert not await broker.is_intact(), "the marker stays gone until the rebuild is done"


async def test_a_job_seen_deleted_is_not_rearmed(store: Store, broker: Broker) -> None:
    # The churn watch removes a deleted job's entry first and its row a moment later: in between
    # it looks like a lost entry, and its object may still be listed (another controller's
    # finalizer keeps it). During a mass delete thousands are in that state at once.
    job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="* * * * * *")
    await broker.disarm(job.job_id)
    tombstones = Tombstones(SYSTEM_CLOCK)
    tombstones.add(job.job_id)
    await drift_repair(store, broker, [job.job_id], tombstones).repair_once()
    assert await broker.entry(job.job_id) is None
