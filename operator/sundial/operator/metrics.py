"""Prometheus series the operator exports, and the loop that derives the per-job ones.

Counters are bumped where things happen (status patches, failed reconciles). The gauges the
alerts read are derived from PostgreSQL and Redis every `interval` seconds by `JobMetrics`:

* `sundial_job_last_success_timestamp_seconds{namespace,scheduledjob}`: when the job last succeeded;
  absent until it has.
* `sundial_job_expected_interval_seconds{namespace,scheduledjob}`: the longest a healthy job goes
  between successes, i.e. the widest gap between its coming slots plus the time its attempts
  may take (timeouts and backoff). Absent while suspended, so no alert fires for it.
* `sundial_target_workers{target}`: live workers offering each target, with a 0 for every
  target an enabled job uses and nobody offers.
* `sundial_target_jobs{target}`: enabled jobs per target.

Every replica exports the same values (they read the same rows), so alerts aggregate with max.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from prometheus_client import Counter, Gauge, start_http_server

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker
from sundial.core.clock import Clock, to_ms
from sundial.core.heartbeat import LiveWorkers, offered_targets
from sundial.core.metrics import JOB_LABELS, export_build_info
from sundial.core.retry import RetryPolicy
from sundial.core.schedule import ScheduleError, parse_schedule
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.core.store import Store

log = logging.getLogger("sundial.operator.metrics")

STATUS_PATCHES = Counter("sundial_operator_status_patches_total", "Status patches written to ScheduledJobs.")
KOPF_ECHOES_DROPPED = Counter(
    "sundial_operator_kopf_echoes_dropped_total",
    "ScheduledJob watch events kept from kopf: changes of nothing kopf acts on (status writes' echoes).",
)
RECONCILE_ERRORS = Counter(
    "sundial_operator_reconcile_errors_total", "Reconciles that left a job not Ready, by the condition's reason.",
    ["reason"],
)
LAST_SUCCESS = Gauge(
    "sundial_job_last_success_timestamp_seconds", "When the job last succeeded (Unix time).", JOB_LABELS
)
EXPECTED_INTERVAL = Gauge(
    "sundial_job_expected_interval_seconds",
    "Longest a healthy job goes between successes: widest gap between its slots plus its attempts' time.",
    JOB_LABELS,
)
TARGET_WORKERS = Gauge("sundial_target_workers", "Live workers offering the target.", ["target"])
TARGET_JOBS = Gauge("sundial_target_jobs", "Enabled ScheduledJobs using the target.", ["target"])

# Slots looked at to find the widest gap: enough for weekday-only and monthly patterns,
# bounded so a per-second schedule costs little.
GAP_SLOTS: Final = 64
GAP_HORIZON: Final = timedelta(days=400)
# A schedule's widest gap barely moves; recompute it hourly, not every pass.
GAP_CACHE_SECONDS: Final = 3600.0


def serve_metrics(host: str, port: int) -> None:
    """/metrics on `port` (0: not served), from a thread of its own like the worker's."""
    export_build_info("operator")
    if port:
        start_http_server(port, addr=host)


def widest_gap(schedule: str, time_zone: str, now: datetime) -> float | None:
    """Seconds of the widest gap between consecutive slots after `now`, None if it never fires."""
    try:
        parsed = parse_schedule(schedule, time_zone)
        previous = parsed.next_after(now)
        widest = 0.0
        for _ in range(GAP_SLOTS):
            following = parsed.next_after(previous)
            widest = max(widest, (following - previous).total_seconds())
            if following - now > GAP_HORIZON:
                break
            previous = following
    except ScheduleError:
        return None
    return widest


def attempts_budget(spec: ScheduledJobSpec) -> float:
    """Seconds a run may take from its slot to its last attempt's end: every attempt timing out,
    with the backoff between them."""
    policy = RetryPolicy.from_spec(spec.retry)
    waits = sum(policy.delay_after(attempt) for attempt in range(1, policy.attempts))
    return spec.timeout_seconds * policy.attempts + waits


@dataclass(frozen=True)
class _JobFacts:
    target: str
    schedule: str
    time_zone: str
    budget: float


SPEC_PAGE = 500


