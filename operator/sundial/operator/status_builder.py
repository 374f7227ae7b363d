"""The run-derived part of a ScheduledJob's status, computed from PostgreSQL rows. Pure.

kubebuilder's CronJob controller rebuilds status from the state of the world on every pass
instead of updating it incrementally; this does the same from a `scheduled_jobs` row, the job's
runs in flight and its latest attempts. The result is a JSON merge patch body for `/status`
that names every field it owns (clearing one is sending `null`), and never `conditions`,
`observedGeneration` or `lastRunNowRequest`, which belong to the handlers.

It also decides the Kubernetes Events worth posting: only the transitions between a healthy
and a failing job, never one per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sundial.core.policies import remaining_runs
from sundial.core.runs import RunStatus, Trigger
from sundial.core.spec import SpecError, parse_spec
from sundial.core.status import RECENT_RUNS_LIMIT, ActiveRun, RecentRun, ScheduledJobStatus, error_summary

Row = Mapping[str, Any]

# Attempt rows to read per job: enough for RECENT_RUNS_LIMIT runs even when some took retries.
RUNS_TO_READ: Final = 4 * RECENT_RUNS_LIMIT

# ScheduledJobStatus fields the status sync owns (python names).
SYNC_FIELDS: Final = frozenset({
    "next_run_time", "last_run_time", "last_schedule_time", "last_successful_time", "last_status",
    "last_duration_ms", "last_error", "run_count", "success_count", "fail_count", "missed_count",
    "active", "recent_runs", "remaining_runs",
})

# The same fields as the JSON keys an object's status carries them under.
SYNC_KEYS: Final = tuple(sorted(str(ScheduledJobStatus.model_fields[name].alias) for name in SYNC_FIELDS))

_FAILED: Final = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


def build_status(job: Row, running: Sequence[Row], runs: Sequence[Row]) -> dict[str, Any]:
    """`status` fields for one job as JSON: `job` is its row, `running` its attempts in flight,
    `runs` its latest attempt rows, newest first (`Store.running`, `Store.runs`)."""
    active = [_active(row) for row in running]
    recent = recent_runs(runs)
    status = ScheduledJobStatus(
        next_run_time=job.get("next_run_at"),
        last_run_time=last_run_started(job, active, runs),
        last_schedule_time=job.get("last_schedule_time"),
        last_successful_time=job.get("last_success_at"),
        last_status=job.get("last_status"),
        last_duration_ms=job.get("last_duration_ms"),
        last_error=error_summary(job.get("last_error")),
        run_count=int(job.get("run_count") or 0),
        success_count=int(job.get("success_count") or 0),
        fail_count=int(job.get("fail_count") or 0),
        missed_count=int(job.get("missed_count") or 0),
        remaining_runs=_remaining_runs(job),
        active=active,
        recent_runs=recent,
    )
    return status.model_dump(mode="json", by_alias=True, include=set(SYNC_FIELDS))


def last_run_started(job: Row, active: Sequence[ActiveRun], runs: Sequence[Row]) -> datetime | None:
    """When the latest run started: a run in flight if any, else the last finished one.

    The row only knows when the last run *finished*; its first attempt's start is in `runs`
    when it is recent enough, and the finish time stands in when it is not.
    """
    starts: list[datetime | None] = [run.start_time for run in active]
    last_run_id = job.get("last_run_id")
    if last_run_id is not None:
        attempts = [row["started_at"] for row in runs if row["run_id"] == last_run_id and row.get("started_at")]
        starts.append(min(attempts) if attempts else job.get("last_run_at"))
    known = [start for start in starts if start is not None]
    return max(known) if known else None


def recent_runs(runs: Sequence[Row]) -> list[RecentRun]:
    """Finished runs, newest first: one entry per run, from its last attempt.

    A failed attempt with a retry still to come is not a finished run.
    """
    by_run: dict[str, list[Row]] = {}
    for row in runs:
        by_run.setdefault(str(row["run_id"]), []).append(row)
    finished: list[tuple[datetime, RecentRun]] = []
    for run_id, attempts in by_run.items():
        last = max(attempts, key=lambda row: int(row["attempt"]))
        status = RunStatus(last["status"])
        if status is RunStatus.RUNNING or last.get("next_retry_at") is not None:
            continue
        first = min(attempts, key=lambda row: int(row["attempt"]))
        # Retries are recorded with trigger `retry`; what started the run is the first attempt's.
        trigger = Trigger(first["trigger_type"])
        finished_at = last.get("completed_at")
        finished.append((
            finished_at or last["logical_time"],
            RecentRun(
                run_id=run_id,
                slot=_slot(last),
                trigger=trigger,
                status=status,
                attempt=int(last["attempt"]),
                duration_ms=last.get("duration_ms"),
                completion_time=finished_at,
                error=error_summary(last.get("error_message")),
            ),
        ))
    finished.sort(key=lambda pair: pair[0], reverse=True)
    return [run for _, run in finished[:RECENT_RUNS_LIMIT]]


def _remaining_runs(job: Row) -> int | None:
    """Of spec.maxRuns, the slots after the last one fired. The row carries the spec only for
    jobs with a run limit (`limited_spec`), or whole (`spec`) where it was read anyway."""
    raw = job.get("limited_spec") or job.get("spec")
    if not raw or raw.get("maxRuns") is None:
        return None
    try:
        spec = parse_spec(raw)
    except SpecError:
        return None  # the operator reports the bad spec in a condition; no count to give
    return remaining_runs(spec, job.get("last_schedule_time"))


def _slot(row: Row) -> datetime | None:
    """A scheduled run's slot: its logical time (it starts at `scheduled_for`, later by its jitter)."""
    return None if row.get("scheduled_for") is None else row.get("logical_time")


def _active(row: Row) -> ActiveRun:
    return ActiveRun(
        run_id=str(row["run_id"]),
        slot=_slot(row),
        attempt=int(row["attempt"]),
        start_time=row.get("started_at") or row["logical_time"],
        worker=row.get("worker"),
    )


# ---- events ------------------------------------------------------------------------------


class Health(StrEnum):
    OK = "ok"
    FAILING = "failing"


@dataclass(frozen=True)
class RunEvent:
    type: str  # "Normal" or "Warning", as Kubernetes spells them
    reason: str
    message: str


def health_of(last_status: str | None) -> Health | None:
    """What the last run says about the job; None when it says nothing (cancelled, skipped)."""
    if last_status is None or last_status == RunStatus.SUCCESS:
        # A job that never ran has not failed: its first failure is a transition worth telling.
        return Health.OK
    if last_status in _FAILED:
        return Health.FAILING
    return None


def transition(before: Health | None, job: Row) -> tuple[Health | None, RunEvent | None]:
    """The job's health now and the Event its change deserves, if any.

    `before` is the health last seen, None when unknown (just started, or the last runs said
    nothing): then the current health is only learnt, so a restart never repeats an Event.
    """
    after = health_of(job.get("last_status"))
    if after is None:
        return before, None
    if before is Health.OK and after is Health.FAILING:
        error = error_summary(job.get("last_error")) or "no error recorded"
        message = f"run {job.get('last_run_id')} {job.get('last_status')}: {error}"
        return after, RunEvent("Warning", "RunFailed", _clip(message))
    if before is Health.FAILING and after is Health.OK:
        return after, RunEvent("Normal", "Recovered", f"run {job.get('last_run_id')} succeeded after failures")
    return after, None


def _clip(message: str, limit: int = 1024) -> str:
    # An Event message is for a person skimming `kubectl describe`, not for a full traceback.
    return message if len(message) <= limit else message[: limit - 1] + "…"
