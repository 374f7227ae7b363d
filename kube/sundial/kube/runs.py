"""Run history through the aggregated API `runs.sundial.dev` (served by `sundial-runs-api`).

Whatever credential the kubeconfig holds (token, exec plugin, client certificate), the
kube-apiserver authenticates it and RBAC on `scheduledjobruns` decides; PostgreSQL is never
reached from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, NotReadyError
from lightkube.generic_resource import create_namespaced_resource

from sundial.core.runobjects import GROUP, JOB_LABEL, KIND, PLURAL, RESOURCE, VERSION, row_from_object
from sundial.core.store import RunRow
from sundial.kube.errors import KubeError, KubeUnreachable

ScheduledJobRun = create_namespaced_resource(
    GROUP, VERSION, KIND, PLURAL, verbs=["get", "list", "global_list", "watch", "global_watch"])
PAGE: Final = 100


class RunsApiUnavailable(KubeUnreachable):
    """The cluster does not serve run history (no APIService, or its server is down)."""


async def list_run_rows(
    client: AsyncClient, namespace: str | None, *, job: str | None = None, phase: str | None = None,
    page: int = PAGE,
) -> AsyncIterator[RunRow]:
    """Attempts newest first, page by page (`limit`/`continue`), in `namespace` or all when None."""
    labels: dict[str, Any] | None = {JOB_LABEL: job} if job else None
    fields: dict[str, Any] | None = {"status.phase": phase} if phase else None
    try:
        async for obj in client.list(ScheduledJobRun, namespace=namespace or ALL_NS, labels=labels, fields=fields,
                                     chunk_size=page):
            yield row_from_object(_plain(obj))
    except ApiError as exc:
        raise runs_api_error(exc) from exc
    except (httpx2.TransportError, OSError) as exc:
        raise unreachable(exc) from exc


async def run_history_version(client: AsyncClient, namespace: str, job: str) -> str:
    """The resourceVersion a list of `job`'s runs answers now: a watch from it misses no write."""
    try:
        listing = client.list(ScheduledJobRun, namespace=namespace, labels={JOB_LABEL: job}, chunk_size=1)
        async for _ in listing:
            break
        return listing.resourceVersion
    except NotReadyError:
        return ""  # no runs yet; the server then answers from its current version
    except ApiError as exc:
        raise runs_api_error(exc) from exc
    except (httpx2.TransportError, OSError) as exc:
        raise unreachable(exc) from exc


async def watch_run_rows(client: AsyncClient, namespace: str, *, job: str, since: str
                         ) -> AsyncIterator[RunRow]:
    """Each attempt of `job` as it is written after `since` (ADDED and MODIFIED alike); the
    watch is renewed from the last version seen whenever the server ends it."""
    try:
        async for kind, obj in client.watch(ScheduledJobRun, namespace=namespace, labels={JOB_LABEL: job},
                                            resource_version=since or None):
            if kind in ("ADDED", "MODIFIED"):
                yield row_from_object(_plain(obj))
    except ApiError as exc:
        raise runs_api_error(exc) from exc
    except (httpx2.TransportError, OSError) as exc:
        raise unreachable(exc) from exc


def unreachable(exc: Exception) -> KubeUnreachable:
    return KubeUnreachable(f"Kubernetes API is unreachable: {str(exc).strip() or type(exc).__name__}")


def runs_api_error(exc: ApiError) -> KubeError | KubeUnreachable:
    """Forbidden and bad requests are answers; a group the cluster does not serve is not."""
    code = exc.status.code or 0
    if code in (404, 503):
        return RunsApiUnavailable(
            f"the cluster does not serve {RESOURCE} ({exc.status.message or code}): install the runs API "
            "(the chart's runsApi.enabled) or read PostgreSQL with --database-url"
        )
    return KubeError(f"Kubernetes API: {exc.status.message or exc}", code)


def _plain(obj: Any) -> dict[str, Any]:
    plain = obj.to_dict()
    if not isinstance(plain, dict):
        raise KubeError(f"unexpected {RESOURCE} answer: {type(plain).__name__}")
    return plain
