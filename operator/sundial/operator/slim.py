"""kopf's watch events without `metadata.managedFields`, which nothing in the operator reads.

kopf queues every watch event, whole, per object until one of its workers reaches that object
(`handlers.configure` bounds them), and under churn it runs minutes behind: after a 10,000-job
apply it still held ~5,000 objects' events, and the deletions then queued a DELETED event for
every object, up to two bodies per job. A ScheduledJob written by three field managers (its
creator, our status, and kopf's annotations on objects an older Sundial handled) takes
~17 KB as parsed JSON, ~10 KB of it the managedFields entries (a small dict per field).
Dropping them as events arrive, before kopf queues them, keeps ~60 % of that queue's memory
out of the process; of a DELETED event kopf needs only the identity. kopf offers no setting
for this: `install` wraps the one generator every kopf watch reads from (listing and watching
alike); `tests/unit/test_slim.py` fails if a kopf upgrade moves it.

Most ScheduledJob events are echoes of our own status writes (the status sync's, a few per job
after an apply), and kopf acts on none of them: its handlers are chosen by a diff of the essence
(spec, labels, annotations), and deletion by deletionTimestamp and finalizers. Yet each one
still costs kopf a queue slot, a worker, a body wrapper and a diff, and under churn they arrive
by the thousand. `EchoFilter` drops, before kopf queues them, the MODIFIED events of a
ScheduledJob that change none of what kopf acts on (`fingerprint`) since the last event passed
for that object: a spec change shows in metadata.generation (status is a subresource), and
kopf's own writes (a retry's progress, the touch that re-triggers a delayed handler) change an
annotation, so those and their echoes, which a kopf worker waits for, still pass: a handler
is called only on an event that passed, with that event's whole body, status included. Listing
events, ADDED and DELETED events, and every other resource's events (kopf's peering keeps its
state in status) pass as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from kopf._cogs.clients import watching

from sundial.core.crd import GROUP, PLURAL
from sundial.operator.metrics import KOPF_ECHOES_DROPPED

MARK = "_sundial_slim"


# What kopf reads of a DELETED event: the object is gone, so it forgets the object's memory
# (by uid) and calls no handler (we have no on.event, index or daemon handlers).
DELETED_KEEPS: Final = ("apiVersion", "kind", "metadata")


def slimmed(raw_event: Any) -> Any:
    """The event with its object's managedFields dropped, and a DELETED event's object down to
    its identity (in place); anything else unchanged."""
    if not isinstance(raw_event, dict):
        return raw_event
    obj = raw_event.get("object")
    if not isinstance(obj, dict):
        return raw_event
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    if raw_event.get("type") == "DELETED":
        for key in [key for key in obj if key not in DELETED_KEEPS]:
            del obj[key]
    return raw_event


def fingerprint(meta: Any) -> int:
    """A hash of what kopf acts on in an object's metadata (an int, not the values: 10,000 jobs'
    annotations, kubectl's last-applied configuration among them, stay out of memory). Two
    different views collide with odds of ~2^-64 per event; a collision would delay a change
    until the object's next event."""
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return hash((
        meta.get("generation"), meta.get("deletionTimestamp"), tuple(meta.get("finalizers") or ()),
        frozenset(labels.items()) if isinstance(labels, dict) else None,
        frozenset(annotations.items()) if isinstance(annotations, dict) else None,
    ))


class EchoFilter:
    """Which events of one watch of ScheduledJobs kopf gets: all but the MODIFIED ones whose
    `fingerprint` is that of the last event passed for the same object."""

    def __init__(self) -> None:
        # uid -> the fingerprint of its last event passed; an entry goes with the object's
        # DELETED event, and all of them when a new listing starts (a watch that restarts after
        # a 410 lists again: a deletion in the gap would leave its entry behind for good).
        self._last: dict[str, int] = {}
        self._listed = False

    def passes(self, raw_event: Any) -> bool:
        if raw_event is watching.Bookmark.LISTED:
            self._listed = True
            return True
        if not isinstance(raw_event, dict):
            return True
        obj = raw_event.get("object")
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        uid = meta.get("uid") if isinstance(meta, dict) else None
        if not isinstance(uid, str):
            return True
        kind = raw_event.get("type")
        if kind is None and self._listed:
            self._listed = False
            self._last.clear()
        if kind == "DELETED":
            self._last.pop(uid, None)
            return True
        if kind not in (None, "ADDED", "MODIFIED"):
            return True
        seen = fingerprint(meta)
        if kind == "MODIFIED" and self._last.get(uid) == seen:
            return False
        self._last[uid] = seen
        return True

    def __len__(self) -> int:
        return len(self._last)


def filters(resource: Any) -> bool:
    """Whether kopf's watch of `resource` goes through an EchoFilter: ScheduledJobs only."""
    return getattr(resource, "group", None) == GROUP and getattr(resource, "plural", None) == PLURAL


def install() -> None:
    """Have every kopf watch (started after this) yield slimmed events, and kopf's watches of
    ScheduledJobs no echoes; idempotent."""
    original = watching.infinite_watch
    if getattr(original, MARK, False):
        return

    async def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        echoes = EchoFilter() if filters(kwargs.get("resource")) else None
        async for raw_event in original(**kwargs):
            if echoes is None or echoes.passes(raw_event):
                yield slimmed(raw_event)
            else:
                KOPF_ECHOES_DROPPED.inc()

    setattr(infinite_watch, MARK, True)
    setattr(watching, "infinite_watch", infinite_watch)  # noqa: B010 (mypy: a module's function)
