"""The ScheduledJob `status`: what the operator writes back and `kubectl get` shows.

Unlike the spec these models ignore unknown fields: a status written by an older or newer
operator must still read, and the CRD keeps such fields (`x-kubernetes-preserve-unknown-fields`).
Timestamps are aware UTC datetimes in Python and RFC 3339 `...Z` strings on the wire.
Fields that can be cleared are nullable so a merge patch can send `null` for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from sundial.core.runs import (
    API_RUN_STATUSES,
    API_TRIGGERS,
    RunStatus,
    Trigger,
    run_status_from_api,
    run_status_to_api,
    trigger_from_api,
    trigger_to_api,
)

CONDITION_READY: Final = "Ready"
# The status key the handlers write beside the Ready condition (the status sync writes it too).
NEXT_RUN_TIME_FIELD: Final = "nextRunTime"

REASON_SCHEDULED: Final = "Scheduled"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_INVALID_SCHEDULE: Final = "InvalidSchedule"
REASON_UNKNOWN_TIME_ZONE: Final = "UnknownTimeZone"
REASON_UNKNOWN_TARGET: Final = "UnknownTarget"
REASON_NOT_ALLOWED: Final = "NotAllowedByPolicy"
REASON_SUSPENDED: Final = "Suspended"
REASON_BACKEND_UNAVAILABLE: Final = "BackendUnavailable"

RECENT_RUNS_LIMIT: Final = 5
# Errors come from arbitrary target code; a status object is no place for a full traceback.
MAX_ERROR_LENGTH: Final = 1024
# metav1.Condition's own limits, so a condition we accept is one the apiserver accepts.
MAX_CONDITION_MESSAGE_LENGTH: Final = 32768
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def _to_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """`2024-05-01T15:00:00Z`, with milliseconds only when there are any."""
    timespec = "milliseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
]


def _parse_run_status(value: Any) -> Any:
    return run_status_from_api(value) if isinstance(value, str) else value


def _parse_trigger(value: Any) -> Any:
    return trigger_from_api(value) if isinstance(value, str) else value


# RunStatus and Trigger in Python; their CamelCase API spelling on the wire and in the schema.
ApiRunStatus = Annotated[
    RunStatus,
    BeforeValidator(_parse_run_status),
    PlainSerializer(run_status_to_api, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "enum": list(API_RUN_STATUSES)}),
]
ApiTrigger = Annotated[
    Trigger,
    BeforeValidator(_parse_trigger),
    PlainSerializer(trigger_to_api, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "enum": list(API_TRIGGERS)}),
]


def _truncate(limit: int) -> BeforeValidator:
    # Truncate rather than reject: a long error must never make a status unreadable or unwritable.
    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 1] + "…"
        return value

    return BeforeValidator(cut)


ErrorText = Annotated[str, _truncate(MAX_ERROR_LENGTH), Field(max_length=MAX_ERROR_LENGTH)]


class _StatusModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_StatusModel):
    """The shape of Kubernetes' metav1.Condition."""

    # metav1.Condition requires all five; lastTransitionTime is optional here only so that
    # set_condition can fill it in, which is the one way conditions should be written.
    model_config = ConfigDict(
        json_schema_extra={"required": ["type", "status", "lastTransitionTime", "reason", "message"]}
    )

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)] = Field(
        description="Type of condition in CamelCase, e.g. Ready."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)] = Field(
        description="Programmatic identifier for the last transition, in CamelCase."
    )
    message: Annotated[str, _truncate(MAX_CONDITION_MESSAGE_LENGTH), Field(max_length=MAX_CONDITION_MESSAGE_LENGTH)] = (
        Field(default="", description="Human-readable details of the last transition.")
    )
    last_transition_time: Timestamp | SkipJsonSchema[None] = Field(
        default=None, description="When status last changed."
    )
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The .metadata.generation the condition was set from."
    )


class ActiveRun(_StatusModel):
    """A run in flight right now."""

    run_id: str = Field(description="Deterministic run id: job UID and slot (or manual request).")
    slot: Timestamp | None = Field(default=None, description="The schedule slot; absent for manual runs.")
    attempt: Annotated[int, Field(ge=1)] = Field(default=1, description="1 for the first attempt.")
    start_time: Timestamp = Field(description="When the current attempt started.")
    worker: str | None = Field(default=None, description="Worker id running the attempt.")


class RecentRun(_StatusModel):
    """A finished run, newest first in recentRuns."""

    run_id: str = Field(description="Deterministic run id: job UID and slot (or manual request).")
    slot: Timestamp | None = Field(default=None, description="The schedule slot; absent for manual runs.")
    trigger: ApiTrigger = Field(description="What started the run: Scheduled, Manual, Retry, CatchUp or Backfill.")
    status: ApiRunStatus = Field(description="How the run ended: Succeeded, Failed, TimedOut, Cancelled or Skipped.")
    attempt: Annotated[int, Field(ge=1)] = Field(default=1, description="Attempts used.")
    duration_ms: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Wall time of the run.")
    completion_time: Timestamp | None = Field(default=None, description="When the run's last attempt ended.")
    error: ErrorText | None = Field(default=None, description="Why it failed, truncated.")


