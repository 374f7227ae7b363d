"""`sundial run`, `suspend` and `resume`: the changes a person makes to a job from a terminal.

All three go through the Kubernetes API, never around it: `run` sets the `sundial.dev/run-now`
annotation (the operator queues the run), `suspend`/`resume` merge-patch `spec.suspend` as
`kubectl patch` would. The resource stays the single source of truth, and RBAC, audit logs and
admission apply to the CLI exactly as to kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

import click

from sundial.cli.backends import open_store
from sundial.cli.completion import complete_job_names
from sundial.cli.history import HistorySource, as_row, request_attempts
from sundial.cli.jobs import OBJECT_OUTPUTS, JobView, object_output
from sundial.cli.kube import Kube, KubeError, KubeOptions, KubeUnreachable
from sundial.cli.options import BackendOptions, backend_options, kube_options, output_option
from sundial.cli.render import duration_ms, error_summary, local_time, paint
from sundial.cli.runner import note, run_async
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.crd import GROUP, LAST_RUN_NOW_FIELD, RUN_NOW_ANNOTATION
from sundial.core.runs import run_status_to_api
from sundial.core.status import REASON_INVALID_SCHEDULE, REASON_INVALID_SPEC, REASON_UNKNOWN_TIME_ZONE
from sundial.core.store import Store
from sundial.kube.runs import run_history_version, watch_run_rows

# Ready reasons under which the operator arms nothing, so a run-now would never be queued.
REFUSED_REASONS: Final = frozenset({REASON_INVALID_SPEC, REASON_INVALID_SCHEDULE, REASON_UNKNOWN_TIME_ZONE})
POLL_SECONDS: Final = 0.5
RUN_PAGE: Final = 100
# Rows are paged newest first until they are older than the request by more than this; it
# only has to cover clock skew between this machine and the operator.
SKEW_MARGIN_SECONDS: Final = 300.0

Row = dict[str, Any]


def _resource(name: str) -> str:
    return f"scheduledjob.{GROUP}/{name}"


# ---- run -----------------------------------------------------------------------------------


@click.command("run", short_help="Run a job now; --wait follows it to its end.")
@click.argument("name", shell_complete=complete_job_names)
@kube_options()
@backend_options(redis=False)
@click.option("--wait", is_flag=True,
              help="Follow the run to its end through runs.sundial.dev (or --database-url); exit 1 unless it succeeds.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True, metavar="SECONDS",
              help="With --wait, give up after this long.")
@click.option("--reason", default=None, help="Recorded with the run (a unique suffix is added).")
@output_option(*OBJECT_OUTPUTS, default=None)
def run_now(name: str, kube: KubeOptions, backends: BackendOptions, wait: bool, timeout: float,
            reason: str | None, output: str | None) -> None:
    """Run the ScheduledJob NAME now, once, through the sundial.dev/run-now annotation.

    With -o, the annotated object goes to stdout and every progress line to stderr.
    """
    request = new_request(reason)
    source = HistorySource.of(backends) if wait else None
    ok = run_async(_run_now(name, kube, request, source, wait_seconds=timeout, output=output))
    if not ok:
        raise SystemExit(1)


def new_request(reason: str | None) -> str:
    """A value never used before: the operator runs each distinct value once."""
    stamp = SYSTEM_CLOCK.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    unique = f"{stamp}-{secrets.token_hex(3)}"
    return f"{reason.strip()} {unique}" if reason and reason.strip() else unique


async def _run_now(
    name: str, options: KubeOptions, request: str, source: HistorySource | None, *, wait_seconds: float,
    output: str | None = None,
) -> bool:
    kube = Kube.connect(options)
    try:
        job = JobView.from_object(await kube.get_job(name, kube.namespace))
        refused = _refusal(job)
        if refused is not None:
            raise click.ClickException(f"{_resource(name)} cannot run: {refused}")
        patched = await kube.merge_patch_job(
            name, job.namespace, {"metadata": {"annotations": {RUN_NOW_ANNOTATION: request}}})
        if output is None:
            click.echo(f"{_resource(name)} run requested ({RUN_NOW_ANNOTATION}={request})")
        else:
            click.echo(object_output([patched], output))
        if source is None:
            click.echo(f"follow it with: sundial runs {name} -n {job.namespace}", err=True)
            return True
        reader = _AttemptReader(kube, source)
        try:
            return await _follow(kube, reader, job, request, wait_seconds, progress_to_stderr=output is not None)
        finally:
            await reader.close()
    finally:
        await kube.aclose()


class _AttemptReader:
    """A request's attempts from PostgreSQL, when the runs API is not the way (HistorySource says when)."""

    def __init__(self, kube: Kube, source: HistorySource) -> None:
        self._kube = kube
        self._source = source
        self._store: Store | None = None
        self.through_api = not source.database_first

    def fall_back(self, exc: KubeUnreachable) -> bool:
        """After the runs API could not be reached: read PostgreSQL if DATABASE_URL is known."""
        if not self._source.database_url:
            return False
        note(f"{exc}; follow the run in PostgreSQL (DATABASE_URL) instead")
        self.through_api = False
        return True

    async def attempts(self, job: JobView, request: str, not_before: float) -> list[Row]:
        if self._store is None:
            self._store = await open_store(str(self._source.database_url))
        return await _attempts(self._store, job.job_id, request, not_before)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


