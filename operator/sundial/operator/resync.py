"""Drift repair between the cluster, PostgreSQL and Redis.

Every `resync` interval (and at start): a live, enabled job whose Redis entry is gone (a key
evicted, someone's DEL) is re-armed from the spec stored in its row, resuming after the latest
of its last fired slot, its last run and the last slot a worker holds, so the slots it missed
go through its missed-run policy instead of being silently dropped, replayed or run twice. When
Redis lost all its data (FLUSHALL, a restart without persistence) the workers rebuild instead.

Every `sweep` interval, and at start-up before kopf watches: rows and entries whose UID has no
ScheduledJob any more are disarmed. ScheduledJobs carry no finalizer (docs/architecture.md),
so this is how a job deleted while no operator ran stops firing once one runs again. Their
history is retained: the object that said whether it should go is gone, and a row marked
deleted costs little.

Both act only on a complete LIST of the watched namespaces: if the LIST fails, nothing is done.
The database snapshot is read *before* the LIST, so a job created meanwhile is in the LIST
whenever it is in the snapshot, and is never taken for an orphan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker
from sundial.core.clock import from_ms
from sundial.core.jobs import arm_job, armed_in_pools, disarm_entries, pool_brokers, serving_broker
from sundial.core.runs import JobRef, RunTemplate
from sundial.core.spec import SpecError, parse_spec
from sundial.kube.errors import is_transient
from sundial.operator.runtime import BACKEND_ERRORS, JobDeps, describe_backend_error

log = logging.getLogger("sundial.operator.resync")

# The newest run rows looked at for a lost entry's last slot (manual runs and retries have rows too).
RECENT_RUNS = 50
# Orphans disarmed per round trip, and named one by one in the log.
SWEEP_BATCH = 500
ORPHANS_LOGGED = 20


class DriftRepair:
    def __init__(
        self,
        deps: JobDeps,
        *,
        namespaces: Sequence[str],
        resync_seconds: float,
        sweep_seconds: float,
        first_pass_delay: float = 0.0,
    ) -> None:
        self.deps = deps
        self.namespaces = tuple(namespaces)
        self.resync_seconds = resync_seconds
        self.sweep_seconds = sweep_seconds
        self.first_pass_delay = first_pass_delay
        self.swept_at: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await sleep_unless_stopped(stop, self.first_pass_delay)
        while not stop.is_set():
            if await self.deps.gate.active():
                await self._guarded(self.repair_once)
                if self.swept_at is None or self.deps.clock.monotonic() - self.swept_at >= self.sweep_seconds:
                    await self.sweep()
            await sleep_unless_stopped(stop, self.resync_seconds)

    async def sweep(self) -> None:
        """`sweep_once`, a failure logged; the next one is due a sweep interval later."""
        await self._guarded(self.sweep_once)
        self.swept_at = self.deps.clock.monotonic()

    async def _guarded(self, action: Callable[[], Awaitable[int]]) -> None:
        try:
            await action()
        except BACKEND_ERRORS as exc:
            log.warning("drift repair skipped: %s", describe_backend_error(exc))
        except Exception as exc:
            if is_transient(exc):
                log.warning("drift repair skipped: Kubernetes API: %s", exc)
            else:
                # A bug must not end the repair loop for good: log it and try again next time.
                log.exception("drift repair failed")

    def _watched(self, namespace: str | None) -> bool:
        return not self.namespaces or namespace in self.namespaces

    async def repair_once(self) -> int:
        """Re-arm enabled jobs that have lost their Redis entry; returns how many.

        Not while Redis has lost all its data (its `intact` marker gone): the workers rebuild
        every entry then, each after the last slot that has a run row or that a worker holds
        (sundial.core.recovery). Arming one entry here first would set the marker again and so
        cut their rebuild short, and would resume from PostgreSQL's fire record alone, which
        is written behind firing: slots already fired, and run, would fire a second time.
        """
        if not await self.deps.broker.is_intact():
            log.warning("Redis has lost its data: leaving the re-arming to the workers' rebuild")
            return 0
        rows = await self.deps.store.job_states_changed_since(None)
        armed = await self.deps.broker.armed_job_ids()
        # A job the churn watch has seen deleted lost its entry first and its row goes next:
        # not a candidate. During a mass delete every one of them would be, and each pass
        # would LIST every remaining object (thousands) for nothing.
        candidates = [
            row for row in rows
            if row["enabled"] and row["id"] not in armed and row["id"] not in self.deps.tombstones
            and self._watched(row["namespace"])
        ]
        if not candidates:
            return 0
        existing = await self.deps.kube.job_uids(self.namespaces)
        repaired = 0
        for row in candidates:
            if row["id"] in existing and await self._rearm(str(row["id"])):
                repaired += 1
        return repaired

    async def _rearm(self, job_id: str) -> bool:
        async with self.deps.locks.hold(job_id):
            # Re-read under the lock: a handler may have suspended, edited or deleted it since.
            row = await self.deps.store.job(job_id)
            if job_id in self.deps.tombstones:
                return False  # being deleted: its row goes next
            if row is None or not row["enabled"]:
                return False
            try:
                spec = parse_spec(row["spec"])
            except SpecError as exc:
                log.error("cannot re-arm %s/%s: its stored spec no longer parses: %s",
                          row["namespace"], row["name"], exc)
                return False
            if await serving_broker(self.deps.broker, spec).entry(job_id) is not None:
                return False
            job = JobRef(job_id, row["namespace"], row["name"])
            armed = await arm_job(
                self.deps.broker, self.deps.store, job, spec, int(row["generation"]), self.deps.clock.now(),
                resume_after=await self._resume_after(job_id, row["last_schedule_time"]),
                queue_grace_seconds=self.deps.queue_grace_seconds,
            )
        log.warning("re-armed %s/%s: its Redis entry was missing; next run %s, missed slots follow %s",
                    job.namespace, job.name, armed.next_run_at, spec.missed_run_policy.value)
        return True

    async def _resume_after(self, job_id: str, last_fired: datetime | None) -> datetime | None:
        """The latest of the last slot fired, the last slot with a run row and the last slot
        a worker holds: fire records reach PostgreSQL behind firing (the ticker never waits for
        them), so the fire record alone can lag slots that already ran or are running."""
        runs = await self.deps.store.runs(job_id, limit=RECENT_RUNS)
        held = (await self.deps.broker.latest_in_flight_slots([job_id])).get(job_id)
        slots = [last_fired, *(row["scheduled_for"] for row in runs), None if held is None else from_ms(held)]
        return max((slot for slot in slots if slot is not None), default=None)

    async def sweep_once(self) -> int:
        """Disarm rows and entries whose ScheduledJob is gone; returns how many.

        In batches: after an operator outage it may find thousands (a `kubectl delete --all`
        while it was down), and each one keeps firing until its entry goes.
        """
        rows = await self.deps.store.job_states_changed_since(None)
        armed = await armed_in_pools(await pool_brokers(self.deps.broker, self.deps.store))  # every pool's
        existing = await self.deps.kube.job_uids(self.namespaces)
        namespaces: dict[str, str | None] = {str(row["id"]): row["namespace"] for row in rows}
        orphans: dict[str, str | None] = {}
        for job_id in sorted((set(namespaces) | set(armed)) - existing):
            namespace = namespaces[job_id] if job_id in namespaces else await self._entry_namespace(armed[job_id],
                                                                                                    job_id)
            if self._watched(namespace):  # else another operator's namespace, or one we cannot tell
                orphans[job_id] = namespace
        ids = list(orphans)
        for start in range(0, len(ids), SWEEP_BATCH):
            batch = ids[start:start + SWEEP_BATCH]
            async with self.deps.locks.hold_all(batch):
                await disarm_entries(self.deps.broker, self.deps.store, batch)
                await self.deps.store.delete_jobs(batch, retain_history=True)
                for job_id in batch:
                    if job_id in armed:  # armed where no row (or not the row's pool) says
                        await armed[job_id].disarm(job_id)
        for job_id, namespace in list(orphans.items())[:ORPHANS_LOGGED]:
            log.warning("removed orphan job %s (%s): no ScheduledJob has this UID", job_id, namespace)
        if len(orphans) > ORPHANS_LOGGED:
            log.warning("removed %d orphan jobs in all", len(orphans))
        return len(orphans)

    @staticmethod
    async def _entry_namespace(broker: Broker, job_id: str) -> str | None:
        entry = await broker.entry(job_id)
        if entry is None:
            return None
        try:
            return RunTemplate.from_json(entry.template).job.namespace
        except (KeyError, TypeError, ValueError):
            return None
