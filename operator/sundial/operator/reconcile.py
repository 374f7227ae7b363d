"""What the handlers decide, as pure functions of the object and the world they were shown.

Annotations a person may set on a ScheduledJob:

``sundial.dev/run-now``
    Set it to a new non-empty value (a timestamp, a ticket number) to queue one manual run;
    the value becomes the run's reason. The last value handled is kept in
    ``status.lastRunNowRequest``, so neither a restart nor an unrelated edit runs it again,
    and the same value set twice runs once.

``sundial.dev/backfill``
    Set it to a new JSON value ``{"from": T1, "to": T2, "sequential": false, "id": ...}`` to run
    the slots of that past window (trigger ``backfill``; see docs/schedule-policies.md). The
    value is copied to ``status.lastBackfillRequest`` once every slot is queued (or the request
    is refused), and slots that ran already are never queued again.

``sundial.dev/history-on-delete``
    ``Delete`` (the default) removes the job's row and run history with the resource;
    ``Retain`` keeps both (the row is marked deleted) for reporting. Any other value is
    treated as ``Retain`` and logged: a typo must never destroy history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from sundial.core.crd import BACKFILL_ANNOTATION, LAST_BACKFILL_FIELD, LAST_RUN_NOW_FIELD, RUN_NOW_ANNOTATION
from sundial.core.heartbeat import LiveWorkers, offered_targets
from sundial.core.spec import ScheduledJobSpec, SpecError
from sundial.core.status import (
    CONDITION_READY,
    REASON_INVALID_SCHEDULE,
    REASON_INVALID_SPEC,
    REASON_SCHEDULED,
    REASON_SUSPENDED,
    REASON_UNKNOWN_TIME_ZONE,
    Condition,
    ConditionStatus,
    set_condition,
)

HISTORY_ON_DELETE_ANNOTATION: Final = "sundial.dev/history-on-delete"
HISTORY_DELETE: Final = "Delete"
HISTORY_RETAIN: Final = "Retain"


def invalid_reason(error: SpecError) -> str:
    """The Ready condition's reason for a spec that does not parse."""
    cause = error.__cause__
    if not isinstance(cause, ValidationError):
        return REASON_INVALID_SPEC
    fields = {str(problem["loc"][0]) if problem["loc"] else "" for problem in cause.errors()}
    if fields == {"timeZone"}:
        return REASON_UNKNOWN_TIME_ZONE
    if fields == {"schedule"}:
        return REASON_INVALID_SCHEDULE
    return REASON_INVALID_SPEC


def ready(ok: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=CONDITION_READY,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        observed_generation=generation,
    )


def conditions_with(current: Any, condition: Condition, now: datetime) -> list[dict[str, Any]]:
    """The whole `status.conditions` list with `condition` set, as JSON.

    A merge patch replaces a list wholesale, so the list is rebuilt from what the object holds;
    entries that no longer parse are dropped rather than blocking the write.
    """
    existing: list[Condition] = []
    for raw in current if isinstance(current, Sequence) and not isinstance(current, str) else ():
        try:
            existing.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    updated = set_condition(existing, condition, now)
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in updated]


def ready_fields(current: Mapping[str, Any], generation: int, spec: ScheduledJobSpec, now: datetime
                 ) -> dict[str, Any]:
    """The status fields a successful reconcile owns: observedGeneration and the Ready
    condition (Scheduled, or Suspended), as JSON, given the status the object shows.

    `nextRunTime` is not among them: the status sync writes it from the job's row, with the
    other fields arming and firing move.
    """
    if spec.suspend:
        why = f" ({spec.suspend_reason})" if spec.suspend_reason else ""
        condition = ready(True, REASON_SUSPENDED, f"suspended{why}: no runs until spec.suspend is false", generation)
    else:
        condition = ready(True, REASON_SCHEDULED, f"armed: {spec.schedule} in {spec.time_zone}", generation)
    return {
        "observedGeneration": generation,
        "conditions": conditions_with(current.get("conditions"), condition, now),
    }


def changed_fields(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The part of `desired` the status does not show yet: the merge patch worth sending.

    An absent field and a null one read the same, so clearing an absent field sends nothing.
    """
    return {key: value for key, value in desired.items() if plain(current.get(key)) != value}


def missing_target(target: str, live_workers: LiveWorkers) -> str | None:
    """Why no run of `target` can happen now, or None when a live worker offers it."""
    offered = sorted(offered_targets(live_workers.values()))
    if target in offered:
        return None
    if not live_workers:
        return f"no live worker offers target {target} (no live workers)"
    return f"no live worker offers target {target} (live workers offer: {', '.join(offered) or 'nothing'})"


def pending_run_now(annotations: Mapping[str, str], status: Mapping[str, Any]) -> str | None:
    """The run-now request still to handle, if the annotation holds a new non-empty value."""
    request = (annotations.get(RUN_NOW_ANNOTATION) or "").strip()
    if not request or request == status.get(LAST_RUN_NOW_FIELD):
        return None
    return request


def pending_backfill(annotations: Mapping[str, str], status: Mapping[str, Any]) -> str | None:
    """The backfill request still to handle, if the annotation holds a new non-empty value."""
    request = (annotations.get(BACKFILL_ANNOTATION) or "").strip()
    if not request or request == status.get(LAST_BACKFILL_FIELD):
        return None
    return request


def history_policy(annotations: Mapping[str, str]) -> tuple[bool, str | None]:
    """(retain history?, a warning to log when the annotation holds an unknown value)."""
    value = annotations.get(HISTORY_ON_DELETE_ANNOTATION)
    if value is None or value == HISTORY_DELETE:
        return False, None
    if value == HISTORY_RETAIN:
        return True, None
    return True, (
        f"{HISTORY_ON_DELETE_ANNOTATION}={value!r} is neither {HISTORY_RETAIN} nor {HISTORY_DELETE}; "
        "keeping the history"
    )


def plain(value: Any) -> Any:
    """kopf's read-only mapping views as plain dicts and lists, for pydantic."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
