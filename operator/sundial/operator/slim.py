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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from kopf._cogs.clients import watching

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


def install() -> None:
    """Have every kopf watch (started after this) yield slimmed events; idempotent."""
    original = watching.infinite_watch
    if getattr(original, MARK, False):
        return

    async def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        async for raw_event in original(**kwargs):
            yield slimmed(raw_event)

    setattr(infinite_watch, MARK, True)
    setattr(watching, "infinite_watch", infinite_watch)  # noqa: B010 (mypy: a module's function)
