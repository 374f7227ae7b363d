"""Tables for the schedule policies layered over a parsed schedule (sundial.core.policies)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from sundial.cli.describe import describe_lines
from sundial.cli.jobs import JobView
from sundial.cli.render import duration_ms, fire_line, human_age, jitter_note
from sundial.core.clock import ManualClock
from sundial.core.jobs import arm_command
from sundial.core.policies import (
    NEVER,
    JitteredSchedule,
    WindowedSchedule,
    build_schedule,
    jitter_delay,
    never_to_none,
    plan_schedule,
    planning_deadline,
    remaining_runs,
    spec_schedule,
    upcoming_fires,
    with_dst,
    with_jitter,
)
from sundial.core.runs import EntryPlan, JobRef
from sundial.core.schedule import MissedRunPolicy, ScheduleError, fire_times, parse_schedule, plan_fires
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.dashboard.app import preview
from sundial.dashboard.models import PreviewOut, PreviewRequest
from sundial.operator.reconcile import ready_fields

MINUTELY = parse_schedule("* * * * *", "UTC")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def jittered(expression: str = "* * * * *", seconds: int = 30, key: str = "job-a") -> JitteredSchedule:
    return with_jitter(parse_schedule(expression, "UTC"), key, seconds)


@pytest.mark.parametrize(("seconds", "gap", "bound"), [
    (30, timedelta(minutes=1), timedelta(seconds=30)),      # the window is the bound
    (300, timedelta(minutes=1), timedelta(seconds=59.999)),  # never reaches the next slot
    (5, timedelta(seconds=1), timedelta(milliseconds=999)),  # a per-second job stays in its second
    (0, timedelta(minutes=1), timedelta(0)),                 # no jitter, no delay
])
def test_delay_stays_inside_the_window_and_before_the_next_slot(
        seconds: int, gap: timedelta, bound: timedelta) -> None:
    delays = [jitter_delay(f"job-{n}", T0 + n * gap, seconds, gap) for n in range(500)]
    assert all(timedelta(0) <= delay <= bound for delay in delays)
    assert all(delay % timedelta(milliseconds=1) == timedelta(0) for delay in delays)
    if seconds:
        assert len(set(delays)) > 300, "the delays must spread, not cluster"


def test_the_same_job_and_slot_always_get_the_same_delay() -> None:
    first = [jitter_delay("job-a", T0 + timedelta(minutes=n), 30, timedelta(minutes=1)) for n in range(50)]
    again = [jitter_delay("job-a", T0 + timedelta(minutes=n), 30, timedelta(minutes=1)) for n in range(50)]
    other = [jitter_delay("job-b", T0 + timedelta(minutes=n), 30, timedelta(minutes=1)) for n in range(50)]
    assert first == again
    assert first != other


def test_thousands_of_jobs_at_the_same_slot_spread_over_the_window() -> None:
    delays = sorted(jitter_delay(f"job-{n}", T0, 60, timedelta(hours=1)).total_seconds() for n in range(6000))
    per_ten_seconds = [sum(1 for d in delays if start <= d < start + 10) for start in range(0, 60, 10)]
    assert all(800 <= count <= 1200 for count in per_ten_seconds), per_ten_seconds


def test_fire_times_are_slots_plus_their_delay_in_slot_order() -> None:
    schedule = jittered()
    times = fire_times(schedule, T0 - timedelta(seconds=1), 20)
    slots = [T0 + timedelta(minutes=n) for n in range(20)]
    assert times == [slot + schedule.delay(slot) for slot in slots]
    assert times == sorted(times)
    assert [schedule.slot_of(time) for time in times] == slots


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(milliseconds=1), timedelta(seconds=29),
                                    timedelta(seconds=59, milliseconds=999)])
def test_next_after_any_instant_is_the_first_fire_time_past_it(offset: timedelta) -> None:
    schedule = jittered()
    after = T0 + offset
    expected = min(t for t in (schedule.fire_time(T0), schedule.fire_time(T0 + timedelta(minutes=1)))
                   if t > after)
    assert schedule.next_after(after) == expected


def test_a_fire_time_of_no_slot_is_its_own_slot() -> None:
    schedule = jittered()
    stray = T0 + schedule.delay(T0) + timedelta(milliseconds=1)
    assert schedule.slot_of(stray) == stray


def test_without_jitter_the_schedule_answers_as_before() -> None:
    schedule = with_jitter(MINUTELY, "job-a", 0)
    assert fire_times(schedule, T0, 5) == fire_times(MINUTELY, T0, 5)
    assert schedule.slot_of(T0) == T0
    assert schedule.delay(T0) == timedelta(0)


def test_jitter_follows_the_dst_aware_slots() -> None:
    # 02:30 does not exist on 2025-03-09 in New York: the slot is the gap's end (03:00 EDT).
    schedule = with_jitter(parse_schedule("30 2 * * *", "America/New_York"), "job-a", 600)
    fire = schedule.next_after(datetime(2025, 3, 9, 5, 0, tzinfo=UTC))
    assert schedule.slot_of(fire) == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)
    assert timedelta(0) <= fire - schedule.slot_of(fire) <= timedelta(minutes=10)


def test_the_planner_sees_fire_times_and_maps_them_back_to_slots() -> None:
    schedule = jittered(seconds=20)
    due = schedule.fire_time(T0)
    plan = plan_fires(schedule, due, schedule.fire_time(T0 + timedelta(minutes=3)), policy=MissedRunPolicy.RUN_ALL,
                      starting_deadline=None, max_catch_up=10, on_time_grace=timedelta(seconds=5))
    assert [schedule.slot_of(fire.slot) for fire in plan.fires] == [T0 + timedelta(minutes=n) for n in range(4)]
    assert plan.next_due == schedule.fire_time(T0 + timedelta(minutes=4))


def test_describe_and_next_show_each_runs_slot_and_jitter() -> None:
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec={"schedule": "0 * * * *", "timeZone": "UTC", "target": "noop", "jitterSeconds": 600})
    now = T0 + timedelta(minutes=11)  # past the 12:00 slot's latest start
    lines = describe_lines(job, None, [], now)
    assert "  Jitter:              up to 600s after each slot, the same delay for the same slot" in lines
    schedule = with_jitter(parse_schedule("0 * * * *", "UTC"), "uid-1", 600)
    first = upcoming_fires(schedule, now, 1)[0]
    assert first.slot == T0 + timedelta(hours=1)
    heading = lines.index("Next 5 Fire Times (UTC):")
    assert lines[heading + 1] == (f"  {first.start:%Y-%m-%d %H:%M:%S} UTC   in {human_age(first.start - now)}   "
                                  f"{jitter_note(first, ZoneInfo('UTC'))}")
    assert jitter_note(first, ZoneInfo("UTC")) == f"(slot 13:00:00 + jitter {duration_ms(first.jitter // MS)})"
    assert fire_line(first, ZoneInfo("UTC")).startswith(first.start.isoformat() + "   (slot 13:00:00 + jitter ")
    plain = upcoming_fires(with_jitter(parse_schedule("0 * * * *", "UTC"), "uid-1", 0), T0, 1)[0]
    assert fire_line(plain, ZoneInfo("UTC")) == "2026-03-01T13:00:00+00:00"
    assert not any(line.lstrip().startswith("Jitter:") for line in describe_lines(
        JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                spec={"schedule": "0 * * * *", "timeZone": "UTC", "target": "noop"}), None, [], T0))


# --- active window ------------------------------------------------------------------------------

START = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
END = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
HOURLY = parse_schedule("0 * * * *", "UTC")


@pytest.mark.parametrize(("after", "expected"), [
    (T0, datetime(2026, 3, 1, 13, 0, tzinfo=UTC)),                    # before the window: its first slot
    (datetime(2026, 3, 1, 13, 0, tzinfo=UTC), datetime(2026, 3, 1, 14, 0, tzinfo=UTC)),
    (datetime(2026, 3, 1, 14, 0, tzinfo=UTC), END),                   # a slot right at the end runs
    (END, NEVER),                                                     # then nothing, ever
    (datetime(2030, 1, 1, tzinfo=UTC), NEVER),
    (NEVER, NEVER),
])
def test_a_window_keeps_only_its_slots(after: datetime, expected: datetime) -> None:
    assert WindowedSchedule(HOURLY, START, END).next_after(after) == expected


def test_a_slot_right_at_the_start_runs() -> None:
    assert WindowedSchedule(HOURLY, T0, None).next_after(T0 - timedelta(days=3)) == T0


def test_upcoming_fires_stop_where_the_window_closes() -> None:
    schedule = build_schedule(HOURLY, "job-a", start=START, end=END, jitter_seconds=60)
    fires = upcoming_fires(schedule, T0, 10)
    assert [fire.slot for fire in fires] == [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (13, 14, 15)]
    assert all(timedelta(0) <= fire.jitter <= timedelta(seconds=60) for fire in fires)
    assert schedule.next_after(fires[-1].start) == NEVER
    assert never_to_none(NEVER) is None
    assert never_to_none(END) == END


def test_the_planner_fires_the_last_slot_then_plans_nothing() -> None:
    schedule = build_schedule(HOURLY, "job-a", start=START, end=END)
    plan = plan_fires(schedule, END, END + timedelta(seconds=1), policy=MissedRunPolicy.RUN_ONCE,
                      starting_deadline=None, max_catch_up=10, on_time_grace=timedelta(seconds=5))
    assert [fire.slot for fire in plan.fires] == [END]
    assert plan.next_due == NEVER
    # An outage past the end: the slots inside the window follow missedRunPolicy, none after.
    late = plan_fires(schedule, datetime(2026, 3, 1, 13, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC),
                      policy=MissedRunPolicy.RUN_ALL, starting_deadline=None, max_catch_up=10,
                      on_time_grace=timedelta(seconds=5))
    assert [fire.slot.hour for fire in late.fires] == [13, 14, 15]
    assert late.next_due == NEVER


def test_a_spec_window_must_be_open_and_carry_offsets() -> None:
    with pytest.raises(SpecError, match=r"^spec: endTime must be after startTime$"):
        parse_spec({"target": "noop", "schedule": "@hourly", "startTime": "2026-03-02T00:00:00Z",
                    "endTime": "2026-03-01T00:00:00Z"})
    with pytest.raises(SpecError, match=r"^spec\.startTime: "):
        parse_spec({"target": "noop", "schedule": "@hourly", "startTime": "2026-03-02T00:00:00"})
    spec = parse_spec({"target": "noop", "schedule": "@hourly", "startTime": "2026-03-02T00:00:00-03:00"})
    assert spec.start_time == datetime(2026, 3, 2, 3, tzinfo=UTC)


def test_describe_shows_the_window_and_where_the_runs_stop() -> None:
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec={"schedule": "0 * * * *", "timeZone": "UTC", "target": "noop",
                        "startTime": "2026-03-01T12:30:00Z", "endTime": "2026-03-01T15:00:00Z"})
    lines = describe_lines(job, None, [], T0)
    assert ("  Active Window:       from 2026-03-01 12:30:00 UTC until 2026-03-01 15:00:00 UTC"
            " (slots outside it never run)") in lines
    heading = lines.index("Next 5 Fire Times (UTC):")
    assert [line.split("   ")[0] for line in lines[heading + 1: heading + 5]] == [
        "  2026-03-01 13:00:00 UTC", "  2026-03-01 14:00:00 UTC", "  2026-03-01 15:00:00 UTC",
        "  then none: the active window ends at 2026-03-01 15:00:00 UTC (endTime)"]
    ended = describe_lines(job, None, [], END + timedelta(minutes=1))
    assert "  none: the active window ends at 2026-03-01 15:00:00 UTC (endTime)" in ended


# --- run limit ----------------------------------------------------------------------------------


def limited(**fields: object) -> ScheduledJobSpec:
    return parse_spec({"target": "noop", "schedule": "0 * * * *", "timeZone": "UTC",
                       "startTime": "2026-03-01T12:30:00Z", "maxRuns": 3, **fields})


@pytest.mark.parametrize(("last_slot", "end_time", "left"), [
    (None, None, 3),                                          # nothing fired yet: 13:00, 14:00, 15:00
    (datetime(2026, 3, 1, 13, tzinfo=UTC), None, 2),
    (datetime(2026, 3, 1, 15, tzinfo=UTC), None, 0),
    (datetime(2026, 3, 1, 12, tzinfo=UTC), None, 3),          # a slot before the window uses none
    (None, "2026-03-01T14:30:00Z", 2),                        # endTime comes first
    (datetime(2026, 3, 1, 14, tzinfo=UTC), "2026-03-01T14:30:00Z", 0),
])
def test_remaining_runs_count_the_slots_still_to_come(
        last_slot: datetime | None, end_time: str | None, left: int) -> None:
    spec = limited(**({"endTime": end_time} if end_time else {}))
    assert remaining_runs(spec, last_slot) == left


def test_a_run_limit_closes_the_window_at_its_last_slot() -> None:
    spec = limited(jitterSeconds=60)
    schedule = spec_schedule(spec, "job-a")
    fires = upcoming_fires(schedule, T0, 10)
    assert [fire.slot.hour for fire in fires] == [13, 14, 15]
    assert remaining_runs(parse_spec({"target": "noop", "schedule": "@hourly"}), None) is None


@pytest.mark.parametrize("expression", ["@every 90m", "@hourly", "*/20 * * * * *", "0 9 * * 1-5"])
def test_the_limit_is_walked_from_the_schedule_as_written(expression: str) -> None:
    spec = limited(schedule=expression, maxRuns=5)
    expected = fire_times(parse_schedule(expression, "UTC"), START - timedelta(microseconds=1), 5)
    assert [fire.slot for fire in upcoming_fires(spec_schedule(spec, "k"), START - timedelta(days=1), 9)] == expected


def test_a_run_limit_needs_a_start() -> None:
    with pytest.raises(SpecError, match="maxRuns counts slots from startTime: set startTime too"):
        parse_spec({"target": "noop", "schedule": "@hourly", "maxRuns": 3})


def test_describe_shows_the_run_limit_and_what_is_left() -> None:
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec={"schedule": "0 * * * *", "timeZone": "UTC", "target": "noop",
                        "startTime": "2026-03-01T12:30:00Z", "maxRuns": 3},
                  status={"remainingRuns": 2})
    lines = describe_lines(job, None, [], T0)
    assert "  Run Limit:           the first 3 slots from startTime, 2 still to come" in lines
    heading = lines.index("Next 5 Fire Times (UTC):")
    assert lines[heading + 4] == "  then none: the run limit of 3 slots from startTime (maxRuns)"


# --- the page's preview -------------------------------------------------------------------------


def preview_of(**fields: object) -> PreviewOut:
    body = PreviewRequest.model_validate({"schedule": "0 * * * *", "timeZone": "UTC", "count": 5, **fields})
    return preview(body, cast(Any, SimpleNamespace(clock=ManualClock(T0))))


def test_the_preview_shows_starts_and_slots_with_the_policies() -> None:
    out = preview_of(jitterSeconds=120, uid="uid-1", startTime="2026-03-01T13:30:00Z", maxRuns=2)
    assert out.valid
    assert out.next_slots == [datetime(2026, 3, 1, 14, tzinfo=UTC), datetime(2026, 3, 1, 15, tzinfo=UTC)]
    jittered = with_jitter(WindowedSchedule(HOURLY, datetime(2026, 3, 1, 13, 30, tzinfo=UTC),
                                            datetime(2026, 3, 1, 15, tzinfo=UTC)), "uid-1", 120)
    assert out.next_runs == [jittered.fire_time(slot) for slot in out.next_slots]
    plain = preview_of()
    assert plain.next_runs == plain.next_slots == [T0 + timedelta(hours=n) for n in range(1, 6)]


def test_the_preview_names_the_policy_field_it_refuses() -> None:
    out = preview_of(maxRuns=2)
    assert (out.valid, out.error_field) == (False, "spec")
    assert out.error == "maxRuns counts slots from startTime: set startTime too"
    bad = preview_of(endTime="tomorrow")
    assert (bad.valid, bad.error_field) == (False, "spec.endTime")


# --- catch-up window ----------------------------------------------------------------------------


@pytest.mark.parametrize(("deadline", "window", "expected"), [
    (None, None, None),
    (60, None, timedelta(seconds=60)),
    (None, 600, timedelta(seconds=600)),
    (60, 600, timedelta(seconds=60)),     # the tighter one plans
    (3600, 600, timedelta(seconds=600)),
])
def test_the_planning_deadline_is_the_tighter_limit(
        deadline: int | None, window: int | None, expected: timedelta | None) -> None:
    assert planning_deadline(deadline, window) == expected


@pytest.mark.parametrize(("policy", "runs", "missed"), [
    (MissedRunPolicy.RUN_ALL, [51, 52, 53, 54, 55, 56, 57, 58, 59, 60], 50),  # inside the window: each
    (MissedRunPolicy.RUN_ONCE, [60], 59),                                      # the latest
    (MissedRunPolicy.SKIP, [], 60),
])
def test_after_an_outage_only_slots_inside_the_catch_up_window_follow_the_policy(
        policy: MissedRunPolicy, runs: list[int], missed: int) -> None:
    minutely = parse_schedule("* * * * *", "UTC")
    now = T0 + timedelta(hours=1, seconds=30)  # every worker was down for an hour
    plan = plan_fires(minutely, T0 + timedelta(minutes=1), now, policy=policy,
                      starting_deadline=planning_deadline(None, 600), max_catch_up=100,
                      on_time_grace=timedelta(seconds=5))
    assert [(fire.slot - T0) // timedelta(minutes=1) for fire in plan.fires] == runs
    assert {fire.trigger for fire in plan.fires} <= {"catchup"}
    assert plan.missed == missed


# --- several schedules and exclusions -------------------------------------------------------------


def several(**fields: object) -> ScheduledJobSpec:
    return parse_spec({"target": "noop", "schedule": "0 9 * * *", "timeZone": "America/Sao_Paulo", **fields})


def test_several_schedules_fire_each_slot_once_in_their_own_zones() -> None:
    spec = several(schedules=[{"schedule": "0 9 * * *", "timeZone": "Europe/Lisbon"},
                              {"schedule": "0 12 * * *"},                       # the job's zone
                              {"schedule": "0 9 * * *", "timeZone": "America/Sao_Paulo"}])  # a duplicate
    fires = upcoming_fires(spec_schedule(spec, "k"), datetime(2026, 3, 1, 0, tzinfo=UTC), 6)
    assert [fire.slot for fire in fires] == [
        datetime(2026, 3, 1, 9, tzinfo=UTC),    # 09:00 Lisbon
        datetime(2026, 3, 1, 12, tzinfo=UTC),   # 09:00 Sao Paulo, twice in the spec, once here
        datetime(2026, 3, 1, 15, tzinfo=UTC),   # 12:00 Sao Paulo
        datetime(2026, 3, 2, 9, tzinfo=UTC),
        datetime(2026, 3, 2, 12, tzinfo=UTC),
        datetime(2026, 3, 2, 15, tzinfo=UTC),
    ]


@pytest.mark.parametrize(("exclude", "days"), [
    (["2026-03-02"], [1, 3, 4]),                      # a holiday, read in the job's zone
    (["* * * * 1"], [1, 3, 4]),                       # Mondays (2026-03-02 is one)
    (["0 9 2-3 3 *"], [1, 4, 5]),                     # the exact minute of two slots
    (["0 10 * * *"], [1, 2, 3]),                      # matches no slot: nothing dropped
])
def test_exclusions_drop_the_slots_they_match(exclude: list[str], days: list[int]) -> None:
    fires = upcoming_fires(spec_schedule(several(exclude=exclude), "k"), datetime(2026, 3, 1, tzinfo=UTC), 3)
    assert [fire.slot.astimezone(ZoneInfo("America/Sao_Paulo")).day for fire in fires] == days


@pytest.mark.parametrize(("field", "value", "message"), [
    ("exclude", ["2026-02-30"], "spec.exclude: exclude entry '2026-02-30' is not a valid date"),
    ("exclude", ["0 9 * *"], "is neither a date (YYYY-MM-DD) nor a 5-field cron expression"),
    ("exclude", ["0 0 9 * * *"], "is neither a date (YYYY-MM-DD) nor a 5-field cron expression"),
    ("schedules", [{"schedule": "0 25 * * *"}], "spec.schedules[0]: invalid hour field '25'"),
    ("schedules", [{"schedule": "@daily", "timeZone": "Nowhere/City"}], "unknown time zone 'Nowhere/City'"),
])
def test_bad_schedules_and_exclusions_are_refused_by_field(field: str, value: object, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        several(**{field: value})


def test_exclusions_that_leave_no_slot_say_so() -> None:
    schedule = spec_schedule(several(exclude=["* * * * *"]), "k")
    with pytest.raises(ScheduleError, match="exclude drops 10000 slots in a row"):
        schedule.next_after(T0)


def test_a_plan_carries_the_extra_schedules_to_the_ticker() -> None:
    spec = several(schedules=[{"schedule": "0 12 * * *"}], exclude=["2026-03-02"], jitterSeconds=30)
    job = JobRef("uid-1", "ops", "report")
    plan = EntryPlan.from_json(arm_command(job, spec, T0, None).plan_json)
    assert plan.schedules == (("0 12 * * *", "America/Sao_Paulo"),)
    ticker_view = plan_schedule(plan, parse_schedule(plan.schedule, plan.time_zone), "uid-1")
    assert upcoming_fires(ticker_view, T0, 6) == upcoming_fires(spec_schedule(spec, "uid-1"), T0, 6)


def test_describe_lists_the_extra_schedules_and_exclusions() -> None:
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec={"schedule": "0 9 * * *", "timeZone": "UTC", "target": "noop",
                        "schedules": [{"schedule": "0 18 * * *", "timeZone": "Asia/Tokyo"}],
                        "exclude": ["2026-12-25", "* * * * 0"]})
    lines = describe_lines(job, None, [], T0)
    assert "  Also Scheduled:      0 18 * * * (Asia/Tokyo)" in lines
    assert ("  Excluded:            2026-12-25, * * * * 0 (slots on these dates or matching these crons never run)"
            in lines)


# --- pause with a reason ------------------------------------------------------------------------


def test_a_pause_reason_shows_in_describe_and_the_ready_condition_and_never_rearms() -> None:
    paused = parse_spec({"target": "noop", "schedule": "@hourly", "suspend": True,
                         "suspendReason": "upstream API down, INC-4211"})
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec=paused.model_dump(mode="json", by_alias=True))
    assert "  Suspend:             true (upstream API down, INC-4211)" in describe_lines(job, None, [], T0)
    [condition] = ready_fields({}, 3, paused, T0)["conditions"]
    assert (condition["reason"], condition["message"]) == (
        "Suspended", "suspended (upstream API down, INC-4211): no runs until spec.suspend is false")
    plain = parse_spec({"target": "noop", "schedule": "@hourly", "suspend": True})
    assert ready_fields({}, 3, plain, T0)["conditions"][0]["message"] == (
        "suspended: no runs until spec.suspend is false")
    assert paused.fingerprint() == plain.fingerprint(), "a note for people never re-arms the job"
    with pytest.raises(SpecError, match=r"spec\.suspendReason: .*NUL"):
        parse_spec({"target": "noop", "schedule": "@hourly", "suspendReason": "a\x00b"})


# --- DST choice ---------------------------------------------------------------------------------

NY = ZoneInfo("America/New_York")
SPRING = datetime(2025, 3, 9, 5, 0, tzinfo=UTC)   # 00:00 EST; 02:00 EST -> 03:00 EDT at 07:00Z
FALL = datetime(2025, 11, 2, 4, 0, tzinfo=UTC)    # 00:00 EDT; 02:00 EDT -> 01:00 EST at 06:00Z


def ny_walls(expression: str, after: datetime, count: int, **dst: str) -> list[str]:
    spec = parse_spec({"target": "noop", "schedule": expression, "timeZone": "America/New_York",
                       **({"dstPolicy": dst} if dst else {})})
    fires = upcoming_fires(spec_schedule(spec, "k"), after, count)
    return [f"{fire.slot.astimezone(NY):%d %H:%M %Z}" for fire in fires]


@pytest.mark.parametrize(("expression", "dst", "walls"), [
    # today's rule: a fixed-time job runs when the gap ends, a wildcard one skips the gap
    ("30 2 * * *", {}, ["09 03:00 EDT", "10 02:30 EDT"]),
    ("30 2 * * *", {"gap": "Skip"}, ["10 02:30 EDT", "11 02:30 EDT"]),
    ("30 2 * * *", {"gap": "RunAfterGap"}, ["09 03:00 EDT", "10 02:30 EDT"]),
    ("30 * * * *", {}, ["09 00:30 EST", "09 01:30 EST", "09 03:30 EDT"]),
    ("30 * * * *", {"gap": "RunAfterGap"}, ["09 00:30 EST", "09 01:30 EST", "09 03:00 EDT", "09 03:30 EDT"]),
])
def test_the_spring_forward_gap_follows_the_dst_policy(expression: str, dst: dict[str, str], walls: list[str]) -> None:
    assert ny_walls(expression, SPRING, len(walls), **dst) == walls


@pytest.mark.parametrize(("expression", "dst", "walls"), [
    ("30 1 * * *", {}, ["02 01:30 EDT", "03 01:30 EST"]),                         # once, today's rule
    ("30 1 * * *", {"repeatedHour": "Both"}, ["02 01:30 EDT", "02 01:30 EST", "03 01:30 EST"]),
    ("30 * * * *", {}, ["02 00:30 EDT", "02 01:30 EDT", "02 01:30 EST", "02 02:30 EST"]),
    ("30 * * * *", {"repeatedHour": "Once"}, ["02 00:30 EDT", "02 01:30 EDT", "02 02:30 EST"]),
])
def test_the_repeated_fall_back_hour_follows_the_dst_policy(
        expression: str, dst: dict[str, str], walls: list[str]) -> None:
    assert ny_walls(expression, FALL, len(walls), **dst) == walls


def test_the_ticker_parses_the_same_dst_policy_from_the_plan() -> None:
    spec = parse_spec({"target": "noop", "schedule": "30 1 * * *", "timeZone": "America/New_York",
                       "dstPolicy": {"repeatedHour": "Both"}, "schedules": [{"schedule": "30 * * * *"}]})
    plan = EntryPlan.from_json(arm_command(JobRef("uid-1", "ops", "r"), spec, FALL, None).plan_json)
    inner = with_dst(parse_schedule(plan.schedule, plan.time_zone), plan.dst_gap, plan.dst_repeated_hour)
    assert (upcoming_fires(plan_schedule(plan, inner, "uid-1"), FALL, 8)
            == upcoming_fires(spec_schedule(spec, "uid-1"), FALL, 8))
    interval = parse_schedule("@every 1h", "America/New_York")
    assert with_dst(interval, "Skip", "Both") is interval, "elapsed time has no DST"


def test_describe_shows_the_last_backfill_request() -> None:
    request = ('{"from":"2026-03-01T00:00:00+00:00","to":"2026-03-07T23:59:59+00:00","sequential":true,'
               '"id":"backfill by alice"}')
    job = JobView(job_id="uid-1", namespace="ops", name="report", source="kubernetes",
                  spec={"schedule": "0 3 * * *", "timeZone": "America/Sao_Paulo", "target": "noop",
                        "concurrencyPolicy": "BufferAll"},
                  status={"lastBackfillRequest": request})
    lines = describe_lines(job, None, [], T0)
    assert "  Concurrency Policy:  BufferAll" in lines
    assert ("  Last Backfill:  2026-02-28 21:00:00 -03 .. 2026-03-07 20:59:59 -03, one at a time"
            in lines)
