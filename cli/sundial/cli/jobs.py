"""Finding the ScheduledJob a command names: through Kubernetes, else through PostgreSQL.

The job id everywhere is the object's UID, so the cluster is asked first. When no cluster can
be asked, the row the operator keeps in `scheduled_jobs` (namespace, name, spec) stands in, and
the person is told which source answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sundial.cli.kube import Kube, KubeOptions, KubeUnreachable, default_namespace
from sundial.cli.render import dump
from sundial.cli.runner import note
from sundial.core.crd import API_VERSION, GROUP, KIND, SINGULAR
from sundial.core.spec import DEFAULT_TIME_ZONE
from sundial.core.store import Store

Source = Literal["kubernetes", "database"]
# What -o accepts on commands that print ScheduledJobs, as `kubectl get|patch -o` does.
OBJECT_OUTPUTS: Final = ("name", "json", "yaml")


@dataclass(frozen=True)
class JobView:
    job_id: str
    namespace: str
    name: str
    spec: dict[str, Any]
    source: Source
    status: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> JobView:
        meta = obj.get("metadata") or {}
        return cls(
            job_id=str(meta["uid"]), namespace=str(meta["namespace"]), name=str(meta["name"]),
            spec=dict(obj.get("spec") or {}), source="kubernetes", status=dict(obj.get("status") or {}),
            metadata=dict(meta),
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobView:
        return cls(
            job_id=str(row["id"]), namespace=str(row["namespace"]), name=str(row["name"]),
            spec=dict(row.get("spec") or {}), source="database",
        )

    @property
    def time_zone(self) -> str:
        return str(self.spec.get("timeZone") or DEFAULT_TIME_ZONE)

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # A spec the operator refused can still be shown; UTC is an honest fallback.
            return ZoneInfo("UTC")

    @property
    def max_attempts(self) -> int | None:
        retry = self.spec.get("retry")
        attempts = retry.get("attempts") if isinstance(retry, dict) else None
        return int(attempts) if attempts is not None else None


async def resolve_job(name: str, kube_options: KubeOptions, store: Store | None) -> JobView:
    """The job NAME in the chosen namespace; falls back to `store` only when no cluster answers."""
    try:
        kube = Kube.connect(kube_options)
    except KubeUnreachable as exc:
        reason = str(exc)
    else:
        try:
            return JobView.from_object(await kube.get_job(name, kube.namespace))
        except KubeUnreachable as exc:
            reason = str(exc)
        finally:
            await kube.aclose()
    namespace = default_namespace(kube_options)
    if store is None:
        raise click.ClickException(reason)
    row = await store.job_by_name(namespace, name)
    if row is None:
        raise click.ClickException(f"{reason}; the database has no job {name} in namespace {namespace} either")
    note(f"{reason}; resolved {namespace}/{name} from the database instead")
    return JobView.from_row(row)


def object_output(objects: list[dict[str, Any]], fmt: str) -> str:
    """ScheduledJobs as kubectl prints them: `-o name` one `scheduledjob.sundial.dev/NAME` a line,
    `-o json|yaml` the object, or a `List` of them when there are several."""
    if fmt == "name":
        return "\n".join(f"{SINGULAR}.{GROUP}/{obj['metadata']['name']}" for obj in objects)
    if len(objects) == 1:
        return dump(objects[0], fmt)
    return dump({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects}, fmt)


def database_object(job: JobView) -> dict[str, Any]:
    """The stand-in object of a job known only from its row, for -o json|yaml|name."""
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": job.name, "namespace": job.namespace, "uid": job.job_id}, "spec": job.spec}
