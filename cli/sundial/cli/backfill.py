"""`sundial backfill`: run the slots of a past window, once each.

Like `sundial run`, it goes through the Kubernetes API: it checks the window against the job's
spec (so a backwards, future or too long window is refused at once, with why), then sets the
`sundial.dev/backfill` annotation; the operator queues the runs (trigger `backfill`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import click

from sundial.cli.completion import complete_job_names
from sundial.cli.jobs import JobView
from sundial.cli.kube import Kube, KubeOptions
from sundial.cli.options import kube_options
from sundial.cli.runner import run_async
from sundial.core.backfill import BackfillError, checked_request, parse_instant
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.crd import BACKFILL_ANNOTATION, GROUP


class _Instant(click.ParamType[datetime]):
    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value), param.name if param and param.name else "time")
        except BackfillError as exc:
            self.fail(str(exc), param, ctx)


@click.command("backfill", short_help="Run the slots of a past window, once each.")
@click.argument("name", shell_complete=complete_job_names)
@click.option("--from", "start", type=_Instant(), required=True,
              help="The window's first instant, RFC 3339 with an offset (2026-03-01T00:00:00Z); inclusive.")
@click.option("--to", "end", type=_Instant(), required=True, help="The window's last instant; inclusive, not future.")
@click.option("--sequential", is_flag=True, help="Run the slots one after another instead of all at once.")
@kube_options()
def backfill(name: str, start: datetime, end: datetime, sequential: bool, kube: KubeOptions) -> None:
    """Run the slots of ScheduledJob NAME between --from and --to (at most 1000 per request).

    The slots are the job's own (every schedule, exclusions, active window). A slot that already
    ran is not run again, so the same backfill twice adds nothing. Follow the runs with
    `sundial runs NAME`.
    """
    run_async(_backfill(name, kube, start, end, sequential))


async def _backfill(name: str, options: KubeOptions, start: datetime, end: datetime, sequential: bool) -> None:
    kube = Kube.connect(options)
    try:
        job = JobView.from_object(await kube.get_job(name, kube.namespace))
        request_id = f"{SYSTEM_CLOCK.now().strftime('%Y-%m-%dT%H:%M:%SZ')}-{secrets.token_hex(3)}"
        try:
            request, slots = checked_request(job.spec, job.job_id, start, end, sequential, request_id,
                                             SYSTEM_CLOCK.now())
        except BackfillError as exc:
            raise click.ClickException(str(exc)) from None
        value = request.to_json()
        await kube.merge_patch_job(name, job.namespace, {"metadata": {"annotations": {BACKFILL_ANNOTATION: value}}})
        how = "one after another" if sequential else "as the overlap policy allows"
        click.echo(f"scheduledjob.{GROUP}/{name} backfill requested: {len(slots)} slots, {how} "
                   f"({BACKFILL_ANNOTATION}={value})")
        click.echo(f"follow it with: sundial runs {name} -n {job.namespace}", err=True)
    finally:
        await kube.aclose()
