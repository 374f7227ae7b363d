"""`sundial describe`: one job as a person reads it, in the layout of `kubectl describe`.

Spec, status, conditions, the next fire times in the job's own time zone and the last runs.
The runs come from PostgreSQL; when it is not configured or not reachable the rest is still
shown, with a line saying why the runs are missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import click

from sundial.cli.backends import open_store
from sundial.cli.completion import complete_job_names
from sundial.cli.jobs import OBJECT_OUTPUTS, JobView, database_object, object_output, resolve_job
from sundial.cli.kube import KubeOptions
from sundial.cli.options import BackendOptions, backend_options, kube_options, output_option
from sundial.cli.render import human_age, jitter_note, local_time, paint, relative, table
from sundial.cli.runner import run_async
from sundial.cli.runs import runs_table
from sundial.core.backfill import BackfillError, BackfillRequest
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.crd import API_VERSION, KIND, LAST_BACKFILL_FIELD
from sundial.core.policies import JitteredSchedule, spec_schedule, upcoming_fires
from sundial.core.pools import DEFAULT_POOL, LAUNCHER_POOL, stored_spec_pool
from sundial.core.runs import RunStatus, run_status_to_api
from sundial.core.schedule import ScheduleError
from sundial.core.spec import BackoffType, parse_spec
from sundial.core.store import BackendUnavailable, Store

NEXT_FIRES: Final = 5
INDENT: Final = "  "

Field = tuple[str, str]


@click.command(short_help="Spec, status, next fire times and last runs of a job.")
@click.argument("name", shell_complete=complete_job_names)
@kube_options()
@backend_options(redis=False)
@click.option("--runs", "run_count", type=click.IntRange(0, 100), default=5, show_default=True,
              help="How many of the last runs to show.")
@output_option(*OBJECT_OUTPUTS, default=None)
def describe(name: str, kube: KubeOptions, backends: BackendOptions, run_count: int, output: str | None) -> None:
    """Spec, status, conditions, next fire times and last runs of the ScheduledJob NAME.

    -o json|yaml|name prints the object itself (from PostgreSQL when Kubernetes cannot be asked).
    """
    run_async(_describe(name, kube, backends.database_url, run_count, output))


async def _describe(name: str, kube: KubeOptions, database_url: str | None, run_count: int,
                    output: str | None = None) -> None:
    store: Store | None = None
    store_problem: str | None = None
    if database_url is None:
        store_problem = "PostgreSQL is not configured (set DATABASE_URL or pass --database-url)"
    else:
        try:
            store = await open_store(database_url)
        except BackendUnavailable as exc:
            store_problem = str(exc)
    try:
        job = await resolve_job(name, kube, store)
        row = await store.job(job.job_id) if store is not None else None
        runs = await store.runs(job.job_id, limit=run_count) if store is not None and run_count else []
    finally:
        if store is not None:
            await store.close()
    if output is not None:
        obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": job.metadata, "spec": job.spec,
               "status": job.status} if job.source == "kubernetes" else database_object(job)
        click.echo(object_output([obj], output))
        return
    now = SYSTEM_CLOCK.now()
    for line in describe_lines(job, row, runs, now, store_problem=store_problem):
        click.echo(line)


def describe_lines(job: JobView, row: dict[str, Any] | None, runs: Sequence[dict[str, Any]], now: datetime, *,
                   store_problem: str | None = None) -> list[str]:
    header = [
        ("Name:", job.name),
        ("Namespace:", job.namespace),
        ("UID:", job.job_id),
        ("Source:", "Kubernetes" if job.source == "kubernetes" else "PostgreSQL (Kubernetes unreachable)"),
    ]
    created = job.metadata.get("creationTimestamp")
    if created:
        header.append(("Created:", f"{created} ({human_age(now - _parse(created))} ago)"))
    lines = _fields(header)
    lines.append("Spec:")
    lines += _fields(_spec_fields(job), indent=INDENT)
    lines.append("Status:")
    lines += _fields(_status_fields(job, row, now), indent=INDENT)
    conditions = job.status.get("conditions") or []
    if job.source == "kubernetes":
        lines.append("Conditions:")
        lines += _conditions(conditions, now) if conditions else [f"{INDENT}none yet (the operator has not reconciled)"]
    lines += _next_fires(job, now)
    lines.append("Last Runs:")
    if store_problem is not None:
        lines.append(f"{INDENT}unavailable: {store_problem}")
    elif not runs:
        lines.append(f"{INDENT}none yet")
    else:
        lines += [INDENT + line for line in runs_table([(job, run) for run in runs])]
    return lines


def _fields(fields: Sequence[Field], indent: str = "") -> list[str]:
    width = max(len(key) for key, _ in fields) + 2
    return [f"{indent}{key.ljust(width)}{value}".rstrip() for key, value in fields]


def _spec_fields(job: JobView) -> list[Field]:
    spec = job.spec
    retry = spec.get("retry") or {}
    backoff = retry.get("backoff") or {}
    fields: list[Field] = [
        ("Schedule:", f"{spec.get('schedule', '?')} ({job.time_zone})"),
        ("Target:", _target(spec)),
        ("Params:", json.dumps(spec.get("params") or {}, sort_keys=True)),
        ("Suspend:", _suspend(spec)),
        ("Concurrency Policy:", str(spec.get("concurrencyPolicy", "Allow"))),
        ("Timeout:", f"{spec.get('timeoutSeconds', 300)}s"),
        ("Retry:", _retry(retry, backoff)),
        ("Missed Run Policy:", _missed(spec)),
        ("History Limits:", f"{spec.get('successfulRunsHistoryLimit', 100)} succeeded, "
                            f"{spec.get('failedRunsHistoryLimit', 200)} failed"),
    ]
    pool = stored_spec_pool(spec)
    if pool != DEFAULT_POOL:
        fields.append(("Worker Pool:", f"{pool} (the launcher creates each run's Job)" if pool == LAUNCHER_POOL
                       else pool))
    fields += _policy_fields(spec, job.status)
    for key, label in (("displayName", "Display Name:"), ("description", "Description:"), ("category", "Category:")):
        if spec.get(key):
            fields.insert(0 if key == "displayName" else len(fields), (label, str(spec[key])))
    return fields


def _target(spec: dict[str, Any]) -> str:
    template = spec.get("jobTemplate")
    if not template:
        return str(spec.get("target", "?"))
    pod = ((template.get("spec") or {}).get("template") or {}).get("spec") or {}
    images = ", ".join(str(c.get("image", "?")) for c in pod.get("containers") or []) or "no containers"
    return f"a batch/v1 Job from jobTemplate ({images})"


def _retry(retry: dict[str, Any], backoff: dict[str, Any]) -> str:
    attempts = int(retry.get("attempts", 3))
    if attempts <= 1:
        return "1 attempt, no retries"
    kind = str(backoff.get("type", BackoffType.EXPONENTIAL)).lower()
    delay = _seconds(backoff.get("delaySeconds", 5))
    cap = _seconds(backoff.get("maxDelaySeconds", 3600))
    return f"{attempts} attempts, {kind} backoff from {delay} (at most {cap})"


def _missed(spec: dict[str, Any]) -> str:
    policy = str(spec.get("missedRunPolicy", "RunOnce"))
    if policy == "RunAll":
        policy += f" (at most {spec.get('maxCatchUpRuns', 10)})"
    deadline = spec.get("startingDeadlineSeconds")
    if deadline:
        policy += f", starting deadline {deadline}s"
    window = spec.get("catchUpWindowSeconds")
    if window:
        policy += f", catch-up window {window}s (older missed slots are recorded missed)"
    return policy


def _suspend(spec: dict[str, Any]) -> str:
    if not spec.get("suspend"):
        return "false"
    return f"true ({spec['suspendReason']})" if spec.get("suspendReason") else "true"


def _policy_fields(spec: dict[str, Any], status: dict[str, Any]) -> list[Field]:
    """The schedule policies a job sets; those left at their default are not shown."""
    fields: list[Field] = []
    for entry in spec.get("schedules") or []:
        zone = entry.get("timeZone") or spec.get("timeZone") or "the job's zone"
        fields.append(("Also Scheduled:", f"{entry.get('schedule', '?')} ({zone})"))
    if spec.get("exclude"):
        fields.append(("Excluded:", ", ".join(str(entry) for entry in spec["exclude"])
                       + " (slots on these dates or matching these crons never run)"))
    start, end = spec.get("startTime"), spec.get("endTime")
    if start or end:
        since = f"from {local_time(_parse(str(start)), _zone(spec))}" if start else "from creation"
        until = f"until {local_time(_parse(str(end)), _zone(spec))}" if end else "with no end"
        fields.append(("Active Window:", f"{since} {until} (slots outside it never run)"))
    if spec.get("maxRuns"):
        left = status.get("remainingRuns")
        fields.append(("Run Limit:", f"the first {spec['maxRuns']} slots from startTime"
                                     + (f", {left} still to come" if left is not None else "")))
    dst = spec.get("dstPolicy") or {}
    if dst.get("gap") or dst.get("repeatedHour"):
        gap = {"RunAfterGap": "run when the gap ends", "Skip": "skip"}.get(dst.get("gap") or "", "the cron-daemon rule")
        fold = {"Once": "once", "Both": "in both copies"}.get(dst.get("repeatedHour") or "", "the cron-daemon rule")
        fields.append(("DST Policy:", f"spring-forward gap: {gap}; repeated hour: {fold}"))
    jitter = int(spec.get("jitterSeconds") or 0)
    if jitter:
        fields.append(("Jitter:", f"up to {jitter}s after each slot, the same delay for the same slot"))
    return fields


def _zone(spec: dict[str, Any]) -> ZoneInfo:
    return JobView(job_id="", namespace="", name="", spec=spec, source="kubernetes").zone


def _seconds(value: Any) -> str:
    number = float(value)
    return f"{number:g}s"


def _status_fields(job: JobView, row: dict[str, Any] | None, now: datetime) -> list[Field]:
    """From the object's status when Kubernetes answered, else from the database row."""
    zone = job.zone
    status = job.status
    if job.source == "database" and row is not None:
        status = {
            "lastStatus": run_status_to_api(row["last_status"]) if row.get("last_status") else None,
            "lastRunTime": row.get("last_run_at"),
            "lastSuccessfulTime": row.get("last_success_at"), "nextRunTime": row.get("next_run_at"),
            "lastError": row.get("last_error"), "runCount": row.get("run_count"),
            "successCount": row.get("success_count"), "failCount": row.get("fail_count"),
            "missedCount": row.get("missed_count"),
        }

    def when(key: str) -> str:
        value = status.get(key)
        if not value:
            return "-"
        moment = value if isinstance(value, datetime) else _parse(str(value))
        return f"{local_time(moment, zone)} ({relative(moment, now)})"

    last = str(status.get("lastStatus") or "-")
    fields: list[Field] = [
        ("Last Status:", last),
        ("Last Run:", when("lastRunTime")),
        ("Last Success:", when("lastSuccessfulTime")),
        ("Next Run:", when("nextRunTime")),
        ("Runs:", f"{status.get('runCount') or 0} total, {status.get('successCount') or 0} succeeded, "
                  f"{status.get('failCount') or 0} failed, {status.get('missedCount') or 0} missed"),
    ]
    if status.get("lastError") and last != run_status_to_api(RunStatus.SUCCESS):
        fields.append(("Last Error:", str(status["lastError"]).strip().splitlines()[0]))
    active = status.get("active") or []
    fields.append(("Active:", ", ".join(_active(run, zone) for run in active) if active else "none"))
    if status.get(LAST_BACKFILL_FIELD):
        fields.append(("Last Backfill:", _backfill(str(status[LAST_BACKFILL_FIELD]), zone)))
    return fields


