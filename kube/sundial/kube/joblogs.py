"""The pod logs of a jobTemplate job's runs, read as the caller (the CLI's `logs`, the page).

Jobs carry `sundial.dev/job-uid` and `sundial.dev/run-id` labels (sundial.core.kubejobs); the Job
controller labels their pods with the Job's name. No run asked for: the newest Job's run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from sundial.core.kubejobs import JOB_UID_LABEL, POD_JOB_NAME_LABEL, RUN_ID_LABEL, label_value
from sundial.kube.errors import KubeError

MAX_LOG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PodLog:
    job: str
    pod: str
    container: str
    phase: str
    text: str
    available: bool  # False: the API server had no log to give (the pod never started, ...)


async def run_pod_logs(
    client: AsyncClient, namespace: str, job_uid: str, run_id: str | None = None, *, tail_lines: int | None = None,
) -> list[PodLog]:
    """Every container log of every pod of the run's Jobs (one Job per attempt), oldest first."""
    try:
        jobs = await _run_jobs(client, namespace, job_uid, run_id)
        logs: list[PodLog] = []
        for job in jobs:
            name = str(job["metadata"]["name"])
            pods = [pod.to_dict() async for pod in client.list(Pod, namespace=namespace,
                                                               labels={POD_JOB_NAME_LABEL: name})]
            for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
                logs += [await _container_log(client, namespace, name, pod, container["name"], tail_lines)
                         for container in pod["spec"]["containers"]]
        return logs
    except ApiError as exc:
        raise KubeError(f"Kubernetes API: {exc.status.message or exc}", exc.status.code) from exc


async def _run_jobs(client: AsyncClient, namespace: str, job_uid: str, run_id: str | None) -> list[dict[str, Any]]:
    labels: dict[str, Any] = {JOB_UID_LABEL: job_uid}
    if run_id is not None:
        labels[RUN_ID_LABEL] = label_value(run_id)
    jobs = [job.to_dict() async for job in client.list(Job, namespace=namespace, labels=labels)]
    jobs.sort(key=lambda j: (str(j["metadata"].get("creationTimestamp") or ""), str(j["metadata"]["name"])))
    if run_id is None and jobs:
        newest_run = jobs[-1]["metadata"]["labels"].get(RUN_ID_LABEL)
        jobs = [job for job in jobs if job["metadata"]["labels"].get(RUN_ID_LABEL) == newest_run]
    return jobs


async def _container_log(
    client: AsyncClient, namespace: str, job: str, pod: dict[str, Any], container: str, tail_lines: int | None,
) -> PodLog:
    name = str(pod["metadata"]["name"])
    phase = str((pod.get("status") or {}).get("phase") or "Unknown")
    if not (pod.get("spec") or {}).get("nodeName"):
        # The API server answers an empty 200 for a pod no kubelet has: say why there is nothing.
        return PodLog(job, name, container, phase, "the pod is not scheduled to a node: no log yet", False)
    try:
        lines: list[str] = []
        size = 0
        async for line in client.log(name, namespace=namespace, container=container, tail_lines=tail_lines):
            lines.append(line)
            size += len(line)
            if size > MAX_LOG_BYTES:
                lines.append("... (cut at 1 MiB: use kubectl logs for the rest)\n")
                break
        return PodLog(job, name, container, phase, "".join(lines), True)
    except ApiError as exc:
        if exc.status.code in (400, 404):  # not started, no node, or already gone
            return PodLog(job, name, container, phase, str(exc.status.message or ""), False)
        raise
