"""ScheduledJobRun shapes (sundial.core.runobjects) and the runs API's authentication and
authorization cache (sundial.dashboard.runsauth): pure, no server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sundial.core import runobjects as ro
from sundial.core.clock import ManualClock
from sundial.core.store import RunQuery, RunRow
from sundial.dashboard.runsauth import Authorizer, Unauthorized, authenticate
from sundial.kube.delegation import Access, Caller, FrontProxy

SLOT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROW = RunRow(
    run_id="8c2f:1772452800000", job_id="8c2f", namespace="team-a", job_name="nightly", logical_time=SLOT,
    scheduled_for=SLOT, trigger_type="retry", status="timed_out", attempt=2, started_at=SLOT + timedelta(seconds=1),
    completed_at=SLOT + timedelta(seconds=31), duration_ms=30_000, error_message="TimeoutError: 30 s\nmore",
    worker="worker-a", reason=None, deliveries=1, next_retry_at=None,
)


def test_an_object_reads_back_into_the_row_it_was_served_from() -> None:
    obj = ro.run_object(ROW)
    assert obj["metadata"]["name"] == "nightly-1772452800000-2"
    assert obj["metadata"]["labels"] == {ro.JOB_LABEL: "nightly"}
    assert (obj["spec"]["trigger"], obj["status"]["phase"]) == ("Retry", "TimedOut")
    assert obj["status"]["startTime"] == "2026-03-02T12:00:01.000Z"
    assert "reason" not in obj["spec"]
    assert ro.row_from_object(obj) == ROW


def test_names_parse_back_to_job_time_and_attempt_and_nonsense_is_not_found() -> None:
    name = ro.parse_run_name(ro.run_name(ROW))
    assert (name.job_name, name.logical_time, name.attempt) == ("nightly", SLOT, 2)
    manual = replace(ROW, logical_time=SLOT + timedelta(microseconds=123_456), attempt=1)
    assert ro.parse_run_name(ro.run_name(manual)).logical_time == SLOT + timedelta(milliseconds=123)
    for bad in ("nightly", "nightly-x-1", "Nightly-1-1", "a/b-1-1"):
        with pytest.raises(ro.NotFound):
            ro.parse_run_name(bad)


def test_selectors_become_a_store_query_and_unsupported_ones_are_refused() -> None:
    query = ro.run_query("team-a", "sundial.dev/job=nightly", "status.phase=Failed,spec.trigger==Manual", "")
    assert query == RunQuery(namespace="team-a", job_names=["nightly"], statuses=["failed"], triggers=["manual"])
    assert ro.run_query(None, "sundial.dev/job in (a, b)", "", "").job_names == ["a", "b"]
    assert ro.run_query(None, "", "metadata.namespace=x", "").namespace == "x"
    assert ro.run_query("y", "", "metadata.namespace=x", "").job_names == []
    for labels, fields in (("app=x", ""), ("", "status.worker=a"), ("", "status.phase!=Failed"),
                           ("", "status.phase=Broken")):
        with pytest.raises(ro.BadRequest):
            ro.run_query("team-a", labels, fields, "")


def test_continue_tokens_round_trip_and_broken_ones_are_a_bad_request() -> None:
    token = ro.encode_continue(ROW)
    assert ro.decode_continue(token) == (SLOT, ROW.run_id, 2)
    assert ro.run_query(None, "", "", token).before == (SLOT, ROW.run_id, 2)
    for broken in ("nope", "bm9wZQ==", ro.encode_continue(ROW)[:-4]):
        with pytest.raises(ro.BadRequest):
            ro.decode_continue(broken)
    assert (ro.page_limit(""), ro.page_limit("0"), ro.page_limit("7"), ro.page_limit("99999")) == (500, 500, 7, 1000)


def test_the_table_kubectl_prints() -> None:
    table = ro.table([ro.run_object(ROW)], SLOT + timedelta(hours=3, minutes=5), "next", "Metadata")
    assert [column["name"] for column in table["columnDefinitions"] if column["priority"] == 0] == [
        "Name", "Job", "Phase", "Trigger", "Attempt", "Duration", "Age"]
    [row] = table["rows"]
    assert row["cells"] == ["nightly-1772452800000-2", "nightly", "TimedOut", "Retry", 2, "30s", "3h5m", "worker-a",
                            "TimeoutError: 30 s"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert table["metadata"]["continue"] == "next"
    assert "object" not in ro.table([ro.run_object(ROW)], SLOT, None, "None")["rows"][0]


@pytest.mark.parametrize(("span", "shown"), [
    (timedelta(milliseconds=850), "850ms"), (timedelta(seconds=42), "42s"), (timedelta(minutes=5, seconds=3), "5m3s"),
    (timedelta(hours=2), "2h"), (timedelta(days=4, hours=2), "4d2h"), (timedelta(seconds=-3), "0ms"),
])
def test_human_durations(span: timedelta, shown: str) -> None:
    assert ro.human_duration(span) == shown


# ---- runsauth ------------------------------------------------------------------------------

PROXY = FrontProxy(ca_pem="-", allowed_names=("front-proxy-client",))
FRONT_PROXY_CERT = {"subject": ((("commonName", "front-proxy-client"),),)}


def headers(*items: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(items))


def test_only_the_front_proxy_certificate_names_a_caller() -> None:
    caller = authenticate(PROXY, FRONT_PROXY_CERT, headers(
        ("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-Scopes", "a"), ("X-Remote-Extra-Scopes", "b"), ("X-Remote-Extra-Acme.com%2Fteam", "x")))
    assert caller == Caller("alice", ("dev", "system:authenticated"),
                            (("acme.com/team", ("x",)), ("scopes", ("a", "b"))))
    with pytest.raises(Unauthorized, match="no front-proxy client certificate"):
        authenticate(PROXY, None, headers(("X-Remote-User", "alice")))
    with pytest.raises(Unauthorized, match="not an allowed front proxy"):
        authenticate(PROXY, {"subject": ((("commonName", "admin"),),)}, headers(("X-Remote-User", "alice")))
    with pytest.raises(Unauthorized, match="named no user"):
        authenticate(PROXY, FRONT_PROXY_CERT, headers())


async def test_answers_are_reused_for_the_same_question_until_they_expire() -> None:
    asked: list[tuple[Caller, Access]] = []

    async def review(caller: Caller, access: Access) -> tuple[bool, str]:
        asked.append((caller, access))
        return caller.user == "alice", ""

    clock = ManualClock(SLOT)
    authorizer = Authorizer(review, clock, ttl_seconds=10)
    alice, bob = Caller("alice"), Caller("bob")
    in_a = Access("list", ro.GROUP, ro.PLURAL, "a")
    assert await authorizer.decide(alice, in_a) == (True, "")
    assert await authorizer.decide(alice, in_a) == (True, "")
    assert await authorizer.decide(bob, in_a) == (False, "")
    assert await authorizer.decide(alice, replace(in_a, namespace="b")) == (True, "")
    assert len(asked) == 3
    clock.advance(timedelta(seconds=11))
    await authorizer.decide(alice, in_a)
    assert len(asked) == 4