def _newest_first(runs: Any) -> Any:
    # Trim instead of rejecting so a status written with a larger limit still reads.
    if isinstance(runs, list) and len(runs) > RECENT_RUNS_LIMIT:
        return runs[:RECENT_RUNS_LIMIT]
    return runs


class ScheduledJobStatus(_StatusModel):
    """What the operator reports under `status:` of a ScheduledJob."""

    next_run_time: Timestamp | None = Field(default=None, description="Next slot the job will fire at.")
    last_run_time: Timestamp | None = Field(
        default=None, description="When the latest run started: the one in flight, else the last finished one."
    )
    last_schedule_time: Timestamp | None = Field(
        default=None, description="Slot time of the last scheduled (not manual) run."
    )
    last_successful_time: Timestamp | None = Field(default=None, description="When a run last succeeded.")
    last_status: ApiRunStatus | None = Field(default=None, description="Outcome of the last finished run.")
    last_duration_ms: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Wall time of the last finished run."
    )
    last_error: ErrorText | None = Field(default=None, description="Error of the last run, if it failed.")
    run_count: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Attempts that ran to an end (success, failed, timed out, cancelled); each retry counts."
    )
    success_count: Annotated[int, Field(ge=0)] = Field(default=0, description="Attempts that succeeded.")
    fail_count: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Attempts that failed or timed out; each retry counts."
    )
    missed_count: Annotated[int, Field(ge=0)] = Field(default=0, description="Slots that never ran.")
    remaining_runs: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Of spec.maxRuns, the slots still to come; absent without a run limit."
    )
    active: list[ActiveRun] = Field(default_factory=list, description="Runs in flight.")
    recent_runs: Annotated[list[RecentRun], BeforeValidator(_newest_first), Field(max_length=RECENT_RUNS_LIMIT)] = (
        Field(default_factory=list, description="The last few finished runs, newest first.")
    )
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The .metadata.generation this status was computed from."
    )
    last_run_now_request: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="The last sundial.dev/run-now value the operator acted on."
    )
    last_backfill_request: Annotated[str, Field(max_length=1000)] | None = Field(
        default=None, description="The last sundial.dev/backfill value the operator finished (or refused)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready and friends.")


def with_seed_run_states(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status as JSON with run states and triggers in the seed's lowercase spelling, the one
    SQL and the dashboard's REST API use (`Succeeded` -> `success`); anything unknown is kept."""
    out = dict(status)

    def seed(value: Any, parse: Callable[[str], StrEnum]) -> Any:
        try:
            return parse(value).value if isinstance(value, str) else value
        except ValueError:
            return value

    if "lastStatus" in out:
        out["lastStatus"] = seed(out["lastStatus"], run_status_from_api)
    if isinstance(out.get("recentRuns"), list):
        out["recentRuns"] = [
            {**run, "status": seed(run.get("status"), run_status_from_api),
             "trigger": seed(run.get("trigger"), trigger_from_api)} if isinstance(run, dict) else run
            for run in out["recentRuns"]
        ]
    return out


ERROR_SUMMARY_CHARS = 300


def error_summary(error: str | None) -> str | None:
    """The first line of a run's error, for status and Events; job_runs keeps the traceback."""
    if not error:
        return error
    first = error.strip().splitlines()[0] if error.strip() else error
    return first if len(first) <= ERROR_SUMMARY_CHARS else first[: ERROR_SUMMARY_CHARS - 1] + "…"


def find_condition(conditions: Sequence[Condition], condition_type: str) -> Condition | None:
    return next((c for c in conditions if c.type == condition_type), None)


def set_condition(conditions: Sequence[Condition], new: Condition, now: datetime) -> list[Condition]:
    """`conditions` with `new` set, the way apimachinery's meta.SetStatusCondition does it.

    lastTransitionTime moves only when status changes (to new's own time if it has one, else
    `now`), so a reason or message update does not look like a transition. Order is kept.
    """
    existing = find_condition(conditions, new.type)
    if existing is None:
        stamped = new.model_copy(update={"last_transition_time": new.last_transition_time or _second(now)})
        return [*conditions, stamped]
    if existing.status != new.status:
        transition = new.last_transition_time or _second(now)
    else:
        transition = existing.last_transition_time or _second(now)
    updated = new.model_copy(update={"last_transition_time": transition})
    return [updated if c.type == new.type else c for c in conditions]


def _second(moment: datetime) -> datetime:
    # metav1.Time has second precision; matching it keeps a round trip through the apiserver exact.
    return moment.astimezone(UTC).replace(microsecond=0)


def record_recent(recent: Sequence[RecentRun], run: RecentRun) -> list[RecentRun]:
    """recentRuns with `run` added at the front and the oldest beyond the limit dropped."""
    kept = [r for r in recent if r.run_id != run.run_id]
    return [run, *kept][:RECENT_RUNS_LIMIT]
