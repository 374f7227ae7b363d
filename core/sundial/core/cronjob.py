"""A batch/v1 CronJob as a ScheduledJob, field by field (`sundial import cronjob`); pure.

What carries over as it is: schedule, timeZone, concurrencyPolicy, startingDeadlineSeconds,
suspend, the jobTemplate. What is translated, so the imported job behaves as the CronJob did:

- no timeZone: the CronJob ran in kube-controller-manager's zone, which is UTC in every
  distribution we know; the ScheduledJob says UTC explicitly (Sundial's own default differs).
  A `CRON_TZ=`/`TZ=` prefix in the schedule becomes the timeZone.
- history limits (default 3 successful, 1 failed) become the run history limits, which also
  bound the Jobs the launcher keeps (at most 10 each).
- a CronJob has no run timeout: timeoutSeconds is the template's activeDeadlineSeconds when
  set, else the longest Sundial allows (24 h).
- pod retries stay the Job's: backoffLimit is written out (the Job default, 6, when absent,
  since Sundial's own default is 0), and Sundial's retry is one attempt.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

from sundial.core.crd import API_VERSION, KIND

IMPORTED_FROM_ANNOTATION: Final = "sundial.dev/imported-from"
MAX_TIMEOUT_SECONDS: Final = 86400
JOB_DEFAULT_BACKOFF_LIMIT: Final = 6
_TZ_PREFIX = re.compile(r"^\s*(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")

Obj = dict[str, Any]


def scheduled_job_from_cronjob(cronjob: Obj) -> Obj:
    """The ScheduledJob that replaces `cronjob` (same name and namespace, labels kept)."""
    meta = cronjob.get("metadata") or {}
    spec = cronjob.get("spec") or {}
    schedule, time_zone = _schedule_and_zone(str(spec.get("schedule") or ""), spec.get("timeZone"))
    template = _job_template(spec.get("jobTemplate") or {})
    deadline = (template.get("spec") or {}).get("activeDeadlineSeconds")
    out_spec: Obj = {
        "schedule": schedule,
        "timeZone": time_zone,
        "concurrencyPolicy": spec.get("concurrencyPolicy") or "Allow",
        "suspend": bool(spec.get("suspend", False)),
        "successfulRunsHistoryLimit": int(spec.get("successfulJobsHistoryLimit", 3)),
        "failedRunsHistoryLimit": int(spec.get("failedJobsHistoryLimit", 1)),
        "timeoutSeconds": min(int(deadline), MAX_TIMEOUT_SECONDS) if deadline else MAX_TIMEOUT_SECONDS,
        "retry": {"attempts": 1},
        "jobTemplate": template,
    }
    if spec.get("startingDeadlineSeconds") is not None:
        out_spec["startingDeadlineSeconds"] = int(spec["startingDeadlineSeconds"])
    metadata: Obj = {"name": meta["name"], "namespace": meta.get("namespace") or "default"}
    if meta.get("labels"):
        metadata["labels"] = dict(meta["labels"])
    metadata["annotations"] = {IMPORTED_FROM_ANNOTATION: f"cronjob.batch/{meta['name']}"}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": out_spec}


def _schedule_and_zone(schedule: str, time_zone: Any) -> tuple[str, str]:
    prefixed = _TZ_PREFIX.match(schedule)
    if prefixed is not None:
        return prefixed.group(2).strip(), str(time_zone or prefixed.group(1))
    return schedule.strip(), str(time_zone or "UTC")


def _job_template(template: Obj) -> Obj:
    out = copy.deepcopy(template)
    job_spec = out.setdefault("spec", {})
    job_spec.setdefault("backoffLimit", JOB_DEFAULT_BACKOFF_LIMIT)
    metadata = out.get("metadata")
    if isinstance(metadata, dict):  # only what a template may carry
        out["metadata"] = {k: v for k, v in metadata.items() if k in ("labels", "annotations")}
    return out
