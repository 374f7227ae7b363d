"""What travels between the ticker, the queue and the workers, and what a run ends as."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sundial.core.retry import RetryPolicy
from sundial.core.schedule import MissedRunPolicy
from sundial.core.secrets import has_refs
from sundial.core.spec import ConcurrencyPolicy, ScheduledJobSpec


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    RETRY = "retry"
    CATCHUP = "catchup"
    BACKFILL = "backfill"


# Trigger(value) costs an enum lookup's machinery per message read; a dict gets the same member.
_TRIGGERS = {trigger.value: trigger for trigger in Trigger}


# How a `skipped` row of a scheduled run that a worker reached only after its deadline begins
# (docs/performance.md, "Overload policy"): the slot never ran, and counts in the job's
# missed_count like a slot the ticker recorded missed.
MISSED_RUN_ERROR_PREFIX = "missed:"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self is not RunStatus.RUNNING


E = TypeVar("E", bound=StrEnum)


class ApiSpelling(Generic[E]):
    """An enum's CamelCase spelling in the Kubernetes API beside its seed spelling (the value).

    The seed's lowercase words stay in SQL, Redis, metrics and the dashboard's REST API; the
    ScheduledJob status spells enumerated values in CamelCase, as the API conventions ask.
    """

    def __init__(self, enum: type[E], api: dict[E, str]) -> None:
        assert set(api) == set(enum), f"every {enum.__name__} needs an API spelling"
        self._enum = enum
        self._api = api
        self._from_api = {spelling: member for member, spelling in api.items()}
        self.values: tuple[str, ...] = tuple(api.values())

    def to_api(self, member: E | str) -> str:
        return self._api[self._enum(member)]

    def from_api(self, value: str) -> E:
        """Either spelling back to the member; a ValueError names the accepted values."""
        if value in self._from_api:
            return self._from_api[value]
        try:
            return self._enum(value)
        except ValueError:
            expected = ", ".join(self.values)
            raise ValueError(f"unknown {self._enum.__name__} {value!r}; expected one of {expected}") from None


# The only place one spelling is turned into the other.
RUN_STATUS_API = ApiSpelling(RunStatus, {
    RunStatus.RUNNING: "Running", RunStatus.SUCCESS: "Succeeded", RunStatus.FAILED: "Failed",
    RunStatus.TIMED_OUT: "TimedOut", RunStatus.CANCELLED: "Cancelled", RunStatus.SKIPPED: "Skipped",
})
TRIGGER_API = ApiSpelling(Trigger, {
    Trigger.SCHEDULED: "Scheduled", Trigger.MANUAL: "Manual", Trigger.RETRY: "Retry", Trigger.CATCHUP: "CatchUp",
    Trigger.BACKFILL: "Backfill",
})
API_RUN_STATUSES = RUN_STATUS_API.values
API_TRIGGERS = TRIGGER_API.values
run_status_to_api = RUN_STATUS_API.to_api
run_status_from_api = RUN_STATUS_API.from_api
trigger_to_api = TRIGGER_API.to_api
trigger_from_api = TRIGGER_API.from_api


@dataclass(frozen=True)
class JobRef:
    """A ScheduledJob's identity: the resource UID is the job id everywhere."""

    job_id: str
    namespace: str
    name: str


