"""Tables for sundial.core.schedule: parsing, DST resolution, fire_times, latest_at_or_before.

Every DST table below relies on the transitions pinned down by test_transition_facts, so a tzdata
change that moves them fails there first, with an obvious message.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from sundial.core.schedule import (
    CronSchedule,
    IntervalSchedule,
    ScheduleError,
    fire_times,
    latest_at_or_before,
    parse_schedule,
)

NY = "America/New_York"
SAO_PAULO = "America/Sao_Paulo"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def wall(text: str) -> datetime:
    """A naive local wall-clock time."""
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------------------------------
# The transitions the tables rely on (verified against zoneinfo, PEP 495 fold semantics).


def wall_kind(zone: str, local: str) -> str:
    naive = wall(local)
    first = naive.replace(tzinfo=ZoneInfo(zone)).utcoffset()
    second = naive.replace(tzinfo=ZoneInfo(zone), fold=1).utcoffset()
    assert first is not None
    assert second is not None
    if first == second:
        return "normal"
    return "repeated" if first > second else "gap"


@pytest.mark.parametrize(
    ("zone", "local", "kind"),
    [
        (SAO_PAULO, "2018-11-03T23:59", "normal"),
        (SAO_PAULO, "2018-11-04T00:00", "gap"),  # midnight does not exist
        (SAO_PAULO, "2018-11-04T00:59", "gap"),
        (SAO_PAULO, "2018-11-04T01:00", "normal"),
        (SAO_PAULO, "2019-02-16T22:59", "normal"),
        (SAO_PAULO, "2019-02-16T23:00", "repeated"),  # 00:00 -02 -> 23:00 -03 on the 16th
        (SAO_PAULO, "2019-02-16T23:59", "repeated"),
        (SAO_PAULO, "2019-02-17T00:00", "normal"),
        (NY, "2025-03-09T01:59", "normal"),
        (NY, "2025-03-09T02:00", "gap"),
        (NY, "2025-03-09T02:59", "gap"),
        (NY, "2025-03-09T03:00", "normal"),
        (NY, "2025-11-02T00:59", "normal"),
        (NY, "2025-11-02T01:00", "repeated"),
        (NY, "2025-11-02T01:59", "repeated"),
        (NY, "2025-11-02T02:00", "normal"),
        (LONDON, "2025-03-30T00:59", "normal"),
        (LONDON, "2025-03-30T01:00", "gap"),
        (LONDON, "2025-03-30T02:00", "normal"),
        (LONDON, "2025-10-26T01:00", "repeated"),
        (LONDON, "2025-10-26T02:00", "normal"),
        (LORD_HOWE, "2025-04-06T01:29", "normal"),
        (LORD_HOWE, "2025-04-06T01:30", "repeated"),  # 02:00 +11 -> 01:30 +10:30
        (LORD_HOWE, "2025-04-06T01:59", "repeated"),
        (LORD_HOWE, "2025-04-06T02:00", "normal"),
        (LORD_HOWE, "2025-10-05T01:59", "normal"),
        (LORD_HOWE, "2025-10-05T02:00", "gap"),  # 02:00 +10:30 -> 02:30 +11
        (LORD_HOWE, "2025-10-05T02:29", "gap"),
        (LORD_HOWE, "2025-10-05T02:30", "normal"),
    ],
)
def test_transition_facts(zone: str, local: str, kind: str) -> None:
    assert wall_kind(zone, local) == kind


# --------------------------------------------------------------------------------------------------
# next_after: one answer per row


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # New York, spring forward 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z)
        pytest.param(NY, "30 2 * * *", "2025-03-08T12:00-05:00", "2025-03-09T03:00-04:00", id="ny-fixed-gap"),
        pytest.param(NY, "0 2 * * *", "2025-03-09T03:00-04:00", "2025-03-10T02:00-04:00", id="ny-gap-once"),
        pytest.param(NY, "0 * * * *", "2025-03-09T01:00-05:00", "2025-03-09T03:00-04:00", id="ny-hourly-skips"),
        pytest.param(NY, "*/15 * * * *", "2025-03-09T01:45-05:00", "2025-03-09T03:00-04:00", id="ny-15-skips"),
        pytest.param(NY, "30 2 9 3 *", "2024-06-01T00:00Z", "2025-03-09T03:00-04:00", id="ny-yearly-in-gap"),
        # New York, fall back 2025-11-02 02:00 EDT -> 01:00 EST (06:00Z)
        pytest.param(NY, "30 1 * * *", "2025-11-01T12:00-04:00", "2025-11-02T01:30-04:00", id="ny-fixed-first"),
        pytest.param(NY, "30 1 * * *", "2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00", id="ny-fixed-once"),
        pytest.param(NY, "45 1 * * *", "2025-11-02T01:30-05:00", "2025-11-03T01:45-05:00", id="ny-fixed-in-copy"),
        pytest.param(NY, "0-59 1 * * *", "2025-11-02T01:59-04:00", "2025-11-03T01:00-05:00", id="ny-range-fixed"),
        pytest.param(NY, "30 1 2 11 *", "2025-01-01T00:00-05:00", "2025-11-02T01:30-04:00", id="ny-yearly-fold"),
        pytest.param(NY, "*/15 * * * *", "2025-11-02T01:45-04:00", "2025-11-02T01:00-05:00", id="ny-15-second-copy"),
        pytest.param(NY, "*/15 * * * *", "2025-11-02T06:00Z", "2025-11-02T01:15-05:00", id="ny-after-in-utc"),
        pytest.param(
            NY, "*/15 * * * *", "2025-11-02T01:59:59.999999-04:00", "2025-11-02T01:00-05:00", id="ny-microseconds"
        ),
        pytest.param(NY, "0 * * * *", "2025-11-02T01:00-04:00", "2025-11-02T01:00-05:00", id="ny-hourly-twice"),
        pytest.param(NY, "* 1 2 11 *", "2025-11-02T01:59-04:00", "2025-11-02T01:00-05:00", id="ny-minutes-twice"),
        # Sao Paulo, DST start 2018-11-04 00:00 -> 01:00 (midnight does not exist)
        pytest.param(SAO_PAULO, "0 0 * * *", "2018-11-03T12:00-03:00", "2018-11-04T01:00-02:00", id="sp-midnight"),
        pytest.param(SAO_PAULO, "@daily", "2018-11-03T12:00-03:00", "2018-11-04T01:00-02:00", id="sp-daily"),
        pytest.param(SAO_PAULO, "30 0 * * *", "2018-11-04T01:00-02:00", "2018-11-05T00:30-02:00", id="sp-collapsed"),
        pytest.param(SAO_PAULO, "*/30 * * * *", "2018-11-03T23:30-03:00", "2018-11-04T01:00-02:00", id="sp-30-skips"),
        # Sao Paulo, DST end 2019-02-17 00:00 -02 -> 2019-02-16 23:00 -03
        pytest.param(SAO_PAULO, "0 23 * * *", "2019-02-16T12:00-02:00", "2019-02-16T23:00-02:00", id="sp-fixed-first"),
        pytest.param(SAO_PAULO, "0 23 * * *", "2019-02-16T23:00-02:00", "2019-02-17T23:00-03:00", id="sp-fixed-once"),
        pytest.param(
            SAO_PAULO, "*/30 * * * *", "2019-02-16T23:30-02:00", "2019-02-16T23:00-03:00", id="sp-30-second-copy"
        ),
        # London, 2025-03-30 01:00 GMT -> 02:00 BST and 2025-10-26 02:00 BST -> 01:00 GMT
        pytest.param(LONDON, "30 1 * * *", "2025-03-29T12:00Z", "2025-03-30T02:00+01:00", id="lon-fixed-gap"),
        pytest.param(LONDON, "0 * * * *", "2025-03-30T00:00Z", "2025-03-30T02:00+01:00", id="lon-hourly-skips"),
        pytest.param(LONDON, "30 1 * * *", "2025-10-26T01:30+01:00", "2025-10-27T01:30Z", id="lon-fixed-once"),
        pytest.param(LONDON, "*/30 * * * *", "2025-10-26T01:30+01:00", "2025-10-26T01:00Z", id="lon-30-second-copy"),
        # Lord Howe: 30-minute shifts. 2025-04-06 02:00 +11 -> 01:30 +10:30; 2025-10-05 02:00 -> 02:30
        pytest.param(LORD_HOWE, "15 2 * * *", "2025-10-04T12:00+10:30", "2025-10-05T02:30+11:00", id="lh-fixed-gap"),
        pytest.param(LORD_HOWE, "*/15 * * * *", "2025-10-05T01:45+10:30", "2025-10-05T02:30+11:00", id="lh-15-skips"),
        pytest.param(LORD_HOWE, "45 1 * * *", "2025-04-05T12:00+11:00", "2025-04-06T01:45+11:00", id="lh-fixed-first"),
        pytest.param(LORD_HOWE, "45 1 * * *", "2025-04-06T01:45+11:00", "2025-04-07T01:45+10:30", id="lh-fixed-once"),
        pytest.param(LORD_HOWE, "*/15 * * * *", "2025-04-06T01:45+11:00", "2025-04-06T01:30+10:30", id="lh-15-copy"),
        # A whole day skipped: Samoa moved across the date line, 2011-12-30 never happened
        pytest.param("Pacific/Apia", "0 12 * * *", "2011-12-29T12:00-10:00", "2011-12-31T00:00+14:00", id="apia"),
        # 6 fields, seconds first
        pytest.param("UTC", "30 * * * * *", "2025-01-01T00:00Z", "2025-01-01T00:00:30Z", id="sec-30"),
        pytest.param("UTC", "*/10 * * * * *", "2025-01-01T00:00:05Z", "2025-01-01T00:00:10Z", id="sec-step"),
        pytest.param("UTC", "0 0 12 * * *", "2025-01-01T12:00:00Z", "2025-01-02T12:00:00Z", id="sec-daily"),
        pytest.param(NY, "0 30 2 * * *", "2025-03-08T12:00-05:00", "2025-03-09T03:00-04:00", id="sec-fixed-gap"),
        pytest.param(NY, "* * * * * *", "2025-11-02T01:59:59-04:00", "2025-11-02T01:00:00-05:00", id="sec-fold"),
        pytest.param(NY, "* * 2 * * *", "2025-03-09T01:59:59-05:00", "2025-03-10T02:00:00-04:00", id="sec-gap-skip"),
        # L and # (croniter's extensions); 5L is rewritten to croniter's own spelling L5
        pytest.param("UTC", "0 0 L * *", "2025-02-01T00:00Z", "2025-02-28T00:00Z", id="L-feb"),
        pytest.param("UTC", "0 0 L * *", "2024-02-01T00:00Z", "2024-02-29T00:00Z", id="L-leap"),
        pytest.param("UTC", "0 0 L 4 *", "2025-01-01T00:00Z", "2025-04-30T00:00Z", id="L-april"),
        pytest.param("UTC", "0 0 * * 5L", "2025-01-01T00:00Z", "2025-01-31T00:00Z", id="5L"),
        pytest.param("UTC", "0 0 * * FRIL", "2025-02-01T00:00Z", "2025-02-28T00:00Z", id="FRIL"),
        pytest.param("UTC", "0 0 * * L5", "2025-03-01T00:00Z", "2025-03-28T00:00Z", id="L5"),
        pytest.param(NY, "0 9 * * 5#3", "2025-01-01T00:00-05:00", "2025-01-17T09:00-05:00", id="5#3"),
        pytest.param(NY, "0 9 * * fri#3", "2025-01-17T09:00-05:00", "2025-02-21T09:00-05:00", id="fri#3"),
        pytest.param("UTC", "0 0 * * 1#5", "2025-01-01T00:00Z", "2025-03-31T00:00Z", id="fifth-monday"),
        # Macros
        pytest.param(NY, "@yearly", "2025-06-01T00:00-04:00", "2026-01-01T00:00-05:00", id="yearly"),
        pytest.param(NY, "@annually", "2025-06-01T00:00-04:00", "2026-01-01T00:00-05:00", id="annually"),
        pytest.param(NY, "@monthly", "2025-06-01T00:00-04:00", "2025-07-01T00:00-04:00", id="monthly"),
        pytest.param(NY, "@weekly", "2025-06-01T00:00-04:00", "2025-06-08T00:00-04:00", id="weekly"),
        pytest.param(NY, "@daily", "2025-06-01T00:00-04:00", "2025-06-02T00:00-04:00", id="daily"),
        pytest.param(NY, "@midnight", "2025-06-01T00:00-04:00", "2025-06-02T00:00-04:00", id="midnight"),
        pytest.param(NY, "@hourly", "2025-06-01T10:20-04:00", "2025-06-01T11:00-04:00", id="hourly"),
        pytest.param(NY, "@HOURLY", "2025-11-02T01:00-04:00", "2025-11-02T01:00-05:00", id="hourly-fold"),
        # @every: multiples of the duration since the epoch, in elapsed time
        pytest.param("UTC", "@every 90m", "1970-01-01T00:00Z", "1970-01-01T01:30Z", id="every-epoch"),
        pytest.param(NY, "@every 1h30m", "2025-01-01T00:00Z", "2025-01-01T01:30Z", id="every-1h30m"),
        pytest.param(NY, "@every 1.5h", "2025-01-01T00:00:01Z", "2025-01-01T01:30Z", id="every-1.5h"),
        pytest.param("UTC", "@every 45s", "2025-01-01T00:00Z", "2025-01-01T00:00:45Z", id="every-45s"),
        pytest.param("UTC", "@every 7s", "2025-01-01T00:00Z", "2025-01-01T00:00:06Z", id="every-7s-phase"),
        pytest.param(NY, "@every 1h", "2025-11-02T01:30-04:00", "2025-11-02T01:00-05:00", id="every-fold"),
        pytest.param(NY, "@every 1h", "2025-03-09T01:30-05:00", "2025-03-09T03:00-04:00", id="every-gap"),
        pytest.param(LORD_HOWE, "@every 1h", "2025-10-05T01:45+10:30", "2025-10-05T03:00+11:00", id="every-lh"),
    ],
)
def test_next_after(zone: str, expression: str, after: str, expected: str) -> None:
    result = parse_schedule(expression, zone).next_after(at(after))
    assert result == at(expected)
    assert result.tzinfo is UTC


# --------------------------------------------------------------------------------------------------
# fire_times: sequences through transitions


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        pytest.param(
            NY,
            "*/15 * * * *",
            "2025-11-02T00:50-04:00",
            [
                "2025-11-02T01:00-04:00",
                "2025-11-02T01:15-04:00",
                "2025-11-02T01:30-04:00",
                "2025-11-02T01:45-04:00",
                "2025-11-02T01:00-05:00",
                "2025-11-02T01:15-05:00",
                "2025-11-02T01:30-05:00",
                "2025-11-02T01:45-05:00",
                "2025-11-02T02:00-05:00",
            ],
            id="ny-15-both-copies",
        ),
        pytest.param(
            NY,
            "0 * * * *",
            "2025-11-02T00:30-04:00",
            ["2025-11-02T01:00-04:00", "2025-11-02T01:00-05:00", "2025-11-02T02:00-05:00"],
            id="ny-hourly-fall",
        ),
        pytest.param(
            NY,
            "0 * * * *",
            "2025-03-09T00:30-05:00",
            ["2025-03-09T01:00-05:00", "2025-03-09T03:00-04:00", "2025-03-09T04:00-04:00"],
            id="ny-hourly-spring",
        ),
        pytest.param(
            NY,
            "0,30 2 * * *",
            "2025-03-08T12:00-05:00",
            ["2025-03-09T03:00-04:00", "2025-03-10T02:00-04:00", "2025-03-10T02:30-04:00"],
            id="ny-gap-collapses",
        ),
        pytest.param(
            NY,
            "30 1 * * *",
            "2025-11-01T12:00-04:00",
            ["2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00", "2025-11-04T01:30-05:00"],
            id="ny-fixed-fall",
        ),
        pytest.param(
            SAO_PAULO,
            "0 0 * * *",
            "2018-11-03T00:00-03:00",
            ["2018-11-04T01:00-02:00", "2018-11-05T00:00-02:00", "2018-11-06T00:00-02:00"],
            id="sp-midnight-gap",
        ),
        pytest.param(
            SAO_PAULO,
            "*/30 * * * *",
            "2019-02-16T22:10-02:00",
            [
                "2019-02-16T22:30-02:00",
                "2019-02-16T23:00-02:00",
                "2019-02-16T23:30-02:00",
                "2019-02-16T23:00-03:00",
                "2019-02-16T23:30-03:00",
                "2019-02-17T00:00-03:00",
            ],
            id="sp-30-both-copies",
        ),
        pytest.param(
            SAO_PAULO,
            "0 23 * * *",
            "2019-02-15T12:00-02:00",
            ["2019-02-15T23:00-02:00", "2019-02-16T23:00-02:00", "2019-02-17T23:00-03:00"],
            id="sp-fixed-fall",
        ),
        pytest.param(
            LONDON,
            "0 * * * *",
            "2025-10-26T00:30+01:00",
            ["2025-10-26T01:00+01:00", "2025-10-26T01:00Z", "2025-10-26T02:00Z"],
            id="lon-hourly-fall",
        ),
        pytest.param(
            LORD_HOWE,
            "*/15 * * * *",
            "2025-10-05T01:20+10:30",
            ["2025-10-05T01:30+10:30", "2025-10-05T01:45+10:30", "2025-10-05T02:30+11:00", "2025-10-05T02:45+11:00"],
            id="lh-15-spring",
        ),
        pytest.param(
            LORD_HOWE,
            "*/15 * * * *",
            "2025-04-06T01:20+11:00",
            [
                "2025-04-06T01:30+11:00",
                "2025-04-06T01:45+11:00",
                "2025-04-06T01:30+10:30",
                "2025-04-06T01:45+10:30",
                "2025-04-06T02:00+10:30",
            ],
            id="lh-15-fall",
        ),
        pytest.param(
            LORD_HOWE,
            "@every 1h",
            "2025-04-06T00:00+11:00",
            ["2025-04-05T14:00Z", "2025-04-05T15:00Z", "2025-04-05T16:00Z"],
            id="lh-every-elapsed",
        ),
        pytest.param(
            NY,
            "0 9 * * 5L",
            "2025-01-01T00:00-05:00",
            ["2025-01-31T09:00-05:00", "2025-02-28T09:00-05:00", "2025-03-28T09:00-04:00"],
            id="last-friday",
        ),
    ],
)
def test_fire_times(zone: str, expression: str, after: str, expected: list[str]) -> None:
    assert fire_times(parse_schedule(expression, zone), at(after), len(expected)) == [at(e) for e in expected]


def test_fire_times_count_zero_and_negative() -> None:
    schedule = parse_schedule("@hourly", "UTC")
    assert fire_times(schedule, at("2025-01-01T00:00Z"), 0) == []
    with pytest.raises(ValueError, match="count must be >= 0"):
        fire_times(schedule, at("2025-01-01T00:00Z"), -1)


def test_plain_croniter_runs_the_fall_back_fixed_job_twice_and_we_run_it_once() -> None:
    start = datetime(2025, 11, 1, 12, tzinfo=ZoneInfo(NY))
    plain = croniter("30 1 * * *", start, datetime)
    # In UTC: PEP 495 makes an ambiguous ZoneInfo time compare unequal to every other zone's.
    assert [plain.get_next(datetime).astimezone(UTC) for _ in range(3)] == [
        at("2025-11-02T01:30-04:00"),
        at("2025-11-02T01:30-05:00"),  # the repeated hour, a second run on the same night
        at("2025-11-03T01:30-05:00"),
    ]
    assert fire_times(parse_schedule("30 1 * * *", NY), start, 3) == [
        at("2025-11-02T01:30-04:00"),
        at("2025-11-03T01:30-05:00"),
        at("2025-11-04T01:30-05:00"),
    ]


# --------------------------------------------------------------------------------------------------
# Fixed-time vs wildcard (cronie's rule: minute, hour or seconds field starting with '*')


@pytest.mark.parametrize(
    ("expression", "fixed_time"),
    [
        ("0 2 * * *", True),
        ("0-59 1 * * *", True),
        ("0,30 2 * * 1-5", True),
        ("*/15 * * * *", False),
        ("0 * * * *", False),
        ("* 2 * * *", False),
        ("0 */2 * * *", False),
        ("0 0 2 * * *", True),
        ("* 0 2 * * *", False),
        ("0 * 2 * * *", False),
        ("@hourly", False),
        ("@daily", True),
        ("@midnight", True),
        ("@weekly", True),
        ("@monthly", True),
        ("@yearly", True),
    ],
)
def test_fixed_time_rule(expression: str, fixed_time: bool) -> None:
    schedule = parse_schedule(expression, NY)
    assert isinstance(schedule, CronSchedule)
    assert schedule.fixed_time is fixed_time


def test_parsed_schedule_keeps_expression_and_zone() -> None:
    schedule = parse_schedule("  @every 5m ", LONDON)
    assert isinstance(schedule, IntervalSchedule)
    assert (schedule.expression, schedule.zone, schedule.period) == (
        "@every 5m",
        ZoneInfo(LONDON),
        timedelta(minutes=5),
    )
    assert parse_schedule("0 9 * * 1-5", NY).expression == "0 9 * * 1-5"


# --------------------------------------------------------------------------------------------------
# Errors an end user reads


FIELDS_HELP = (
    "5 fields (minute hour day-of-month month day-of-week) "
    "or 6 with seconds first (second minute hour day-of-month month day-of-week)"
)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "the schedule expression is empty"),
        ("61 * * * *", "invalid minute field '61' in '61 * * * *': values must be within 0-59"),
        ("0 24 * * *", "invalid hour field '24' in '0 24 * * *': values must be within 0-23"),
        (
            "0 0 0 * *",
            "invalid day-of-month field '0' in '0 0 0 * *': values must be within 1-31 or L (last day of the month)",
        ),
        ("0 0 * 13 *", "invalid month field '13' in '0 0 * 13 *': values must be within 1-12 or JAN-DEC"),
        (
            "0 0 * * 8",
            "invalid day-of-week field '8' in '0 0 * * 8': values must be within 0-7 or SUN-SAT"
            " (0 and 7 are Sunday), 5L (last Friday) or 5#3 (third Friday)",
        ),
        ("60 * * * * *", "invalid second field '60' in '60 * * * * *': values must be within 0-59"),
        (
            "*/0 * * * *",
            "invalid minute field '*/0' in '*/0 * * * *': a step (/n) must be a whole number of at least 1",
        ),
        ("-1 * * * *", "invalid minute field '-1' in '-1 * * * *': negative numbers are not allowed"),
        (
            "0 0 * * 5#6",
            "invalid day-of-week field '5#6' in '0 0 * * 5#6': the occurrence after # must be 1-5"
            " (5#3 is the third Friday)",
        ),
        (
            "0 0 * * 1,5#3",
            "invalid day-of-week field '1,5#3' in '0 0 * * 1,5#3': plain days cannot be mixed with"
            " nth-weekday (#) values in one field",
        ),
        (
            "every day",
            "'every day' has 2 field(s); expected " + FIELDS_HELP,
        ),
        (
            "x * * * *",
            "invalid minute field 'x' in 'x * * * *': expected 0-59, as a single value, a list (1,5),"
            " a range (1-5) or a step (*/5)",
        ),
        (
            "H * * * *",
            "invalid minute field 'H' in 'H * * * *': hashed (H) and random (R) values are not supported",
        ),
        (
            "0 R * * *",
            "invalid hour field 'R' in '0 R * * *': hashed (H) and random (R) values are not supported",
        ),
        ("0 0 31 2 *", "'0 0 31 2 *' never fires: day-of-month '31' never occurs in month '2'"),
        ("0 0 12 1 1 * 2030", "'0 0 12 1 1 * 2030' has 7 fields: year fields are not supported; use " + FIELDS_HELP),
        ("@reboot", "@reboot is not supported: Sundial runs recurring schedules, not boot-time jobs"),
        (
            "@fortnightly",
            "unknown macro '@fortnightly': use one of @yearly, @annually, @monthly, @weekly, @daily,"
            " @midnight, @hourly, @every <duration>",
        ),
        ("@daily 9am", "'@daily' takes no arguments, got '9am'"),
        ("@every", "@every needs a duration, e.g. '@every 5m'"),
        ("@every 500ms", "@every duration '500ms' is too short: the minimum is 1s"),
        ("@every 0s", "@every duration '0s' is too short: the minimum is 1s"),
        ("@every 1500ms", "@every duration '1500ms' must be a whole number of seconds"),
        (
            "@every 1d",
            "invalid @every duration '1d': use a Go-style duration such as 30s, 5m or 1h30m"
            " (units h, m, s, ms, us, ns)",
        ),
        (
            "@every -5m",
            "invalid @every duration '-5m': use a Go-style duration such as 30s, 5m or 1h30m"
            " (units h, m, s, ms, us, ns)",
        ),
    ],
)
def test_invalid_expression_message(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(expression, "UTC")
    assert str(error.value) == message


@pytest.mark.parametrize("zone", ["Mars/Base", "", "America", "../etc/passwd", "utc", "America/New York"])
def test_unknown_time_zone_message(zone: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule("0 9 * * *", zone)
    assert str(error.value) == f"unknown time zone '{zone}'"


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


def test_schedule_that_only_names_skipped_wall_times_fails_readably() -> None:
    # Every minute of 02:xx on the second Sunday of March: always inside New York's gap.
    schedule = parse_schedule("* 2 * 3 0#2", NY)
    with pytest.raises(ScheduleError) as error:
        schedule.next_after(at("2025-01-01T00:00Z"))
    assert str(error.value) == (
        "'* 2 * 3 0#2' has no fire time in America/New_York within 50 years after 2024-12-31 19:00:00 EST"
    )


@pytest.mark.parametrize("expression", ["0 * * * *", "@every 1m"])
def test_naive_after_is_rejected(expression: str) -> None:
    naive = wall("2025-01-01T00:00")
    with pytest.raises(ValueError, match="expected a timezone-aware datetime"):
        parse_schedule(expression, "UTC").next_after(naive)


# --------------------------------------------------------------------------------------------------
# latest_at_or_before


@pytest.mark.parametrize(
    ("zone", "expression", "at_", "not_before", "expected"),
    [
        pytest.param("UTC", "0 * * * *", "2025-01-01T10:30Z", "2025-01-01T00:00Z", "2025-01-01T10:00Z", id="basic"),
        pytest.param("UTC", "0 * * * *", "2025-01-01T10:00Z", "2025-01-01T00:00Z", "2025-01-01T10:00Z", id="at-incl"),
        pytest.param("UTC", "0 * * * *", "2025-01-01T10:30Z", "2025-01-01T10:00Z", "2025-01-01T10:00Z", id="nb-incl"),
        pytest.param("UTC", "0 * * * *", "2025-01-01T10:30Z", "2025-01-01T10:00:01Z", None, id="none-in-range"),
        pytest.param("UTC", "0 * * * *", "2025-01-01T10:30Z", "2025-01-01T11:00Z", None, id="empty-range"),
        pytest.param("UTC", "0 0 1 1 *", "2025-12-31T23:59Z", "2000-01-01T00:00Z", "2025-01-01T00:00Z", id="yearly"),
        pytest.param(
            "UTC", "* * * * * *", "2025-01-08T00:00:00.5Z", "2025-01-01T00:00Z", "2025-01-08T00:00:00Z", id="per-sec"
        ),
        pytest.param(
            NY, "*/15 * * * *", "2025-11-02T01:10-05:00", "2025-11-01T00:00Z", "2025-11-02T01:00-05:00", id="fold-copy"
        ),
        pytest.param(
            NY, "30 1 * * *", "2025-11-02T01:59-05:00", "2025-11-01T00:00Z", "2025-11-02T01:30-04:00", id="fold-fixed"
        ),
        pytest.param(
            NY, "30 2 * * *", "2025-03-09T12:00-04:00", "2025-03-01T00:00Z", "2025-03-09T03:00-04:00", id="gap-fixed"
        ),
        pytest.param(
            NY, "0 * * * *", "2025-03-09T02:59:59-04:00", "2025-03-01T00:00Z", "2025-03-09T01:00-05:00", id="gap-wild"
        ),
        pytest.param("UTC", "@every 90m", "2025-01-01T02:00Z", "2025-01-01T00:00Z", "2025-01-01T01:30Z", id="every"),
    ],
)
def test_latest_at_or_before(
    zone: str, expression: str, at_: str, not_before: str, expected: str | None
) -> None:
    result = latest_at_or_before(parse_schedule(expression, zone), at(at_), at(not_before))
    assert result == (None if expected is None else at(expected))


# --------------------------------------------------------------------------------------------------
# Efficiency: croniter is consulted a handful of times even when hours of candidates are skipped


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        pytest.param(NY, "* * * * * *", "2025-11-02T01:59:59-04:00", "2025-11-02T01:00:00-05:00", id="fold"),
        pytest.param(NY, "* * 2 * * *", "2025-03-09T01:59:59-05:00", "2025-03-10T02:00:00-04:00", id="gap"),
        pytest.param(NY, "0-59 0-59 1 * * *", "2025-11-02T01:00:00-05:00", "2025-11-03T01:00-05:00", id="fixed"),
        pytest.param(NY, "* * * * * *", "2025-06-01T12:00:00.25-04:00", "2025-06-01T12:00:01-04:00", id="plain"),
    ],
)
def test_next_after_does_not_walk_candidates(
    monkeypatch: pytest.MonkeyPatch, zone: str, expression: str, after: str, expected: str
) -> None:
    calls: list[datetime] = []
    original: Callable[[CronSchedule, datetime], datetime] = CronSchedule._candidate_after

    def counting(self: CronSchedule, cursor: datetime) -> datetime:
        calls.append(cursor)
        return original(self, cursor)

    monkeypatch.setattr(CronSchedule, "_candidate_after", counting)
    assert parse_schedule(expression, zone).next_after(at(after)) == at(expected)
    assert len(calls) <= 3


# --------------------------------------------------------------------------------------------------
# Cross-check against a brute-force reference that resolves every candidate in a window


def reference_fire_times(expression: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Resolve every naive candidate in [start, end] by the rules in the module docstring."""
    schedule = parse_schedule(expression, zone_name)
    assert isinstance(schedule, CronSchedule)
    zone = ZoneInfo(zone_name)
    candidates = croniter(expression, start, datetime, second_at_beginning=len(expression.split()) == 6)
    instants: set[datetime] = set()
    while (local := candidates.get_next(datetime)) <= end:
        kind = wall_kind(zone_name, local.isoformat())
        first = local.replace(tzinfo=zone).astimezone(UTC)
        if kind == "normal" or (kind == "repeated" and schedule.fixed_time):
            instants.add(first)
        elif kind == "repeated":
            instants |= {first, local.replace(tzinfo=zone, fold=1).astimezone(UTC)}
        elif schedule.fixed_time:
            # The gap starts at the last minute that still exists; the job fires when it ends.
            gap_start = local.replace(second=0)
            while wall_kind(zone_name, (gap_start - timedelta(minutes=1)).isoformat()) == "gap":
                gap_start -= timedelta(minutes=1)
            instants.add(gap_start.replace(tzinfo=zone).astimezone(UTC))
    return sorted(instants)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (NY, "2025-03-09"),
        (NY, "2025-11-02"),
        (SAO_PAULO, "2018-11-04"),
        (SAO_PAULO, "2019-02-16"),
        (LONDON, "2025-03-30"),
        (LONDON, "2025-10-26"),
        (LORD_HOWE, "2025-04-06"),
        (LORD_HOWE, "2025-10-05"),
    ],
)
@pytest.mark.parametrize(
    "expression",
    ["*/20 * * * *", "0 * * * *", "30 1 * * *", "0,30 2 * * *", "0 0,23 * * *", "*/7 1-3 * * *", "15 */2 * * *"],
)
def test_matches_brute_force_reference(zone: str, day: str, expression: str) -> None:
    start = wall(day) - timedelta(days=1)
    reference = reference_fire_times(expression, zone, start, start + timedelta(days=4))
    schedule = parse_schedule(expression, zone)
    first = start.replace(tzinfo=ZoneInfo(zone)) + timedelta(hours=12)
    probes = [first + timedelta(minutes=13 * step) for step in range(2 * 24 * 60 // 13)]
    probes += [instant + delta for instant in reference for delta in (timedelta(0), -timedelta(microseconds=1))]
    for probe in probes:
        if not first <= probe <= first + timedelta(days=2):
            continue
        expected = reference[bisect.bisect_right(reference, probe)]
        assert schedule.next_after(probe) == expected, probe
