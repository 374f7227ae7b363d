"""`sundial`: the command line for people and scripts."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from sundial.cli.actions import resume, run_now, suspend
from sundial.cli.describe import describe
from sundial.cli.doctor import doctor
from sundial.cli.runs import runs
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.migrate import migrate as apply_migrations
from sundial.core.schedule import ScheduleError, fire_times, parse_schedule
from sundial.core.spec import DEFAULT_TIME_ZONE
from sundial.core.store import BackendUnavailable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Sundial: recurring jobs declared as Kubernetes ScheduledJob resources."""


@cli.command(short_help="Next fire times of a cron expression.")
@click.argument("expression")
@click.option("--tz", "time_zone", default=DEFAULT_TIME_ZONE, show_default=True, help="IANA time zone.")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many.")
@click.option("--after", default=None, help="ISO 8601 start; a time without offset is read in --tz.")
def next(expression: str, time_zone: str, count: int, after: str | None) -> None:
    """Print the next fire times of EXPRESSION, one per line, with their UTC offset."""
    try:
        schedule = parse_schedule(expression, time_zone)
    except ScheduleError as exc:
        raise click.UsageError(str(exc)) from exc
    zone = ZoneInfo(time_zone)
    start = _parse_after(after, zone) if after else SYSTEM_CLOCK.now()
    for moment in fire_times(schedule, start, count):
        click.echo(moment.astimezone(zone).isoformat())


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


for command in (runs, describe, run_now, suspend, resume, doctor):
    cli.add_command(command)


def main() -> None:
    # kubectl runs plugins as `kubectl-sundial`; both names behave the same.
    prog = os.path.basename(sys.argv[0]) or "sundial"
    cli(prog_name=prog)
