"""OpenAPI v2 and v3 of runs.sundial.dev, which the kube-apiserver's aggregator fetches from
`sundial-runs-api` (GET /openapi/v2, /openapi/v3 and /openapi/v3/apis/<group>/<version>) and
serves with its own, so `kubectl explain scheduledjobruns` describes every field.

Each document carries the schemas it refers to (ObjectMeta and ListMeta too, in the subset this
API fills in): a v3 group-version document must stand alone.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any, Final

from sundial.core import runobjects as ro
from sundial.core.runs import API_RUN_STATUSES, API_TRIGGERS

Schema = dict[str, Any]

_PREFIX: Final = "dev.sundial.runs.v1alpha1"
RUN: Final = f"{_PREFIX}.{ro.KIND}"
RUN_LIST: Final = f"{_PREFIX}.{ro.LIST_KIND}"
OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
V3_PATH: Final = f"apis/{ro.GROUP}/{ro.VERSION}"


def _s(kind: str, text: str, **more: Any) -> Schema:
    return {"type": kind, "description": text, **more}


def _time(text: str) -> Schema:
    return _s("string", text, format="date-time")


SPEC: Final[Schema] = _s("object", "What was run: the job, the slot and the attempt.", properties={
    "jobRef": _s("object", "The ScheduledJob this attempt belongs to.", properties={
        "name": _s("string", "Name of the ScheduledJob, in this namespace."),
        "uid": _s("string", "UID of the ScheduledJob (the job id in Sundial's PostgreSQL)."),
    }),
    "runId": _s("string", "The run id: `<job uid>:<slot ms>` for a scheduled run, `<job uid>:manual:<request>` "
                "for a manual one. Retries of a run share it."),
    "trigger": _s("string", "Why it ran: " + ", ".join(API_TRIGGERS) + ".", enum=list(API_TRIGGERS)),
    "scheduledTime": _time("The slot this run was scheduled for; absent for a manual run."),
    "logicalTime": _time("The slot, or for a manual run the time it was requested."),
    "attempt": _s("integer", "The attempt of the run, from 1.", format="int32"),
    "reason": _s("string", "Why it was requested (a manual run's sundial.dev/run-now value) or skipped."),
})

STATUS: Final[Schema] = _s("object", "How the attempt went.", properties={
    "phase": _s("string", "Where the attempt is: " + ", ".join(API_RUN_STATUSES) + ".",
                enum=list(API_RUN_STATUSES)),
    "startTime": _time("When a worker started the attempt."),
    "completionTime": _time("When the attempt ended."),
    "durationMs": _s("integer", "How long the attempt ran, in milliseconds.", format="int64"),
    "worker": _s("string", "The worker that ran the attempt."),
    "error": _s("string", "Why the attempt failed, as the target reported it."),
    "nextRetryTime": _time("When the next attempt is due, while the retry policy allows one."),
    "deliveries": _s("integer", "How many times the queue handed this attempt to a worker.", format="int32"),
})

OBJECT_META_SCHEMA: Final[Schema] = _s("object", "Standard object metadata (the subset this API fills in).",
                                       properties={
    "name": _s("string", "`<job>-<logical time in ms>-<attempt>`."),
    "namespace": _s("string", "The namespace of the ScheduledJob."),
    "creationTimestamp": _time("The run's logical time."),
    "resourceVersion": _s("string", "The PostgreSQL transaction that last wrote the attempt: grows with every "
                          "change; watch from it (docs/architecture.md)."),
    "labels": _s("object", "`sundial.dev/job`: the ScheduledJob's name.",
                 additionalProperties={"type": "string"}),
})

LIST_META_SCHEMA: Final[Schema] = _s("object", "Standard list metadata.", properties={
    "resourceVersion": _s("string", "Every write up to this version is in the list; watch from it."),
    "continue": _s("string", "Token of the next page (limit/continue)."),
})


def _gvk(kind: str) -> list[dict[str, str]]:
    return [{"group": ro.GROUP, "version": ro.VERSION, "kind": kind}]


def _ref(name: str, prefix: str) -> Schema:
    return {"$ref": f"{prefix}{name}"}


def schemas(prefix: str, *, wrap_refs: bool) -> dict[str, Schema]:
    """The definitions, `$ref`s under `prefix`; v3 wraps a described `$ref` in allOf."""
    def meta(name: str, text: str) -> Schema:
        return {"allOf": [_ref(name, prefix)], "description": text} if wrap_refs else {
            **_ref(name, prefix), "description": text}

    common = {
        "apiVersion": _s("string", f"{ro.API_VERSION}"),
        "kind": _s("string", "The kind."),
    }
    return {
        RUN: _s("object", "One attempt of a ScheduledJob's run, read from Sundial's run history (job_runs). "
                "Read-only: get, list and watch.", properties={
                    **common, "metadata": meta(OBJECT_META, "Standard object metadata."),
                    "spec": SPEC, "status": STATUS},
                **{"x-kubernetes-group-version-kind": _gvk(ro.KIND)}),
        RUN_LIST: _s("object", "A page of ScheduledJobRuns, newest slot first.", required=["items"], properties={
            **common, "metadata": meta(LIST_META, "Standard list metadata."),
            "items": _s("array", "The attempts.", items=_ref(RUN, prefix))},
            **{"x-kubernetes-group-version-kind": _gvk(ro.LIST_KIND)}),
        OBJECT_META: OBJECT_META_SCHEMA,
        LIST_META: LIST_META_SCHEMA,
    }


def _operation(verb: str, kind: str, ref: Schema, *, v3: bool) -> Schema:
    ok: Schema = {"description": "OK"}
    if v3:
        ok["content"] = {"application/json": {"schema": ref}}
    else:
        ok["schema"] = ref
    return {"get": {"operationId": f"{verb}RunsSundialDevV1alpha1{kind}", "tags": ["runsSundialDev_v1alpha1"],
                    "responses": {"200": ok},
                    "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": _gvk(ro.KIND)[0]}}


def _paths(prefix: str, *, v3: bool) -> dict[str, Schema]:
    base = f"/apis/{ro.GROUP}/{ro.VERSION}"
    one, many = _ref(RUN, prefix), _ref(RUN_LIST, prefix)
    return {
        f"{base}/{ro.PLURAL}": _operation("list", "ScheduledJobRunForAllNamespaces", many, v3=v3),
        f"{base}/namespaces/{{namespace}}/{ro.PLURAL}": _operation("list", "NamespacedScheduledJobRun", many, v3=v3),
        f"{base}/namespaces/{{namespace}}/{ro.PLURAL}/{{name}}": _operation("get", "NamespacedScheduledJobRun", one,
                                                                          v3=v3),
    }


@cache
def openapi_v2() -> bytes:
    prefix = "#/definitions/"
    return _encode({"swagger": "2.0", "info": {"title": "Sundial run history", "version": ro.VERSION},
                    "paths": _paths(prefix, v3=False), "definitions": schemas(prefix, wrap_refs=False)})


@cache
def openapi_v3_group() -> bytes:
    prefix = "#/components/schemas/"
    return _encode({"openapi": "3.0.0", "info": {"title": "Sundial run history", "version": ro.VERSION},
                    "paths": _paths(prefix, v3=True), "components": {"schemas": schemas(prefix, wrap_refs=True)}})


@cache
def openapi_v3_discovery() -> bytes:
    digest = etag(openapi_v3_group())
    return _encode({"paths": {V3_PATH: {"serverRelativeURL": f"/openapi/v3/{V3_PATH}?hash={digest}"}}})


def etag(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest()[:32].upper()


def _encode(document: Schema) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
