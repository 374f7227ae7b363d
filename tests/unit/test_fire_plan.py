"""Tables for plan_fires: every branch of the missed-run planner, the count cap, and big backlogs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sundial.core.schedule import (
    FIRES_TOGETHER_MAX,
    MISSED_COUNT_CAP,
    SHORT_BACKLOG,
    FirePlan,
    MissedRunPolicy,
    PlannedFire,
    Schedule,
    fire_together,
    parse_schedule,
    plan_fires,
    staggered_group,
)

RUN_ONCE = MissedRunPolicy.RUN_ONCE
SKIP = MissedRunPolicy.SKIP
RUN_ALL = MissedRunPolicy.RUN_ALL
HOURLY = parse_schedule("0 * * * *", "UTC")
ONE_MINUTE = timedelta(minutes=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


def plan(
    schedule: Schedule,
    due: str,
    now: str,
    policy: MissedRunPolicy,
    *,
    deadline: timedelta | None = None,
    max_catch_up: int = 10,
    grace: timedelta = ONE_MINUTE,
) -> FirePlan:
    return plan_fires(
        schedule,
        at(due),
        at(now),
        policy=policy,
        starting_deadline=deadline,
        max_catch_up=max_catch_up,
        on_time_grace=grace,
    )


def fired(result: FirePlan) -> list[tuple[datetime, str]]:
    return [(fire.slot, fire.trigger) for fire in result.fires]


@dataclass(frozen=True)
class Row:
    """One planner case on the hourly UTC schedule; slots due are 10:00, 11:00, ... up to `now`."""

    now: str
    policy: MissedRunPolicy
    fires: list[tuple[str, str]]
    missed: int
    next_due: str
    deadline: timedelta | None = None
    max_catch_up: int = 10
    grace: timedelta = ONE_MINUTE
    due: str = "2025-01-01T10:00Z"


ROWS = {
    # due > now: nothing to do yet
    "not-due": Row("2025-01-01T09:59:59Z", RUN_ONCE, [], 0, "2025-01-01T10:00Z"),
    # one due slot
    "on-time": Row("2025-01-01T10:00Z", RUN_ONCE, [("10:00", "scheduled")], 0, "2025-01-01T11:00Z"),
    "late-no-deadline": Row("2025-01-01T10:30Z", RUN_ONCE, [("10:00", "scheduled")], 0, "2025-01-01T11:00Z"),
    "late-run-all": Row("2025-01-01T10:30Z", RUN_ALL, [("10:00", "scheduled")], 0, "2025-01-01T11:00Z"),
    "past-deadline": Row("2025-01-01T10:30Z", RUN_ONCE, [], 1, "2025-01-01T11:00Z", deadline=minutes(10)),
    "at-deadline": Row(
        "2025-01-01T10:30Z", RUN_ONCE, [("10:00", "scheduled")], 0, "2025-01-01T11:00Z", deadline=minutes(30)
    ),
    "skip-in-grace": Row("2025-01-01T10:01Z", SKIP, [("10:00", "scheduled")], 0, "2025-01-01T11:00Z"),
    "skip-past-grace": Row("2025-01-01T10:01:01Z", SKIP, [], 1, "2025-01-01T11:00Z"),
    "skip-grace-but-deadline": Row(
        "2025-01-01T10:00:30Z", SKIP, [], 1, "2025-01-01T11:00Z", deadline=timedelta(seconds=10)
    ),
    # backlog: 10:00, 11:00, 12:00, 13:00 due at 13:30
    "once": Row("2025-01-01T13:30Z", RUN_ONCE, [("13:00", "catchup")], 3, "2025-01-01T14:00Z"),
    "once-latest-expired": Row("2025-01-01T13:30Z", RUN_ONCE, [], 4, "2025-01-01T14:00Z", deadline=minutes(20)),
    "once-within-deadline": Row(
        "2025-01-01T13:30Z", RUN_ONCE, [("13:00", "catchup")], 3, "2025-01-01T14:00Z", deadline=minutes(45)
    ),
    "skip-latest-on-time": Row("2025-01-01T13:00:30Z", SKIP, [("13:00", "scheduled")], 3, "2025-01-01T14:00Z"),
    "skip-latest-late": Row("2025-01-01T13:30Z", SKIP, [], 4, "2025-01-01T14:00Z"),
    "skip-latest-expired": Row(
        "2025-01-01T13:00:30Z", SKIP, [], 4, "2025-01-01T14:00Z", deadline=timedelta(seconds=10)
    ),
    "all-capped": Row(
        "2025-01-01T13:30Z",
        RUN_ALL,
        [("12:00", "catchup"), ("13:00", "catchup")],
        2,
        "2025-01-01T14:00Z",
        max_catch_up=2,
    ),
    "all-everything": Row(
        "2025-01-01T13:30Z",
        RUN_ALL,
        [("10:00", "catchup"), ("11:00", "catchup"), ("12:00", "catchup"), ("13:00", "catchup")],
        0,
        "2025-01-01T14:00Z",
    ),
    "all-deadline": Row(
        "2025-01-01T13:30Z",
        RUN_ALL,
        [("12:00", "catchup"), ("13:00", "catchup")],
        2,
        "2025-01-01T14:00Z",
        deadline=timedelta(hours=2, minutes=10),
    ),
    "all-latest-expired": Row("2025-01-01T13:30Z", RUN_ALL, [], 4, "2025-01-01T14:00Z", deadline=minutes(10)),
    "all-zero": Row("2025-01-01T13:30Z", RUN_ALL, [], 4, "2025-01-01T14:00Z", max_catch_up=0),
    # The latest slot is within the on-time grace: it runs as scheduled whatever the policy.
    "now-on-slot": Row("2025-01-01T13:00Z", RUN_ONCE, [("13:00", "scheduled")], 3, "2025-01-01T14:00Z"),
    # `due` is kept as a slot even when the schedule (edited since) no longer produces it
    "due-off-schedule": Row(
        "2025-01-01T11:30Z",
        RUN_ALL,
        [("09:45", "catchup"), ("10:00", "catchup"), ("11:00", "catchup")],
        0,
        "2025-01-01T12:00Z",
        due="2025-01-01T09:45Z",
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_plan_fires_branches(row: Row) -> None:
    result = plan(
        HOURLY,
        row.due,
        row.now,
        row.policy,
        deadline=row.deadline,
        max_catch_up=row.max_catch_up,
        grace=row.grace,
    )
    assert fired(result) == [(at(f"2025-01-01T{slot}Z"), trigger) for slot, trigger in row.fires]
    assert result.missed == row.missed
    assert result.missed_saturated is False
    assert result.next_due == at(row.next_due)


@pytest.mark.parametrize(
    ("due_slots", "policy", "deadline", "max_catch_up", "fired_count", "missed", "saturated"),
    [
        (1000, RUN_ONCE, None, 10, 1, 999, False),
        (1001, RUN_ONCE, None, 10, 1, 1000, False),
        (1002, RUN_ONCE, None, 10, 1, 1000, True),
        (1000, RUN_ONCE, timedelta(seconds=10), 10, 0, 1000, False),
        (1001, RUN_ONCE, timedelta(seconds=10), 10, 0, 1000, True),
        (1005, RUN_ALL, None, 5, 5, 1000, False),
        (1006, RUN_ALL, None, 5, 5, 1000, True),
        (1002, SKIP, None, 10, 1, 1000, True),
    ],
)
def test_missed_count_cap(
    due_slots: int,
    policy: MissedRunPolicy,
    deadline: timedelta | None,
    max_catch_up: int,
    fired_count: int,
    missed: int,
    saturated: bool,
) -> None:
    every_minute = parse_schedule("* * * * *", "UTC")
    due = at("2025-01-01T00:00Z")
    latest = due + minutes(due_slots - 1)
    now = latest + timedelta(seconds=30)
    result = plan_fires(
        every_minute,
        due,
        now,
        policy=policy,
        starting_deadline=deadline,
        max_catch_up=max_catch_up,
        on_time_grace=minutes(1),
    )
    assert MISSED_COUNT_CAP == 1000
    assert len(result.fires) == fired_count
    assert (result.missed, result.missed_saturated) == (missed, saturated)
    if result.fires:
        assert result.fires[-1].slot == latest


@dataclass
class CountingSchedule:
    """Delegates to a real schedule and counts next_after calls, to prove the backlog is not walked."""

    inner: Schedule
    calls: int = 0

    @property
    def expression(self) -> str:
        return self.inner.expression

    @property
    def zone(self) -> ZoneInfo:
        return self.inner.zone

    def next_after(self, after: datetime) -> datetime:
        self.calls += 1
        return self.inner.next_after(after)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RUN_ONCE, [("2025-06-08T00:00:00Z", "scheduled")]),
        (SKIP, [("2025-06-08T00:00:00Z", "scheduled")]),
        (
            RUN_ALL,
            [
                ("2025-06-07T23:59:57Z", "catchup"),
                ("2025-06-07T23:59:58Z", "catchup"),
                ("2025-06-07T23:59:59Z", "catchup"),
                ("2025-06-08T00:00:00Z", "scheduled"),
            ],
        ),
    ],
)
def test_per_second_cron_down_for_a_week(policy: MissedRunPolicy, expected: list[tuple[str, str]]) -> None:
    schedule = CountingSchedule(parse_schedule("* * * * * *", "America/New_York"))
    now = at("2025-06-08T00:00:00.250Z")
    result = plan_fires(
        schedule,
        at("2025-06-01T00:00:00Z"),
        now,
        policy=policy,
        starting_deadline=None,
        max_catch_up=4,
        on_time_grace=timedelta(milliseconds=500),
    )
    assert fired(result) == [(at(slot), trigger) for slot, trigger in expected]
    assert (result.missed, result.missed_saturated) == (MISSED_COUNT_CAP, True)
    assert result.next_due == at("2025-06-08T00:00:01Z")
    # ~600k slots are due; the planner looks at about the cap's worth of them.
    assert schedule.calls < MISSED_COUNT_CAP + SHORT_BACKLOG + 50


@pytest.mark.parametrize(
    ("expression", "due", "now", "policy", "expected", "missed", "next_due"),
    [
        pytest.param(
            "*/30 * * * *",
            "2025-11-02T00:30-04:00",
            "2025-11-02T01:45-05:00",
            RUN_ALL,
            [
                "2025-11-02T00:30-04:00",
                "2025-11-02T01:00-04:00",
                "2025-11-02T01:30-04:00",
                "2025-11-02T01:00-05:00",
                "2025-11-02T01:30-05:00",
            ],
            0,
            "2025-11-02T02:00-05:00",
            id="wildcard-both-copies",
        ),
        pytest.param(
            "30 1 * * *",
            "2025-11-01T01:30-04:00",
            "2025-11-03T12:00-05:00",
            RUN_ONCE,
            ["2025-11-03T01:30-05:00"],
            2,  # Nov 1 and Nov 2 (once, in EDT): the repeated 01:30 EST is not a slot
            "2025-11-04T01:30-05:00",
            id="fixed-once-in-fold",
        ),
        pytest.param(
            "30 2 * * *",
            "2025-03-08T02:30-05:00",
            "2025-03-09T12:00-04:00",
            RUN_ALL,
            ["2025-03-08T02:30-05:00", "2025-03-09T03:00-04:00"],
            0,
            "2025-03-10T02:30-04:00",
            id="fixed-gap-at-transition",
        ),
    ],
)
def test_plan_fires_through_dst(
    expression: str,
    due: str,
    now: str,
    policy: MissedRunPolicy,
    expected: list[str],
    missed: int,
    next_due: str,
) -> None:
    result = plan(parse_schedule(expression, "America/New_York"), due, now, policy)
    assert [fire.slot for fire in result.fires] == [at(slot) for slot in expected]
    assert result.missed == missed
    assert result.next_due == at(next_due)


def test_results_are_utc() -> None:
    result = plan(HOURLY, "2025-01-01T05:00-05:00", "2025-01-01T08:30-05:00", RUN_ALL)
    assert all(fire.slot.utcoffset() == timedelta(0) for fire in result.fires)
    assert result.next_due.utcoffset() == timedelta(0)
    assert result.fires[0] == PlannedFire(at("2025-01-01T10:00Z"), "catchup")


@pytest.mark.parametrize(
    ("deadline", "max_catch_up", "grace", "message"),
    [
        (timedelta(seconds=-1), 1, minutes(1), "starting_deadline must be >= 0"),
        (None, -1, minutes(1), "max_catch_up must be >= 0"),
        (None, 1, timedelta(seconds=-1), "on_time_grace must be >= 0"),
    ],
)
def test_plan_fires_rejects_negative_limits(
    deadline: timedelta | None, max_catch_up: int, grace: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan(
            HOURLY,
            "2025-01-01T10:00Z",
            "2025-01-01T11:00Z",
            RUN_ONCE,
            deadline=deadline,
            max_catch_up=max_catch_up,
            grace=grace,
        )


def test_policy_values_match_the_crd() -> None:
    assert [policy.value for policy in MissedRunPolicy] == ["RunOnce", "Skip", "RunAll"]
    assert MissedRunPolicy("Skip") is SKIP


@pytest.mark.parametrize("policy", [RUN_ONCE, SKIP, RUN_ALL])
def test_slots_within_the_grace_all_run_as_scheduled(policy: MissedRunPolicy) -> None:
    """A ticker that paused for a few seconds drops none of a per-second job's slots."""
    result = plan_fires(
        parse_schedule("* * * * * *", "UTC"),
        at("2025-06-08T00:00:00Z"),
        at("2025-06-08T00:00:02.100Z"),
        policy=policy,
        starting_deadline=None,
        max_catch_up=1,
        on_time_grace=timedelta(seconds=5),
    )
    assert fired(result) == [(at(f"2025-06-08T00:00:0{s}Z"), "scheduled") for s in (0, 1, 2)]
    assert (result.missed, result.next_due) == (0, at("2025-06-08T00:00:03Z"))


