"""Projecting a ScheduledJob into PostgreSQL and Redis: arm, disarm, run now, forget.

The operator calls these; so do the engine tests and benchmarks, which have no Kubernetes.
`broker` is always the deployment's (default pool's) broker: each job is armed in the keyspace of
the pool that serves it (`sundial.core.pools.serving_keyspace`), and taken out of the pool it
was armed in before when that changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sundial.core.backfill import BackfillRequest, backfill_slots, next_batch, runs_one_at_a_time
from sundial.core.broker import ArmCommand, Broker, Entry
from sundial.core.clock import from_ms, to_ms
from sundial.core.config import QUEUE_GRACE_SECONDS
from sundial.core.keys import Keyspace, run_id_for_manual, run_id_for_slot
from sundial.core.policies import never_to_none, spec_schedule
from sundial.core.pools import (
    DEFAULT_POOL,
    every_pool,
    pool_keyspace,
    serving_keyspace,
    serving_pool,
    stored_spec_pool,
)
from sundial.core.runs import EntryPlan, JobRef, RunMessage, RunTemplate, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store

_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Armed:
    next_run_at: datetime | None


def entry_plan(spec: ScheduledJobSpec) -> EntryPlan:
    return EntryPlan(
        schedule=spec.schedule,
        time_zone=spec.time_zone,
        missed_run_policy=spec.missed_run_policy,
        starting_deadline_seconds=spec.starting_deadline_seconds,
        max_catch_up_runs=spec.max_catch_up_runs,
        jitter_seconds=spec.jitter_seconds,
        start_time=None if spec.start_time is None else spec.start_time.isoformat(),
        end_time=None if spec.end_time is None else spec.end_time.isoformat(),
        max_runs=spec.max_runs,
        catch_up_window_seconds=spec.catch_up_window_seconds,
        schedules=tuple((entry.schedule, entry.time_zone or spec.time_zone) for entry in spec.schedules),
        exclude=tuple(spec.exclude),
        dst_gap=None if spec.dst_policy is None or spec.dst_policy.gap is None else spec.dst_policy.gap.value,
        dst_repeated_hour=None if spec.dst_policy is None or spec.dst_policy.repeated_hour is None
        else spec.dst_policy.repeated_hour.value,
    )


async def arm_job(
    broker: Broker,
    store: Store,
    job: JobRef,
    spec: ScheduledJobSpec,
    generation: int,
    now: datetime,
    *,
    resume_after: datetime | None = None,
    queue_grace_seconds: float = QUEUE_GRACE_SECONDS,
) -> Armed:
    """Make Redis and PostgreSQL match the spec. Idempotent.

    An entry that exists keeps its due slot while the schedule is unchanged. One that Redis
    lost is rebuilt from the last slot fired (`resume_after`, or PostgreSQL's record of it), so
    the slots since then go through the missed-run policy instead of vanishing. Otherwise the
    first slot is the first one after `now`: creating, rescheduling or resuming a suspended job
    never fires the past.
    """
    row = await store.job(job.job_id)
    await disarm_moved(broker, {job.job_id: row} if row else {}, [(job.job_id, spec)])
    serving = serving_broker(broker, spec)
    if spec.suspend:
        await serving.disarm(job.job_id)
        await store.upsert_job(job, spec, generation, None, armed_at=now)
        return Armed(None)
    if resume_after is None:
        resume_after = (await resume_points(serving, store, [(job, spec)], {job.job_id: row}))[job.job_id]
    command = arm_command(job, spec, now, resume_after, queue_grace_seconds)
    next_due_ms = await serving.arm(
        command.job_id,
        command.template_json,
        command.version,
        schedule_key=command.schedule_key,
        next_due_ms=command.next_due_ms,
        concurrency=command.concurrency,
        active_ttl_ms=command.active_ttl_ms,
        plan_json=command.plan_json,
    )
    next_run_at = never_to_none(from_ms(next_due_ms))
    await store.upsert_job(job, spec, generation, next_run_at, armed_at=now)
    return Armed(next_run_at)


def arm_command(job: JobRef, spec: ScheduledJobSpec, now: datetime, resume_after: datetime | None,
                queue_grace_seconds: float = QUEUE_GRACE_SECONDS) -> ArmCommand:
    """The Redis entry `arm_job` writes for an enabled spec; its concurrency claim outlives a
    run's timeout by `queue_grace_seconds` (the worker's setting of that name)."""
    schedule = spec_schedule(spec, job.job_id)
    # The first slot after the last one fired (or after now), starting at its jittered time.
    fresh_due = schedule.fire_time(schedule.inner.next_after(resume_after or now))
    template = RunTemplate.from_spec(job, spec)
    plan = entry_plan(spec)
    # A new jitter or window moves fire times, so it re-arms like a new schedule does.
    jitter_key = "".join(f"|{name}={value}" for name, value in (
        ("jitter", spec.jitter_seconds), ("start", plan.start_time), ("end", plan.end_time),
        ("max", plan.max_runs), ("also", plan.schedules), ("exclude", plan.exclude),
        ("gap", plan.dst_gap), ("repeated", plan.dst_repeated_hour)) if value)
    return ArmCommand(
        job_id=job.job_id,
        template_json=template.to_json(),
        version=template.version,
        schedule_key=f"{spec.schedule}|{spec.time_zone}{jitter_key}",
        next_due_ms=to_ms(fresh_due),
        concurrency=spec.concurrency_policy.value,
        active_ttl_ms=round((spec.timeout_seconds + queue_grace_seconds) * 1000),
        plan_json=plan.to_json(),
    )


@dataclass(frozen=True)
class ArmRequest:
    job: JobRef
    spec: ScheduledJobSpec
    generation: int


async def arm_jobs(
    broker: Broker, store: Store, requests: Sequence[ArmRequest], now: datetime,
    rows: Mapping[str, Mapping[str, Any]], *, queue_grace_seconds: float = QUEUE_GRACE_SECONDS,
) -> dict[str, Armed]:
    """`arm_job` for many jobs (job id -> what it left), in one Redis and one PostgreSQL round trip.

    `rows` are the jobs' current rows (`Store.jobs_by_id`), read by the caller, which usually
    needed them anyway to tell which jobs need arming (`armed_as`).
    """
    suspended = [r for r in requests if r.spec.suspend]
    enabled = [r for r in requests if not r.spec.suspend]
    commands: dict[Keyspace, list[ArmCommand]] = {}
    for keyspace, group in _by_keyspace(broker, enabled).items():
        # Each pool's keyspace has its own intact marker, so its own resume points.
        resume = await resume_points(broker.for_keyspace(keyspace), store, [(r.job, r.spec) for r in group], rows)
        commands[keyspace] = [arm_command(r.job, r.spec, now, resume[r.job.job_id], queue_grace_seconds)
                              for r in group]
    await disarm_moved(broker, rows, [(r.job.job_id, r.spec) for r in requests])
    for keyspace, group in _by_keyspace(broker, suspended).items():
        await broker.for_keyspace(keyspace).disarm_many([r.job.job_id for r in group])
    if suspended:  # a suspended job's buffer is dropped with its entry, so is its durable half
        await store.forget_buffered_runs([r.job.job_id for r in suspended])
    dues: dict[str, int] = {}
    for keyspace, group_commands in commands.items():
        group_dues = await broker.for_keyspace(keyspace).arm_many(group_commands)
        dues.update({c.job_id: due for c, due in zip(group_commands, group_dues, strict=True)})
    armed = {r.job.job_id: Armed(None) for r in suspended}
    armed.update({r.job.job_id: Armed(never_to_none(from_ms(dues[r.job.job_id]))) for r in enabled})
    await store.upsert_jobs([(r.job, r.spec, r.generation, armed[r.job.job_id].next_run_at) for r in requests],
                            armed_at=now)
    return armed


def serving_broker(broker: Broker, spec: ScheduledJobSpec) -> Broker:
    """The broker of the pool serving `spec`, from the deployment's."""
    return broker.for_keyspace(serving_keyspace(broker.keys, spec))


