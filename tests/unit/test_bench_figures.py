"""The side-by-side benchmark measures every system by one rule: these pin the rule down."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import pytest
from bench.cronjob_side_by_side import JobRecorder, audit_created_jobs
from bench.peers.figures import Start, Window, behind_at_stop, lateness_figure, throughput_figure
from bench.peers.svg import Series, decades, line_chart, nice_ceiling
from bench.run_lateness import slots_due, stages, stages_by_second, timeline, worker_roles, worst_seconds


def test_window_counts_whole_seconds_from_its_opening() -> None:
    assert list(Window(10_500, 13_000).slots()) == [11_000, 12_000]
    assert list(Window(10_000, 12_001).slots()) == [10_000, 11_000, 12_000]


def test_lateness_takes_each_slots_first_start_and_counts_missed_and_duplicates() -> None:
    window = Window(10_000, 12_000)
    starts = [
        Start("a", 10_000, 10_040), Start("a", 10_000, 10_900),  # a duplicate, 40 ms late first
        Start("a", 11_000, 11_020),
        Start("b", 11_000, 11_300),  # b's 10 s slot never started
        Start("b", 9_000, 9_999), Start("b", 12_000, 12_001),  # outside the window
    ]
    figure = lateness_figure("x", ["a", "b", "c"], starts, window, processes=2)
    assert figure.runs == 3
    assert (figure.p50_ms, figure.max_ms) == (40, 300)
    assert figure.missed == 1 + 2  # b once, c never ran
    assert figure.duplicates == 1


def test_throughput_window_is_when_every_process_was_busy() -> None:
    early = [1000.0 + 10 * i for i in range(500)]  # 1.0 s .. 5.99 s, 100 runs/s
    late = [2000.0 + 10 * i for i in range(300)]  # 2.0 s .. 4.99 s
    figure = throughput_figure("x", [early, late], concurrency=5, warm_up_s=1.0)
    # Open 1 s after the later process started (3.0 s), close at its last run (4.99 s).
    assert figure.seconds == 1.99
    assert math.isclose(figure.runs_per_s, 200, rel_tol=0.01)


def test_throughput_without_runs_from_every_process_has_no_rate() -> None:
    figure = throughput_figure("x", [[1000.0, 2000.0], []], concurrency=5)
    assert math.isnan(figure.runs_per_s)
    assert figure.note


def test_chart_scale_and_gaps() -> None:
    assert [nice_ceiling(v) for v in (0.0, 3.0, 170.0, 1000.0, math.nan)] == [1.0, 5.0, 200.0, 1000.0, 1.0]
    svg = line_chart("t", ["1", "2", "3"], "x", "y", [Series("s", [(0, 1.0), (1, math.nan), (2, 3.0)], "#000")])
    assert svg.startswith("<svg")
    assert svg.count("<circle") == 2
    assert "nan" not in svg.lower()


def test_a_logarithmic_chart_spans_the_decades_of_its_figures() -> None:
    """Lateness runs from a few milliseconds to tens of seconds: each decade gets a tick, and a
    series with no figure at all stays out of the legend."""
    assert decades([1.8, 28_009.8]) == (0, 5)
    assert decades([150.0]) == (2, 3)
    assert decades([]) == (0, 1)
    svg = line_chart("t", ["100", "1,000"], "x", "y", [Series("fast", [(0, 1.8), (1, 15.4)], "#000"),
                                                       Series("slow", [(0, 137.0), (1, 28_009.8)], "#111"),
                                                       Series("none", [(0, math.nan)], "#222")], logarithmic=True)
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert ticks == ["1", "10", "100", "1,000", "10,000", "100,000"]
    assert ">fast<" in svg
    assert ">slow<" in svg
    assert ">none<" not in svg


def test_a_peer_whose_runs_fell_behind_is_said_so() -> None:
    """arq's cron clocks can fall seconds behind: a window with no run must read as that."""
    starts = [Start("s0", 10_000, 19_000), Start("s1", 11_000, 19_500)]
    assert behind_at_stop(starts, stopped_ms=15_000, drain_s=5) == ""
    assert "9.0 s old" in behind_at_stop(starts, stopped_ms=20_000, drain_s=5)
    assert behind_at_stop([], stopped_ms=20_000, drain_s=5) == "no run started at all"


def test_a_short_busy_time_still_gets_a_window_with_a_shorter_warm_up() -> None:
    """An idle machine can drain the queue, or a loaded one record few runs, within the warm-up."""
    drained = [1000.0 + 10 * i for i in range(151)]  # busy 1.5 s, shorter than a 2 s warm-up
    figure = throughput_figure("x", [drained], concurrency=5, warm_up_s=2.0)
    assert figure.seconds == 0.75  # opens half-way through
    assert figure.runs == 75
    assert "0.75 s warm-up" in figure.note
    assert not math.isnan(throughput_figure("x", [[1000.0, 1001.0]], concurrency=5, warm_up_s=2.0).runs_per_s)
    assert math.isnan(throughput_figure("x", [[1000.0]], concurrency=5, warm_up_s=2.0).runs_per_s)


