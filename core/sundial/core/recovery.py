"""Rebuilding Redis from PostgreSQL after Redis lost its data.

FLUSHALL, a restart without persistence and a failover to a replica that had not caught up all
leave Redis without some or all of Sundial's keys. The `intact` marker (keys.py) tells, and
only the rebuild here writes it (arming never does, or an entry armed into an emptied Redis
would hide the loss): every worker checks it every second; the first to find it gone (a loss,
or a Redis never rebuilt, as at a first start) re-arms every live, enabled job whose entry is
missing from the rows PostgreSQL holds, then sets the marker again. The rebuild only adds what
is missing, so running it again, or in two workers after a lease ran out, changes nothing. The
consumer groups are recreated by the first read that meets NOGROUP (`Broker.read`).

Where an entry resumes: after the last slot that has a row in `job_runs` or whose run a worker
holds (every worker re-announces its runs the moment it notices the loss; the rebuild waits for
them). Slots PostgreSQL recorded as fired after that one had their queue message lost with
Redis's data, so they are planned again, once, under the job's missed-run policy. A run in
flight when Redis lost its data keeps running and records its end as usual: the new consumer
group never heard of its message, so nobody reclaims or repeats it. Retries that waited for
their backoff in Redis are parked again from the failed attempts PostgreSQL recorded, and runs
that waited in a BufferOne/BufferAll buffer are put back from the `buffered_runs` rows the
ticker's fire records wrote (the entries resume after those slots, so none fires again).

Slots *before* that one can have lost their run too: fired, delivered to a worker killed before
it started the run, waiting in its pending list to be reclaimed when Redis lost the list. On a
loss of data (not a first arm), each job's slots since it was last armed as it is (enabled, this
generation: `armed_since`), within the last LOST_SLOT_LOOKBACK (10 minutes) and at most
MAX_LOST_SLOTS_PER_JOB (100, the latest) of them, that have neither a run row, nor a
`buffered_runs` row (restored above), nor a worker holding their run are queued again as
scheduled runs of their slot (`sundial.core.lost_slots`), once per run id
(`Broker.enqueue_once`): they run late, or are recorded missed if the job's
startingDeadlineSeconds has passed. Gaps from before `armed_since` (a suspension, another
schedule) or before the job's last slot a ticker counted missed (`last_missed_at`) are never
filled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sundial.core.broker import ArmCommand, Broker
from sundial.core.clock import Clock, from_ms, to_ms
from sundial.core.config import QUEUE_GRACE_SECONDS
from sundial.core.jobs import arm_command, resume_after
from sundial.core.keys import run_id_for_slot
from sundial.core.lost_slots import LOST_SLOT_LOOKBACK, lost_slots, schedule_slots, slots_key
from sundial.core.pools import DEFAULT_POOL, serving_pool
from sundial.core.runs import JobRef, RunMessage, RunTemplate, Trigger
from sundial.core.spec import SpecError, parse_spec
from sundial.core.store import Store

log = logging.getLogger(__name__)

# Far longer than a rebuild of many thousand entries takes; a leader that dies is replaced after it.
REBUILD_LEASE_MS = 10_000
# Longer than the one-second check every worker makes, so each has re-announced its runs.
REBUILD_SETTLE_SECONDS = 1.5


# Retries Redis held are looked for among the runs of this long ago at most.
RETRY_LOOKBACK = timedelta(days=2)


# Why a rebuild ran (the `cause` of sundial_redis_rebuilds_total): a keyspace none of whose jobs
# ever fired is being armed for the first time (a fresh install, a new pool, jobs applied before
# any worker started); one whose jobs fired before lost its data.
FIRST_ARM = "first_arm"
DATA_LOST = "data_lost"

# Buffered runs are looked for among the slots of this long ago at most (a run ahead that
# holds its buffer longer is out of the ordinary; housekeeping forgets older rows).
BUFFER_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class Rebuilt:
    armed: int
    skipped: int  # rows whose spec no longer parses (the operator reports those on the resource)
    retries: int = 0
    cause: str = DATA_LOST
    buffered: int = 0
    lost_runs: int = 0  # runs of slots before the resume points, lost with Redis and queued again


def rebuild_cause(rows: list[dict[str, Any]], pool: str = DEFAULT_POOL) -> str:
    """DATA_LOST if PostgreSQL says a job `pool` serves fired before (a fire record or a run row):
    its entry, and maybe queued runs, were in this keyspace. Else FIRST_ARM. A keyspace emptied
    before any of its jobs first fired counts as a first arm: the rebuild restores all it held
    but run-now requests not yet started."""
    for row in rows:
        if row["last_schedule_time"] is None and row["last_run_slot"] is None:
            continue
        try:
            if serving_pool(parse_spec(row["spec"])) == pool:
                return DATA_LOST
        except SpecError:
            continue
    return FIRST_ARM


def _served_template(row: Mapping[str, Any], pool: str) -> RunTemplate | None:
    """The run template of a row's job (its current spec), if `pool` serves it and it parses."""
    try:
        spec = parse_spec(row["spec"])
    except SpecError:
        return None
    if serving_pool(spec) != pool:
        return None
    return RunTemplate.from_spec(JobRef(job_id=row["job_id"], namespace=row["namespace"], name=row["name"]), spec)


