"""`exclude:` entries of a ScheduledJob: a date (the whole local day) or a 5-field cron
expression matching a slot's local minute. Pure; kept apart so the spec can check entries
without importing the schedule policies built on the spec."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final

from croniter import croniter

from sundial.core.schedule import ScheduleError

__all__ = ["check_exclusion", "exclusion_matches"]

_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_exclusion(entry: str) -> str:
    """An ``exclude`` entry as written, or a ScheduleError saying what is wrong with it."""
    text = entry.strip()
    if _DATE.match(text):
        try:
            date.fromisoformat(text)
        except ValueError as exc:
            raise ScheduleError(f"exclude entry {entry!r} is not a valid date: {exc}") from None
        return entry
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ScheduleError(f"exclude entry {entry!r} is neither a date (YYYY-MM-DD) nor a 5-field cron expression")
    return entry


def exclusion_matches(entry: str, wall: datetime) -> bool:
    """Whether ``entry`` drops a slot at local wall time ``wall`` (naive, in the job's zone)."""
    text = entry.strip()
    if _DATE.match(text):
        return wall.date().isoformat() == text
    return bool(croniter.match(text, wall))
