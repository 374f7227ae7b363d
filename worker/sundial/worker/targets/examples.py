"""EXAMPLE targets: the three jobs of the original BullMQ design, simulated.

Nothing here talks to PrimeCare, an AI service or WhatsApp. Each target sleeps a little, computes
deterministic counts and returns them, so demos show real runs with visible output and tests can
predict that output exactly. Copy the shape, not the logic, when writing a real target.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from sundial.core.clock import SystemClock
from sundial.worker.targets.builtin import TargetParams, parse_params
from sundial.worker.targets.registry import JsonObject, RunContext, target

EXAMPLE = "[example] "
REVIEW_EVERY = 4  # the pipeline holds every 4th processed report for a human review
REVIEW_OPENED_EVERY_MINUTES = 7  # the simulated review inbox receives one review this often
REVIEW_BACKLOG_MINUTES = 60  # reviews overdue longer than this were handled by earlier runs

StepDelay = Annotated[float, Field(ge=0, le=60)]


class PipelineParams(TargetParams):
    records: Annotated[int, Field(ge=0, le=100_000)] = 12
    step_delay_seconds: StepDelay = 0.05


@target("biz:pipeline", description=EXAMPLE + "Sincroniza PrimeCare, processa com IA e envia relatorios")
async def pipeline(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Sync `records` from PrimeCare, process them with AI, send the reports not held for review."""
    parsed = parse_params(PipelineParams, "biz:pipeline", params)
    synced = parsed.records
    await asyncio.sleep(parsed.step_delay_seconds)
    processed = synced
    held = processed // REVIEW_EVERY
    await asyncio.sleep(parsed.step_delay_seconds)
    sent = processed - held
    await asyncio.sleep(parsed.step_delay_seconds)
    return {
        "synced": synced,
        "processed": processed,
        "held_for_review": held,
        "sent": sent,
        "steps": [
            {"step": "sync", "source": "primecare", "count": synced},
            {"step": "process", "engine": "ai", "count": processed},
            {"step": "send", "channel": "whatsapp", "count": sent},
        ],
    }


class ReviewTimeoutParams(TargetParams):
    timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 30


def overdue_reviews(as_of: datetime, timeout_minutes: int) -> list[datetime]:
    """Opening times of the simulated reviews past their timeout and not yet given the fallback.

    Reviews open on every epoch minute divisible by REVIEW_OPENED_EVERY_MINUTES; one is due for the
    fallback when it has waited more than `timeout_minutes` but no more than REVIEW_BACKLOG_MINUTES
    beyond that (older ones were handled by earlier runs).
    """
    now_minute = int(as_of.timestamp()) // 60
    newest = now_minute - timeout_minutes - 1  # waited strictly longer than the timeout
    oldest = now_minute - timeout_minutes - REVIEW_BACKLOG_MINUTES
    first = -(-oldest // REVIEW_OPENED_EVERY_MINUTES) * REVIEW_OPENED_EVERY_MINUTES
    return [
        datetime.fromtimestamp(minute * 60, tz=UTC)
        for minute in range(first, newest + 1, REVIEW_OPENED_EVERY_MINUTES)
    ]


@target(
    "biz:review-timeout",
    description=EXAMPLE + "Aplica fallback em revisoes que passaram do timeout de 30min",
)
async def review_timeout(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Apply the fallback to reviews past `timeout_minutes`; the count follows from the slot time."""
    parsed = parse_params(ReviewTimeoutParams, "biz:review-timeout", params)
    # Scheduled runs are deterministic; a manual run has no slot and uses the current time.
    as_of = ctx.scheduled_for or SystemClock().now()
    overdue = overdue_reviews(as_of, parsed.timeout_minutes)
    return {
        "as_of": as_of.isoformat(),
        "timeout_minutes": parsed.timeout_minutes,
        "fallback_applied": len(overdue),
        "reviews": [f"review-{opened:%Y%m%dT%H%MZ}" for opened in overdue],
    }


class SendReportsParams(TargetParams):
    reports: Annotated[int, Field(ge=0, le=10_000)] = 5
    delay_seconds: StepDelay = 0.05


@target("biz:send-reports", description=EXAMPLE + "Envia relatorios aprovados via WhatsApp")
async def send_reports(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Send `reports` approved reports over WhatsApp."""
    parsed = parse_params(SendReportsParams, "biz:send-reports", params)
    await asyncio.sleep(parsed.delay_seconds)
    return {"sent": parsed.reports, "channel": "whatsapp"}
