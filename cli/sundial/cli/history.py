"""Where the CLI reads run history: the aggregated API `runs.sundial.dev` by default, so RBAC
decides and any credential kubectl accepts works; PostgreSQL is the admin path.

`--database-url` on the command line reads PostgreSQL directly. `DATABASE_URL` in the
environment is only a fallback for when the cluster does not serve run history (no
APIService, its server down, no cluster at all), and the person is told. A 403 is the
answer and never falls back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click
from click.core import ParameterSource

from sundial.cli.jobs import JobView
from sundial.cli.kube import Kube, KubeError
from sundial.cli.options import BackendOptions
from sundial.core.runs import run_status_to_api
from sundial.core.store import RunRow
from sundial.kube.runs import list_run_rows

Row = dict[str, Any]


@dataclass(frozen=True)
class HistorySource:
    database_url: str | None = None
    # --database-url given on the command line: read PostgreSQL, never the API.
    database_first: bool = False

    @classmethod
    def of(cls, backends: BackendOptions) -> HistorySource:
        source = click.get_current_context().get_parameter_source("database_url")
        return cls(backends.database_url, backends.database_url is not None and source is ParameterSource.COMMANDLINE)


def as_row(run: RunRow) -> Row:
    """The row shape the tables and progress lines print (the columns of `job_runs`)."""
    return asdict(run)


async def api_runs(kube: Kube, namespace: str | None, *, job: str | None, statuses: Sequence[str], limit: int
                   ) -> list[RunRow]:
    """The newest `limit` attempts (in `statuses`, when given) through the aggregated API."""
    phase = run_status_to_api(statuses[0]) if len(statuses) == 1 else None
    found: list[RunRow] = []
    async for run in list_run_rows(kube.client, namespace, job=job, phase=phase, page=min(max(limit, 20), 500)):
        if statuses and run.status not in statuses:
            continue
        found.append(run)
        if len(found) >= limit:
            break
    return found


async def request_attempts(kube: Kube, job: JobView, request: str, not_before: float) -> AsyncIterator[RunRow]:
    """Attempts of `job` whose reason is `request`, paging newest first until rows are older than
    `not_before` (epoch seconds): on a busy job scheduled runs after the request fill the first pages."""
    async for run in list_run_rows(kube.client, job.namespace, job=job.name):
        if run.logical_time.timestamp() < not_before:
            return
        if run.reason == request:
            yield run


async def job_views(kube: Kube, namespace: str | None, runs: Sequence[RunRow]) -> dict[tuple[str, str], JobView]:
    """The ScheduledJobs the runs belong to (time zone, attempts); a run whose job cannot be read
    (deleted with its history kept, or no right to read jobs) gets a view from the run alone."""
    try:
        jobs = [JobView.from_object(obj) for obj in await kube.list_jobs(namespace)]
        known = {(view.namespace, view.name): view for view in jobs}
    except KubeError:
        known = {}
    for run in runs:
        known.setdefault((run.namespace, run.job_name),
                         JobView(job_id=run.job_id, namespace=run.namespace, name=run.job_name, spec={},
                                 source="kubernetes"))
    return known