def test_cronjob_bench_counts_jobs_from_the_audit_log_that_its_watch_missed(tmp_path: Path) -> None:
    # The watch saw one Job; the audit log also has a create the watch missed (created and
    # deleted while it listed again), a refused create and a Job outside the window.
    def event(name: str, code: int, at: str) -> str:
        return json.dumps({"verb": "create", "requestReceivedTimestamp": at, "responseStatus": {"code": code},
                           "objectRef": {"resource": "jobs", "namespace": "sundial", "name": name}})

    log = tmp_path / "audit.log"
    log.write_text("\n".join([
        event("hourly-1-100", 201, "1970-01-01T01:40:02.700000Z"),
        event("hourly-2-100", 201, "1970-01-01T01:40:04.200000Z"),
        event("hourly-3-100", 409, "1970-01-01T01:40:05.000000Z"),
        event("hourly-4-100", 201, "1970-01-01T02:00:00.000000Z"),
        "not json",
    ]) + "\n")
    recorder = JobRecorder.__new__(JobRecorder)
    recorder.seen = {"uid-1": ("sundial", "hourly-1-100", 6002.0)}
    created = list(audit_created_jobs(log, 6000, 6060))
    assert sorted(recorder.slots("sundial", created)) == [("hourly-1", 100, 2.0), ("hourly-2", 100, 4.0)]
    assert recorder.slots("cronjob", created) == []


def test_the_latest_seconds_of_a_window_are_listed_by_their_p99() -> None:
    started = [(1_000_000.0 + 1000 * second, 1_000_000.0 + 1000 * second + late)
               for second, lates in [(0, [10, 20]), (1, [15, 400]), (2, [5, 8]), (3, [90, 100])] for late in lates]
    assert worst_seconds(started, count=2) == "+1s: 15 / 400 / 400, +3s: 90 / 100 / 100"
    assert worst_seconds([]) == "none"


def test_the_timeline_splits_a_window_into_segments_with_their_missed_slots() -> None:
    start = 1_000_000.0
    started = [(start + 1000 * second, start + 1000 * second + late)
               for second, late in [(0, 10), (5, 30), (12, 400), (25, 50)]]
    # Two slots a second over 30 s: 20 expected per 10-second segment.
    assert timeline(started, start, 30, functools.partial(slots_due, 2, False)) == (
        "by 10 s: +0s: 10 / 30 missed 18, +10s: 400 / 400 missed 19, +20s: 50 / 50 missed 19")
    # A longer window is cut in six; a segment with no run started says so.
    assert timeline([], start, 120, functools.partial(slots_due, 1, False)) == "by 20 s: " + ", ".join(
        f"+{second}s: nan / nan missed 20" for second in range(0, 120, 20))


@pytest.mark.parametrize(("size", "spread", "first_second", "seconds", "expected"), [
    (10, False, 1_000, 3, 30),  # every second: each schedule once a second
    (90, True, 60_000, 60, 90),  # spread over a minute: a whole minute holds each schedule once
    (90, True, 60_000, 20, 40),  # seconds 0-19 of the minute: 2 schedules each (0-29 have 2, 30-59 have 1)
    (90, True, 60_040, 20, 20),  # seconds 40-59: one each
    (100_000, True, 60_010, 20, 20 * 1_667),  # 1,667 at seconds 0-39, 1,666 at 40-59
    (100_000, True, 60_030, 20, 10 * 1_667 + 10 * 1_666),
])
def test_a_stretch_expects_the_slots_its_seconds_hold(size: int, spread: bool, first_second: int, seconds: int,
                                                      expected: int) -> None:
    assert slots_due(size, spread, first_second, seconds) == expected


def test_dedicated_tickers_leave_the_other_processes_to_the_consumer() -> None:
    assert worker_roles(2, 0) == [{}, {}]
    assert worker_roles(3, 1) == [{"SUNDIAL_CONSUMER_ENABLED": "false"}, {"SUNDIAL_TICKER_ENABLED": "false"},
                                  {"SUNDIAL_TICKER_ENABLED": "false"}]
    with pytest.raises(ValueError, match="at least one more process"):
        worker_roles(2, 2)


def test_stages_split_each_runs_lateness_over_the_window_and_second_by_second() -> None:
    # (slot ms, slot -> fired, fired -> read, read -> start): the second second's runs waited in the queue.
    split = [(1_000.0, -400.0, 100.0, 350.0), (1_500.0, -300.0, 100.0, 250.0),
             (2_000.0, -400.0, 900.0, 0.0), (2_200.0, -400.0, 700.0, 0.0)]
    assert stages(split).endswith("(4 runs)")
    assert stages("not measured") == "not measured"
    first, second = stages_by_second(split)
    assert first.startswith("+   0s      2 runs  slot->fired   -400 /   -300")
    assert first.endswith("lateness     50 /     50")
    assert second.startswith("+   1s      2 runs")
    assert "fired->read    700 /    900" in second