@pytest.mark.parametrize("policy", [RUN_ONCE, SKIP, RUN_ALL])
@pytest.mark.parametrize("late_seconds", [1.5, 4.2, 9.7, 30.0])
@pytest.mark.parametrize("deadline", [None, timedelta(seconds=3), timedelta(seconds=20)])
@pytest.mark.parametrize("max_catch_up", [0, 2, 50])
def test_short_backlog_walk_agrees_with_the_look_back_search(
    policy: MissedRunPolicy, late_seconds: float, deadline: timedelta | None, max_catch_up: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule = parse_schedule("* * * * * *", "UTC")
    due = at("2025-06-08T00:00:00Z")
    now = due + timedelta(seconds=late_seconds)
    kwargs = {"policy": policy, "starting_deadline": deadline, "max_catch_up": max_catch_up,
              "on_time_grace": timedelta(seconds=2)}
    walked = plan_fires(schedule, due, now, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr("sundial.core.schedule.SHORT_BACKLOG", 2)
    searched = plan_fires(schedule, due, now, **kwargs)  # type: ignore[arg-type]
    assert walked == searched


EVERY_SECOND = parse_schedule("* * * * * *", "UTC")


@dataclass(frozen=True)
class LeaseRow:
    """A per-second job due at 00:00:00 whose lease ran out at `claimable`; grace 5 s."""

    claimable: str | None
    now: str
    policy: MissedRunPolicy
    fires: list[tuple[int, str]]  # (second, trigger)
    missed: int
    deadline: timedelta | None = None


LEASE_ROWS = {
    # The dead ticker's 2 s lease ran out at :02; the next ticker claims at :02.3: nothing lost.
    "taken-over-promptly": LeaseRow("00:00:02", "00:00:02.3", RUN_ONCE, [(0, "scheduled"), (1, "scheduled"),
                                                                          (2, "scheduled")], 0),
    "taken-over-promptly-skip": LeaseRow("00:00:02", "00:00:02.3", SKIP, [(0, "scheduled"), (1, "scheduled"),
                                                                          (2, "scheduled")], 0),
    # A 10 s lease: every slot under it is still on time when the entry is claimed 1 s after it ends.
    "long-lease-ran-out": LeaseRow(
        "00:00:10", "00:00:11", SKIP, [(s, "scheduled") for s in range(12)], 0
    ),
    # Without the lease, the same plan at :11 keeps only the slots of the last 5 s.
    "no-lease": LeaseRow(None, "00:00:11", SKIP, [(s, "scheduled") for s in range(6, 12)], 6),
    # The grace runs from the lease's end: claimed 6 s after it, the slots it held are late.
    "claimed-late-after-lease": LeaseRow(
        "00:00:02", "00:00:08", SKIP, [(s, "scheduled") for s in range(3, 9)], 3
    ),
    "claimed-late-after-lease-run-once": LeaseRow(
        "00:00:02", "00:00:08", RUN_ONCE, [(s, "scheduled") for s in range(3, 9)], 3
    ),
    "claimed-late-after-lease-run-all": LeaseRow(
        "00:00:02", "00:00:08", RUN_ALL, [(s, "scheduled") for s in range(3, 9)], 3
    ),
    # startingDeadlineSeconds is the user's own limit and still counts from the slot.
    "deadline-still-binds": LeaseRow(
        "00:00:03", "00:00:03.5", RUN_ONCE, [(2, "scheduled"), (3, "scheduled")], 2, deadline=timedelta(seconds=2)
    ),
    # One slot due, held by a lease that ran out 4 s after it: still on time under SKIP.
    "single-slot-skip": LeaseRow("00:00:00.9", "00:00:00.95", SKIP, [(0, "scheduled")], 0),
}


@pytest.mark.parametrize("row", LEASE_ROWS.values(), ids=LEASE_ROWS.keys())
@pytest.mark.parametrize("short_backlog", [True, False], ids=["walk", "search"])
def test_grace_counts_from_when_a_dead_tickers_lease_ran_out(
    row: LeaseRow, short_backlog: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not short_backlog:
        monkeypatch.setattr("sundial.core.schedule.SHORT_BACKLOG", 2)
    day = "2025-06-08T"
    result = plan_fires(
        EVERY_SECOND,
        at(f"{day}00:00:00Z"),
        at(f"{day}{row.now}Z"),
        policy=row.policy,
        starting_deadline=row.deadline,
        max_catch_up=0,
        on_time_grace=timedelta(seconds=5),
        claimable_since=None if row.claimable is None else at(f"{day}{row.claimable}Z"),
    )
    assert fired(result) == [(at(f"{day}00:00:{s:02d}Z"), trigger) for s, trigger in row.fires]
    assert result.missed == row.missed


# fire_together: (schedule, the plan's fires, its next due, window s) -> fires, next due.
EVERY_SECOND = parse_schedule("* * * * * *", "UTC")
EVERY_FIVE_SECONDS = parse_schedule("*/5 * * * * *", "UTC")
S0, S1, S2, S3 = (at(f"2026-01-01T00:00:0{i}+00:00") for i in range(4))


@pytest.mark.parametrize(("schedule", "fires", "next_due", "window", "together", "moved_to"), [
    (EVERY_SECOND, [S0], S1, 1, [S0, S1], S2),  # an every-second job's slots go two at a time
    (EVERY_SECOND, [S0], S1, 2, [S0, S1, S2], S3),
    (EVERY_SECOND, [S0], S1, 0, [S0], S1),  # off
    (EVERY_SECOND, [S0], S1, 0.5, [S0], S1),  # the next slot is further than the window
    (EVERY_FIVE_SECONDS, [S0], at("2026-01-01T00:00:05+00:00"), 1, [S0], at("2026-01-01T00:00:05+00:00")),
    (EVERY_SECOND, [], S1, 1, [], S1),  # nothing fires now (skipped, expired): nothing is added
    (EVERY_SECOND, [S0, S1], S2, 1, [S0, S1], S2),  # a catch-up's window counts from its first fire
    (EVERY_SECOND, [S0], S1, 60, [S0 + timedelta(seconds=i) for i in range(FIRES_TOGETHER_MAX)],
     S0 + timedelta(seconds=FIRES_TOGETHER_MAX)),  # bounded
])
def test_slots_fired_together(schedule: Schedule, fires: list[datetime], next_due: datetime, window: float,
                              together: list[datetime], moved_to: datetime) -> None:
    planned = FirePlan(tuple(PlannedFire(slot, "catchup" if i else "scheduled") for i, slot in enumerate(fires)),
                       missed=2, missed_saturated=False, next_due=next_due)
    result = fire_together(schedule, planned, timedelta(seconds=window))
    assert [fire.slot for fire in result.fires] == together
    assert result.fires[len(fires):] == tuple(PlannedFire(slot, "scheduled") for slot in together[len(fires):])
    assert result.next_due == moved_to
    assert result.missed == 2, "the slots added are on time"


# staggered_group: (first slot s, last slot s, slots in the group, phase) -> slots fired now.
@pytest.mark.parametrize(("first", "last", "size", "phase", "kept"), [
    (100, 101, 2, 0, 2),  # on its phase: the whole pair
    (100, 101, 2, 1, 1),  # off it: the first slot alone, so the next pair begins on the phase
    (101, 102, 2, 1, 2),  # a second later it is on the phase
    (101, 102, 2, 2, 1),  # only the phase's remainder counts
    (99, 101, 3, 0, 3),  # three at a time (a 2 s window): 99 is a multiple of 3
    (100, 102, 3, 0, 2),  # one slot short of the next multiple
    (101, 103, 3, 0, 1),
    (100, 100, 1, 1, 1),  # a single slot is never cut
    (100.5, 101, 2, 0, 1),  # every half second: slots counted in the group's own spacing (index 201)
])
def test_groups_fired_together_begin_on_the_jobs_phase(first: float, last: float, size: int, phase: int,
                                                        kept: int) -> None:
    assert staggered_group(round(first * 1000), round(last * 1000), size, phase) == kept


def test_every_second_jobs_armed_together_begin_their_pairs_in_alternate_seconds() -> None:
    starts: dict[int, list[int]] = {0: [], 1: []}
    for phase in (0, 1):
        slot = 1_000  # s: every job's first due slot, the same
        while slot < 1_010:
            kept = staggered_group(slot * 1000, (slot + 1) * 1000, 2, phase)
            starts[phase].append(slot)
            slot += kept
    assert starts[0] == [1_000, 1_002, 1_004, 1_006, 1_008]
    assert starts[1] == [1_000, 1_001, 1_003, 1_005, 1_007, 1_009], "cut once, then on its own phase"