def _backfill(request: str, zone: ZoneInfo) -> str:
    """The last backfill request the operator finished, as a person reads it."""
    try:
        parsed = BackfillRequest.from_json(request)
    except BackfillError:
        return request
    order = ", one at a time" if parsed.sequential else ""
    return f"{local_time(parsed.start, zone)} .. {local_time(parsed.end, zone)}{order}"


def _active(run: dict[str, Any], zone: Any) -> str:
    started = run.get("startTime")
    since = f" since {local_time(_parse(started), zone)}" if started else ""
    return f"attempt {run.get('attempt', '?')} on {run.get('worker') or 'a worker'}{since}"


def _conditions(conditions: Sequence[dict[str, Any]], now: datetime) -> list[str]:
    rows = []
    for condition in conditions:
        changed = condition.get("lastTransitionTime")
        age = human_age(now - _parse(changed)) if changed else "-"
        status = str(condition.get("status", "Unknown"))
        rows.append([str(condition.get("type", "?")), status, str(condition.get("reason", "")), age,
                     str(condition.get("message", ""))])
    return [INDENT + line for line in table(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), rows)]


def _next_fires(job: JobView, now: datetime) -> list[str]:
    try:
        fires = upcoming_fires(job_schedule(job), now, NEXT_FIRES)
    except (ScheduleError, ValueError) as exc:
        return ["Next Fire Times:", f"{INDENT}none: {exc}"]
    heading = f"Next {NEXT_FIRES} Fire Times ({job.time_zone})"
    if job.spec.get("suspend"):
        heading += ", once resumed"
    lines = [f"{heading}:"]
    lines += [f"{INDENT}{local_time(fire.start, job.zone)}   {paint(relative(fire.start, now), 'bright_black')}"
              f"   {jitter_note(fire, job.zone)}".rstrip()
              for fire in fires]
    if len(fires) < NEXT_FIRES:
        lines.append(f"{INDENT}{'none' if not fires else 'then none'}: {_window_end(job)}")
    return lines


def _window_end(job: JobView) -> str:
    """Why a job's slots run out: its endTime, or its run limit closing the window first."""
    spec = job.spec
    end = spec.get("endTime")
    reasons = []
    if end:
        reasons.append(f"the active window ends at {local_time(_parse(str(end)), job.zone)} (endTime)")
    if spec.get("maxRuns"):
        reasons.append(f"the run limit of {spec['maxRuns']} slots from startTime (maxRuns)")
    return " or ".join(reasons)


def job_schedule(job: JobView, time_zone: str | None = None) -> JitteredSchedule:
    """The job's schedule with every policy, as the ticker fires it; read in ``time_zone``
    instead of the job's when given (`sundial next --tz`). A spec the model refuses raises
    SpecError, whose message names the field."""
    spec = {**job.spec, "timeZone": time_zone} if time_zone else job.spec
    return spec_schedule(parse_spec(spec), job.job_id)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
