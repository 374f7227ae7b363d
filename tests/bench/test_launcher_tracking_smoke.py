"""The launcher tracking benchmark, run tiny so it cannot rot (its figures are for `make bench`)."""

from __future__ import annotations

import pytest
from bench.launcher_tracking import measure, report

pytestmark = [pytest.mark.k8s, pytest.mark.bench, pytest.mark.timeout(300)]


def test_both_ways_of_tracking_notice_every_deleted_job() -> None:
    results, load = measure(jobs=5, seconds=3)
    print(report(5, 3, results, load))
    by_mode = {result.mode: result for result in results}
    assert set(by_mode) == {"watch", "poll"}
    assert by_mode["watch"].requests < by_mode["poll"].requests
