"""Named targets: the code a ScheduledJob's `spec.target` points at.

Targets register with the `@target("name")` decorator in modules the worker imports, and
third-party packages expose such modules through the `sundial.targets` entry-point group, so a
team ships its own targets as an ordinary Python package installed into the worker image.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Final

ENTRY_POINT_GROUP = "sundial.targets"

JsonObject = dict[str, Any]
TargetResult = Any  # must be JSON-serialisable; stored in job_runs.output
TargetFunction = Callable[["RunContext", JsonObject], Awaitable[TargetResult] | TargetResult]


# The message of the CancelledError a target sees when its worker stops and hands the run back
# to the queue (another worker runs it again): work it started elsewhere should be left running
# to be picked up, unlike a timeout or a Replace, which cancel with no message.
HANDED_BACK: Final = "sundial: worker stopping, run handed back"


class UnknownTargetError(LookupError):
    pass


class Retry(Exception):  # no "Error" suffix: named for how targets read, `raise Retry(delay=30)`
    """Raised by a target to ask for another attempt, optionally after a specific delay."""

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentFailure(Exception):  # no "Error" suffix: a verdict, not an error type
    """Raised by a target when retrying cannot help (bad params, missing record, ...)."""


# RunContext.extra key: (CIDRs, host names) the namespace's TargetPolicy lets the http target reach.
EGRESS_GRANT = "sundial.egress_grant"


@dataclass(frozen=True)
class RunContext:
    run_id: str
    job_id: str
    namespace: str
    name: str
    attempt: int
    max_attempts: int
    scheduled_for: datetime | None
    trigger: str
    worker: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    function: TargetFunction
    description: str

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    async def invoke(self, ctx: RunContext, params: JsonObject) -> TargetResult:
        """Async targets run on the loop; sync ones in a thread so they cannot block it."""
        if self.is_async:
            return await self.function(ctx, params)
        result = await asyncio.to_thread(_tracked, self.function, ctx, params)
        # A callable object with an async __call__ is not a coroutine function, but returns one.
        return await result if inspect.isawaitable(result) else result


_running_threads = 0
_threads_lock = threading.Lock()


def _tracked(function: TargetFunction, ctx: RunContext, params: JsonObject) -> Any:
    global _running_threads
    with _threads_lock:
        _running_threads += 1
    try:
        return function(ctx, params)
    finally:
        with _threads_lock:
            _running_threads -= 1


def running_threads() -> int:
    """Synchronous targets executing in threads right now, abandoned ones included.

    A thread cannot be stopped at its timeout; the worker compares this with its own count of
    executing runs to see how many threads are abandoned, and reports itself unhealthy when
    they pile up, so Kubernetes restarts it rather than let it wedge.
    """
    return _running_threads


class TargetRegistry:
    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}

    def register(self, name: str, function: TargetFunction, description: str = "") -> None:
        existing = self._targets.get(name)
        if existing is not None and existing.function is not function:
            raise ValueError(f"target {name!r} is registered twice")
        doc = description or (inspect.getdoc(function) or "").split("\n", 1)[0]
        self._targets[name] = Target(name, function, doc)

    def get(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            known = ", ".join(sorted(self._targets)) or "none"
            raise UnknownTargetError(f"unknown target {name!r} (this worker offers: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets


REGISTRY = TargetRegistry()


def target(name: str, *, description: str = "") -> Callable[[TargetFunction], TargetFunction]:
    """Register a function as a target: `@target("biz:pipeline")`."""

    def decorate(function: TargetFunction) -> TargetFunction:
        REGISTRY.register(name, function, description)
        return function

    return decorate


class TargetLoadError(ImportError):
    pass


def load_targets(extra_modules: list[str] | None = None) -> TargetRegistry:
    """Import every entry-point module (and any named explicitly) so their decorators run."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:
            raise TargetLoadError(f"target package {entry.name!r} ({entry.value}) failed to load: {exc}") from exc
    for module in extra_modules or []:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise TargetLoadError(f"target module {module!r} (SUNDIAL_TARGET_MODULES) failed to load: {exc}") from exc
    return REGISTRY
