"""`sundial deadletters`: queue messages no worker could run, with why, newest first.

A message lands there when it cannot be read (a foreign writer, a truncated field) or when it
was delivered 5 times and never finished (it kills or wedges every worker that takes it). It
never runs again by itself: read the reason, fix the cause, and trigger the job by hand if the
run still matters. Read-only: nothing here deletes or replays a dead letter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import click

from sundial.cli.backends import open_broker
from sundial.cli.options import BackendOptions, backend_options, output_option
from sundial.cli.render import dump, echo_lines, error_summary, human_age, table
from sundial.cli.runner import run_async
from sundial.core.broker import DeadLetter
from sundial.core.clock import SYSTEM_CLOCK, from_ms

HEADERS: Final = ("AGE", "JOB", "RUN", "REASON", "MESSAGE")
EXCERPT_CHARS: Final = 200
TABLE_EXCERPT_CHARS: Final = 60


@click.command(short_help="Queue messages no worker could run (dead letters), with why.")
@backend_options()
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="At most this many.")
@output_option("table", "json", "yaml")
def deadletters(backends: BackendOptions, limit: int, output: str) -> None:
    """List the dead letters of the deployment's Redis (every shard), newest first: when each
    died, the job and run it names when it can still be read, why, and the start of the raw
    message."""
    redis_url = backends.require_redis()
    letters, total = run_async(_read(redis_url, backends.redis_prefix, limit))
    now = SYSTEM_CLOCK.now()
    if output in ("json", "yaml"):
        click.echo(dump({"total": total, "items": [document(letter, now) for letter in letters]}, output))
        return
    if not letters:
        click.echo("No dead letters.", err=True)
        return
    echo_lines(table(HEADERS, [_cells(letter, now) for letter in letters]))
    if total > len(letters):
        click.echo(f"{total - len(letters)} older dead letters not shown (--limit).", err=True)


async def _read(redis_url: str, prefix: str, limit: int) -> tuple[list[DeadLetter], int]:
    broker = open_broker(redis_url, prefix)
    try:
        return await broker.all_dead_letters(limit)
    except Exception as exc:
        raise click.ClickException(f"cannot read the dead letters from Redis: {exc}") from exc
    finally:
        await broker.close()


def _job_name(letter: DeadLetter) -> str:
    job = letter.job
    return f"{job.namespace}/{job.name}" if job else "-"


def _cells(letter: DeadLetter, now: datetime) -> list[str]:
    run = letter.run_id or "-"
    job = letter.job
    if job is not None:
        run = run.removeprefix(f"{job.job_id}:")  # every run id starts with its job's UID
    return [human_age(now - from_ms(letter.died_ms)), _job_name(letter), run, error_summary(letter.reason),
            letter.excerpt(TABLE_EXCERPT_CHARS)]


def document(letter: DeadLetter, now: datetime) -> dict[str, Any]:
    """One dead letter as -o json/yaml shows it."""
    job = letter.job
    died = from_ms(letter.died_ms)
    return {
        "shard": letter.shard,
        "id": letter.dead_id,
        "diedAt": died,
        "ageSeconds": round((now - died).total_seconds(), 1),
        "reason": letter.reason,
        "messageId": letter.message_id,
        "runId": letter.run_id,
        "namespace": job.namespace if job else None,
        "job": job.name if job else None,
        "jobId": job.job_id if job else None,
        "excerpt": letter.excerpt(EXCERPT_CHARS),
    }
