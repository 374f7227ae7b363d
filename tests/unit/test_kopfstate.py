"""kopf's per-object state kept off the objects (sundial.operator.kopfstate)."""

from __future__ import annotations

import copy
import inspect
from typing import Any, cast

import kopf
from kopf._core.actions import progression

from sundial.operator.handlers import KOPF_PREFIX, RECONCILE_ID
from sundial.operator.kopfstate import MemoryDiffBase, ProgressAnnotations
from sundial.operator.slim import slimmed

HANDLER = kopf.HandlerId(RECONCILE_ID)


def obj(uid: str = "u-1", schedule: str = "*/5 * * * *", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
        "metadata": {"name": "job", "namespace": "ns", "uid": uid, "resourceVersion": "7",
                     "annotations": annotations or {}, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"target": "noop", "schedule": schedule},
        "status": {"runCount": 3},
    }


def body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def handled(diffbase: MemoryDiffBase, raw: dict[str, Any]) -> None:
    """What kopf does once its handlers succeeded on an object whose essence changed."""
    diffbase.store(body=body(raw), patch=kopf.Patch(), essence=diffbase.build(body=body(raw)))


def test_an_object_never_handled_has_no_diff_base_and_a_handled_one_its_essence() -> None:
    diffbase, raw = MemoryDiffBase(), obj()
    assert diffbase.fetch(body=body(raw)) is None, "kopf sees it as created"
    handled(diffbase, raw)
    assert diffbase.fetch(body=body(raw)) == diffbase.build(body=body(raw)), "nothing changed"
    status_only = copy.deepcopy(raw)
    status_only["status"]["runCount"] = 4
    assert diffbase.fetch(body=body(status_only)) == diffbase.build(body=body(status_only))
    edited = obj(schedule="0 * * * *")
    assert diffbase.fetch(body=body(edited)) != diffbase.build(body=body(edited)), "an update"


def test_storing_writes_nothing_to_the_object() -> None:
    diffbase, raw, patch = MemoryDiffBase(), obj(), kopf.Patch()
    diffbase.store(body=body(raw), patch=patch, essence=diffbase.build(body=body(raw)))
    assert not patch


def test_a_deleted_object_is_forgotten_when_kopf_meets_its_deleted_event() -> None:
    diffbase = MemoryDiffBase()
    handled(diffbase, obj("u-1"))
    handled(diffbase, obj("u-2"))
    deleted = slimmed({"type": "DELETED", "object": obj("u-1")})["object"]
    assert diffbase.fetch(body=body(deleted)) is None
    assert len(diffbase) == 1
    assert diffbase.fetch(body=body(obj("u-2"))) is not None


def test_a_handler_that_succeeds_at_once_leaves_no_progress_behind() -> None:
    storage, raw = ProgressAnnotations(prefix=KOPF_PREFIX), obj()
    patch = kopf.Patch()
    storage.store(key=HANDLER, record={"started": "2026-03-01T12:00:00", "success": True}, body=body(raw), patch=patch)
    storage.purge(key=HANDLER, body=body(raw), patch=patch)
    assert not patch, "no PATCH, so kopf waits for no echo"


def test_a_retrying_handler_keeps_its_progress_without_kopfs_marker() -> None:
    storage, raw = ProgressAnnotations(prefix=KOPF_PREFIX), obj()
    patch = kopf.Patch()
    storage.store(key=HANDLER, record={"started": "2026-03-01T12:00:00", "retries": 1}, body=body(raw), patch=patch)
    assert set(patch["metadata"]["annotations"]) == {f"{KOPF_PREFIX}/{RECONCILE_ID}"}
    annotated = obj(annotations=dict(patch["metadata"]["annotations"]))
    assert storage.fetch(key=HANDLER, body=body(annotated)) is not None


def test_kopf_still_has_what_progress_annotations_overrides() -> None:
    # A kopf upgrade that renames the marker hook would bring the marker PATCH back silently.
    hook = inspect.signature(kopf.AnnotationsProgressStorage._store_marker)
    assert list(hook.parameters) == ["self", "prefix", "patch", "body"]
    assert hasattr(progression.State, "purge")
