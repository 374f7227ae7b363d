"""`sundial runs`: a job's run history from `job_runs`, newest first.

One row per attempt. SLOT is the time the run was scheduled for, in the job's time zone; a
manual run has no slot, so its row shows when it was requested (its logical time).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import click

from sundial.cli.backends import open_store
from sundial.cli.completion import complete_job_names
from sundial.cli.history import HistorySource, api_runs, as_row, job_views
from sundial.cli.jobs import JobView, resolve_job
from sundial.cli.kube import Kube, KubeOptions, KubeUnreachable, default_namespace
from sundial.cli.options import BackendOptions, backend_options, kube_options, output_option
from sundial.cli.render import (
    Cell,
    Styled,
    dump,
    duration_ms,
    echo_lines,
    error_summary,
    local_time,
    status_cell,
    table,
)
from sundial.cli.runner import note, run_async
from sundial.core.runobjects import GROUP, SINGULAR, object_name
from sundial.core.runs import API_RUN_STATUSES, run_status_from_api, run_status_to_api, trigger_to_api
from sundial.core.store import Store
from sundial.kube.runs import RunsApiUnavailable

Row = dict[str, Any]

HEADERS: Final = ("SLOT", "TRIGGER", "STATUS", "ATTEMPT", "DURATION", "ERROR")
WIDE_HEADERS: Final = ("RUN", "SLOT", "TRIGGER", "STATUS", "ATTEMPT", "STARTED", "DURATION", "WORKER", "REASON",
                       "ERROR")


@click.command(short_help="Run history of a job (or of a namespace).")
@click.argument("name", required=False, shell_complete=complete_job_names)
@kube_options(all_namespaces=True)
@backend_options(redis=False)
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(API_RUN_STATUSES, case_sensitive=False),
    callback=lambda _ctx, _param, phases: tuple(run_status_from_api(phase).value for phase in phases),
    help="Only attempts in this phase (repeatable: --status Failed --status TimedOut).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="At most this many.")
@output_option("table", "wide", "json", "yaml", "name")
def runs(
    name: str | None, kube: KubeOptions, backends: BackendOptions, statuses: tuple[str, ...], limit: int,
    output: str,
) -> None:
    """Run history of the ScheduledJob NAME, newest first.

    Without NAME, the latest runs of every job in the namespace (or, with -A, in all namespaces).
    Read through the Kubernetes API (runs.sundial.dev, RBAC decides); --database-url reads
    PostgreSQL instead, and DATABASE_URL is used only when the cluster does not serve runs.
    """
    if name and kube.all_namespaces:
        raise click.UsageError("a NAME cannot be combined with -A/--all-namespaces")
    run_async(_runs(name, kube, HistorySource.of(backends), statuses, limit, output))


async def _runs(
    name: str | None, kube: KubeOptions, source: HistorySource, statuses: Sequence[str], limit: int, output: str
) -> None:
    if source.database_first:
        entries, scope = await _from_database(name, kube, str(source.database_url), statuses, limit)
    else:
        try:
            entries, scope = await _from_api(name, kube, statuses, limit)
        except KubeUnreachable as exc:
            if not source.database_url:
                raise
            if isinstance(exc, RunsApiUnavailable) or not name:  # else resolve_job says so itself
                note(f"{exc}; read PostgreSQL (DATABASE_URL) instead")
            entries, scope = await _from_database(name, kube, source.database_url, statuses, limit)
    if output in ("json", "yaml"):
        click.echo(dump([run_document(job, row) for job, row in entries], output))
        return
    if output == "name":
        # One line per attempt, as `kubectl get scheduledjobruns -o name` names it.
        echo_lines(f"{SINGULAR}.{GROUP}/{object_name(job.name, row['logical_time'], int(row['attempt']))}"
                   for job, row in entries)
        return
    if not entries:
        click.echo(f"No runs found for {scope}.", err=True)
        return
    prefix = () if name else (("NAMESPACE", "JOB") if kube.all_namespaces else ("JOB",))
    echo_lines(runs_table(entries, wide=output == "wide", job_columns=prefix))


async def _from_api(
    name: str | None, options: KubeOptions, statuses: Sequence[str], limit: int
) -> tuple[list[tuple[JobView, Row]], str]:
    kube = Kube.connect(options)
    try:
        if name:
            job = JobView.from_object(await kube.get_job(name, kube.namespace))
            found = await api_runs(kube, job.namespace, job=job.name, statuses=statuses, limit=limit)
            return [(job, as_row(run)) for run in found], f"{job.namespace}/{job.name}"
        namespace = None if options.all_namespaces else kube.namespace
        found = await api_runs(kube, namespace, job=None, statuses=statuses, limit=limit)
        views = await job_views(kube, namespace, found)
        scope = "any namespace" if namespace is None else f"namespace {namespace}"
        return [(views[(run.namespace, run.job_name)], as_row(run)) for run in found], scope
    finally:
        await kube.aclose()


async def _from_database(
    name: str | None, kube: KubeOptions, database_url: str, statuses: Sequence[str], limit: int
) -> tuple[list[tuple[JobView, Row]], str]:
    store = await open_store(database_url)
    try:
        if name:
            job = await resolve_job(name, kube, store)
            rows = await store.runs(job.job_id, limit=limit, statuses=statuses or None)
            return [(job, row) for row in rows], f"{job.namespace}/{job.name}"
        namespace = None if kube.all_namespaces else default_namespace(kube)
        scope = "any namespace" if namespace is None else f"namespace {namespace}"
        return await _latest_runs(store, namespace, statuses, limit), scope
    finally:
        await store.close()


async def _latest_runs(
    store: Store, namespace: str | None, statuses: Sequence[str], limit: int
) -> list[tuple[JobView, Row]]:
    """The newest attempts across jobs: each job's own newest `limit`, merged."""
    jobs = [JobView.from_row(row) for row in await store.jobs_changed_since(None)
            if namespace is None or row["namespace"] == namespace]
    entries: list[tuple[JobView, Row]] = []
    for job in jobs:
        entries.extend((job, row) for row in await store.runs(job.job_id, limit=limit, statuses=statuses or None))
    entries.sort(key=lambda entry: (entry[1]["logical_time"], entry[1]["attempt"]), reverse=True)
    return entries[:limit]


