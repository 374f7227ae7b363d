"""The CronJob side-by-side benchmark, run tiny so it cannot rot (its figures are for `make bench`)."""

from __future__ import annotations

import pytest
from bench.cronjob_side_by_side import measure, report

pytestmark = [pytest.mark.services, pytest.mark.k8s, pytest.mark.bench, pytest.mark.timeout(300)]


def test_both_sides_create_each_slots_job_once() -> None:
    figures = measure(jobs=2, minutes=1)
    print(report(figures))
    sundial = figures.sides["Sundial (launcher)"]
    assert sundial["duplicates"] == 0
    assert figures.sides["CronJob controller"]["duplicates"] == 0
    assert sundial["created"] + sundial["missed"] == sundial["expected"] == 2
