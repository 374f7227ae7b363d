"""Jobs from a ScheduledJob's `jobTemplate`: names, manifests and verdicts, all pure.

The launcher (sundial.worker.launcher) does the API calls; everything it decides is here, so
the rules are tested without a cluster:

- One Job per run attempt, named from the job and the slot as the CronJob controller names
  its Jobs (`<name>-<scheduled time in unix minutes>`), so two launchers racing on the same
  run create it once (the second gets AlreadyExists and tracks the first's Job).
- A retry is a new Job (`...-r<attempt>`), and the template's `backoffLimit` defaults to 0:
  Sundial's retry policy (attempts, exponential backoff, one `job_runs` row per attempt) is the
  one in charge, and a failed attempt's Job and pods stay inspectable beside the next one's.
  A template that sets `backoffLimit` gets pod retries inside each attempt on top.
- `timeoutSeconds` becomes `activeDeadlineSeconds` (the Job controller kills the pods), and
  the launcher deletes the Job when the run's timeout stops it.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

from sundial.core.crd import GROUP, KIND, VERSION
from sundial.core.keys import slot_of_run_id

JOB_LABEL: Final = "sundial.dev/job"
JOB_UID_LABEL: Final = "sundial.dev/job-uid"
RUN_ID_LABEL: Final = "sundial.dev/run-id"
ATTEMPT_LABEL: Final = "sundial.dev/attempt"
RUN_ID_ANNOTATION: Final = "sundial.dev/run-id"
# The Job controller labels a Job's pods with it (Kubernetes >= 1.27).
POD_JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
MAX_NAME: Final = 63  # the Job's name becomes a label value on its pods
_HASH_LEN: Final = 8

Obj = dict[str, Any]


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def label_value(text: str) -> str:
    """`text` as a label value: allowed characters only, at most 63, a stable hash if cut."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", ".", text).strip("-_.")
    if len(cleaned) <= MAX_NAME:
        return cleaned
    return f"{cleaned[: MAX_NAME - _HASH_LEN - 1].rstrip('-_.')}-{_hash(text)}"


def job_name(scheduled_job: str, run_id: str, attempt: int) -> str:
    """The Job for one attempt of one run: `<name>-<unix minutes>` as the CronJob controller
    names them (seconds when the slot is not on a minute), `<name>-m<hash>` for a manual run,
    `-r<attempt>` for a retry; cut with a stable hash of the whole when over 63 characters."""
    slot_ms = slot_of_run_id(run_id)
    if slot_ms is None:
        suffix = f"m{_hash(run_id)}"
    elif slot_ms % 60_000 == 0:
        suffix = str(slot_ms // 60_000)
    else:
        suffix = f"s{slot_ms // 1000}"
    if attempt > 1:
        suffix += f"-r{attempt}"
    full = f"{scheduled_job}-{suffix}"
    if len(full) <= MAX_NAME:
        return full
    keep = MAX_NAME - len(suffix) - _HASH_LEN - 2
    return f"{scheduled_job[:keep].rstrip('-.')}-{_hash(full)}-{suffix}"


@dataclass(frozen=True)
class JobRequest:
    """One attempt of one run, as the launcher receives it."""

    namespace: str
    scheduled_job: str
    job_uid: str
    run_id: str
    attempt: int
    template: Obj
    timeout_seconds: int


def job_manifest(request: JobRequest) -> Obj:
    """The batch/v1 Job for `request`: the template's metadata and spec, Sundial's name, labels
    (on the pods too) and owner reference, the deadline from timeoutSeconds, backoffLimit 0
    unless the template says otherwise."""
    template = copy.deepcopy(request.template)
    metadata: Obj = dict(template.get("metadata") or {})
    spec: Obj = dict(template.get("spec") or {})
    labels = {
        **(metadata.get("labels") or {}),
        JOB_LABEL: label_value(request.scheduled_job),
        JOB_UID_LABEL: request.job_uid,
        RUN_ID_LABEL: label_value(request.run_id),
        ATTEMPT_LABEL: str(request.attempt),
    }
    name = job_name(request.scheduled_job, request.run_id, request.attempt)
    deadline = spec.get("activeDeadlineSeconds")
    spec["activeDeadlineSeconds"] = min(int(deadline), request.timeout_seconds) if deadline else request.timeout_seconds
    spec.setdefault("backoffLimit", 0)
    pod: Obj = dict(spec.get("template") or {})
    pod_metadata: Obj = dict(pod.get("metadata") or {})
    pod_metadata["labels"] = {**(pod_metadata.get("labels") or {}), **{k: labels[k] for k in (JOB_LABEL, JOB_UID_LABEL,
                                                                                            RUN_ID_LABEL)}}
    pod["metadata"] = pod_metadata
    spec["template"] = pod
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": request.namespace,
            "labels": labels,
            "annotations": {**(metadata.get("annotations") or {}), RUN_ID_ANNOTATION: request.run_id},
            "ownerReferences": [{
                "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": request.scheduled_job,
                "uid": request.job_uid, "controller": True,
            }],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class Verdict:
    """How a finished Job ended."""

    succeeded: bool
    message: str
    pods: tuple[str, ...]


def _condition(job: Obj, kind: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def pods_needed(job: Obj) -> bool:
    """Whether a finished Job's record needs its pods read: not when it failed by its deadline,
    as the Job controller deleted its pods then (they hold no exit code worth reporting), and the
    LIST would be one more API request per run for nothing."""
    failed = _condition(job, "Failed")
    return failed is None or failed.get("reason") != "DeadlineExceeded"


def job_verdict(job: Obj, pods: list[Obj]) -> Verdict | None:
    """Complete or Failed from the Job's conditions (None while neither is set), with the pods'
    names and, for a failure, the reason and each failed container's exit code."""
    names = tuple(sorted(str(pod["metadata"]["name"]) for pod in pods))
    if _condition(job, "Complete") is not None:
        return Verdict(True, "", names)
    failed = _condition(job, "Failed")
    if failed is None:
        return None
    reason = failed.get("reason") or "Failed"
    detail = failed.get("message") or ""
    exits = [text for pod in pods for text in _failed_containers(pod)]
    parts = [f"Job {job['metadata']['name']} failed ({reason})" + (f": {detail}" if detail else "")]
    if exits:
        parts.append("; ".join(exits))
    return Verdict(False, ". ".join(parts), names)


def _failed_containers(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    found = []
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if code not in (None, 0):
            why = terminated.get("reason") or ""
            found.append(f"pod {pod['metadata']['name']} container {container.get('name')} exited {code}"
                         + (f" ({why})" if why else ""))
    if not found and status.get("phase") == "Failed":
        found.append(f"pod {pod['metadata']['name']} failed" + (f": {status['message']}" if status.get("message")
                                                                  else ""))
    return found


def jobs_to_prune(jobs: list[Obj], successful_limit: int, failed_limit: int) -> list[str]:
    """The finished Jobs beyond the history limits, oldest first (running ones are kept)."""
    finished: dict[bool, list[Obj]] = {True: [], False: []}
    for job in jobs:
        if _condition(job, "Complete") is not None:
            finished[True].append(job)
        elif _condition(job, "Failed") is not None:
            finished[False].append(job)
    doomed: list[str] = []
    for succeeded, limit in ((True, successful_limit), (False, failed_limit)):
        ordered = sorted(finished[succeeded], key=lambda j: (j["metadata"].get("creationTimestamp") or "",
                                                              j["metadata"]["name"]))
        doomed += [job["metadata"]["name"] for job in ordered[: max(0, len(ordered) - limit)]]
    return doomed
