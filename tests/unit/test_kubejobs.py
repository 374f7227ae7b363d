"""Jobs from a jobTemplate: names, manifests, verdicts, pruning and routing, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from sundial.core.keys import Keyspace, run_id_for_manual, run_id_for_slot
from sundial.core.kubejobs import (
    JOB_UID_LABEL,
    RUN_ID_LABEL,
    JobRequest,
    job_manifest,
    job_name,
    job_verdict,
    jobs_to_prune,
    label_value,
    pods_needed,
)
from sundial.core.pools import DEFAULT_POOL, KUBERNETES_JOB_TARGET, LAUNCHER_POOL, pool_keyspace, serving_pool
from sundial.core.runs import JobRef, RunTemplate
from sundial.core.spec import SpecError, parse_spec

UID = "0b6f1c9e-3d0a-4c0e-9f1e-2a7c1d5e8b90"
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "data"}},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
}


def request(run_id: str = run_id_for_slot(UID, 1_700_000_040_000), attempt: int = 1, **spec: Any) -> JobRequest:
    template = {**TEMPLATE, "spec": {**TEMPLATE["spec"], **spec}}
    return JobRequest("ns", "nightly", UID, run_id, attempt, template, 300)


def test_names_follow_the_cronjob_controller_and_stay_short() -> None:
    slot = 1_700_000_040_000  # on a minute
    assert job_name("nightly", run_id_for_slot(UID, slot), 1) == f"nightly-{slot // 60_000}"
    assert job_name("nightly", run_id_for_slot(UID, slot + 5_000), 1) == f"nightly-s{(slot + 5_000) // 1000}"
    assert job_name("nightly", run_id_for_slot(UID, slot), 3) == f"nightly-{slot // 60_000}-r3"
    manual = job_name("nightly", run_id_for_manual(UID, "abc"), 1)
    assert manual.startswith("nightly-m")
    assert manual == job_name("nightly", run_id_for_manual(UID, "abc"), 1)
    run_id = run_id_for_slot(UID, slot)
    long_a, long_b = job_name("a" * 200, run_id, 1), job_name("a" * 199 + "b", run_id, 1)
    assert len(long_a) <= 63
    assert len(long_b) <= 63
    assert long_a != long_b
    assert long_a.endswith(str(slot // 60_000))


def test_label_values_are_legal() -> None:
    assert label_value(f"{UID}:123") == f"{UID}.123"
    assert len(label_value("x" * 300)) <= 63


def test_manifest_owner_labels_deadline_and_backoff() -> None:
    job = job_manifest(request())
    meta = job["metadata"]
    assert meta["ownerReferences"][0]["uid"] == UID
    assert meta["ownerReferences"][0]["kind"] == "ScheduledJob"
    assert meta["labels"]["team"] == "data"
    assert meta["labels"][JOB_UID_LABEL] == UID
    assert ":" not in meta["labels"][RUN_ID_LABEL]
    assert job["spec"]["activeDeadlineSeconds"] == 300
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["metadata"]["labels"][JOB_UID_LABEL] == UID
    custom = job_manifest(request(backoffLimit=4, activeDeadlineSeconds=60))["spec"]
    assert (custom["backoffLimit"], custom["activeDeadlineSeconds"]) == (4, 60)
    assert "metadata" not in TEMPLATE["spec"]["template"], "the template is not mutated"


def _job(name: str, condition: str | None, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    conditions = [] if condition is None else [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded"}]
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"conditions": conditions}}


def test_verdicts() -> None:
    pod = {"metadata": {"name": "p1"}, "status": {"phase": "Failed", "containerStatuses": [
        {"name": "c", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}}
    assert job_verdict(_job("j", None), []) is None
    done = job_verdict(_job("j", "Complete"), [{"metadata": {"name": "p0"}}])
    assert done is not None
    assert done.succeeded
    assert done.pods == ("p0",)
    failed = job_verdict(_job("j", "Failed"), [pod])
    assert failed is not None
    assert not failed.succeeded
    assert "BackoffLimitExceeded" in failed.message
    assert "container c exited 3" in failed.message


def test_pods_are_read_unless_the_deadline_failed_the_job_and_its_pods_were_deleted() -> None:
    assert pods_needed(_job("j", "Complete"))
    assert pods_needed(_job("j", "Failed"))  # BackoffLimitExceeded: the exit codes explain it
    deadline = _job("j", "Failed")
    deadline["status"]["conditions"][0]["reason"] = "DeadlineExceeded"
    assert not pods_needed(deadline)


def test_prune_keeps_the_newest_per_outcome_and_every_running_job() -> None:
    jobs = [_job(f"ok{i}", "Complete", f"2026-01-0{i}T00:00:00Z") for i in range(1, 5)]
    jobs += [_job(f"bad{i}", "Failed", f"2026-01-0{i}T00:00:00Z") for i in range(1, 3)] + [_job("running", None)]
    assert jobs_to_prune(jobs, 2, 1) == ["ok1", "ok2", "bad1"]
    assert jobs_to_prune(jobs, 10, 10) == []


def test_job_template_specs_route_to_the_launcher() -> None:
    spec = parse_spec({"schedule": "* * * * *", "jobTemplate": TEMPLATE})
    template = RunTemplate.from_spec(JobRef(UID, "ns", "nightly"), spec)
    assert template.target == KUBERNETES_JOB_TARGET
    assert template.params["jobTemplate"] == TEMPLATE
    assert template.params["timeoutSeconds"] == spec.timeout_seconds
    assert serving_pool(spec) == LAUNCHER_POOL
    assert serving_pool(parse_spec({"schedule": "* * * * *", "target": "noop"})) == DEFAULT_POOL
    base = Keyspace("sundial", 2)
    assert pool_keyspace(base, DEFAULT_POOL) == base
    assert pool_keyspace(base, LAUNCHER_POOL) == Keyspace("sundial/launcher", 2)


@pytest.mark.parametrize(("raw", "message"), [
    ({"target": "noop", "jobTemplate": TEMPLATE}, "exactly one of target and jobTemplate"),
    ({"jobTemplate": {"spec": {}}}, "spec.template.spec.containers"),
    ({"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{}]}}}}},
     "restartPolicy must be Never or OnFailure"),
])
def test_bad_job_templates_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"schedule": "* * * * *", **raw})