@dataclass(frozen=True)
class RunTemplate:
    """Everything a worker needs from the spec, frozen into the cron entry when it is armed.

    The ticker copies the stored JSON verbatim into each run message, so a run always carries
    the spec of the entry that fired it and never a later or earlier one. Workers parse each
    distinct JSON text once (`parse_template`): the thousands of messages a second a job mix
    produces share a few thousand templates, and decoding one per message was a per-run cost.
    """

    job: JobRef
    target: str
    params: dict[str, Any]
    timeout_seconds: int
    retry: RetryPolicy
    concurrency_policy: ConcurrencyPolicy
    version: str

    @classmethod
    def from_spec(cls, job: JobRef, spec: ScheduledJobSpec) -> RunTemplate:
        return cls(
            job=job,
            target=spec.run_target,
            params=spec.run_params,
            timeout_seconds=spec.timeout_seconds,
            retry=RetryPolicy.from_spec(spec.retry),
            concurrency_policy=spec.concurrency_policy,
            version=spec.fingerprint(),
        )

    @functools.cached_property
    def uses_secrets(self) -> bool:
        """Whether params hold a secretKeyRef; once per template, which runs share (`parse_template`)."""
        return has_refs(self.params)

    def to_json(self) -> str:
        return json.dumps(
            {
                "job_id": self.job.job_id,
                "namespace": self.job.namespace,
                "name": self.job.name,
                "target": self.target,
                "params": self.params,
                "timeout_seconds": self.timeout_seconds,
                "retry": self.retry.to_dict(),
                "concurrency_policy": self.concurrency_policy.value,
                "version": self.version,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> RunTemplate:
        data = json.loads(raw)
        return cls(
            job=JobRef(data["job_id"], data["namespace"], data["name"]),
            target=data["target"],
            params=data["params"],
            timeout_seconds=int(data["timeout_seconds"]),
            retry=RetryPolicy.from_dict(data["retry"]),
            concurrency_policy=ConcurrencyPolicy(data["concurrency_policy"]),
            version=data["version"],
        )


@functools.lru_cache(maxsize=16_384)
def parse_template(raw: str) -> RunTemplate:
    """`RunTemplate.from_json`, once per distinct text; the result is shared, so never mutated."""
    return RunTemplate.from_json(raw)


@dataclass(slots=True)
class RunMessage:
    """One attempt of one logical run, as it sits in the queue.

    Not frozen (though never changed once made; `next_attempt` makes a new one), as RunRecord:
    a worker builds one per message read, and a frozen dataclass's fields cost it 2.3 µs of
    object.__setattr__ calls against 0.5 µs.
    """

    run_id: str
    template: RunTemplate
    trigger: Trigger
    attempt: int
    logical_ms: int
    scheduled_ms: int | None
    enqueued_ms: int
    reason: str = ""
    # A scheduled run not started by then is recorded missed instead of running ever later
    # (the overload policy in docs/performance.md); None for manual runs and retries.
    expires_ms: int | None = None

    def to_fields(self) -> dict[str, str]:
        return {
            "run": self.run_id,
            "spec": self.template.to_json(),
            "trigger": self.trigger.value,
            "attempt": str(self.attempt),
            "logical": str(self.logical_ms),
            "slot": "" if self.scheduled_ms is None else str(self.scheduled_ms),
            "enq": str(self.enqueued_ms),
            "reason": self.reason,
            "exp": "" if self.expires_ms is None else str(self.expires_ms),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> RunMessage:
        slot = fields.get("slot", "")
        expires = fields.get("exp", "")
        return cls(
            run_id=fields["run"],
            template=parse_template(fields["spec"]),
            trigger=_TRIGGERS.get(fields["trigger"]) or Trigger(fields["trigger"]),
            attempt=int(fields["attempt"]),
            logical_ms=int(fields["logical"]),
            scheduled_ms=int(slot) if slot else None,
            enqueued_ms=int(fields["enq"]),
            reason=fields.get("reason", ""),
            expires_ms=int(expires) if expires else None,
        )

    def next_attempt(self, enqueued_ms: int) -> RunMessage:
        return replace(self, attempt=self.attempt + 1, trigger=Trigger.RETRY, enqueued_ms=enqueued_ms,
                       expires_ms=None)

    @property
    def job_id(self) -> str:
        return self.template.job.job_id

    @property
    def retry_id(self) -> str:
        return f"{self.run_id}#{self.attempt}"


@dataclass(frozen=True)
class EntryPlan:
    """How an entry is scheduled; stored as JSON beside the template when it is armed."""

    schedule: str
    time_zone: str
    missed_run_policy: MissedRunPolicy
    starting_deadline_seconds: int | None
    max_catch_up_runs: int
    jitter_seconds: int = 0
    start_time: str | None = None  # RFC 3339
    end_time: str | None = None
    max_runs: int | None = None
    catch_up_window_seconds: int | None = None
    schedules: tuple[tuple[str, str], ...] = ()  # (expression, time zone) beside `schedule`
    exclude: tuple[str, ...] = ()
    dst_gap: str | None = None  # DstGap value
    dst_repeated_hour: str | None = None  # DstRepeatedHour value

    def to_json(self) -> str:
        # Policies left at their default stay out, so entries armed before they existed match.
        policies = {key: value for key, value in (
            ("jitter_seconds", self.jitter_seconds), ("start_time", self.start_time), ("end_time", self.end_time),
            ("max_runs", self.max_runs), ("catch_up_window_seconds", self.catch_up_window_seconds),
            ("schedules", [list(pair) for pair in self.schedules]), ("exclude", list(self.exclude)),
            ("dst_gap", self.dst_gap), ("dst_repeated_hour", self.dst_repeated_hour),
        ) if value}
        return json.dumps(
            {
                **policies,
                "schedule": self.schedule,
                "time_zone": self.time_zone,
                "missed_run_policy": self.missed_run_policy.value,
                "starting_deadline_seconds": self.starting_deadline_seconds,
                "max_catch_up_runs": self.max_catch_up_runs,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> EntryPlan:
        data = json.loads(raw)
        return cls(
            schedule=data["schedule"],
            time_zone=data["time_zone"],
            missed_run_policy=MissedRunPolicy(data["missed_run_policy"]),
            starting_deadline_seconds=data["starting_deadline_seconds"],
            max_catch_up_runs=int(data["max_catch_up_runs"]),
            jitter_seconds=int(data.get("jitter_seconds", 0)),
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            max_runs=data.get("max_runs"),
            catch_up_window_seconds=data.get("catch_up_window_seconds"),
            schedules=tuple((str(expression), str(zone)) for expression, zone in data.get("schedules", [])),
            exclude=tuple(data.get("exclude", [])),
            dst_gap=data.get("dst_gap"),
            dst_repeated_hour=data.get("dst_repeated_hour"),
        )