def runs_table(entries: Sequence[tuple[JobView, Row]], *, wide: bool = False,
               job_columns: Sequence[str] = ()) -> list[str]:
    headers = (*job_columns, *(WIDE_HEADERS if wide else HEADERS))
    return table(headers, [_job_cells(job, job_columns) + _cells(job, row, wide) for job, row in entries])


def _job_cells(job: JobView, columns: Sequence[str]) -> list[Cell]:
    by_header = {"NAMESPACE": job.namespace, "JOB": job.name}
    return [by_header[column] for column in columns]


def _cells(job: JobView, row: Row, wide: bool) -> list[Cell]:
    zone = job.zone
    slot = row.get("scheduled_for") or row["logical_time"]
    status = run_status_to_api(row["status"])
    retrying = row.get("next_retry_at") is not None
    shown = Styled(f"{status}, Retrying", "yellow") if retrying else status_cell(status)
    cells: list[Cell] = [
        local_time(slot, zone), trigger_to_api(row["trigger_type"]), shown, _attempt(row, job),
        duration_ms(row.get("duration_ms")), error_summary(row.get("error_message")),
    ]
    if not wide:
        return cells
    return [
        _short_run_id(str(row["run_id"]), job.job_id), *cells[:4], local_time(row.get("started_at"), zone),
        cells[4], row.get("worker") or "-", row.get("reason") or "-", cells[5],
    ]


def _attempt(row: Row, job: JobView) -> str:
    attempts = job.max_attempts
    return f"{row['attempt']}/{attempts}" if attempts else str(row["attempt"])


def _short_run_id(run_id: str, job_id: str) -> str:
    # Every run id starts with the job's UID; within one job only the rest tells runs apart.
    return run_id.removeprefix(f"{job_id}:")


def run_document(job: JobView, row: Row) -> dict[str, Any]:
    """One attempt as -o json/yaml shows it: every column, times in UTC (RFC 3339)."""
    return {
        "runId": row["run_id"],
        "namespace": job.namespace,
        "job": job.name,
        "jobId": job.job_id,
        "slot": _utc(row.get("scheduled_for")),
        "logicalTime": _utc(row["logical_time"]),
        "trigger": trigger_to_api(row["trigger_type"]),
        "status": run_status_to_api(row["status"]),
        "attempt": row["attempt"],
        "maxAttempts": job.max_attempts,
        "startedAt": _utc(row.get("started_at")),
        "completedAt": _utc(row.get("completed_at")),
        "durationMs": row.get("duration_ms"),
        "worker": row.get("worker"),
        "reason": row.get("reason"),
        "error": row.get("error_message"),
        "nextRetryAt": _utc(row.get("next_retry_at")),
        "deliveries": row.get("deliveries"),
        "output": row.get("output"),
    }


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
