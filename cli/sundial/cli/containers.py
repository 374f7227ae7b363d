"""`sundial logs` and `sundial import cronjob`: the commands of jobs that run containers.

Both act as the caller, through the Kubernetes API (sundial.kube): `logs` reads the pods of a
run's Jobs, `import cronjob` creates ScheduledJobs from CronJobs and, if asked, suspends them.
"""

from __future__ import annotations

import click

from sundial.cli.completion import complete_job_names
from sundial.cli.jobs import object_output
from sundial.cli.kube import Kube, KubeError, KubeOptions
from sundial.cli.options import kube_options, output_option
from sundial.cli.runner import note, run_async
from sundial.core.cronjob import scheduled_job_from_cronjob
from sundial.core.spec import SpecError, parse_spec
from sundial.kube.joblogs import run_pod_logs

# ---- logs ----------------------------------------------------------------------------------


@click.command("logs", short_help="Pod logs of a jobTemplate job's run.")
@click.argument("name", shell_complete=complete_job_names)
@kube_options()
@click.option("--run", "run_id", default=None, help="The run (as `sundial runs` shows it); default: the newest.")
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines of each container.")
def logs(name: str, kube: KubeOptions, run_id: str | None, tail: int | None) -> None:
    """Print the logs of every pod of the ScheduledJob NAME's run: each attempt's Job, each
    pod, each container, headed by `==> job/pod/container (phase) <==`."""
    if not run_async(_logs(name, kube, run_id, tail)):
        raise SystemExit(1)


async def _logs(name: str, options: KubeOptions, run_id: str | None, tail: int | None) -> bool:
    kube = Kube.connect(options)
    try:
        job = await kube.get_job(name, kube.namespace)
        if not (job.get("spec") or {}).get("jobTemplate"):
            raise click.ClickException(f"{name} runs target {job['spec'].get('target')!r}, not a jobTemplate: "
                                       "its output is in `sundial runs`")
        found = await run_pod_logs(kube.client, kube.namespace, str(job["metadata"]["uid"]), run_id, tail_lines=tail)
    finally:
        await kube.aclose()
    if not found:
        note(f"no Job of {name}" + (f" for run {run_id}" if run_id else "") + " (history limits delete old ones)")
        return False
    for log in found:
        click.echo(f"==> {log.job}/{log.pod}/{log.container} ({log.phase}) <==")
        click.echo(log.text.rstrip("\n") if log.available else f"(no log: {log.text})")
    return True


# ---- import cronjob ------------------------------------------------------------------------


@click.group("import", short_help="Create ScheduledJobs from other schedulers' objects.")
def import_() -> None:
    """Create ScheduledJobs from other schedulers' objects (docs/migrating-from-cronjob.md)."""


@import_.command("cronjob", short_help="ScheduledJobs from batch/v1 CronJobs.")
@click.argument("name", required=False)
@kube_options(all_namespaces=True)
@click.option("--suspend-originals", is_flag=True, help="Suspend each CronJob once its ScheduledJob exists.")
@click.option("--dry-run", is_flag=True, help="Print what would be created; change nothing.")
@output_option("json", "yaml", "name", default=None)
def import_cronjob(name: str | None, kube: KubeOptions, suspend_originals: bool, dry_run: bool,
                   output: str | None) -> None:
    """Create a ScheduledJob from the CronJob NAME (or, with -A, from every CronJob), with the
    same name, namespace, schedule, timeZone, concurrencyPolicy, startingDeadlineSeconds,
    suspend, history limits and jobTemplate. Existing ScheduledJobs are left alone."""
    if (name is None) == (not kube.all_namespaces):
        raise click.UsageError("give a CronJob NAME or -A (--all-namespaces), not both")
    if dry_run and suspend_originals:
        raise click.UsageError("--dry-run changes nothing, --suspend-originals would")
    if not run_async(_import(name, kube, suspend_originals, dry_run, output)):
        raise SystemExit(1)


async def _import(name: str | None, options: KubeOptions, suspend: bool, dry_run: bool, output: str | None) -> bool:
    kube = Kube.connect(options)
    ok = True
    converted = []
    try:
        cronjobs = [await kube.get_cronjob(name, kube.namespace)] if name else await kube.list_cronjobs(None)
        for cronjob in cronjobs:
            where = f"{cronjob['metadata'].get('namespace')}/{cronjob['metadata']['name']}"
            body = scheduled_job_from_cronjob(cronjob)
            try:
                parse_spec(body["spec"])
            except SpecError as exc:
                click.echo(f"cronjob {where}: cannot import: {exc}", err=True)
                ok = False
                continue
            converted.append(body)
            if dry_run:
                continue
            ok = await _create(kube, body, where, suspend) and ok
    finally:
        await kube.aclose()
    if output is not None:
        text = object_output(converted, output)
        click.echo(text, nl=not text.endswith("\n"))
    return ok


async def _create(kube: Kube, body: dict[str, object], where: str, suspend: bool) -> bool:
    try:
        await kube.create_job(body)
    except KubeError as exc:
        if exc.code != 409:
            click.echo(f"cronjob {where}: {exc}", err=True)
            return False
        note(f"scheduledjob {where} exists already: left as it is")
    else:
        click.echo(f"scheduledjob.sundial.dev/{where.split('/', 1)[1]} created from cronjob {where}", err=True)
    if suspend:
        namespace, name = where.split("/", 1)
        await kube.suspend_cronjob(name, namespace)
        click.echo(f"cronjob.batch/{name} suspended in {namespace}", err=True)
    return True
