"""kopf's watch events lose managedFields, and status echoes never reach kopf (sundial.operator.slim)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing
from prometheus_client import REGISTRY

from sundial.operator import slim


def event(kind: str | None = "MODIFIED") -> dict[str, Any]:
    return {"type": kind, "object": {
        "metadata": {"uid": "u1", "name": "a", "resourceVersion": "9", "annotations": {"x": "y"},
                     "managedFields": [{"manager": "kopf", "fieldsV1": {"f:metadata": {}}}]},
        "spec": {"schedule": "* * * * *"}, "status": {"runCount": 1},
    }}


def test_managed_fields_go_and_everything_else_stays() -> None:
    raw = slim.slimmed(event())
    assert raw == {"type": "MODIFIED", "object": {
        "metadata": {"uid": "u1", "name": "a", "resourceVersion": "9", "annotations": {"x": "y"}},
        "spec": {"schedule": "* * * * *"}, "status": {"runCount": 1},
    }}


def test_a_deleted_object_keeps_only_its_identity() -> None:
    raw = event("DELETED")
    raw["object"] |= {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob"}
    assert slim.slimmed(raw) == {"type": "DELETED", "object": {
        "apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
        "metadata": {"uid": "u1", "name": "a", "resourceVersion": "9", "annotations": {"x": "y"}},
    }}


def test_bookmarks_and_odd_events_pass_untouched() -> None:
    assert slim.slimmed(watching.Bookmark.LISTED) is watching.Bookmark.LISTED
    assert slim.slimmed({"type": "ERROR", "object": "gone"}) == {"type": "ERROR", "object": "gone"}
    assert slim.slimmed({"type": "BOOKMARK", "object": {}}) == {"type": "BOOKMARK", "object": {}}


def test_kopf_still_reads_every_watch_through_the_wrapped_generator() -> None:
    # A kopf upgrade that renames or bypasses it would silently bring the bodies back.
    assert "watching.infinite_watch(" in inspect.getsource(queueing.watcher)
    assert set(inspect.signature(watching.infinite_watch).parameters) >= {"settings", "resource", "namespace"}


async def test_installed_once_the_wrapper_slims_what_kopf_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(**kwargs: Any) -> AsyncIterator[Any]:
        assert kwargs == {"namespace": "ns"}
        yield watching.Bookmark.LISTED
        yield event("ADDED")

    monkeypatch.setattr(watching, "infinite_watch", fake)
    slim.install()
    slim.install()  # idempotent: wraps once
    wrapped: Any = watching.infinite_watch
    seen: list[Any] = [raw async for raw in wrapped(namespace="ns")]
    assert seen[0] is watching.Bookmark.LISTED
    assert "managedFields" not in seen[1]["object"]["metadata"]
    assert getattr(wrapped, slim.MARK) is True


# ---- echoes of status writes never reach kopf (slim.EchoFilter) ------------------------------

GEN1: dict[str, Any] = {"uid": "u1", "generation": 1, "resourceVersion": "10", "labels": {"team": "a"},
        "annotations": {"sundial.dev/run-now": "x"}}


def watched(kind: str | None, rv: str, uid: str = "u1", status: Any = None, **meta: Any) -> dict[str, Any]:
    metadata = {**GEN1, "uid": uid, "resourceVersion": rv, **meta}
    return {"type": kind, "object": {"metadata": metadata, "spec": {"schedule": "* * * * *"},
                                     "status": status or {}}}


# (what the filter saw before, the event, whether kopf gets it)
ECHO_TABLE: list[tuple[str, list[dict[str, Any]], dict[str, Any], bool]] = [
    ("a status write's echo", [watched("ADDED", "10")], watched("MODIFIED", "11", status={"runCount": 1}), False),
    ("the same after listing", [watched(None, "10")], watched("MODIFIED", "11", status={"runCount": 1}), False),
    ("a spec change (new generation)", [watched("ADDED", "10")], watched("MODIFIED", "11", generation=2), True),
    ("a label change", [watched("ADDED", "10")], watched("MODIFIED", "11", labels={"team": "b"}), True),
    ("a label added", [watched("ADDED", "10")], watched("MODIFIED", "11", labels={"team": "a", "x": "y"}), True),
    ("a run-now request", [watched("ADDED", "10")],
     watched("MODIFIED", "11", annotations={"sundial.dev/run-now": "y"}), True),
    ("kopf's progress of a retrying handler", [watched("ADDED", "10")],
     watched("MODIFIED", "11", annotations={**GEN1["annotations"], "operator.sundial.dev/reconcile": "{}"}), True),
    ("kopf's touch that re-triggers a delayed handler",
     [watched("MODIFIED", "11", annotations={"operator.sundial.dev/touch-dummy": "t1"})],
     watched("MODIFIED", "12", annotations={"operator.sundial.dev/touch-dummy": "t2"}), True),
    ("a finalizer removed", [watched("ADDED", "10", finalizers=["sundial.dev/finalizer"])],
     watched("MODIFIED", "11"), True),
    ("a deletion that a finalizer holds", [watched("ADDED", "10", finalizers=["other"])],
     watched("MODIFIED", "11", finalizers=["other"], deletionTimestamp="2026-12-01T10:00:00Z"), True),
    ("an echo after the deletion began",
     [watched("MODIFIED", "11", finalizers=["other"], deletionTimestamp="2026-12-01T10:00:00Z")],
     watched("MODIFIED", "12", finalizers=["other"], deletionTimestamp="2026-12-01T10:00:00Z", status={"a": 1}),
     False),
    ("an object never seen", [], watched("MODIFIED", "11"), True),
    ("another object's echo", [watched("ADDED", "10", uid="u2")], watched("MODIFIED", "11"), True),
    ("a listing event, unchanged", [watched(None, "10")], watched(None, "10"), True),
    ("an ADDED event, unchanged", [watched("ADDED", "10")], watched("ADDED", "10"), True),
    ("a DELETED event", [watched("ADDED", "10")], watched("DELETED", "11"), True),
    ("an echo of a recreated object's first view", [watched("ADDED", "10"), watched("DELETED", "11")],
     watched("MODIFIED", "12"), True),
    ("an echo of an echo", [watched("ADDED", "10"), watched("MODIFIED", "11", status={"a": 1})],
     watched("MODIFIED", "12", status={"a": 2}), False),
    ("a change back after echoes", [watched("ADDED", "10"), watched("MODIFIED", "11", generation=2),
                                    watched("MODIFIED", "12", generation=2, status={"a": 1})],
     watched("MODIFIED", "13", generation=1), True),
    ("an echo after a relist (its entry renewed)",
     [watched("ADDED", "10"), watched("MODIFIED", "11", generation=2), watched(None, "11", generation=2)],
     watched("MODIFIED", "12", generation=2, status={"a": 1}), False),
]


@pytest.mark.parametrize(("seen", "raw", "passes"), [case[1:] for case in ECHO_TABLE],
                         ids=[case[0] for case in ECHO_TABLE])
def test_echo_filter(seen: list[dict[str, Any]], raw: dict[str, Any], passes: bool) -> None:
    echoes = slim.EchoFilter()
    for before in seen:
        echoes.passes(before)
    assert echoes.passes(raw) is passes


@pytest.mark.parametrize("raw", [watching.Bookmark.LISTED, {"type": "BOOKMARK", "object": {"metadata": {}}},
                                 {"type": "ERROR", "object": "gone"}, {"type": "MODIFIED", "object": None},
                                 "odd"])
def test_bookmarks_and_odd_events_always_pass(raw: Any) -> None:
    echoes = slim.EchoFilter()
    assert echoes.passes(raw)
    assert echoes.passes(raw)


def test_deleted_objects_are_forgotten_and_a_new_listing_starts_afresh() -> None:
    echoes = slim.EchoFilter()
    for uid in ("u1", "u2", "u3"):
        echoes.passes(watched(None, "1", uid=uid))
    echoes.passes(watching.Bookmark.LISTED)
    echoes.passes(watched("DELETED", "2", uid="u1"))
    assert len(echoes) == 2
    # A 410, a new listing: u2 was deleted in the gap, its entry goes with the old listing's.
    echoes.passes(watched(None, "5", uid="u3"))
    assert len(echoes) == 1
    assert not echoes.passes(watched("MODIFIED", "6", uid="u3"))
    assert echoes.passes(watched("MODIFIED", "7", uid="u2"))


def test_only_scheduledjobs_are_filtered() -> None:
    # kopf's peering objects, say, keep their state in status.
    assert slim.filters(references.Resource("sundial.dev", "v1alpha1", "scheduledjobs"))
    assert not slim.filters(references.Resource("kopf.dev", "v1", "kopfpeerings"))
    assert not slim.filters(references.Resource("sundial.dev", "v1alpha1", "targetpolicies"))
    assert not slim.filters(None)


async def test_installed_the_wrapper_drops_echoes_of_scheduledjobs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(**kwargs: Any) -> AsyncIterator[Any]:
        yield watched(None, "1")
        yield watching.Bookmark.LISTED
        yield watched("MODIFIED", "2", status={"a": 1})
        yield watched("MODIFIED", "3", generation=2)

    monkeypatch.setattr(watching, "infinite_watch", fake)
    slim.install()
    wrapped: Any = watching.infinite_watch
    jobs = references.Resource("sundial.dev", "v1alpha1", "scheduledjobs")
    peerings = references.Resource("kopf.dev", "v1", "kopfpeerings")
    dropped = REGISTRY.get_sample_value("sundial_operator_kopf_echoes_dropped_total") or 0.0
    seen = [raw async for raw in wrapped(resource=jobs, namespace="ns")]
    assert REGISTRY.get_sample_value("sundial_operator_kopf_echoes_dropped_total") == dropped + 1
    assert [raw if raw is watching.Bookmark.LISTED else raw["object"]["metadata"]["resourceVersion"]
            for raw in seen] == ["1", watching.Bookmark.LISTED, "3"]
    assert len([raw async for raw in wrapped(resource=peerings, namespace=None)]) == 4
