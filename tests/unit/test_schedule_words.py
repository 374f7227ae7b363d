"""Schedules in words and the editor's modes: tables, both languages."""

from __future__ import annotations

import pytest

from sundial.dashboard.schedule_words import ScheduleForm, describe, schedule_form


@pytest.mark.parametrize(
    ("expression", "form"),
    [
        ("0 12,18,20 * * *", ScheduleForm("times", "0 12,18,20 * * *", times=("12:00", "18:00", "20:00"))),
        ("30 12,18,20 * * *", ScheduleForm("times", "30 12,18,20 * * *", times=("12:30", "18:30", "20:30"))),
        ("0,30 9 * * *", ScheduleForm("times", "0,30 9 * * *", times=("09:00", "09:30"))),
        ("0 20,12 * * *", ScheduleForm("times", "0 20,12 * * *", times=("12:00", "20:00"))),
        ("@daily", ScheduleForm("times", "@daily", times=("00:00",))),
        ("*/5 * * * *", ScheduleForm("interval", "*/5 * * * *", interval_minutes=5)),
        ("* * * * *", ScheduleForm("interval", "* * * * *", interval_minutes=1)),
        ("0 * * * *", ScheduleForm("interval", "0 * * * *", interval_minutes=60)),
        ("0 */6 * * *", ScheduleForm("interval", "0 */6 * * *", interval_minutes=360)),
        ("@hourly", ScheduleForm("interval", "@hourly", interval_minutes=60)),
        ("@every 90m", ScheduleForm("interval", "@every 90m", interval_minutes=90)),
        ("@every 2h", ScheduleForm("interval", "@every 2h", interval_minutes=120)),
        # Shapes the two simple modes cannot write stay raw cron.
        ("*/7 * * * *", ScheduleForm("cron", "*/7 * * * *")),
        ("0 */5 * * *", ScheduleForm("cron", "0 */5 * * *")),
        ("0 12 * * 1-5", ScheduleForm("cron", "0 12 * * 1-5")),
        ("0 9-17 * * *", ScheduleForm("cron", "0 9-17 * * *")),
        ("*/10 * * * * *", ScheduleForm("cron", "*/10 * * * * *")),
        ("@every 30s", ScheduleForm("cron", "@every 30s")),
        ("@weekly", ScheduleForm("cron", "@weekly")),
    ],
)
def test_schedule_form(expression: str, form: ScheduleForm) -> None:
    assert schedule_form(expression) == form


@pytest.mark.parametrize(
    ("expression", "pt", "en"),
    [
        ("0 12,18,20 * * *", "12:00, 18:00, 20:00", "12:00, 18:00, 20:00"),
        ("*/5 * * * *", "A cada 5 minutos", "Every 5 minutes"),
        ("* * * * *", "A cada minuto", "Every minute"),
        ("@hourly", "A cada hora", "Every hour"),
        ("0 */2 * * *", "A cada 2 horas", "Every 2 hours"),
        ("@every 90m", "A cada 90 minutos", "Every 90 minutes"),
        ("@every 30s", "A cada 30 segundos", "Every 30 seconds"),
        ("0 12 * * 1-5", "Às 12:00, de segunda-feira a sexta-feira", "At 12:00, Monday through Friday"),
        ("0 9 1 1 *", "Às 09:00, no dia 1 do mês, somente em janeiro",
         "At 09:00, on day 1 of the month, only in January"),
    ],
)
def test_describe(expression: str, pt: str, en: str) -> None:
    assert describe(expression, "pt-BR") == pt
    assert describe(expression, "en") == en


def test_describe_never_fails_on_what_it_cannot_word() -> None:
    assert describe("not a cron", "en") == "not a cron"


def test_form_json_carries_only_its_mode() -> None:
    assert schedule_form("*/5 * * * *").as_json() == {"mode": "interval", "cron": "*/5 * * * *", "intervalMinutes": 5}
    assert schedule_form("0 1 * * 0").as_json() == {"mode": "cron", "cron": "0 1 * * 0"}