def lost_retries(rows: list[dict[str, Any]], now: datetime, pool: str = DEFAULT_POOL
                 ) -> list[tuple[RunMessage, int]]:
    """The retry messages to park again, with when each is due, from `Store.awaited_retries`;
    only those of jobs `pool` serves."""
    retries = []
    for row in rows:
        template = _served_template(row, pool)
        if template is None:
            continue
        scheduled = row["scheduled_for"]
        message = RunMessage(
            run_id=row["run_id"], template=template, trigger=Trigger.RETRY,
            attempt=row["attempt"] + 1, logical_ms=to_ms(row["logical_time"]),
            scheduled_ms=None if scheduled is None else to_ms(scheduled), enqueued_ms=to_ms(now),
            reason=row["reason"] or "",
        )
        retries.append((message, to_ms(row["next_retry_at"])))
    return retries


def lost_buffered(rows: list[dict[str, Any]], pool: str = DEFAULT_POOL) -> list[RunMessage]:
    """The buffered runs to put back, oldest first per job, from `Store.waiting_buffered_runs`;
    only those of jobs `pool` serves, as the ticker buffered them (attempt 1, never expiring)."""
    return [
        RunMessage(run_id=row["run_id"], template=template, trigger=Trigger(row["trigger_type"]), attempt=1,
                   logical_ms=to_ms(row["logical_time"]), scheduled_ms=to_ms(row["scheduled_for"]),
                   enqueued_ms=to_ms(row["buffered_at"]), reason="")
        for row in rows if (template := _served_template(row, pool)) is not None
    ]


def rebuild_commands(
    rows: list[dict[str, Any]], now: datetime, in_flight: Mapping[str, int] | None = None,
    pool: str = DEFAULT_POOL,
) -> tuple[list[ArmCommand], int]:
    """The entries to arm from `Store.armable_jobs` rows, and how many rows could not be used.

    `in_flight`: per job id, the latest slot (ms) whose run a worker holds. Only the jobs `pool`
    serves: each pool's workers rebuild their own keyspace.
    """
    in_flight = in_flight or {}
    commands: list[ArmCommand] = []
    skipped = 0
    for row in rows:
        try:
            spec = parse_spec(row["spec"])
        except SpecError:
            skipped += 1
            continue
        if spec.suspend or serving_pool(spec) != pool:
            continue
        job = JobRef(job_id=row["id"], namespace=row["namespace"], name=row["name"])
        held = in_flight.get(row["id"])
        commands.append(arm_command(job, spec, now, resume_after(row, None if held is None else from_ms(held))))
    return commands, skipped


LOST_RUN_REASON = "its queue message was lost with Redis's data before the run started; queued again by the rebuild"


def lost_runs(
    rows: list[dict[str, Any]], recorded: Mapping[str, AbstractSet[int]], held: Mapping[str, AbstractSet[int]],
    now: datetime, pool: str = DEFAULT_POOL,
) -> list[RunMessage]:
    """The scheduled runs to queue again, from `Store.armable_jobs` rows: `lost_slots` of each job
    `pool` serves. `recorded`: per job, the logical times (ms) with a non-manual run row since
    `now - LOST_SLOT_LOOKBACK`; `held`: per job, the slots (ms) whose run a worker holds."""
    messages = []
    slots_by_schedule: dict[str, list[datetime]] = {}
    for row in rows:
        try:
            spec = parse_spec(row["spec"])
        except SpecError:
            continue
        if spec.suspend or serving_pool(spec) != pool:
            continue
        job_id = row["id"]
        held_ms = held.get(job_id, set())
        resume = resume_after(row, from_ms(max(held_ms)) if held_ms else None)
        key = slots_key(spec)
        if key not in slots_by_schedule:
            slots_by_schedule[key] = schedule_slots(spec, job_id, now - LOST_SLOT_LOOKBACK, now)
        # A slot a ticker counted missed has no row either: only the slots after the last miss.
        fired_since = max(row["armed_since"], row["last_missed_at"] or row["armed_since"])
        slots = lost_slots(slots_by_schedule[key], fired_since=fired_since, resume_after=resume,
                           recorded=recorded.get(job_id, set()), held=held_ms, now=now)
        template = RunTemplate.from_spec(JobRef(job_id=job_id, namespace=row["namespace"], name=row["name"]), spec)
        deadline = spec.starting_deadline_seconds
        messages += [
            RunMessage(run_id=run_id_for_slot(job_id, to_ms(slot)), template=template, trigger=Trigger.SCHEDULED,
                       attempt=1, logical_ms=to_ms(slot), scheduled_ms=to_ms(slot), enqueued_ms=to_ms(now),
                       reason=LOST_RUN_REASON, expires_ms=None if deadline is None else to_ms(slot) + deadline * 1000)
            for slot in slots
        ]
    return messages