def _refusal(job: JobView) -> str | None:
    for condition in job.status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("reason") in REFUSED_REASONS:
            return f"{condition.get('reason')}: {condition.get('message', '')}"
    return None


@dataclass
class _Progress:
    """What has been reported so far, so each change is printed once."""

    accepted: bool = False
    seen: set[tuple[int, str]] = field(default_factory=set)


async def _follow(kube: Kube, reader: _AttemptReader, job: JobView, request: str, wait_seconds: float, *,
                  progress_to_stderr: bool = False) -> bool:
    click.echo(f"waiting for the run (up to {wait_seconds:g}s)...", err=True)
    not_before = SYSTEM_CLOCK.now().timestamp() - SKEW_MARGIN_SECONDS
    deadline = time.monotonic() + wait_seconds
    follow = _Follow(kube, job, request, progress_to_stderr)
    outcome: str | None = None
    if reader.through_api:
        try:
            outcome = await _watch(follow, not_before, deadline)
        except KubeUnreachable as exc:
            if not reader.fall_back(exc):
                raise
    if outcome is None and not reader.through_api:
        outcome = await _poll(follow, reader, not_before, deadline)
    if outcome is not None:
        return outcome == "success"
    await follow.check_accepted()
    attempts = follow.newest_first()
    last = f"last: attempt {attempts[0]['attempt']} {run_status_to_api(attempts[0]['status'])}" if attempts else (
        "the operator queued it; no worker has started it" if follow.progress.accepted
        else "the operator has not picked up the request")
    click.echo(paint(f"timed out after {wait_seconds:g}s waiting for the run ({last})", "red"), err=True)
    click.echo(f"it may still run: sundial runs {job.name} -n {job.namespace}", err=True)
    return False


class _Follow:
    """What is known of one run-now request, printed as it changes."""

    def __init__(self, kube: Kube, job: JobView, request: str, progress_to_stderr: bool) -> None:
        self.kube, self.job, self.request = kube, job, request
        self.progress = _Progress()
        self.attempts: dict[int, Row] = {}
        self._err = progress_to_stderr

    async def check_accepted(self) -> None:
        if not self.progress.accepted:
            self._accept(await self.kube.get_job(self.job.name, self.job.namespace))

    async def watch_accepted(self) -> None:
        """Until the operator records the request in the job's status (or a run shows it did).
        Without `watch` on scheduledjobs the line is just not printed."""
        with contextlib.suppress(KubeError, KubeUnreachable):
            async for obj in self.kube.watch_job(self.job.name, self.job.namespace):
                if self.progress.accepted or self._accept(obj):
                    return

    def _accept(self, obj: dict[str, Any]) -> bool:
        if JobView.from_object(obj).status.get(LAST_RUN_NOW_FIELD) != self.request:
            return False
        if not self.progress.accepted:
            self.progress.accepted = True
            click.echo("queued by the operator", err=self._err)
        return True

    def newest_first(self) -> list[Row]:
        return [self.attempts[attempt] for attempt in sorted(self.attempts, reverse=True)]

    def update(self, rows: Sequence[Row]) -> str | None:
        """Take the attempts read, print what changed; the final status once the run has ended."""
        for row in rows:
            self.attempts[int(row["attempt"])] = row
        if self.attempts and not self.progress.accepted:
            self.progress.accepted = True  # the run started before we saw the status catch up
        for line in progress_lines(list(self.attempts.values()), self.job, self.progress.seen):
            click.echo(line, err=self._err)
        return final_outcome(self.newest_first())


async def _watch(follow: _Follow, not_before: float, deadline: float) -> str | None:
    """Through runs.sundial.dev: list once, then watch the job's runs from that list's version."""
    kube, job = follow.kube, follow.job
    since = await run_history_version(kube.client, job.namespace, job.name)
    await follow.check_accepted()
    listed = [as_row(run) async for run in request_attempts(kube, job, follow.request, not_before)]
    outcome = follow.update(listed)
    if outcome is not None:
        return outcome
    accepting = asyncio.create_task(follow.watch_accepted())
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            async for run in watch_run_rows(kube.client, job.namespace, job=job.name, since=since):
                if run.reason != follow.request:
                    continue
                outcome = follow.update([as_row(run)])
                if outcome is not None:
                    return outcome
    except TimeoutError:
        pass
    finally:
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
    return None


