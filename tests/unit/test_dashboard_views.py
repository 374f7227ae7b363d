"""The dashboard's pure translations: bodies to resources, patches, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sundial.dashboard.errors import ApiProblem, from_kube_status
from sundial.dashboard.models import JobCreate, JobPatch
from sundial.dashboard.views import job_out, merge, new_resource, request_value, resource_patch

CURRENT: dict[str, Any] = {
    "metadata": {"name": "report", "namespace": "biz", "uid": "u1", "resourceVersion": "41", "generation": 3},
    "spec": {"target": "noop", "schedule": "0 12 * * *", "retry": {"attempts": 3, "backoff": {"delaySeconds": 5}}},
}


@pytest.mark.parametrize(
    ("target", "patch", "merged"),
    [
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 9}}, {"a": {"b": 9, "c": 2}}),
        ({"a": 1, "b": 2}, {"b": None}, {"a": 1}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": {"c": 1}}, {"a": 1, "b": {"c": 1}}),
    ],
)
def test_merge_is_rfc7386(target: dict[str, Any], patch: dict[str, Any], merged: dict[str, Any]) -> None:
    assert merge(target, patch) == merged


def test_new_resource_maps_enabled_to_suspend() -> None:
    body = JobCreate(name="report", enabled=False, labels={"team": "biz"},
                     spec={"target": "noop", "schedule": "@daily"})
    resource = new_resource(body, "biz")
    assert resource["metadata"] == {"name": "report", "namespace": "biz", "labels": {"team": "biz"}}
    assert resource["spec"] == {"target": "noop", "schedule": "@daily", "suspend": True}
    assert resource["kind"] == "ScheduledJob"


def test_new_resource_names_each_bad_field() -> None:
    body = JobCreate(name="report", spec={"target": "noop", "schedule": "0 25 * * *", "timeoutSeconds": 0})
    with pytest.raises(ApiProblem) as caught:
        new_resource(body, "biz")
    assert caught.value.status == 400
    assert {f.field for f in caught.value.fields} == {"spec.schedule", "spec.timeoutSeconds"}


def test_patch_merges_checks_and_pins_the_resource_version() -> None:
    patch = resource_patch(JobPatch(generation=3, enabled=False, spec={"retry": {"attempts": 5}}), CURRENT)
    assert patch == {"metadata": {"resourceVersion": "41"}, "spec": {"retry": {"attempts": 5}, "suspend": True}}


def test_patch_on_a_changed_spec_is_a_conflict() -> None:
    with pytest.raises(ApiProblem) as caught:
        resource_patch(JobPatch(generation=2, spec={"schedule": "@hourly"}), CURRENT)
    assert (caught.value.status, caught.value.reason) == (409, "Conflict")


def test_patch_that_breaks_the_merged_spec_is_invalid() -> None:
    with pytest.raises(ApiProblem) as caught:
        resource_patch(JobPatch(spec={"target": None}), CURRENT)
    assert [f.field for f in caught.value.fields] == ["spec.target"]


def test_job_out_reads_ready_and_words() -> None:
    resource = {**CURRENT, "status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "UnknownTarget", "message": "no worker offers x"}]}}
    job = job_out(resource)
    assert (job.id, job.enabled, job.generation) == ("biz/report", True, 3)
    assert job.ready is not None
    assert job.ready.reason == "UnknownTarget"
    assert job.schedule_text["pt-BR"] == "12:00"


def test_request_value_is_bounded_and_says_who() -> None:
    value = request_value("alice", datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "abc123")
    assert value == "run now by alice at 2026-11-28T12:00:00Z (abc123)"
    assert len(request_value("x" * 1000, datetime(2026, 1, 1, tzinfo=UTC), "n")) <= 250


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (403, {"reason": "Forbidden", "message": "user x cannot patch"}, (403, "Forbidden")),
        (404, {"reason": "NotFound", "message": "not found"}, (404, "NotFound")),
        (409, {"reason": "AlreadyExists", "message": "exists"}, (409, "Conflict")),
        (401, {"message": "Unauthorized"}, (401, "Unauthorized")),
        (500, {"message": "etcd"}, (503, "BackendUnavailable")),
        (429, {"message": "slow down"}, (503, "BackendUnavailable")),
    ],
)
def test_kube_status_mapping(code: int, status: dict[str, Any], expected: tuple[int, str]) -> None:
    problem = from_kube_status(code, status)
    assert (problem.status, problem.reason) == expected


def test_kube_invalid_names_fields_and_admission_reason() -> None:
    problem = from_kube_status(422, {
        "reason": "Invalid", "message": "ScheduledJob.sundial.dev \"x\" is invalid: metadata.name: Invalid value",
        "details": {"causes": [{"field": "metadata.name", "message": "Invalid value: \"X\""}]}})
    assert (problem.status, [f.field for f in problem.fields]) == (400, ["name"])
    denied = from_kube_status(400, {"reason": "BadRequest",
                                    "message": 'admission webhook "v.sundial.dev" denied the request: bad cron'})
    assert denied.message == "bad cron"
