"""`sundial`: the command line for people and scripts."""

from __future__ import annotations

import functools
import os
import re
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from sundial.cli.actions import resume, run_now, suspend
from sundial.cli.backfill import backfill
from sundial.cli.completion import SHELLS, complete_job_names, completion_script
from sundial.cli.containers import import_, logs
from sundial.cli.deadletters import deadletters
from sundial.cli.describe import describe, job_schedule
from sundial.cli.doctor import doctor
from sundial.cli.jobs import resolve_job
from sundial.cli.kube import KubeOptions
from sundial.cli.options import kube_options
from sundial.cli.render import fire_line
from sundial.cli.runner import run_async
from sundial.cli.runs import runs
from sundial.core.build import sundial_version
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.migrate import migrate as apply_migrations
from sundial.core.policies import JitteredSchedule, upcoming_fires, with_jitter
from sundial.core.schedule import ScheduleError, parse_schedule
from sundial.core.spec import DEFAULT_TIME_ZONE
from sundial.core.store import BackendUnavailable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sundial_version(), "--version", message="%(prog)s %(version)s")
def cli() -> None:
    """Sundial: recurring jobs declared as Kubernetes ScheduledJob resources."""


# A Kubernetes object name never has a space or an @; a cron expression or macro always does.
_JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


@cli.command(short_help="Next fire times of a job or of a cron expression.")
@click.argument("target", metavar="NAME|EXPRESSION", shell_complete=complete_job_names)
@kube_options()
@click.option("--tz", "time_zone", default=None,
              help=f"IANA time zone (default: the job's, or {DEFAULT_TIME_ZONE} for an expression).")
@click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many.")
@click.option("--after", default=None, help="ISO 8601 start; a time without offset is read in the time zone.")
def next(target: str, kube: KubeOptions, time_zone: str | None, count: int, after: str | None) -> None:
    """Print the next fire times of the ScheduledJob NAME (in -n's namespace) or of a cron
    EXPRESSION, one per line, with their UTC offset."""
    if _JOB_NAME.fullmatch(target):
        job = run_async(resolve_job(target, kube, None))
        time_zone = time_zone or job.time_zone
        make_schedule = functools.partial(job_schedule, job, time_zone)
    else:
        if kube.namespace or kube.context or kube.kubeconfig:
            raise click.UsageError("-n/--namespace, --context and --kubeconfig apply to a job NAME, not an expression")
        time_zone = time_zone or DEFAULT_TIME_ZONE
        make_schedule = functools.partial(_expression_schedule, target, time_zone)
    try:
        schedule = make_schedule()
    except (ScheduleError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    zone = ZoneInfo(time_zone)
    start = _parse_after(after, zone) if after else SYSTEM_CLOCK.now()
    fires = upcoming_fires(schedule, start, count)
    for fire in fires:
        click.echo(fire_line(fire, zone))
    if len(fires) < count:
        click.echo("note: no more runs: the job's active window (endTime) closes first", err=True)


def _expression_schedule(expression: str, time_zone: str) -> JitteredSchedule:
    return with_jitter(parse_schedule(expression, time_zone), "", 0)


def _parse_after(value: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint="--after") from exc
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


@cli.command(short_help="Apply pending database migrations.")
@click.option("--database-url", envvar="DATABASE_URL", required=True, help="PostgreSQL URL [env DATABASE_URL].")
def migrate(database_url: str) -> None:
    """Apply pending database migrations (idempotent; safe to run concurrently)."""
    try:
        applied = apply_migrations(database_url)
    except BackendUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database schema is up to date")


@cli.command(short_help="Shell completion script (bash, zsh or fish).")
@click.argument("shell", type=click.Choice(SHELLS))
@click.option("--prog-name", default="sundial", show_default=True,
              help="The command to complete: sundial, or kubectl-sundial.")
def completion(shell: str, prog_name: str) -> None:
    """Print the completion script for SHELL, e.g. `source <(sundial completion bash)`.

    `kubectl sundial <TAB>` completes through kubectl itself (1.26 and later), which runs the
    `kubectl_complete-sundial` command installed beside this one.
    """
    click.echo(completion_script(cli, shell, prog_name))


for command in (runs, describe, run_now, backfill, suspend, resume, doctor, deadletters, logs, import_):
    cli.add_command(command)


def main() -> None:
    # kubectl runs plugins as `kubectl-sundial`; both names behave the same.
    prog = os.path.basename(sys.argv[0]) or "sundial"
    cli(prog_name=prog)
