"""The ScheduledJob spec: one pydantic model, the single source of truth.

The CRD's openAPIV3Schema is generated from this model (`sundial.core.crd`), the operator
validates with it, the ticker arms entries from it and the worker reads its retry policy.
Defaults carry over from the original BullMQ design: 3 attempts, 5 s exponential backoff,
100 successful / 200 failed runs kept, 5 minute timeout, America/Sao_Paulo.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sundial.core.exclusions import check_exclusion
from sundial.core.pools import KUBERNETES_JOB_TARGET, LAUNCHER_POOL, POOL_PATTERN
from sundial.core.schedule import MissedRunPolicy, ScheduleError, parse_schedule

DEFAULT_TIME_ZONE = "America/Sao_Paulo"
TARGET_PATTERN = r"^[a-z0-9]([a-z0-9_.:-]*[a-z0-9])?$"
CATEGORY_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
MAX_PARAMS_BYTES = 256 * 1024
MAX_RUNS_LIMIT = 10_000
# Finished Jobs (and their pods) kept in the cluster per job; job_runs keeps the longer history.
MAX_JOBS_KEPT = 10


class ConcurrencyPolicy(StrEnum):
    """What to do when a slot comes due while an earlier run of the same job is in flight."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"
    BUFFER_ONE = "BufferOne"  # the slot waits behind the running run; at most one waits, later ones skip
    BUFFER_ALL = "BufferAll"  # every slot waits, and they run one after another in slot order


class DstGap(StrEnum):
    """A spring-forward gap's wall times (02:30 on the night 02:00 becomes 03:00)."""

    RUN_AFTER_GAP = "RunAfterGap"  # fire once, at the end of the gap
    SKIP = "Skip"  # those wall times do not exist, so neither do their slots


class DstRepeatedHour(StrEnum):
    """A fall-back night's repeated wall times (01:30 happens twice)."""

    ONCE = "Once"  # in the first copy
    BOTH = "Both"  # in both copies, an hour apart


class BackoffType(StrEnum):
    EXPONENTIAL = "Exponential"
    FIXED = "Fixed"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class Backoff(_Model):
    type: BackoffType = Field(
        default=BackoffType.EXPONENTIAL, description="Exponential doubles the delay each retry; Fixed keeps it."
    )
    # Whole seconds, as every *Seconds field in the Kubernetes API (no floats in a spec).
    delay_seconds: Annotated[int, Field(ge=0, le=86400, strict=True)] = Field(
        default=5, description="Delay before the first retry, in seconds."
    )
    max_delay_seconds: Annotated[int, Field(ge=0, le=604800, strict=True)] = Field(
        default=3600, description="Upper bound for any single retry delay, in seconds."
    )


    @model_validator(mode="after")
    def _max_covers_base(self) -> Backoff:
        if self.max_delay_seconds < self.delay_seconds:
            raise ValueError("maxDelaySeconds must be at least delaySeconds")
        return self


class RetrySpec(_Model):
    attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="Total attempts per run, the first one included."
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Wait between attempts.")


class DstPolicy(_Model):
    """How slots on daylight-saving nights fire; an absent field keeps the cron-daemon rule
    (fixed-time jobs run after the gap and once in the repeated hour; jobs with * in the
    minute or hour field skip the gap and run in both copies)."""

    gap: DstGap | None = Field(default=None, description="RunAfterGap or Skip; default: the cron-daemon rule.")
    repeated_hour: DstRepeatedHour | None = Field(
        default=None, description="Once or Both; default: the cron-daemon rule."
    )


class ScheduleEntry(_Model):
    """One more schedule of a job, beside `schedule`."""

    schedule: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Cron (5 fields, or 6 with seconds first), a macro such as @daily, or @every 5m."
    )
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="IANA time zone of this schedule; the job's timeZone when absent."
    )

    @model_validator(mode="after")
    def _parses(self) -> ScheduleEntry:
        try:
            parse_schedule(self.schedule, self.time_zone or DEFAULT_TIME_ZONE)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from exc
        return self