async def requeue_lost_runs(broker: Broker, store: Store, rows: list[dict[str, Any]],
                            held: Mapping[str, AbstractSet[int]], now: datetime, pool: str) -> int:
    """Queue the runs `lost_runs` finds, each once whoever asks how often; how many were queued."""
    recorded = await store.recorded_slots([row["id"] for row in rows], now - LOST_SLOT_LOOKBACK)
    by_job: dict[str, list[RunMessage]] = {}
    # Listing slots is CPU work (about 0.2 ms a slot, per distinct schedule): in a thread, so the
    # worker's loop keeps heart-beating, firing and running meanwhile.
    for message in await asyncio.to_thread(lost_runs, rows, recorded, held, now, pool):
        by_job.setdefault(message.job_id, []).append(message)
    queued = 0
    for messages in by_job.values():
        # Its concurrency claim outlives the run's timeout as a fired run's does.
        active_until = to_ms(now) + round((messages[0].template.timeout_seconds + QUEUE_GRACE_SECONDS) * 1000)
        queued += sum(await broker.enqueue_once(messages, active_until))
        log.warning("Redis lost the queued runs of %s/%s for slots %s: queued again, to run late",
                    messages[0].template.job.namespace, messages[0].template.job.name,
                    ", ".join(from_ms(m.logical_ms).isoformat() for m in messages))
    return queued


async def repair_if_lost(
    broker: Broker, store: Store, clock: Clock, owner: str, in_flight: Sequence[tuple[str, str]],
    in_flight_until_ms: int, *, pool: str = DEFAULT_POOL,
) -> Rebuilt | None:
    """Re-arm from PostgreSQL if Redis lost its data and no other process is already at it.

    `in_flight` are this process's runs, (job id, run id): every worker re-announces its own the
    moment it notices the loss, and the one that leads the rebuild waits REBUILD_SETTLE_SECONDS
    for the others, so no slot a worker holds is fired again. None when Redis is intact (or
    another process leads the rebuild).
    """
    if await broker.is_intact():
        return None
    await broker.ensure_groups()
    await broker.announce_active(in_flight, in_flight_until_ms)
    if not await broker.lead_rebuild(owner, REBUILD_LEASE_MS):
        return None
    try:
        await asyncio.sleep(REBUILD_SETTLE_SECONDS)
        now = clock.now()
        rows = await store.armable_jobs()
        held = await broker.in_flight_slots([row["id"] for row in rows])
        cause = rebuild_cause(rows, pool)
        commands, skipped = rebuild_commands(rows, now, {job_id: max(slots) for job_id, slots in held.items()}, pool)
        armed = await broker.arm_missing(commands)
        retries = await broker.park_retries(
            lost_retries(await store.awaited_retries(now - RETRY_LOOKBACK), now, pool))
        buffered = await restore_buffers(broker, store, now, pool)
        lost = await requeue_lost_runs(broker, store, rows, held, now, pool) if cause == DATA_LOST else 0
        await broker.mark_intact(to_ms(now))
    finally:
        await broker.end_rebuild(owner)
    if cause == DATA_LOST:
        log.warning("Redis had lost its data: re-armed %d entries, %d retries, %d buffered runs and %d lost runs"
                    " from PostgreSQL (%d rows unusable)", armed, retries, buffered, lost, skipped)
    else:
        log.info("armed a new keyspace: %d entries (%d rows unusable)", armed, skipped)
    return Rebuilt(armed, skipped, retries, cause=cause, buffered=buffered, lost_runs=lost)


async def restore_buffers(broker: Broker, store: Store, now: datetime, pool: str = DEFAULT_POOL) -> int:
    """Put back the runs that waited in BufferOne/BufferAll buffers: every slot fired into a
    buffer (a `buffered_runs` row) whose run never started. The entries resume after them
    (`Store.armable_jobs`), so they are restored, never fired again."""
    return await broker.restore_buffered(lost_buffered(await store.waiting_buffered_runs(now - BUFFER_LOOKBACK), pool))
