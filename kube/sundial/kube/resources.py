"""Where ScheduledJobs live in the Kubernetes API."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from sundial.core.crd import GROUP, KIND, PLURAL, VERSION

ScheduledJob = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


def scheduled_jobs_path(namespace: str | None) -> str:
    """The collection's URL path, in `namespace` or across all namespaces when None."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{scope}/{PLURAL}"