def _by_keyspace(broker: Broker, requests: Sequence[ArmRequest]) -> dict[Keyspace, list[ArmRequest]]:
    groups: dict[Keyspace, list[ArmRequest]] = {}
    for request in requests:
        groups.setdefault(serving_keyspace(broker.keys, request.spec), []).append(request)
    return groups


def stored_pool(row: Mapping[str, Any] | None) -> str:
    """The pool a job's row says it was last armed in (the launcher's for a jobTemplate)."""
    return stored_spec_pool(None if row is None else row.get("spec"))


async def pool_brokers(broker: Broker, store: Store) -> dict[str, Broker]:
    """The broker of every pool (`every_pool`: the default, the launcher, each one a job names)."""
    return {pool: broker.for_keyspace(pool_keyspace(broker.keys, pool))
            for pool in every_pool(await store.named_pools())}


async def armed_in_pools(brokers: Mapping[str, Broker]) -> dict[str, Broker]:
    """Each armed job id, over every pool in `brokers`, with the broker of the pool holding it."""
    armed: dict[str, Broker] = {}
    for pool_broker in brokers.values():
        armed.update(dict.fromkeys(await pool_broker.armed_job_ids(), pool_broker))
    return armed


async def disarm_moved(broker: Broker, rows: Mapping[str, Mapping[str, Any]],
                       specs: Sequence[tuple[str, ScheduledJobSpec]]) -> None:
    """Take out of their old pool the jobs whose spec now names another one."""
    for job_id, spec in specs:
        old = stored_pool(rows.get(job_id))
        if old != serving_pool(spec):
            await broker.for_keyspace(pool_keyspace(broker.keys, old)).disarm(job_id)