async def _poll(follow: _Follow, reader: _AttemptReader, not_before: float, deadline: float) -> str | None:
    """Through PostgreSQL (--database-url, or the cluster serves no run history): read again each
    POLL_SECONDS."""
    while time.monotonic() < deadline:
        await follow.check_accepted()
        outcome = follow.update(await reader.attempts(follow.job, follow.request, not_before))
        if outcome is not None:
            return outcome
        await asyncio.sleep(POLL_SECONDS)
    return None


async def _attempts(store: Store, job_id: str, request: str, not_before: float) -> list[Row]:
    """This request's attempt rows, newest attempt first.

    Paged newest first, stopping once rows are older than the request: on a busy job scheduled
    runs after the request fill the first pages.
    """
    found: list[Row] = []
    offset = 0
    while True:
        page = await store.runs(job_id, limit=RUN_PAGE, offset=offset)
        found += [row for row in page if row.get("reason") == request]
        if len(page) < RUN_PAGE or page[-1]["logical_time"].timestamp() < not_before:
            break
        offset += RUN_PAGE
    found.sort(key=lambda row: int(row["attempt"]), reverse=True)
    return found


def progress_lines(attempts: Sequence[Row], job: JobView, seen: set[tuple[int, str]]) -> list[str]:
    """A line per attempt state not printed yet, oldest attempt first."""
    lines = []
    of = f"/{job.max_attempts}" if job.max_attempts else ""
    for row in sorted(attempts, key=lambda r: int(r["attempt"])):
        key = (int(row["attempt"]), str(row["status"]))
        if key in seen:
            continue
        seen.add(key)
        lines.append(_describe_attempt(row, of, job.zone))
    return lines


def _describe_attempt(row: Row, of: str, zone: ZoneInfo) -> str:
    attempt = f"attempt {row['attempt']}{of}"
    status = str(row["status"])
    if status == "running":
        return f"{attempt} running on {row.get('worker') or 'a worker'}"
    took = f" after {duration_ms(row.get('duration_ms'))}" if row.get("duration_ms") is not None else ""
    if status == "success":
        return paint(f"{attempt} succeeded{took}", "green")
    error = error_summary(row.get("error_message"), 200)
    line = f"{attempt} {run_status_to_api(status)}{took}" + (f": {error}" if error else "")
    if row.get("next_retry_at") is not None:
        line += f"; retry at {local_time(row['next_retry_at'], zone)}"
    return paint(line, "yellow" if row.get("next_retry_at") is not None else "red")


def final_outcome(attempts: Sequence[Row]) -> str | None:
    """The run's final status once its newest attempt ended with no retry to come, else None."""
    if not attempts:
        return None
    newest = attempts[0]
    if newest["status"] == "running" or newest.get("next_retry_at") is not None:
        return None
    return str(newest["status"])


# ---- suspend / resume ------------------------------------------------------------------------


@click.command(short_help="Stop scheduling a job (spec.suspend=true).")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=complete_job_names)
@kube_options()
@output_option(*OBJECT_OUTPUTS, default=None)
@click.option("--reason", default=None, help="Why, for people: spec.suspendReason, shown by describe and the page.")
def suspend(names: tuple[str, ...], kube: KubeOptions, output: str | None, reason: str | None) -> None:
    """Stop scheduling new runs of the ScheduledJob(s) NAME (spec.suspend=true)."""
    run_async(_set_suspend(names, kube, True, output, reason))


@click.command(short_help="Schedule a suspended job again (spec.suspend=false).")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=complete_job_names)
@kube_options()
@output_option(*OBJECT_OUTPUTS, default=None)
def resume(names: tuple[str, ...], kube: KubeOptions, output: str | None) -> None:
    """Schedule the ScheduledJob(s) NAME again from the next slot (spec.suspend=false, and
    spec.suspendReason cleared)."""
    run_async(_set_suspend(names, kube, False, output))


async def _set_suspend(names: Sequence[str], options: KubeOptions, suspend: bool, output: str | None,
                       reason: str | None = None) -> None:
    kube = Kube.connect(options)
    word = "suspended" if suspend else "resumed"
    changed: list[Row] = []
    try:
        for name in names:
            obj = await kube.get_job(name, kube.namespace)
            current = obj.get("spec") or {}
            if bool(current.get("suspend")) == suspend and (reason is None or current.get("suspendReason") == reason):
                if output is None:
                    click.echo(f"{_resource(name)} already {word} (no change)")
                changed.append(obj)
                continue
            # Resuming clears the reason (null removes it); suspending sets it when one is given.
            patch: dict[str, Any] = {"suspend": suspend, "suspendReason": reason if suspend else None}
            if suspend and reason is None:
                del patch["suspendReason"]
            changed.append(await kube.merge_patch_job(name, kube.namespace, {"spec": patch}))
            if output is None:
                click.echo(f"{_resource(name)} {word}")
    finally:
        await kube.aclose()
    if output is not None:
        click.echo(object_output(changed, output))
