"""The runs API's shared change feed (sundial.dashboard.runswatch) and its OpenAPI documents:
pure, no server (the real watch is in tests/k8s/test_runs_api.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sundial.core.store import RunQuery, RunRow
from sundial.dashboard import runsopenapi
from sundial.dashboard.runswatch import Expired, RunChanges, Seen, matches, parse_version

SLOT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROW = RunRow(
    run_id="8c2f:1", job_id="8c2f", namespace="team-a", job_name="nightly", logical_time=SLOT, scheduled_for=SLOT,
    trigger_type="scheduled", status="running", attempt=1, started_at=SLOT, completed_at=None, duration_ms=None,
    error_message=None, worker="w", reason=None, deliveries=1, next_retry_at=None,
)


def _row(version: int, created: int, **fields: object) -> RunRow:
    return replace(ROW, resource_version=version, created_version=created, **fields)  # type: ignore[arg-type]


async def test_a_watch_resumes_after_its_version_and_tells_added_from_modified() -> None:
    changes = RunChanges()
    changes.start_at(100)
    assert changes.resource_version == 99
    await changes.add([_row(100, 100, attempt=1), _row(100, 100, attempt=2), _row(104, 90, attempt=3)], 105)
    assert changes.resource_version == 104
    found, cursor = changes.since(changes.cursor(99))
    seen = Seen(99)
    # Two rows inserted by one transaction are both new to a watcher that listed at 99; a row
    # the list held is MODIFIED, and so is a new row's second change.
    assert [seen.event_type(change.row) for change in found] == ["ADDED", "ADDED", "MODIFIED"]
    assert seen.event_type(_row(106, 100, attempt=1)) == "MODIFIED"
    assert Seen(99).event_type(_row(106, 100, attempt=1)) == "ADDED", "inserted and updated between two reads"
    assert changes.since(changes.cursor(100))[0][0].row.attempt == 3
    assert changes.since(cursor) == ([], cursor)
    assert changes.cursor(None) == cursor, "no version: from now on"


async def test_versions_older_than_the_kept_window_are_gone() -> None:
    changes = RunChanges(capacity=2)
    changes.start_at(10)
    early = changes.cursor(9)
    await changes.add([_row(10, 10), _row(11, 11), _row(12, 12)], 13)
    with pytest.raises(Expired, match="too old resource version"):
        changes.cursor(9)
    with pytest.raises(Expired):
        changes.since(early)
    assert [c.row.resource_version for c in changes.since(changes.cursor(10))[0]] == [11, 12]


def test_resource_versions_and_filters() -> None:
    assert parse_version("") is None
    assert parse_version("0") is None
    assert parse_version("42") == 42
    with pytest.raises(ValueError, match="resourceVersion must be a number"):
        parse_version("abc")
    assert matches(RunQuery(namespace="team-a", job_names=["nightly"], statuses=["running"]), ROW)
    assert not matches(RunQuery(namespace="team-b"), ROW)
    assert not matches(RunQuery(triggers=["manual"]), ROW)


def test_openapi_documents_describe_the_kind_for_kubectl_explain() -> None:
    v2 = json.loads(runsopenapi.openapi_v2())
    run = v2["definitions"][runsopenapi.RUN]
    assert run["x-kubernetes-group-version-kind"] == [
        {"group": "runs.sundial.dev", "version": "v1alpha1", "kind": "ScheduledJobRun"}]
    assert run["properties"]["status"]["properties"]["phase"]["enum"][:3] == ["Running", "Succeeded", "Failed"]
    v3 = json.loads(runsopenapi.openapi_v3_group())
    for ref in json.dumps(v3).split('"$ref": "')[1:]:
        assert ref.split('"')[0].removeprefix("#/components/schemas/") in v3["components"]["schemas"]
    discovery = json.loads(runsopenapi.openapi_v3_discovery())
    url = discovery["paths"]["apis/runs.sundial.dev/v1alpha1"]["serverRelativeURL"]
    assert url.endswith(runsopenapi.etag(runsopenapi.openapi_v3_group()))
