"""kopf's watch events lose managedFields before kopf queues them (sundial.operator.slim)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._core.reactor import queueing

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