class ScheduledJobSpec(_Model):
    """What a platform team writes under `spec:` of a ScheduledJob."""

    display_name: Annotated[str, Field(max_length=255)] | None = Field(
        default=None, description="Human name shown in listings."
    )
    description: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="What the job does, for people reading listings."
    )
    category: Annotated[str, Field(max_length=50, pattern=CATEGORY_PATTERN)] = Field(
        default="system", description="Free-form grouping used by filters (biz, system, maintenance, ...)."
    )
    job_template: dict[str, Any] | None = Field(
        default=None,
        description="A batch/v1 JobTemplateSpec, as in a CronJob: each slot creates one Job from it "
        "(the launcher does, not the workers). Exactly one of target and jobTemplate.",
    )
    target: Annotated[str, Field(min_length=1, max_length=255, pattern=TARGET_PATTERN)] | None = Field(
        default=None,
        validate_default=True,  # so the one-of-target-and-jobTemplate check runs when both are absent
        description="Name of a target registered in the workers, e.g. http or biz:pipeline. "
        "Exactly one of target and jobTemplate.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="JSON object passed to the target.")
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default=DEFAULT_TIME_ZONE, description="IANA time zone the cron fields are read in."
    )
    schedule: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Cron (5 fields, or 6 with seconds first), a macro such as @daily, or @every 5m."
    )
    dst_policy: DstPolicy | None = Field(
        default=None, description="How slots on daylight-saving nights fire, for every schedule of the job."
    )
    schedules: Annotated[list[ScheduleEntry], Field(max_length=20)] = Field(
        default_factory=list,
        description="More schedules beside `schedule`, each with its own time zone; a slot two share runs once.",
    )
    exclude: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=366)] = Field(
        default_factory=list,
        description="Slots never to run, read in timeZone: dates (YYYY-MM-DD, the whole day) or 5-field cron"
        " expressions matching the slot's minute (e.g. \"* * 25 12 *\").",
    )
    suspend: bool = Field(default=False, description="No new runs while true.")
    suspend_reason: Annotated[str, Field(max_length=500)] | None = Field(
        default=None,
        description="Why the job is suspended, for people: shown by describe, the page and the Ready condition.",
    )
    start_time: AwareDatetime | None = Field(
        default=None, description="No slot before this instant (RFC 3339, with an offset) runs."
    )
    end_time: AwareDatetime | None = Field(
        default=None, description="No slot after this instant (RFC 3339, with an offset) runs; then the job is done."
    )
    max_runs: Annotated[int, Field(ge=1, le=MAX_RUNS_LIMIT, strict=True)] | None = Field(
        default=None,
        description="Only the first maxRuns slots from startTime run (a missed or skipped slot uses one);"
        " status.remainingRuns counts those still to come.",
    )
    jitter_seconds: Annotated[int, Field(ge=0, le=86400, strict=True)] = Field(
        default=0,
        description="Start each run up to this many seconds after its slot, by a delay derived from the job"
        " and the slot (the same slot always gets the same delay, always before the next slot). The run"
        " keeps the slot as its identity; only its start moves.",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=86400)] = Field(
        default=300, description="A run still going after this long is stopped and recorded as timed_out."
    )
    retry: RetrySpec = Field(
        default_factory=RetrySpec, description="How often and how soon a failed run is tried again."
    )
    concurrency_policy: ConcurrencyPolicy = Field(default=ConcurrencyPolicy.ALLOW)
    starting_deadline_seconds: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="A slot not started within this many seconds of its time is missed."
    )
    missed_run_policy: MissedRunPolicy = Field(
        default=MissedRunPolicy.RUN_ONCE, description="What to do with slots missed while nothing could fire."
    )
    catch_up_window_seconds: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        default=None,
        description="After an outage, only slots this recent follow missedRunPolicy; older ones are recorded"
        " missed. Unlike startingDeadlineSeconds it never drops a run already queued.",
    )
    max_catch_up_runs: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="With RunAll, at most this many missed slots are run."
    )
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=100000)] = Field(
        default=100, description="Successful runs kept in job_runs."
    )
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=100000)] = Field(
        default=200, description="Failed, timed-out, cancelled and skipped runs kept in job_runs."
    )
    worker_pool: Annotated[str, Field(max_length=40, pattern=POOL_PATTERN)] | None = Field(
        default=None,
        description="Worker pool that fires and runs this job (default: the default pool); the namespace's "
                    "TargetPolicy must allow it.",
    )

    @field_validator("worker_pool")
    @classmethod
    def _pool_is_not_the_launcher(cls, pool: str | None) -> str | None:
        if pool == LAUNCHER_POOL:
            raise ValueError(f"{LAUNCHER_POOL!r} is reserved: a job reaches the launcher by carrying a jobTemplate")
        return pool

    @field_validator("params")
    @classmethod
    def _params_are_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be plain JSON: {exc}") from exc
        if len(encoded) > MAX_PARAMS_BYTES:
            # Every fired run carries its params through Redis and into PostgreSQL.
            raise ValueError(f"params take {len(encoded)} bytes as JSON; at most {MAX_PARAMS_BYTES} are allowed")
        _check_storable(params, "params")
        return params

    @field_validator("job_template")
    @classmethod
    def _job_template_has_pod(cls, template: dict[str, Any] | None) -> dict[str, Any] | None:
        if template is not None:
            problem = job_template_problem(template)
            if problem is not None:
                raise ValueError(problem)
        return template

    @field_validator("target")
    @classmethod
    def _one_way_to_run(cls, target: str | None, info: ValidationInfo) -> str | None:
        # jobTemplate is declared first; absent from info.data only when it failed its own checks.
        if "job_template" in info.data and (target is None) == (info.data["job_template"] is None):
            raise ValueError("exactly one of target and jobTemplate must be set")
        return target

    @property
    def run_target(self) -> str:
        """The target a worker runs: spec.target, or the launcher's for a jobTemplate."""
        return KUBERNETES_JOB_TARGET if self.target is None else self.target

    @property
    def run_params(self) -> dict[str, Any]:
        """What that target receives: spec.params, or for the launcher the Job template and the
        history limits it enforces on old Jobs."""
        if self.job_template is None:
            return self.params
        return {
            "jobTemplate": self.job_template,
            "timeoutSeconds": self.timeout_seconds,
            "successfulJobsHistoryLimit": min(self.successful_runs_history_limit, MAX_JOBS_KEPT),
            "failedJobsHistoryLimit": min(self.failed_runs_history_limit, MAX_JOBS_KEPT),
        }

    @field_validator("display_name", "description", "suspend_reason")
    @classmethod
    def _text_is_storable(cls, text: str | None, info: ValidationInfo) -> str | None:
        if text is not None:
            _check_storable(text, to_camel(info.field_name or ""))
        return text

    @field_validator("time_zone")
    @classmethod
    def _time_zone_exists(cls, time_zone: str) -> str:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {time_zone!r}") from exc
        return time_zone

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, schedule: str, info: ValidationInfo) -> str:
        # timeZone is declared first so it is validated (and present) by now.
        time_zone = info.data.get("time_zone")
        if time_zone is not None:
            try:
                parse_schedule(schedule, time_zone)
            except ScheduleError as exc:
                raise ValueError(str(exc)) from exc
        return schedule

    @field_validator("exclude")
    @classmethod
    def _exclusions_parse(cls, exclude: list[str]) -> list[str]:
        for entry in exclude:
            try:
                check_exclusion(entry)
            except ScheduleError as exc:
                raise ValueError(str(exc)) from exc
        return exclude

    @model_validator(mode="after")
    def _window_is_open(self) -> ScheduledJobSpec:
        if self.start_time is not None and self.end_time is not None and self.end_time <= self.start_time:
            raise ValueError("endTime must be after startTime")
        if self.max_runs is not None and self.start_time is None:
            raise ValueError("maxRuns counts slots from startTime: set startTime too")
        return self

    def fingerprint(self) -> str:
        """Stable digest of everything that changes what or when a run fires.

        Labels for people (name, description, category) and history limits are left out, so
        editing them never invalidates a plan a ticker is about to apply.
        """
        fields = self.model_dump(mode="json", by_alias=True, exclude=_NOT_FIRING_FIELDS)
        if fields.get("workerPool") is None:
            # Jobs armed before pools existed keep their fingerprint (no needless re-arm on upgrade).
            fields.pop("workerPool", None)
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def job_template_problem(template: dict[str, Any]) -> str | None:
    """Why a jobTemplate cannot make a Job, or None; the API server checks the rest at creation."""
    spec = template.get("spec")
    pod = spec.get("template") if isinstance(spec, dict) else None
    pod_spec = pod.get("spec") if isinstance(pod, dict) else None
    containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
    if not isinstance(containers, list) or not containers:
        return "jobTemplate needs spec.template.spec.containers (a batch/v1 JobTemplateSpec, as in a CronJob)"
    if pod_spec is not None and pod_spec.get("restartPolicy", "Never") not in ("Never", "OnFailure"):
        return "jobTemplate.spec.template.spec.restartPolicy must be Never or OnFailure"
    if len(json.dumps(template)) > MAX_PARAMS_BYTES:
        return f"jobTemplate takes more than {MAX_PARAMS_BYTES} bytes as JSON"
    _check_storable(template, "jobTemplate")
    return None


