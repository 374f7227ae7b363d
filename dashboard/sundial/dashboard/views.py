"""Pure translations between the API's bodies and ScheduledJob resources, rows and queue entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from sundial.core.broker import DeadLetter, DelayedRun, InFlightRun
from sundial.core.clock import from_ms
from sundial.core.crd import API_VERSION, KIND
from sundial.core.heartbeat import LiveWorkers, WorkerHeartbeat
from sundial.core.heartbeat import offered_targets as offered_by
from sundial.core.runs import RunMessage
from sundial.core.spec import ScheduledJobSpec
from sundial.core.status import CONDITION_READY, with_seed_run_states
from sundial.dashboard.errors import ApiProblem, from_validation_error
from sundial.dashboard.models import (
    ConditionOut,
    DeadLetterOut,
    DelayedOut,
    InFlightOut,
    JobCreate,
    JobOut,
    JobPatch,
    QueuedRunOut,
    RunOut,
    ScheduleFormOut,
    WorkerOut,
)
from sundial.dashboard.schedule_words import describe_all, schedule_form

Obj = dict[str, Any]


def job_id(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def job_out(obj: Mapping[str, Any]) -> JobOut:
    meta = obj.get("metadata", {})
    spec = dict(obj.get("spec", {}))
    # The REST API speaks the seed's lowercase run states, as its run listings do.
    status = with_seed_run_states(obj.get("status") or {})
    schedule = str(spec.get("schedule", ""))
    form = schedule_form(schedule)
    return JobOut(
        id=job_id(meta.get("namespace", ""), meta.get("name", "")),
        uid=meta.get("uid", ""),
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        resource_version=meta.get("resourceVersion", ""),
        generation=int(meta.get("generation", 0)),
        created_at=meta.get("creationTimestamp"),
        enabled=not spec.get("suspend", False),
        spec=spec,
        status=status,
        schedule_form=ScheduleFormOut.model_validate(form.as_json()),
        schedule_text=describe_all(schedule),
        ready=_ready(status),
    )


def _ready(status: Mapping[str, Any]) -> ConditionOut | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == CONDITION_READY:
            return ConditionOut(
                status=str(condition.get("status", "Unknown")),
                reason=str(condition.get("reason", "")),
                message=str(condition.get("message", "")),
            )
    return None


def run_out(row: Mapping[str, Any]) -> RunOut:
    return RunOut(
        run_id=row["run_id"],
        job_id=row["job_id"],
        logical_time=row["logical_time"],
        scheduled_for=row["scheduled_for"],
        jitter_ms=_jitter_ms(row),
        trigger=row["trigger_type"],
        status=row["status"],
        attempt=row["attempt"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        duration_ms=row["duration_ms"],
        output=row["output"],
        error_message=row["error_message"],
        worker=row["worker"],
        reason=row["reason"],
        deliveries=row["deliveries"],
        next_retry_at=row["next_retry_at"],
    )


def _jitter_ms(row: Mapping[str, Any]) -> int | None:
    """How long after its slot a scheduled run was planned to start (spec.jitterSeconds)."""
    planned: datetime | None = row["scheduled_for"]
    slot: datetime | None = row["logical_time"]
    if planned is None or slot is None:
        return None
    return round((planned - slot).total_seconds() * 1000)


# ---- writes ------------------------------------------------------------------------------


def checked_spec(spec: Mapping[str, Any]) -> None:
    """The spec model's rules (the CRD schema and the webhook use the same), field by field."""
    try:
        ScheduledJobSpec.model_validate(spec)
    except ValidationError as exc:
        raise from_validation_error(exc, "spec") from None


def new_resource(body: JobCreate, namespace: str) -> Obj:
    spec = dict(body.spec)
    if body.enabled is not None:
        spec["suspend"] = not body.enabled
    checked_spec(spec)
    metadata: Obj = {"name": body.name, "namespace": namespace}
    if body.labels:
        metadata["labels"] = dict(body.labels)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def resource_patch(body: JobPatch, current: Mapping[str, Any]) -> Obj:
    """A JSON merge patch against `current`, checked before the API server sees it.

    It carries `current`'s resourceVersion, so the API server refuses it if anything changed
    in between; a stale `generation` (someone else edited the spec) is refused here.
    """
    meta = current.get("metadata", {})
    if body.generation is not None and body.generation != meta.get("generation"):
        raise ApiProblem(
            409, "Conflict",
            f"the job changed since you loaded it (generation {body.generation}, now {meta.get('generation')});"
            " reload it and apply your change again",
        )
    spec_patch = dict(body.spec)
    if body.enabled is not None:
        spec_patch["suspend"] = not body.enabled
    checked_spec(merge(current.get("spec", {}), spec_patch))
    return {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": spec_patch}


def merge(target: Mapping[str, Any], patch: Mapping[str, Any]) -> Obj:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def run_now_patch(annotation: str, request: str) -> Obj:
    return {"metadata": {"annotations": {annotation: request}}}


# ---- queue -------------------------------------------------------------------------------

DEAD_LETTER_EXCERPT_CHARS = 200


def _queued(message: RunMessage) -> QueuedRunOut:
    job = message.template.job
    return QueuedRunOut(
        run_id=message.run_id,
        job=job_id(job.namespace, job.name),
        job_id=job.job_id,
        target=message.template.target,
        trigger=message.trigger.value,
        attempt=message.attempt,
        logical_time=from_ms(message.logical_ms),
    )


def in_flight_out(run: InFlightRun) -> InFlightOut:
    return InFlightOut(
        **_queued(run.message).model_dump(), worker=run.worker, running_for_ms=run.idle_ms,
        deliveries=run.deliveries,
    )


def delayed_out(run: DelayedRun) -> DelayedOut:
    return DelayedOut(**_queued(run.message).model_dump(), due_at=from_ms(run.due_ms))


def dead_letter_out(letter: DeadLetter) -> DeadLetterOut:
    job = letter.job
    return DeadLetterOut(
        id=letter.dead_id, shard=letter.shard, died_at=from_ms(letter.died_ms), reason=letter.reason,
        run_id=letter.run_id, job=None if job is None else job_id(job.namespace, job.name),
        job_id=None if job is None else job.job_id, excerpt=letter.excerpt(DEAD_LETTER_EXCERPT_CHARS),
    )


def workers_out(workers: LiveWorkers) -> list[WorkerOut]:
    return [
        WorkerOut(
            id=worker_id,
            last_seen=from_ms(heartbeat.seen_ms),
            targets=list(heartbeat.targets),
            concurrency=heartbeat.concurrency,
            in_flight=heartbeat.in_flight,
        )
        for worker_id, heartbeat in sorted(workers.items())
    ]


def offered_targets(workers: Iterable[WorkerHeartbeat]) -> list[str]:
    return sorted(offered_by(workers))


def request_value(user: str, now: datetime, nonce: str, what: str = "run now") -> str:
    """The run-now annotation value: says who asked and when; unique per request."""
    who = user or "unknown user"
    return f"{what} by {who} at {now.strftime('%Y-%m-%dT%H:%M:%SZ')} ({nonce})"[:250]