async def disarm_entries(broker: Broker, store: Store, job_ids: Sequence[str]) -> None:
    """Remove these jobs' entries from the pool each is armed in (and the default pool's)."""
    if not job_ids:
        return
    await broker.disarm_many(list(job_ids))
    # A disarmed job's buffer is dropped (RELEASE_BUFFERED), so is its durable half.
    await store.forget_buffered_runs(job_ids)
    rows = await store.jobs_by_id(job_ids)
    by_pool: dict[str, list[str]] = {}
    for job_id, row in rows.items():
        by_pool.setdefault(stored_pool(row), []).append(job_id)
    for pool, ids in by_pool.items():
        if pool != DEFAULT_POOL:
            await broker.for_keyspace(pool_keyspace(broker.keys, pool)).disarm_many(ids)


async def entries_of(broker: Broker, requests: Sequence[ArmRequest]) -> dict[str, Entry | None]:
    """Each job's entry in the pool that serves its spec (`Broker.entries`, routed)."""
    entries: dict[str, Entry | None] = {}
    for keyspace, group in _by_keyspace(broker, requests).items():
        entries.update(await broker.for_keyspace(keyspace).entries([r.job.job_id for r in group]))
    return entries


def armed_as(
    row: Mapping[str, Any] | None, entry: Entry | None, spec: ScheduledJobSpec, generation: int
) -> Armed | None:
    """What `arm_job` would leave when PostgreSQL and Redis already hold this very spec at this
    generation (so arming again would change nothing); None when it must run.

    `row` comes from `Store.jobs_by_id`, `entry` from `Broker.entries`. Anything unexpected
    answers None: arming is idempotent, so a needless re-arm costs only time.
    """
    if row is None or row.get("deleted", True) or row["generation"] != generation:
        return None
    if row["enabled"] == spec.suspend or row["spec"] != spec.model_dump(mode="json", by_alias=True):
        return None
    if spec.suspend:
        return Armed(None) if entry is None else None
    if entry is None or entry.version != spec.fingerprint():
        return None
    return Armed(never_to_none(from_ms(entry.next_due_ms)))


def last_fired_slot(row: Mapping[str, Any] | None, spec: ScheduledJobSpec) -> datetime | None:
    """The slot to continue after, if the job was already firing on this very schedule."""
    if row is None or not row["enabled"] or row["last_schedule_time"] is None:
        return None
    stored = row["spec"]
    if stored.get("schedule") != spec.schedule or stored.get("timeZone") != spec.time_zone:
        return None
    last: datetime = row["last_schedule_time"]
    return last


def resume_after(row: Mapping[str, Any], in_flight: datetime | None = None) -> datetime | None:
    """The slot to continue after when re-arming this row's job (None: from now on).

    The last slot with a run row, or held by a worker (`in_flight`: its start may not be
    committed yet), when there is one: every slot fired after it lost its message. Otherwise the
    last slot fired is fired again (a job whose only fires were all lost).
    """
    last_run: datetime | None = row.get("last_run_slot")
    if in_flight is not None and (last_run is None or in_flight > last_run):
        last_run = in_flight
    last_fired: datetime | None = row.get("last_schedule_time")
    if last_run is not None:
        return last_run
    return None if last_fired is None else last_fired - _JUST_BEFORE


