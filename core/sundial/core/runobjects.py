"""ScheduledJobRun: one attempt of a run as the Kubernetes API serves it (`runs.sundial.dev`).

Pure shapes, no I/O: the run history API server builds its answers here, and the CLI reads
them back into the row it prints. The one mapping of run states and triggers between the
seed's words and the API's CamelCase stays in sundial.core.runs.

An object's name is `<job>-<logical ms>-<attempt>`: a run id (`<uid>:<slot ms>`, or
`<uid>:manual:<request text>`) may hold spaces and slashes, which a URL path and kubectl's
arguments do not take, while the job's name, the logical time (the slot of a scheduled run)
and the attempt find the row through the `(job_id, logical_time)` index. The run id itself
is `spec.runId`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sundial.core.runs import run_status_from_api, run_status_to_api, trigger_from_api, trigger_to_api
from sundial.core.store import RunQuery, RunRow

GROUP: Final = "runs.sundial.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ScheduledJobRun"
LIST_KIND: Final = "ScheduledJobRunList"
PLURAL: Final = "scheduledjobruns"
SINGULAR: Final = "scheduledjobrun"
SHORT_NAMES: Final = ("sdjr",)
RESOURCE: Final = f"{PLURAL}.{GROUP}"
JOB_LABEL: Final = "sundial.dev/job"
VERBS: Final = ("get", "list", "watch")
# kubectl asks for `limit=500` pages; more than this in one answer is refused to a bounded page.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 500

_NAME = re.compile(r"^(?P<job>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)-(?P<ms>\d{1,16})-(?P<attempt>\d{1,6})$")

Obj = dict[str, Any]


class BadRequest(ValueError):
    """A request the API answers 400 (an unsupported selector, a broken continue token)."""


class NotFound(LookupError):
    """A name that cannot name any run; answered 404 like a missing one."""


# ---- names ---------------------------------------------------------------------------------


def run_name(row: RunRow) -> str:
    return object_name(row.job_name, row.logical_time, row.attempt)


def object_name(job_name: str, logical_time: datetime, attempt: int) -> str:
    return f"{job_name}-{_ms(logical_time)}-{attempt}"


@dataclass(frozen=True)
class RunName:
    job_name: str
    logical_time: datetime
    attempt: int


def parse_run_name(name: str) -> RunName:
    match = _NAME.match(name)
    if match is None:
        raise NotFound(f'{RESOURCE} "{name}" not found')
    moment = datetime.fromtimestamp(int(match["ms"]) / 1000, UTC)
    return RunName(match["job"], moment, int(match["attempt"]))


def _ms(moment: datetime) -> int:
    # Integer arithmetic on the timedelta: a float timestamp could round a millisecond up.
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---- objects -------------------------------------------------------------------------------


def run_object(row: RunRow) -> Obj:
    """The attempt as a ScheduledJobRun; fields without a value are left out, as the API does."""
    spec = {
        "jobRef": {"name": row.job_name, "uid": row.job_id},
        "runId": row.run_id,
        "trigger": trigger_to_api(row.trigger_type),
        "scheduledTime": rfc3339(row.scheduled_for),
        "logicalTime": rfc3339(row.logical_time),
        "attempt": row.attempt,
        "reason": row.reason,
    }
    status = {
        "phase": run_status_to_api(row.status),
        "startTime": rfc3339(row.started_at),
        "completionTime": rfc3339(row.completed_at),
        "durationMs": row.duration_ms,
        "worker": row.worker,
        "error": row.error_message,
        "nextRetryTime": rfc3339(row.next_retry_at),
        "deliveries": row.deliveries,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": run_name(row),
            "namespace": row.namespace,
            "creationTimestamp": rfc3339(row.logical_time),
            "resourceVersion": str(row.resource_version),
            "labels": {JOB_LABEL: row.job_name},
        },
        "spec": _present(spec),
        "status": _present(status),
    }


def list_object(items: list[Obj], continue_token: str | None, resource_version: str = "") -> Obj:
    metadata: Obj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"apiVersion": API_VERSION, "kind": LIST_KIND, "metadata": metadata, "items": items}


def _present(fields: Obj) -> Obj:
    return {key: value for key, value in fields.items() if value is not None}


def row_from_object(obj: Obj) -> RunRow:
    """A ScheduledJobRun back into the row it was served from (the CLI prints rows)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    job = spec.get("jobRef") or {}
    logical = _parse_time(spec.get("logicalTime"))
    if logical is None:
        raise ValueError(f"{KIND} {meta.get('name')} has no spec.logicalTime")
    return RunRow(
        run_id=str(spec.get("runId", "")), job_id=str(job.get("uid", "")), namespace=str(meta.get("namespace", "")),
        job_name=str(job.get("name", "")), logical_time=logical, scheduled_for=_parse_time(spec.get("scheduledTime")),
        trigger_type=trigger_from_api(str(spec.get("trigger", "Scheduled"))).value,
        status=run_status_from_api(str(status.get("phase", "Running"))).value, attempt=int(spec.get("attempt", 1)),
        started_at=_parse_time(status.get("startTime")), completed_at=_parse_time(status.get("completionTime")),
        duration_ms=status.get("durationMs"), error_message=status.get("error"), worker=status.get("worker"),
        reason=spec.get("reason"), deliveries=int(status.get("deliveries", 1)),
        next_retry_at=_parse_time(status.get("nextRetryTime")), resource_version=_version(meta),
    )


def _version(meta: Obj) -> int:
    value = str(meta.get("resourceVersion") or "0")
    return int(value) if value.isdigit() else 0


# ---- selectors and paging ------------------------------------------------------------------


