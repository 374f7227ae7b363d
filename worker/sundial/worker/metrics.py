"""Prometheus series the worker exports (one registry per process)."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram

from sundial.core.metrics import JOB_LABELS
from sundial.core.recovery import DATA_LOST, FIRST_ARM

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)

FIRE_LATENESS = Histogram(
    "sundial_fire_lateness_seconds", "Time from a slot (plus its jitter) to the moment its run was enqueued.",
    buckets=LATENESS_BUCKETS,
)
FIRE_JITTER = Histogram(
    "sundial_fire_jitter_seconds",
    "Delay jitterSeconds put between a slot and its planned start (lateness counts from the start).",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
FIRED_RUNS = Counter("sundial_fired_runs_total", "Runs enqueued by the ticker for a slot.")
# Per job: a missed or skipped slot is rare and always about one schedule, so the label is
# worth its series; fired runs and lateness stay unlabelled, they happen on every slot.
MISSED_SLOTS = Counter(
    "sundial_missed_slots_total", "Slots that will never run (deadline or policy).", JOB_LABELS
)
SKIPPED_RUNS = Counter(
    "sundial_skipped_runs_total", "Slots skipped by concurrencyPolicy Forbid (or BufferOne, a slot already waiting).",
    JOB_LABELS,
)
RUNS = Counter("sundial_runs_total", "Finished attempts by outcome.", [*JOB_LABELS, "status"])
RUN_DURATION = Histogram(
    "sundial_run_duration_seconds", "Attempt duration.", ["target"], buckets=DURATION_BUCKETS
)
RETRIES = Counter("sundial_retries_total", "Failed attempts scheduled for a retry.", JOB_LABELS)
RECLAIMED = Counter("sundial_reclaimed_runs_total", "Runs taken over from a worker that stopped.")
IN_FLIGHT = Gauge("sundial_runs_in_flight", "Runs executing in this worker.")
ABANDONED_THREADS = Gauge(
    "sundial_abandoned_threads", "Synchronous targets still running in a thread after their timeout."
)
QUEUE_LENGTH = Gauge("sundial_queue_length", "Messages in the run queue stream.", ["shard"])
QUEUE_PENDING = Gauge("sundial_queue_pending", "Runs delivered and not yet acknowledged.", ["shard"])
QUEUE_DELAYED = Gauge("sundial_queue_delayed", "Retries waiting for their backoff.", ["shard"])
OLDEST_PENDING = Gauge("sundial_queue_oldest_pending_seconds", "Age of the oldest unacknowledged run.", ["shard"])
LIVE_WORKERS = Gauge("sundial_live_workers", "Workers that heart-beat recently.")
EXPIRED_RUNS = Counter(
    "sundial_expired_runs_total",
    "Scheduled runs recorded missed because they waited in the queue past their deadline (overload).",
)
QUEUE_FULL_SLOTS = Counter(
    "sundial_queue_full_slots_total",
    "Slots recorded missed instead of queued (overload): the queue held its maximum length, or its oldest run had"
    " waited so long that a share of the new runs would reach a worker too close to their deadline.",
)
QUEUE_LAG = Gauge("sundial_queue_lag", "Runs in the queue no worker has taken yet.", ["shard"])
QUEUE_LAG_SECONDS = Gauge(
    "sundial_queue_lag_seconds", "How long the oldest run no worker has taken yet has waited.", ["shard"]
)
REDIS_REBUILDS = Counter(
    "sundial_redis_rebuilds_total",
    "Times this worker found the Redis intact marker gone and armed the keyspace from PostgreSQL, by cause: "
    "data_lost (jobs had fired before: Redis lost its data) or first_arm (a new keyspace).",
    ["cause"],
)
for _cause in (DATA_LOST, FIRST_ARM):  # exported at 0, so the first loss is an increase an alert sees
    REDIS_REBUILDS.labels(_cause)
LOST_RUNS_REQUEUED = Counter(
    "sundial_lost_runs_requeued_total",
    "Runs of fired slots that Redis lost with its data before they started (neither a run row nor a worker "
    "holding them) and that this worker's rebuild queued again, to run late.",
)
DEAD_LETTERS = Gauge("sundial_dead_letters", "Queue messages no worker could run, kept with why.", ["shard"])
BACKEND_UP = Gauge(
    "sundial_backend_up", "1 when this worker reached the backend at its last probe, else 0.", ["backend"]
)
LEASE_TAKEOVERS = Counter(
    "sundial_lease_takeovers_total", "Entries claimed after the lease of a ticker that died or stalled ran out."
)
REFUSED_RUNS = Counter(
    "sundial_refused_runs_total",
    "Runs the worker refused before running them: their namespace's TargetPolicy does not allow the target, "
    "this worker pool, or their secretKeyRef.",
)


class Observations:
    """Observations of one histogram series (unlabelled, or one label set's child), gathered
    without a lock and added at `flush` with one locked addition per bucket that moved: an
    `observe` takes two, and at thousands of fires and runs a second they were a visible share of
    a worker's CPU. prometheus-client has no batched observe; `flush` adds to the very series
    `observe` does (tests/unit/test_worker_metrics.py holds the two equal)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds = histogram._upper_bounds
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._added = False

    def add(self, value: float) -> None:
        # The bucket `observe` counts a value in: the first whose upper bound is at or above it.
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value
        self._added = True

    def flush(self) -> None:
        if not self._added:
            return
        for index, count in enumerate(self._counts):
            if count:
                self._histogram._buckets[index].inc(count)
                self._counts[index] = 0
        self._histogram._sum.inc(self._sum)
        self._sum = 0.0
        self._added = False