def _check_storable(value: Any, where: str) -> None:
    """Refuse the text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} contains a NUL character (\\u0000), which PostgreSQL cannot store")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{where} is not valid Unicode text: {exc.reason}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, f"{where} key")
            _check_storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{where}[{index}]")


_NOT_FIRING_FIELDS = {
    "display_name", "description", "category", "successful_runs_history_limit", "failed_runs_history_limit",
    "suspend_reason",
}


class SpecError(ValueError):
    """A spec that cannot be armed; the message is ready for a CR condition or CLI output."""


def parse_spec(raw: dict[str, Any]) -> ScheduledJobSpec:
    try:
        return ScheduledJobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, `spec.field: why`, the way kubectl prints schema errors."""
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        if loc and isinstance(loc[0], str) and loc[0] in ScheduledJobSpec.model_fields:
            loc[0] = to_camel(loc[0])  # a default that failed validation is named by its field, not its alias
        path = "spec" + "".join(_path_part(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def _path_part(part: str | int) -> str:
    """`.name` for a plain field name, `[0]` for an index, `["odd key"]` for any other key,
    so an empty, dotted or unprintable key still points somewhere."""
    if isinstance(part, int):
        return f"[{part}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
        return f".{part}"
    return f"[{json.dumps(part)}]"