class JobMetrics:
    def __init__(
        self, store: Store, broker: Broker, clock: Clock, *, namespaces: Sequence[str] = (),
        interval_seconds: float = 15.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.namespaces = frozenset(namespaces)
        self.interval_seconds = interval_seconds
        self._facts: dict[tuple[str, int], _JobFacts | None] = {}
        self._gaps: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._jobs: set[tuple[str, str]] = set()
        self._succeeded: set[tuple[str, str]] = set()
        self._targets: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                await self.export_once()
            except Exception as exc:
                # Metrics are worth a warning, never the operator: try again next interval.
                if not failing:
                    log.warning("job metrics not updated: %s", exc)
                failing = True
            else:
                failing = False
            await sleep_unless_stopped(stop, self.interval_seconds)

    async def export_once(self) -> None:
        rows = [row for row in await self.store.job_states_changed_since(None)
                if not self.namespaces or row["namespace"] in self.namespaces]
        # Specs only for the generations not seen yet, a page at a time: every 15 s over 10k
        # jobs, reading and decoding every spec was most of what this loop cost, and on the
        # first pass all of them at once weighed ~40 MB.
        unseen = [str(row["id"]) for row in rows
                  if (str(row["id"]), int(row.get("generation") or 0)) not in self._facts]
        for start in range(0, len(unseen), SPEC_PAGE):
            for job_id, row in (await self.store.jobs_by_id(unseen[start:start + SPEC_PAGE])).items():
                self._job_facts((job_id, int(row.get("generation") or 0)), row)
        now = self.clock.now()
        workers = await self.broker.live_workers(to_ms(now))
        self._export_jobs(rows, now)
        self._export_targets(rows, workers)

    def _export_jobs(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
        jobs: set[tuple[str, str]] = set()
        succeeded: set[tuple[str, str]] = set()
        live_facts: set[tuple[str, int]] = set()
        for row in rows:
            labels = (str(row["namespace"]), str(row["name"]))
            if row.get("last_success_at") is not None:
                LAST_SUCCESS.labels(*labels).set(row["last_success_at"].timestamp())
                succeeded.add(labels)
            key = (str(row["id"]), int(row.get("generation") or 0))
            live_facts.add(key)
            facts = self._job_facts(key, row)
            interval = self._interval(facts, now) if facts is not None and row.get("enabled") else None
            if interval is not None:
                EXPECTED_INTERVAL.labels(*labels).set(interval)
                jobs.add(labels)
        for labels in self._jobs - jobs:
            EXPECTED_INTERVAL.remove(*labels)
        for labels in self._succeeded - succeeded:
            LAST_SUCCESS.remove(*labels)
        self._jobs, self._succeeded = jobs, succeeded
        # Forget older generations, deleted jobs and unused schedules: memory follows live jobs.
        self._facts = {key: value for key, value in self._facts.items() if key in live_facts}
        schedules = {(f.schedule, f.time_zone) for f in self._facts.values() if f is not None}
        self._gaps = {key: value for key, value in self._gaps.items() if key in schedules}

    def _job_facts(self, key: tuple[str, int], row: Mapping[str, Any]) -> _JobFacts | None:
        if key not in self._facts and "spec" not in row:
            return None  # a generation newer than the specs just read: the next pass learns it
        if key not in self._facts:
            try:
                spec = parse_spec(dict(row["spec"]))
            except (SpecError, TypeError, ValueError):
                self._facts[key] = None
            else:
                self._facts[key] = _JobFacts(spec.run_target, spec.schedule, spec.time_zone, attempts_budget(spec))
        return self._facts[key]

    def _interval(self, facts: _JobFacts, now: datetime) -> float | None:
        schedule_key = (facts.schedule, facts.time_zone)
        cached = self._gaps.get(schedule_key)
        monotonic = self.clock.monotonic()
        if cached is None or monotonic - cached[0] > GAP_CACHE_SECONDS:
            cached = (monotonic, widest_gap(facts.schedule, facts.time_zone, now))
            self._gaps[schedule_key] = cached
        gap = cached[1]
        return None if gap is None else gap + facts.budget

    def _export_targets(self, rows: Sequence[Mapping[str, Any]], workers: LiveWorkers) -> None:
        offered = offered_targets(workers.values())
        used: dict[str, int] = {}
        for row in rows:
            facts = self._facts.get((str(row["id"]), int(row.get("generation") or 0)))
            target = facts.target if facts is not None else (row.get("spec") or {}).get("target")
            if row.get("enabled") and target:
                used[str(target)] = used.get(str(target), 0) + 1
        targets = set(offered) | set(used)
        for target in targets:
            TARGET_WORKERS.labels(target).set(offered.get(target, 0))
            TARGET_JOBS.labels(target).set(used.get(target, 0))
        for target in self._targets - targets:
            TARGET_WORKERS.remove(target)
            TARGET_JOBS.remove(target)
        self._targets = targets
