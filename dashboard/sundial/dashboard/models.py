"""Request and response bodies of the REST API, in the spec's camelCase (they make the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sundial.dashboard.schedule_words import Mode

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class JobCreate(_Body):
    """A new ScheduledJob. `spec` is the resource's spec (see `kubectl explain scheduledjob.spec`)."""

    namespace: Annotated[str, Field(max_length=63, pattern=K8S_NAME)] | None = Field(
        default=None, description="Defaults to the dashboard's default namespace."
    )
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=K8S_NAME)] = Field(
        description="The resource name (the original design's slug)."
    )
    enabled: bool | None = Field(default=None, description="Shorthand for spec.suspend = not enabled.")
    labels: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any]


class JobPatch(_Body):
    """Fields to change; nested objects merge (JSON merge patch), `null` removes a field."""

    generation: int | None = Field(
        default=None,
        description="metadata.generation of the spec you edited; if the spec changed since, the answer is 409. "
        "Status updates do not count: they change resourceVersion, not generation.",
    )
    enabled: bool | None = None
    spec: dict[str, Any] = Field(default_factory=dict)


class PreviewRequest(_Body):
    schedule: str = Field(max_length=256)
    time_zone: str = Field(default="America/Sao_Paulo", max_length=64)
    count: int = Field(default=3, ge=1, le=20)
    jitter_seconds: int = Field(default=0, ge=0, le=86400, description="spec.jitterSeconds: next runs move by it.")
    uid: str = Field(default="", max_length=64, description="The job's uid, from which its jitter is derived.")
    start_time: str | None = Field(default=None, max_length=40, description="spec.startTime")
    end_time: str | None = Field(default=None, max_length=40, description="spec.endTime")
    max_runs: int | None = Field(default=None, description="spec.maxRuns")


class ScheduleFormOut(_Out):
    mode: Mode
    cron: str
    times: list[str] | None = None
    interval_minutes: int | None = None


class ConditionOut(_Out):
    status: str
    reason: str
    message: str


class JobOut(_Out):
    id: str = Field(description="namespace/name")
    uid: str
    namespace: str
    name: str
    resource_version: str
    generation: int
    created_at: str | None
    enabled: bool
    spec: dict[str, Any]
    status: dict[str, Any]
    schedule_form: ScheduleFormOut
    schedule_text: dict[str, str] = Field(description="The schedule in words, per language (pt-BR, en).")
    ready: ConditionOut | None


class RunOut(_Out):
    run_id: str
    job_id: str
    logical_time: datetime = Field(description="The slot for scheduled runs, the request time otherwise.")
    scheduled_for: datetime | None = Field(description="When the run was planned to start: its slot plus jitter.")
    jitter_ms: int | None = Field(default=None, description="scheduledFor minus the slot (spec.jitterSeconds).")
    trigger: str
    status: str
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    output: Any = None
    error_message: str | None
    worker: str | None
    reason: str | None
    deliveries: int
    next_retry_at: datetime | None


class RunPage(_Out):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class PodLogOut(_Out):
    """One container's log of one pod of a run's Job (jobTemplate jobs)."""

    job: str
    pod: str
    container: str
    phase: str
    text: str
    available: bool = Field(description="False: the API server had no log to give; `text` says why.")


class Accepted(_Out):
    job: str
    request: str = Field(description="The sundial.dev/run-now value set; runs show it as their reason.")


# A backfill's answer lists this many of its slots (a window holds up to 1,000).
BACKFILL_LISTED = 100


class BackfillIn(_Body):
    """The slots of a past window to run (docs/schedule-policies.md, Backfill)."""

    from_: datetime = Field(alias="from",
                            description="The window's first instant (RFC 3339 with an offset), inclusive.")
    to: datetime = Field(description="The window's last instant, inclusive; not in the future.")
    sequential: bool = Field(default=False, description="Run the slots one after another.")


class BackfillAccepted(Accepted):
    slots: int = Field(description="How many slots the window holds; those that ran already are not run again.")
    slot_times: list[datetime] = Field(default_factory=list,
                                       description=f"The window's slots in order (the first {BACKFILL_LISTED}).")


class PreviewOut(_Out):
    valid: bool
    error: str | None = None
    error_field: str | None = Field(default=None, description="spec.schedule or spec.timeZone")
    text: dict[str, str] = Field(default_factory=dict)
    form: ScheduleFormOut | None = None
    next_runs: list[datetime] = Field(default_factory=list, description="When the next runs start (slot + jitter).")
    next_slots: list[datetime] = Field(default_factory=list, description="The slots of those runs (their ids).")


class MeOut(_Out):
    user: str
    groups: list[str]
    read_only: bool
    auth_mode: str
    default_namespace: str


class QueuedRunOut(_Out):
    run_id: str
    job: str
    job_id: str
    target: str
    trigger: str
    attempt: int
    logical_time: datetime


class InFlightOut(QueuedRunOut):
    worker: str
    running_for_ms: int
    deliveries: int


class DelayedOut(QueuedRunOut):
    due_at: datetime


class WorkerOut(_Out):
    id: str
    last_seen: datetime
    targets: list[str]
    concurrency: int | None
    in_flight: int


class DeadLetterOut(_Out):
    id: str = Field(description="Its id in the shard's dead-letter stream.")
    shard: int
    died_at: datetime
    reason: str = Field(description="Why no worker could run it.")
    run_id: str | None = Field(description="The run it names, when the message could still be read.")
    job: str | None = Field(description="namespace/name of its job, when the message could still be read.")
    job_id: str | None
    excerpt: str = Field(description="The start of the raw message, as JSON.")


class DeadLettersOut(_Out):
    total: int = Field(description="Dead letters kept, across shards (all jobs).")
    items: list[DeadLetterOut] = Field(description="The newest, of jobs you can see, newest first.")
    hidden: int = Field(description="Dead letters not listed: older than the newest, of jobs you cannot see,"
                                    " or unreadable to the point of naming no job.")


class PoolQueueOut(_Out):
    pool: str = Field(description="The worker pool (`default`, the built-in `launcher`, or one a job names).")
    waiting: int = Field(description="Runs queued in this pool and not yet taken by its workers (all jobs).")
    oldest_waiting_ms: int = Field(description="How long the oldest of them has waited (0 when none waits).")
    in_flight: int = Field(description="Runs this pool's workers hold (all jobs).")
    delayed_total: int = Field(description="Retries waiting for their backoff in this pool (all jobs).")
    workers: list[WorkerOut]


class QueueOut(_Out):
    waiting: int = Field(description="Runs queued and not yet taken by a worker (all jobs, every pool).")
    in_flight: list[InFlightOut]
    delayed: list[DelayedOut]
    delayed_total: int = Field(description="Retries waiting for their backoff (all jobs).")
    failed: list[RunOut] = Field(description="Recent failed, timed-out or cancelled runs of jobs you can see.")
    workers: list[WorkerOut] = Field(description="Live workers of every pool.")
    pools: list[PoolQueueOut] = Field(default_factory=list, description="The same, pool by pool (the default first).")