def run_query(namespace: str | None, label_selector: str, field_selector: str, continue_token: str) -> RunQuery:
    """A list request's `labelSelector`, `fieldSelector` and `continue` as a store query.

    Labels: `sundial.dev/job=NAME` (or `in (a,b)`). Fields: `status.phase`, `spec.trigger`,
    `metadata.namespace` (`=`, `==`); anything else is a BadRequest that names what works.
    """
    job_names = _label_job_names(label_selector)
    fields = _field_equalities(field_selector)
    field_namespace = fields.pop("metadata.namespace", None)
    if field_namespace is not None and namespace is not None and field_namespace != namespace:
        job_names = []  # two namespaces at once: nothing matches
    phase, trigger = fields.pop("status.phase", None), fields.pop("spec.trigger", None)
    if fields:
        raise BadRequest(f"unsupported field selector {', '.join(fields)}: use status.phase, spec.trigger "
                         "or metadata.namespace")
    return RunQuery(
        namespace=namespace if namespace is not None else field_namespace,
        job_names=job_names,
        statuses=None if phase is None else [_api_value(run_status_from_api, phase, "status.phase")],
        triggers=None if trigger is None else [_api_value(trigger_from_api, trigger, "spec.trigger")],
        before=decode_continue(continue_token) if continue_token else None,
    )


def _api_value(parse: Any, value: str, field: str) -> str:
    try:
        return str(parse(value).value)
    except ValueError as exc:
        raise BadRequest(f"{field}: {exc}") from None


def _label_job_names(selector: str) -> list[str] | None:
    text = selector.strip()
    if not text:
        return None
    listed = re.fullmatch(rf"{re.escape(JOB_LABEL)}\s+in\s+\(([^)]*)\)", text)
    if listed:
        return [name.strip() for name in listed[1].split(",") if name.strip()]
    equal = re.fullmatch(rf"{re.escape(JOB_LABEL)}\s*==?\s*([a-z0-9][-a-z0-9.]*)", text)
    if equal:
        return [equal[1]]
    raise BadRequest(f"unsupported label selector {selector!r}: use {JOB_LABEL}=NAME or {JOB_LABEL} in (A,B)")


def _field_equalities(selector: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        match = re.fullmatch(r"([a-zA-Z.]+)\s*==?\s*(\S*)", term)
        if match is None:
            raise BadRequest(f"unsupported field selector term {term!r}: only FIELD=VALUE is served")
        found[match[1]] = match[2]
    return found


def encode_continue(row: RunRow) -> str:
    """The token of the page after `row`: its primary key, opaque to clients."""
    key = [rfc3339_micro(row.logical_time), row.run_id, row.attempt]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def rfc3339_micro(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def decode_continue(token: str) -> tuple[datetime, str, int]:
    try:
        moment, run_id, attempt = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(moment), str(run_id), int(attempt)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("invalid continue token: start the list again without it") from None


def page_limit(value: str) -> int:
    """`limit`: absent or 0 means a default page (this API never answers unbounded lists)."""
    if not value:
        return DEFAULT_PAGE
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit must be a number, not {value!r}") from None
    if limit < 0:
        raise BadRequest("limit must not be negative")
    return min(limit or DEFAULT_PAGE, MAX_PAGE)


# ---- the Table kubectl prints --------------------------------------------------------------

COLUMNS: Final = (
    ("Name", "string", "name", "The run's name: job, logical time in ms, attempt.", 0),
    ("Job", "string", "", "The ScheduledJob.", 0),
    ("Phase", "string", "", "Running, Succeeded, Failed, TimedOut, Cancelled or Skipped.", 0),
    ("Trigger", "string", "", "Scheduled, Manual, Retry or CatchUp.", 0),
    ("Attempt", "integer", "", "The attempt of the run, from 1.", 0),
    ("Duration", "string", "", "How long the attempt ran.", 0),
    ("Age", "string", "", "Time since the run's slot (or request).", 0),
    ("Worker", "string", "", "The worker that ran the attempt.", 1),
    ("Error", "string", "", "Why the attempt failed, first line.", 1),
)


def table(objects: list[Obj], now: datetime, continue_token: str | None, include_object: str,
          resource_version: str = "") -> Obj:
    """A meta.k8s.io/v1 Table of ScheduledJobRuns: what `kubectl get` prints."""
    rows = [{"cells": _cells(obj, now), **_row_object(obj, include_object)} for obj in objects]
    metadata: Obj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": metadata,
        "columnDefinitions": [
            {"name": name, "type": kind, "format": fmt, "description": text, "priority": priority}
            for name, kind, fmt, text, priority in COLUMNS
        ],
        "rows": rows,
    }


def _row_object(obj: Obj, include_object: str) -> Obj:
    if include_object == "None":
        return {}
    if include_object == "Object":
        return {"object": obj}
    meta = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]}
    return {"object": meta}


def _cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj["spec"], obj["status"]
    duration = status.get("durationMs")
    error = str(status.get("error") or "").strip().splitlines()
    created = _parse_time(obj["metadata"]["creationTimestamp"]) or now
    return [
        obj["metadata"]["name"], spec["jobRef"]["name"], status["phase"], spec["trigger"], spec["attempt"],
        "<none>" if duration is None else human_duration(timedelta(milliseconds=duration)),
        human_duration(now - created), status.get("worker") or "<none>", (error[0][:80] if error else "<none>"),
    ]


def human_duration(span: timedelta) -> str:
    """kubectl's short form: 850ms, 42s, 5m3s, 3h12m, 4d2h (negative spans read as 0s)."""
    seconds = span.total_seconds()
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s" if whole % 60 else f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60}m" if whole % 3600 // 60 else f"{whole // 3600}h"
    return f"{whole // 86400}d{whole % 86400 // 3600}h" if whole % 86400 // 3600 else f"{whole // 86400}d"
