"""Projecting a ScheduledJob into PostgreSQL and Redis: arm, disarm, run now, forget.

The operator calls these; so do the engine tests and benchmarks, which have no Kubernetes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sundial.core.backfill import BackfillRequest, backfill_slots, runs_one_at_a_time
from sundial.core.broker import ArmCommand, Broker, Entry
from sundial.core.clock import from_ms, to_ms
from sundial.core.config import QUEUE_GRACE_SECONDS
from sundial.core.keys import run_id_for_manual, run_id_for_slot
from sundial.core.policies import never_to_none, spec_schedule
from sundial.core.runs import EntryPlan, JobRef, RunMessage, RunStatus, RunTemplate, Trigger
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store


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
    if spec.suspend:
        await broker.disarm(job.job_id)
        await store.upsert_job(job, spec, generation, None)
        return Armed(None)
    if resume_after is None:
        resume_after = last_fired_slot(await store.job(job.job_id), spec)
    command = arm_command(job, spec, now, resume_after, queue_grace_seconds)
    next_due_ms = await broker.arm(
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
    await store.upsert_job(job, spec, generation, next_run_at)
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
    commands = [
        arm_command(r.job, r.spec, now, last_fired_slot(rows.get(r.job.job_id), r.spec), queue_grace_seconds)
        for r in enabled
    ]
    await broker.disarm_many([r.job.job_id for r in suspended])
    dues = await broker.arm_many(commands)
    armed = {r.job.job_id: Armed(None) for r in suspended}
    armed.update({r.job.job_id: Armed(never_to_none(from_ms(due))) for r, due in zip(enabled, dues, strict=True)})
    await store.upsert_jobs([(r.job, r.spec, r.generation, armed[r.job.job_id].next_run_at) for r in requests])
    return armed


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


async def disarm_job(broker: Broker, store: Store, job_id: str, *, retain_history: bool) -> None:
    await broker.disarm(job_id)
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
    queued = await broker.enqueue_manual(message, active_until)
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
    todo = [(slot, run_id) for slot, run_id in zip(slots, run_ids, strict=True) if run_id not in states]
    one_at_a_time = runs_one_at_a_time(spec, request)
    if one_at_a_time and RunStatus.RUNNING in states.values():
        return BackfillProgress(len(slots), 0, len(states), complete=False)
    batch = todo[:1] if one_at_a_time else todo
    template = RunTemplate.from_spec(job, spec)
    now_ms = to_ms(now)
    reason = f"backfill {request.start.isoformat()}..{request.end.isoformat()} {request.request_id}".strip()
    messages = [
        RunMessage(run_id=run_id, template=template, trigger=Trigger.BACKFILL, attempt=1, logical_ms=to_ms(slot),
                   scheduled_ms=None, enqueued_ms=now_ms, reason=reason[:500])
        for slot, run_id in batch
    ]
    active_until = now_ms + round((spec.timeout_seconds + queue_grace_seconds) * 1000)
    queued = await broker.enqueue_once(messages, active_until) if messages else []
    # A slot refused by the broker was queued by an earlier call and has not started yet.
    return BackfillProgress(len(slots), sum(queued), len(states), complete=len(todo) <= len(batch))
