"""`sundial doctor`'s verdicts that need no backend: what it says of slots recorded missed."""

from __future__ import annotations

import pytest

from sundial.cli.doctor import missed_slots_check
from sundial.core.store import MissedSlots


def _job(name: str, missed: int, seconds_ago: float = 4.2) -> MissedSlots:
    return MissedSlots("batch", name, missed, seconds_ago)


@pytest.mark.parametrize(("jobs", "verdict", "detail"), [
    ([], "OK", "none in the last 15m"),
    ([_job("a", 3)], "WARN", "1 job had slots recorded missed in the last 15m, the latest 4s ago: batch/a (3 in all)"),
    ([_job(name, 1, 60.0 * index) for index, name in enumerate("abcde")], "WARN",
     "5 jobs had slots recorded missed in the last 15m, the latest 0s ago: batch/a (1 in all), batch/b (1 in all),"
     " batch/c (1 in all) and 2 more"),
])
def test_missed_slots_names_the_latest_jobs(jobs: list[MissedSlots], verdict: str, detail: str) -> None:
    check = missed_slots_check(jobs)
    assert (check.name, check.verdict, check.detail) == ("Missed slots", verdict, detail)
    assert bool(check.hint) == (verdict == "WARN")
