"""Run one attempt of a target under its timeout and turn whatever happens into an Outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sundial.core.runs import RunStatus
from sundial.worker.targets.registry import (
    PermanentFailure,
    Retry,
    RunContext,
    TargetRegistry,
    UnknownTargetError,
)

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000
MAX_OUTPUT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    output: Any = None
    error: str | None = None
    retryable: bool = False
    retry_delay: float | None = None


async def execute(
    registry: TargetRegistry, ctx: RunContext, target: str, params: dict[str, Any], time_limit: float | None
) -> Outcome:
    """Run the target; `time_limit=None` leaves the limit to the caller (the consumer's watchdog,
    which spares thousands of short runs a second a timer each), who then reports `timed_out`."""
    try:
        handler = registry.get(target)
    except UnknownTargetError as exc:
        return Outcome(RunStatus.FAILED, error=str(exc))
    try:
        if time_limit is None:
            result = await handler.invoke(ctx, dict(params))  # the template's dict is shared between runs
        else:
            async with asyncio.timeout(time_limit):
                result = await handler.invoke(ctx, dict(params))
    except TimeoutError:
        assert time_limit is not None
        return timed_out(time_limit)
    except Retry as exc:
        return Outcome(RunStatus.FAILED, error=str(exc), retryable=True, retry_delay=exc.delay)
    except PermanentFailure as exc:
        return Outcome(RunStatus.FAILED, error=_describe(exc))
    except Exception as exc:
        log.debug("target %s failed", target, exc_info=True)
        return Outcome(RunStatus.FAILED, error=_describe(exc, with_trace=True), retryable=True)
    return _success(result)


def timed_out(time_limit: float) -> Outcome:
    return Outcome(RunStatus.TIMED_OUT, error=f"timed out after {time_limit:g}s", retryable=True)


# NaN and infinities are not JSON: PostgreSQL would refuse the whole batch of records they were in.
_OUTPUT_ENCODER = json.JSONEncoder(default=str, allow_nan=False)
_SCALARS = (str, int, bool, type(None))
# A flat object within these bounds encodes to well under MAX_OUTPUT_BYTES (6 bytes per
# character at worst, \uXXXX), so it needs no encoding to check its size.
_PLAIN_ITEMS = 64
_PLAIN_CHARS = 256
_SUCCESS_WITHOUT_OUTPUT = Outcome(RunStatus.SUCCESS)


def _success(result: Any) -> Outcome:
    if result is None:
        return _SUCCESS_WITHOUT_OUTPUT
    plain = _plain_copy(result)
    if plain is not None:
        return Outcome(RunStatus.SUCCESS, output=plain)
    try:
        encoded = _OUTPUT_ENCODER.encode(result)
    except (TypeError, ValueError) as exc:
        return Outcome(RunStatus.FAILED, error=f"target output is not JSON: {exc}")
    if len(encoded) > MAX_OUTPUT_BYTES:
        return Outcome(RunStatus.SUCCESS, output={"truncated": True, "preview": encoded[:2048]})
    return Outcome(RunStatus.SUCCESS, output=json.loads(encoded))


def _plain_copy(result: Any) -> Any:
    """A copy of an output that is already what JSON would give back (a short string, an int, a
    bool, or a small flat object of those), without the encode/decode round trip; None otherwise.

    The common outputs (`{"ok": true}`, a count, an id) take this path; anything else, such as
    floats, nesting, other types, is checked and normalised by encoding it.
    """
    kind = type(result)
    if kind in _SCALARS:
        return result if kind is not str or len(result) <= _PLAIN_CHARS else None
    if kind is not dict or len(result) > _PLAIN_ITEMS:
        return None
    for key, value in result.items():
        if type(key) is not str or len(key) > _PLAIN_CHARS or type(value) not in _SCALARS:
            return None
        if type(value) is str and len(value) > _PLAIN_CHARS:
            return None
    return dict(result)


_OWN_FRAMES = (str(Path(__file__).parent / "executor.py"), str(Path(__file__).parent / "targets" / "registry.py"))


def _describe(exc: BaseException, *, with_trace: bool = False) -> str:
    """`Type: message`, then the target's last frames (ours are noise to the reader)."""
    text = f"{type(exc).__name__}: {exc}"
    if with_trace:
        frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename not in _OWN_FRAMES]
        text += "\n" + "".join(traceback.format_list(frames[-3:]))
    return text[:MAX_ERROR_CHARS]
