"""Schedules in words, and the page editor's three modes, both ways. Pure, tested by tables.

The original page showed "12:00, 18:00, 20:00" or "A cada 5 minutos" and edited a schedule as
fixed times of day, an interval, or raw cron. `schedule_form` reads an expression back into
the mode that writes it; `describe` words it. Shapes the modes cannot express fall back to
cron-descriptor, whose Portuguese (pt_PT) leaves day and month names in English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal

from cron_descriptor import ExpressionDescriptor, FormatException, Options

Language = Literal["pt-BR", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("pt-BR", "en")
Mode = Literal["times", "interval", "cron"]

_INT = re.compile(r"^\d{1,2}$")
_EVERY = re.compile(r"^@every\s+(\d+)([smh])$")
_STEP = re.compile(r"^\*/(\d{1,2})$")
_MACRO_TIMES: Final = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *"}
_MACRO_MINUTES: Final = {"@hourly": 60}

_PT_NAMES: Final = {
    "Monday": "segunda-feira", "Tuesday": "terça-feira", "Wednesday": "quarta-feira",
    "Thursday": "quinta-feira", "Friday": "sexta-feira", "Saturday": "sábado", "Sunday": "domingo",
    "January": "janeiro", "February": "fevereiro", "March": "março", "April": "abril", "May": "maio",
    "June": "junho", "July": "julho", "August": "agosto", "September": "setembro", "October": "outubro",
    "November": "novembro", "December": "dezembro",
}
_PT_NAME_PATTERN: Final = re.compile(r"\b(" + "|".join(_PT_NAMES) + r")\b")


@dataclass(frozen=True)
class ScheduleForm:
    """How the editor shows an expression: times of day, every N minutes, or raw cron."""

    mode: Mode
    cron: str
    times: tuple[str, ...] = field(default=())
    interval_minutes: int | None = None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"mode": self.mode, "cron": self.cron}
        if self.mode == "times":
            body["times"] = list(self.times)
        if self.mode == "interval":
            body["intervalMinutes"] = self.interval_minutes
        return body


# Listings word every job on every poll, and most jobs share a handful of expressions.
@lru_cache(maxsize=4096)
def schedule_form(expression: str) -> ScheduleForm:
    expression = " ".join(expression.split())
    lowered = expression.lower()
    if lowered in _MACRO_MINUTES:
        return ScheduleForm("interval", expression, interval_minutes=_MACRO_MINUTES[lowered])
    fields = _MACRO_TIMES.get(lowered, expression).split(" ")
    every = _EVERY.match(lowered)
    if every:
        minutes = _every_minutes(int(every.group(1)), every.group(2))
        if minutes:
            return ScheduleForm("interval", expression, interval_minutes=minutes)
    elif len(fields) == 5 and fields[2:] == ["*", "*", "*"]:
        times = _times_of_day(fields[0], fields[1])
        if times:
            return ScheduleForm("times", expression, times=times)
        minutes = _interval_of(fields[0], fields[1])
        if minutes:
            return ScheduleForm("interval", expression, interval_minutes=minutes)
    return ScheduleForm("cron", expression)


@lru_cache(maxsize=4096)
def describe(expression: str, language: Language) -> str:
    form = schedule_form(expression)
    if form.mode == "times":
        return ", ".join(form.times)
    if form.mode == "interval" and form.interval_minutes:
        return _interval_words(form.interval_minutes, language)
    return _cron_words(form.cron, language)


def describe_all(expression: str) -> dict[str, str]:
    return {language: describe(expression, language) for language in LANGUAGES}


def _every_minutes(amount: int, unit: str) -> int | None:
    minutes = {"s": None, "m": amount, "h": amount * 60}[unit]
    return minutes if minutes and minutes > 0 else None


def _times_of_day(minute: str, hour: str) -> tuple[str, ...] | None:
    minutes = _numbers(minute, 59)
    hours = _numbers(hour, 23)
    if minutes is None or hours is None:
        return None
    return tuple(f"{h:02d}:{m:02d}" for h in sorted(set(hours)) for m in sorted(set(minutes)))


def _interval_of(minute: str, hour: str) -> int | None:
    if hour == "*":
        if minute in {"*", "0"}:
            return 1 if minute == "*" else 60
        step = _STEP.match(minute)
        return int(step.group(1)) if step and 60 % int(step.group(1)) == 0 else None
    step = _STEP.match(hour)
    if minute == "0" and step and 24 % int(step.group(1)) == 0:
        return int(step.group(1)) * 60
    return None


def _numbers(field_text: str, highest: int) -> list[int] | None:
    parts = field_text.split(",")
    if not all(_INT.match(part) for part in parts):
        return None
    values = [int(part) for part in parts]
    return values if all(0 <= value <= highest for value in values) else None


def _interval_words(minutes: int, language: Language) -> str:
    if language == "pt-BR":
        if minutes % 60 == 0:
            hours = minutes // 60
            return "A cada hora" if hours == 1 else f"A cada {hours} horas"
        return "A cada minuto" if minutes == 1 else f"A cada {minutes} minutos"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "Every hour" if hours == 1 else f"Every {hours} hours"
    return "Every minute" if minutes == 1 else f"Every {minutes} minutes"


def _cron_words(expression: str, language: Language) -> str:
    every = _EVERY.match(expression.lower())
    if every and every.group(2) == "s":
        seconds = int(every.group(1))
        return f"A cada {seconds} segundos" if language == "pt-BR" else f"Every {seconds} seconds"
    options = Options()
    options.locale_code = "pt_PT" if language == "pt-BR" else "en_US"
    options.use_24hour_time_format = True
    try:
        words = str(ExpressionDescriptor(expression, options).get_description())
    except (FormatException, ValueError, IndexError, KeyError):
        return expression
    if language == "pt-BR":
        words = _PT_NAME_PATTERN.sub(lambda match: _PT_NAMES[match.group(1)], words)
    return words