async def resume_points(
    broker: Broker, store: Store, requests: Sequence[tuple[JobRef, ScheduledJobSpec]],
    rows: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, datetime | None]:
    """Per job id, the slot its entry continues after (None: from now on).

    While Redis holds its `intact` marker, after the last slot fired on the same schedule. Once
    the marker is gone Redis lost its queues too, so, as the workers' rebuild does
    (sundial.core.recovery), after the last slot with a run row or held by a worker: the slots
    fired after it lost their messages and go through the missed-run policy, and none that ran
    fires again.
    """
    fired = {job.job_id: last_fired_slot(rows.get(job.job_id), spec) for job, spec in requests}
    known = [job_id for job_id, slot in fired.items() if slot is not None]
    if not known or await broker.is_intact():
        return fired
    last_runs = await store.last_run_slots(known)
    held = await broker.latest_in_flight_slots(known)
    for job_id in known:
        in_flight = held.get(job_id)
        fired[job_id] = resume_after({"last_schedule_time": fired[job_id], "last_run_slot": last_runs.get(job_id)},
                                     None if in_flight is None else from_ms(in_flight))
    return fired


async def disarm_job(broker: Broker, store: Store, job_id: str, *, retain_history: bool) -> None:
    await disarm_entries(broker, store, [job_id])
    await store.delete_job(job_id, retain_history=retain_history)


async def run_now(
    broker: Broker, job: JobRef, spec: ScheduledJobSpec, request: str, now: datetime, *,
    queue_grace_seconds: float = QUEUE_GRACE_SECONDS,
) -> tuple[str, bool]:
    """Queue one manual run per distinct `request` (the run-now annotation's value).

    Returns the run id and whether it was newly queued (False: that request ran already).
    """
    digest = hashlib.sha256(request.encode()).hexdigest()[:12]
    run_id = run_id_for_manual(job.job_id, digest)
    template = RunTemplate.from_spec(job, spec)
    message = RunMessage(
        run_id=run_id, template=template, trigger=Trigger.MANUAL, attempt=1, logical_ms=to_ms(now),
        scheduled_ms=None, enqueued_ms=to_ms(now), reason=request[:500],
    )
    active_until = to_ms(now) + round((spec.timeout_seconds + queue_grace_seconds) * 1000)
    queued = await serving_broker(broker, spec).enqueue_manual(message, active_until)
    return run_id, queued


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill request stands after one `backfill` call."""

    slots: int       # in the window
    queued: int      # newly queued by this call
    recorded: int    # with a run row already (finished, running or skipped): never queued again
    complete: bool   # nothing left to queue: the request is handled


async def backfill(
    broker: Broker, store: Store, job: JobRef, spec: ScheduledJobSpec, request: BackfillRequest, now: datetime, *,
    queue_grace_seconds: float = QUEUE_GRACE_SECONDS,
) -> BackfillProgress:
    """Queue the slots of a past window that have no run yet (trigger `backfill`), each once.

    All at once, or, run one at a time (asked for, or an overlap policy other than Allow), the
    first slot without a run only when no slot of the window is running: called again until
    `complete`. A BackfillError (sundial.core.backfill) says why a request cannot run.
    """
    slots = backfill_slots(spec, job.job_id, request, now)
    if not slots:
        return BackfillProgress(0, 0, 0, complete=True)
    run_ids = [run_id_for_slot(job.job_id, to_ms(slot)) for slot in slots]
    states = await store.latest_states(job.job_id, run_ids, slots[0], slots[-1])
    batch_ids, complete = next_batch(run_ids, states, runs_one_at_a_time(spec, request))
    slot_of = dict(zip(run_ids, slots, strict=True))
    batch = [(slot_of[run_id], run_id) for run_id in batch_ids]
    template = RunTemplate.from_spec(job, spec)
    now_ms = to_ms(now)
    reason = f"backfill {request.start.isoformat()}..{request.end.isoformat()} {request.request_id}".strip()
    messages = [
        RunMessage(run_id=run_id, template=template, trigger=Trigger.BACKFILL, attempt=1, logical_ms=to_ms(slot),
                   scheduled_ms=None, enqueued_ms=now_ms, reason=reason[:500])
        for slot, run_id in batch
    ]
    active_until = now_ms + round((spec.timeout_seconds + queue_grace_seconds) * 1000)
    queued = await serving_broker(broker, spec).enqueue_once(messages, active_until) if messages else []
    # A slot refused by the broker was queued by an earlier call and has not started yet.
    return BackfillProgress(len(slots), sum(queued), len(states), complete=complete)
