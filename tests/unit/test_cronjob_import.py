"""`sundial import cronjob`'s conversion, field by field."""

from __future__ import annotations

from typing import Any

from sundial.core.cronjob import scheduled_job_from_cronjob
from sundial.core.spec import parse_spec

POD: dict[str, Any] = {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}


def cronjob(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "n", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": POD}}}, **spec}}


def test_defaults_behave_as_the_cronjob_did() -> None:
    out = scheduled_job_from_cronjob(cronjob())
    spec = out["spec"]
    assert out["metadata"] == {"name": "n", "namespace": "ns",
                               "annotations": {"sundial.dev/imported-from": "cronjob.batch/n"}}
    assert spec["timeZone"] == "UTC"
    assert (spec["successfulRunsHistoryLimit"], spec["failedRunsHistoryLimit"]) == (3, 1)
    assert spec["timeoutSeconds"] == 86400
    assert spec["retry"] == {"attempts": 1}
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 6
    assert "startingDeadlineSeconds" not in spec
    parse_spec(spec)


def test_every_field_carries_over() -> None:
    out = scheduled_job_from_cronjob(cronjob(
        timeZone="Asia/Tokyo", concurrencyPolicy="Replace", startingDeadlineSeconds=30, suspend=True,
        successfulJobsHistoryLimit=0, failedJobsHistoryLimit=7,
        jobTemplate={"metadata": {"labels": {"a": "b"}, "name": "dropped"},
                     "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 90, "template": {"spec": POD}}},
    ))["spec"]
    assert (out["timeZone"], out["concurrencyPolicy"], out["startingDeadlineSeconds"], out["suspend"]) == (
        "Asia/Tokyo", "Replace", 30, True)
    assert (out["successfulRunsHistoryLimit"], out["failedRunsHistoryLimit"], out["timeoutSeconds"]) == (0, 7, 90)
    assert out["jobTemplate"]["metadata"] == {"labels": {"a": "b"}}
    assert out["jobTemplate"]["spec"]["backoffLimit"] == 2
    parse_spec(out)


def test_a_cron_tz_prefix_becomes_the_time_zone() -> None:
    spec = scheduled_job_from_cronjob(cronjob(schedule="CRON_TZ=Europe/Lisbon 0 6 * * 1-5"))["spec"]
    assert (spec["schedule"], spec["timeZone"]) == ("0 6 * * 1-5", "Europe/Lisbon")
