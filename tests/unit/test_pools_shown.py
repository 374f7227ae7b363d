"""Pools as people see them: the pool of a stored spec, the pools doctor and the page list,
and `describe` of a jobTemplate job (its Job and the launcher's pool)."""

from __future__ import annotations

from datetime import UTC, datetime

from sundial.cli.describe import describe_lines
from sundial.cli.jobs import JobView
from sundial.core.pools import every_pool, stored_spec_pool

TEMPLATE = {"spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "ghcr.io/acme/report:1.2"}]}}}}


def test_a_stored_spec_is_served_by_the_launcher_when_it_carries_a_job_template() -> None:
    assert stored_spec_pool({"jobTemplate": TEMPLATE, "workerPool": None}) == "launcher"
    assert stored_spec_pool({"target": "noop", "workerPool": "batch", "jobTemplate": None}) == "batch"
    assert stored_spec_pool({"target": "noop"}) == "default"
    assert stored_spec_pool(None) == "default"


def test_every_pool_lists_the_default_then_the_launcher_then_the_named_ones() -> None:
    assert every_pool([]) == ["default", "launcher"]
    assert every_pool(["zeta", "batch", "default", "batch"]) == ["default", "launcher", "batch", "zeta"]


def test_describe_shows_a_job_templates_image_and_the_launcher_pool() -> None:
    job = JobView.from_object({
        "metadata": {"uid": "3f1c", "namespace": "reports", "name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "timeZone": "UTC", "jobTemplate": TEMPLATE},
    })
    lines = describe_lines(job, None, [], datetime(2026, 1, 1, tzinfo=UTC))
    assert "  Target:              a batch/v1 Job from jobTemplate (ghcr.io/acme/report:1.2)" in lines
    assert "  Worker Pool:         launcher (the launcher creates each run's Job)" in lines
