"""Every SQL statement Sundial runs against PostgreSQL (the migration runner aside)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import AsyncRowFactory, class_row, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from sundial.core.backfill import SlotState
from sundial.core.keys import job_id_of_run_id
from sundial.core.policy import EffectivePolicy
from sundial.core.runs import MISSED_RUN_ERROR_PREFIX, JobRef, RunStatus, Trigger
from sundial.core.spec import ScheduledJobSpec

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackendUnavailable(RuntimeError):
    """PostgreSQL or Redis cannot be reached; the message says which and where."""


@dataclass(slots=True)
class RunRecord:
    """One attempt's state to write; `status=running` marks a start, anything else an end.

    Not frozen (though never changed once made): a frozen dataclass sets each of these fields
    through object.__setattr__, 5x the cost of building it, once per run on the hot path.
    """

    run_id: str
    job_id: str
    logical_time: datetime
    scheduled_for: datetime | None
    trigger: Trigger
    status: RunStatus
    attempt: int
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    output: Any = None
    error: str | None = None
    worker: str | None = None
    reason: str | None = None
    next_retry_at: datetime | None = None

    @property
    def key(self) -> tuple[datetime, str, int]:
        return (self.logical_time, self.run_id, self.attempt)


@dataclass(frozen=True)
class RunRow:
    """One attempt as the run history API reads it: the `job_runs` row and its job's name."""

    run_id: str
    job_id: str
    namespace: str
    job_name: str
    logical_time: datetime
    scheduled_for: datetime | None
    trigger_type: str
    status: str
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    error_message: str | None
    worker: str | None
    reason: str | None
    deliveries: int
    next_retry_at: datetime | None
    # The transaction (xid8) that last wrote the row, and the one that inserted it (migration 0006).
    resource_version: int = 0
    created_version: int = 0
    # A tombstone (migrations 0009, 0012): the attempt was deleted (retention, or its job deleted with
    # its history) by the transaction `resource_version`; only the naming fields are kept.
    deleted: bool = False


@dataclass(frozen=True)
class RunQuery:
    """Which attempts a history read wants: every field narrows; None means any."""

    namespace: str | None = None
    job_names: Sequence[str] | None = None
    statuses: Sequence[str] | None = None
    triggers: Sequence[str] | None = None
    # Keyset paging: only attempts strictly older than this (logical_time, run_id, attempt).
    before: tuple[datetime, str, int] | None = None


@dataclass(slots=True)
class FireRecord:
    """What one ticker decision did to a job: its new next run, last slot and missed slots.

    Not frozen (never changed once made: `job_row_only` and the recorder's fold build new ones),
    for the cost of one per fire; see RunRecord.
    """

    job_id: str
    next_run_at: datetime | None  # None once the job's active window (spec.endTime) has closed
    last_slot: datetime | None
    missed: int
    skipped: tuple[RunRecord, ...] = field(default_factory=tuple)
    buffered: tuple[BufferedSlot, ...] = field(default_factory=tuple)

    def job_row_only(self) -> FireRecord:
        """This record without its skipped runs and buffered slots: what is left to write after a
        batch that wrote those found the job's row held (`Store.record_fires`)."""
        return replace(self, skipped=(), buffered=())


@dataclass(frozen=True)
class MissedSlots:
    """A job that had a slot recorded missed lately (`scheduled_jobs.last_missed_at`)."""

    namespace: str
    name: str
    missed_count: int  # since the job was created
    seconds_ago: float  # since its latest missed slot was recorded, by the database's clock


@dataclass(frozen=True)
class BufferedSlot:
    """A slot fired into its job's buffer (BufferOne/BufferAll) behind a live run: the durable
    half of the Redis buffer, which the rebuild after a Redis data loss restores from."""

    run_id: str
    logical_time: datetime
    scheduled_for: datetime  # when it was planned to start (the slot plus its jitter)
    trigger: Trigger


_RUN_COLUMNS = (
    "run_id", "job_id", "logical_time", "scheduled_for", "trigger_type", "status", "attempt", "started_at",
    "completed_at", "duration_ms", "output", "error_message", "worker", "reason", "next_retry_at",
)
_RUN_TYPES = (
    "text", "uuid", "timestamptz", "timestamptz", "text", "text", "int", "timestamptz",
    "timestamptz", "int", "jsonb", "text", "text", "text", "timestamptz",
)


def _array_literal(items: list[str]) -> str:
    """A PostgreSQL array literal of plain tokens (UUIDs, numbers, NULL), cast by the query."""
    return "{" + ",".join(items) + "}"


class _EpochTexts:
    """Instants as epoch-second literals (NULL for None); a batch's jobs share a few instants."""

    def __init__(self) -> None:
        self._known: dict[datetime | None, str] = {None: "NULL"}

    def of(self, moment: datetime | None) -> str:
        text = self._known.get(moment)
        if text is None and moment is not None:
            text = self._known[moment] = repr(moment.timestamp())
        return text or "NULL"


def fire_params(fires: Sequence[FireRecord]) -> dict[str, str]:
    """`RECORD_FIRES`'s parameters for these fire records (the benchmarks run older trees'
    statement with them too)."""
    epochs = _EpochTexts()
    return {
        "ids": _array_literal([f.job_id for f in fires]),
        "next_run_at": _array_literal([epochs.of(f.next_run_at) for f in fires]),
        "last_slot": _array_literal([epochs.of(f.last_slot) for f in fires]),
        "missed": _array_literal([str(f.missed) for f in fires]),
    }


def _run_value(index: int, column_type: str) -> str:
    """Element `index` of a row array as its column's type. Instants travel as epoch seconds
    (exact to the microsecond at these magnitudes, and rounded back to it by to_timestamp):
    ISO strings were most of the cost of encoding a batch."""
    if column_type == "timestamptz":
        return f"to_timestamp((e->>{index})::float8)"
    if column_type == "jsonb":
        return f"nullif(e->{index}, 'null')"
    return f"e->>{index}" if column_type == "text" else f"(e->>{index})::{column_type}"


# The id of the writing transaction as a run's resourceVersion (migration 0007): every UPDATE of
# job_runs sets `resource_version` to it, which migration 0009's safety net checks.
WRITING_VERSION = "pg_current_xact_id()::text::bigint"

_RUN_VALUES = ", ".join(f"{_run_value(i, t)} AS {c}" for i, (c, t) in enumerate(zip(_RUN_COLUMNS, _RUN_TYPES,
                                                                                    strict=True)))

# Writes a batch of attempt starts and ends (one JSON array of row arrays, `_runs_json`: encoding
# one document in C costs a fraction of psycopg's per-element array dumpers, and arrays, unlike
# objects, repeat no column names). A row only moves out of `running` once: a late duplicate (a
# reclaimed run finishing twice) changes nothing and counts nothing. Every write sets the row's
# resourceVersion (migration 0009) to the writing transaction's id, read once per statement.
# `tallied` says whether the statement also counts the ends into their jobs' rows
# (`_tally_ctes`, `_TALLY_UPDATE`) or leaves them to the next fold (TALLY_RUNS, migration 0013).
def _insert_runs(tallied: bool) -> str:
    columns = ", ".join(_RUN_COLUMNS)
    return f"""INSERT INTO job_runs AS r ({columns}, resource_version, created_version, tallied)
    SELECT {columns}, version.id, version.id, {str(tallied).lower()} FROM incoming CROSS JOIN version
    ON CONFLICT (logical_time, run_id, attempt) DO UPDATE SET
        resource_version = excluded.resource_version,
        status = excluded.status,
        started_at = coalesce(excluded.started_at, r.started_at),
        completed_at = excluded.completed_at,
        duration_ms = excluded.duration_ms,
        output = excluded.output,
        error_message = excluded.error_message,
        worker = coalesce(excluded.worker, r.worker),
        next_retry_at = excluded.next_retry_at,
        deliveries = r.deliveries + CASE WHEN excluded.status = 'running' THEN 1 ELSE 0 END,
        tallied = excluded.tallied
    WHERE r.status = 'running'"""


# A version is never below the fold's watermark (run_tally.through): it never is while the cluster
# keeps its numbering, and after a restore into a cluster that numbers from lower (TALLY_RUNS,
# `restarted`) the ends written before the next fold are then counted by it, not lost below it.
_INCOMING_RUNS = f"""version AS MATERIALIZED (
    SELECT greatest({WRITING_VERSION}, (SELECT through FROM run_tally)) AS id
), incoming AS (
    SELECT {_RUN_VALUES} FROM jsonb_array_elements(%s::jsonb) AS e
)"""


# Fold the attempts of CTE `ends` (job_id, run_id, status, completed_at, duration_ms,
# error_message) into their jobs' counters and last run: the CTEs, then the UPDATE. The jobs'
# rows are locked in id order first (LOCK_JOBS_IN_ORDER): two recorders' batches that share jobs
# deadlocked on the join's order (bench.record_cost, 2 writers).
def _tally_ctes(ends: str) -> str:
    return f"""counted AS (
    SELECT job_id,
           count(*) FILTER (WHERE status IN ('success', 'failed', 'timed_out', 'cancelled')) AS runs,
           count(*) FILTER (WHERE status = 'success') AS successes,
           count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failures,
           max(completed_at) FILTER (WHERE status = 'success') AS last_success,
           count(*) FILTER (WHERE status = 'skipped'
                              AND starts_with(error_message, '{MISSED_RUN_ERROR_PREFIX}')) AS missed
    FROM {ends} GROUP BY job_id
), latest AS (
    SELECT DISTINCT ON (job_id) * FROM {ends}
    WHERE status NOT IN ('running', 'skipped')
    ORDER BY job_id, completed_at DESC
), locked AS MATERIALIZED (
    SELECT id FROM scheduled_jobs WHERE id IN (SELECT job_id FROM counted) ORDER BY id FOR UPDATE
)"""


_TALLY_UPDATE = """UPDATE scheduled_jobs j SET
    run_count = j.run_count + c.runs,
    success_count = j.success_count + c.successes,
    fail_count = j.fail_count + c.failures,
    -- A run a worker reached after its deadline; the ticker's own misses come by RECORD_FIRES.
    -- last_missed_at is the ticker's alone: recovery fills no lost slot from before it, and
    -- this slot has its row.
    missed_count = j.missed_count + c.missed,
    last_success_at = greatest(j.last_success_at, c.last_success),
    last_run_id = CASE WHEN l.completed_at >= coalesce(j.last_run_at, '-infinity') THEN l.run_id
                       ELSE j.last_run_id END,
    last_status = CASE WHEN l.completed_at >= coalesce(j.last_run_at, '-infinity') THEN l.status
                       ELSE j.last_status END,
    last_duration_ms = CASE WHEN l.completed_at >= coalesce(j.last_run_at, '-infinity') THEN l.duration_ms
                            ELSE j.last_duration_ms END,
    last_error = CASE WHEN l.completed_at >= coalesce(j.last_run_at, '-infinity') THEN l.error_message
                      ELSE j.last_error END,
    last_run_at = greatest(j.last_run_at, l.completed_at),
    updated_at = now()
FROM counted c JOIN locked k ON k.id = c.job_id LEFT JOIN latest l USING (job_id)
WHERE j.id = c.job_id"""


# Runs and their counts in one statement, so scheduled_jobs never disagrees with job_runs: for
# runs closed outside the workers' hot path (abandoned runs, skipped slots).
RECORD_RUNS = f"""
WITH {_INCOMING_RUNS}, written AS (
    {_insert_runs(tallied=True)}
    RETURNING r.job_id, r.run_id, r.status, r.completed_at, r.duration_ms, r.error_message
), {_tally_ctes("written")}
{_TALLY_UPDATE}
"""

# The recorders' runs: counted by the next TALLY_RUNS. Counting in the same statement rewrote
# (and locked first) an every-second job's row every second, about 40 % of PostgreSQL's CPU per
# recorded run (bench.record_cost, "insert").
RECORD_UNTALLIED_RUNS = f"""
WITH {_INCOMING_RUNS}, written AS (
    {_insert_runs(tallied=False)}
)
SELECT id FROM version
"""

# Counts the untallied ends written since the last fold into their jobs' rows (migration 0013):
# those whose writing transaction is at or past `through` and below the oldest one still running
# (so every transaction it passes has ended, and its rows are seen here), then moves `through`
# there. One fold at a time: another, holding the row, makes this one do nothing. A run's row
# changes only while it is `running`, so an end is in exactly one fold's range.
# A fold that finds the last one ended less than `spacing` seconds ago does nothing either
# (migration 0014): one fold per period counts every worker's ends.
# `restarted`: the watermark, or a version written, is past this cluster's own transaction ids.
# That only happens when the database was copied into a cluster that numbers from lower
# (pg_dump and a restore; a physical copy or pg_upgrade keeps the numbering). The range is then
# empty, the watermark starts again from the horizon, and TALLY_RESTORED_RUNS counts what is left.
TALLY_RUNS = f"""
WITH mark AS MATERIALIZED (
    SELECT through, pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon,
           greatest(through, (SELECT max(resource_version) FROM job_runs)) > {WRITING_VERSION} AS restarted
    FROM run_tally WHERE singleton = true
      AND (folded_at IS NULL OR folded_at <= now() - make_interval(secs => %(spacing)s))
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE run_tally t SET through = CASE WHEN m.restarted THEN m.horizon ELSE greatest(t.through, m.horizon) END,
                           folded_at = now()
    FROM mark m
), ends AS (
    SELECT r.job_id, r.run_id, r.status, r.completed_at, r.duration_ms, r.error_message
    FROM mark m JOIN job_runs r ON r.resource_version >= m.through AND r.resource_version < m.horizon
    WHERE NOT m.restarted AND NOT r.tallied AND r.status <> 'running'
), {_tally_ctes("ends")}, tallied AS (
{_TALLY_UPDATE}
)
SELECT horizon, restarted, through FROM mark
"""

# After TALLY_RUNS found the numbering restarted, in its transaction (the watermark's lock held),
# with the watermark it found. Counts every untallied end at or past it (those the source had not
# folded, and those written here since, which _INCOMING_RUNS kept at or above it); marks every
# untallied end tallied; and gives every row it marks, and every row whose version is past this
# numbering, this transaction's version (and no creation version past it: a watch tells a row
# listed before it from a new one by that). No later fold then counts an end again when the new
# numbering reaches its old version, and TALLY_RUNS finds nothing past the numbering again, unless
# a write still under way here wrote it (its version kept at the old watermark): that fold
# repairs again and counts it. Rewrites the restored history once, which only a restore causes.
TALLY_RESTORED_RUNS = f"""
WITH seen AS MATERIALIZED (
    SELECT logical_time, run_id, attempt,
           NOT tallied AND status <> 'running' AND resource_version >= %(through)s AS uncounted
    FROM job_runs WHERE (NOT tallied AND status <> 'running') OR resource_version > {WRITING_VERSION}
), marked AS (
    UPDATE job_runs r SET tallied = r.tallied OR r.status <> 'running', resource_version = {WRITING_VERSION},
                          created_version = least(r.created_version, {WRITING_VERSION})
    FROM seen s WHERE (r.logical_time, r.run_id, r.attempt) = (s.logical_time, s.run_id, s.attempt)
    RETURNING r.job_id, r.run_id, r.status, r.completed_at, r.duration_ms, r.error_message, s.uncounted
), ends AS (
    SELECT * FROM marked WHERE uncounted
), {_tally_ctes("ends")}
{_TALLY_UPDATE}
"""

# Every write of many scheduled_jobs rows takes their row locks in one order, by id: two writers
# that each took their rows in their own order (an UPDATE's join plan, an operator batch's order)
# could each hold a row the other waits for, and PostgreSQL fails one of them (a deadlock).
LOCK_JOBS_IN_ORDER = "SELECT id FROM scheduled_jobs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE"

# A row per buffered slot; a fire recorded twice (a retried batch) adds nothing.
RECORD_BUFFERED = """
INSERT INTO buffered_runs (run_id, job_id, logical_time, scheduled_for, trigger_type)
SELECT * FROM unnest(%s::text[], %s::uuid[], %s::timestamptz[], %s::timestamptz[], %s::text[])
ON CONFLICT (run_id) DO NOTHING
"""

# The last slot per job that has a run row, or that waits in a buffer (its run has no row yet,
# and re-firing it after a data loss would run it twice: the rebuild restores it instead).
LAST_RUN_SLOT = (
    "greatest((SELECT r.scheduled_for FROM job_runs r WHERE r.job_id = j.id AND r.scheduled_for IS NOT NULL"
    "  ORDER BY r.logical_time DESC LIMIT 1),"
    " (SELECT b.scheduled_for FROM buffered_runs b WHERE b.job_id = j.id ORDER BY b.logical_time DESC LIMIT 1))"
)

# Buffered slots that never started: no attempt row of their run. (A buffer dropped on purpose,
# when its job is suspended or deleted, loses its rows with it: `forget_buffered_runs`.)
WAITING_BUFFERED = """
SELECT b.run_id, b.job_id::text AS job_id, b.logical_time, b.scheduled_for, b.trigger_type, b.buffered_at,
       j.namespace, j.name, j.spec
FROM buffered_runs b JOIN scheduled_jobs j ON j.id = b.job_id AND j.deleted_at IS NULL AND j.enabled
WHERE b.logical_time >= %(since)s
  AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.logical_time = b.logical_time AND r.run_id = b.run_id)
ORDER BY b.job_id, b.logical_time
"""

# Rows whose run started, that grew older than the rebuild looks, or whose job is gone.
PRUNE_BUFFERED = """
DELETE FROM buffered_runs b
WHERE b.logical_time < %(before)s
   OR EXISTS (SELECT 1 FROM job_runs r WHERE r.logical_time = b.logical_time AND r.run_id = b.run_id)
   OR NOT EXISTS (SELECT 1 FROM scheduled_jobs j WHERE j.id = b.job_id AND j.deleted_at IS NULL)
"""

# The locks are taken by `locked` (its sort runs before its locking), and only rows it yielded
# are updated, so whatever order the join visits them in, each was locked in id order first.
# The arrays travel as array literals of ids and epoch seconds (`_array_literal`): a ticker
# records thousands of jobs a second, and psycopg dumping lists of UUIDs and datetimes element by
# element was most of its fire record's cost.
# The ticker's bookkeeping yields to every other writer of a job's row (a run batch's RECORD_RUNS,
# an operator batch): rows another transaction holds are skipped, not waited for, and their ids
# returned, so the recorder folds them into its next fire batch. Waiting made a ticker-only and a
# consumer-only worker a convoy, each waiting for the other's whole batch to commit
# (docs/performance.md, "Twelfth session"). A job whose row is gone is not returned.
RECORD_FIRES = f"""
WITH u AS (
    SELECT u.id, to_timestamp(u.next_run_at) AS next_run_at, to_timestamp(u.last_slot) AS last_slot, u.missed
    FROM unnest(%(ids)s::uuid[], %(next_run_at)s::float8[], %(last_slot)s::float8[],
                %(missed)s::int[]) AS u(id, next_run_at, last_slot, missed)
), locked AS MATERIALIZED ({LOCK_JOBS_IN_ORDER} SKIP LOCKED
), updated AS (
    UPDATE scheduled_jobs j SET
        -- The next run planned from the latest slot: a worker's record can reach the row after
        -- another's newer one (each holds an every-second job's records for a few seconds).
        next_run_at = CASE WHEN u.last_slot < j.last_schedule_time THEN j.next_run_at ELSE u.next_run_at END,
        last_schedule_time = greatest(j.last_schedule_time, u.last_slot),
        missed_count = j.missed_count + u.missed,
        -- The database's clock, after the pass that dropped the slots: later than any slot it
        -- dropped unless the database's clock is behind the ticker's by more than the record's delay.
        last_missed_at = CASE WHEN u.missed > 0 THEN now() ELSE j.last_missed_at END,
        updated_at = now()
    FROM u JOIN locked USING (id)
    WHERE j.id = u.id
)
SELECT u.id::text AS id FROM u
WHERE NOT EXISTS (SELECT 1 FROM locked WHERE locked.id = u.id)
  AND EXISTS (SELECT 1 FROM scheduled_jobs s WHERE s.id = u.id)
"""

# `armed_since` (migration 0008) moves only when the job is suspended, resumed or changed (its
# generation), to the arming process's `now` (the database's when none is given): the instant
# its entry's first slot was planned from. A re-arm of the same generation (an operator restart,
# a drift repair) keeps it.
UPSERT_JOB = """
INSERT INTO scheduled_jobs (
    id, namespace, name, display_name, description, category, job_target, job_params, cron_expression,
    timezone, enabled, timeout_ms, retry_attempts, retry_delay_ms, spec, generation, next_run_at, armed_since)
VALUES (%(id)s, %(namespace)s, %(name)s, %(display_name)s, %(description)s, %(category)s, %(target)s,
        %(params)s, %(schedule)s, %(timezone)s, %(enabled)s, %(timeout_ms)s, %(attempts)s, %(delay_ms)s,
        %(spec)s, %(generation)s, %(next_run_at)s, coalesce(%(armed_at)s::timestamptz, now()))
ON CONFLICT (id) DO UPDATE SET
    armed_since = CASE WHEN scheduled_jobs.enabled IS DISTINCT FROM excluded.enabled
                            OR scheduled_jobs.generation IS DISTINCT FROM excluded.generation
                            OR scheduled_jobs.deleted_at IS NOT NULL
                       THEN excluded.armed_since ELSE scheduled_jobs.armed_since END,
    namespace = excluded.namespace, name = excluded.name, display_name = excluded.display_name,
    description = excluded.description, category = excluded.category, job_target = excluded.job_target,
    job_params = excluded.job_params, cron_expression = excluded.cron_expression,
    timezone = excluded.timezone, enabled = excluded.enabled, timeout_ms = excluded.timeout_ms,
    retry_attempts = excluded.retry_attempts, retry_delay_ms = excluded.retry_delay_ms,
    spec = excluded.spec, generation = excluded.generation,
    next_run_at = excluded.next_run_at, deleted_at = NULL, updated_at = now()
"""

# Jobs' histories beyond their limits: each job's successes older than its newest `keep_success`,
# and its other ends (attempts counted one by one) older than its newest `keep_failed`; running
# attempts stay. Each kind's cut is the first attempt past the limit, read off job_runs_by_job,
# and the delete takes the job's rows at or before the later cut in the same index: ranking the
# whole history with a window function and joining the doomed rows back through the primary key
# cost PostgreSQL half again as much per deleted row (bench.record_cost, "retention"), and at
# thousands of every-second jobs a row is deleted for every row written.
# One statement for a batch of jobs, not one per job: at 10,000 every-second jobs retention ran
# hundreds of statements a second, each deleting a job's 30 s of runs, and each paid the
# statement's start and the tombstone trigger's (one trigger call and one tombstone per job and
# statement) for those few rows. The batch's rows are found by `job_id = ANY(ids)` (a bitmap scan
# of job_runs_by_job): joined through `cut` alone the planner hashed the whole table.
PRUNE_HISTORIES = """
WITH cut AS MATERIALIZED (
    SELECT l.job_id, ok.logical_time AS ok_time, ok.attempt AS ok_attempt,
           bad.logical_time AS bad_time, bad.attempt AS bad_attempt
    FROM unnest(%(ids)s::uuid[], %(keep_success)s::int[], %(keep_failed)s::int[])
         AS l(job_id, keep_success, keep_failed)
    LEFT JOIN LATERAL (
        SELECT logical_time, attempt FROM job_runs WHERE job_id = l.job_id AND status = 'success'
        ORDER BY logical_time DESC, attempt DESC OFFSET l.keep_success LIMIT 1) ok ON true
    LEFT JOIN LATERAL (
        SELECT logical_time, attempt FROM job_runs WHERE job_id = l.job_id AND status NOT IN ('success', 'running')
        ORDER BY logical_time DESC, attempt DESC OFFSET l.keep_failed LIMIT 1) bad ON true
    WHERE ok.logical_time IS NOT NULL OR bad.logical_time IS NOT NULL
)
DELETE FROM job_runs r USING cut
WHERE r.job_id = cut.job_id AND r.job_id = ANY(%(ids)s::uuid[])
  AND r.logical_time <= greatest(cut.ok_time, cut.bad_time)
  -- An end not yet counted into its job's row (TALLY_RUNS) waits for the fold.
  AND (r.tallied OR r.resource_version < (SELECT through FROM run_tally))
  AND ((r.status = 'success' AND (r.logical_time, r.attempt) <= (cut.ok_time, cut.ok_attempt))
    OR (r.status NOT IN ('success', 'running') AND (r.logical_time, r.attempt) <= (cut.bad_time, cut.bad_attempt)))
"""

JOB_COLUMNS = """
id::text AS id, namespace, name, spec, generation, enabled, next_run_at, last_schedule_time, last_run_id,
last_run_at, last_status, last_duration_ms, last_error, last_success_at, run_count, success_count,
fail_count, missed_count, updated_at
"""

# JOB_COLUMNS but the spec: a status is built from these alone, and they are a fraction of
# the bytes (and of the decoding) when every row is read. Only a job with a run limit brings
# its spec, from which status counts the runs it has left.
JOB_STATE_COLUMNS = """
id::text AS id, namespace, name, generation, enabled, next_run_at, last_schedule_time, last_run_id,
last_run_at, last_status, last_duration_ms, last_error, last_success_at, run_count, success_count,
fail_count, missed_count, updated_at, CASE WHEN jsonb_typeof(spec->'maxRuns') = 'number' THEN spec END AS limited_spec
"""

# Rows whose `updated_at` is after `%(since)s` (every row when it is NULL), found through the
# index on `changed_bucket` (migration 0010): the 10-second interval `updated_at` falls in, the
# same expression as the generated column's (keep the two equal). `updated_at` itself is not
# indexed, so the hot path's updates of a job's row (RECORD_FIRES, RECORD_RUNS) are HOT except
# when the row enters a new interval; a row changed after `since` is in `since`'s interval or a
# later one, so the bucket bound loses none of them.
CHANGED_SINCE = """(%(since)s::timestamptz IS NULL OR (
    changed_bucket >= floor(extract(epoch FROM %(since)s::timestamptz - timestamptz '1970-01-01 00:00:00+00')
                            / 10)::bigint
    AND updated_at > %(since)s))"""

# Newest first, keyed by the primary key so a page boundary never splits or repeats a row.
_RUN_ROW_FILTERS = """
  (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s))
  AND (%(triggers)s::text[] IS NULL OR r.trigger_type = ANY(%(triggers)s))
  AND (%(before_time)s::timestamptz IS NULL
       OR (r.logical_time, r.run_id, r.attempt) < (%(before_time)s, %(before_run)s, %(before_attempt)s))
  AND (%(at_time)s::timestamptz IS NULL
       OR (r.logical_time >= %(at_time)s AND r.logical_time < %(at_time)s + interval '1 millisecond'))
  AND (%(attempt)s::int IS NULL OR r.attempt = %(attempt)s)
"""
_RUN_ROW_COLUMNS = """
r.run_id, r.job_id::text AS job_id, j.namespace, j.name AS job_name, r.logical_time, r.scheduled_for,
r.trigger_type, r.status, r.attempt, r.started_at, r.completed_at, r.duration_ms, r.error_message,
r.worker, r.reason, r.deliveries, r.next_retry_at, r.resource_version, r.created_version
"""
_NEWEST_FIRST = "ORDER BY r.logical_time DESC, r.run_id DESC, r.attempt DESC"

# Across every namespace: the primary key read backwards, the first `limit` rows that pass.
LIST_RUN_ROWS = f"""
SELECT {_RUN_ROW_COLUMNS} FROM job_runs r JOIN scheduled_jobs j ON j.id = r.job_id
WHERE {_RUN_ROW_FILTERS} {_NEWEST_FIRST} LIMIT %(limit)s
"""

# In one namespace (or for named jobs): each of its jobs' newest `limit` off (job_id,
# logical_time), merged. Walking the primary key instead reads past every other namespace's
# runs, which costs more the smaller the namespace's share (docs/architecture.md).
LIST_JOB_RUN_ROWS = f"""
SELECT {_RUN_ROW_COLUMNS} FROM scheduled_jobs j CROSS JOIN LATERAL (
    SELECT * FROM job_runs r WHERE r.job_id = j.id AND {_RUN_ROW_FILTERS} {_NEWEST_FIRST} LIMIT %(limit)s
) r
WHERE (%(namespace)s::text IS NULL OR j.namespace = %(namespace)s)
  AND (%(names)s::text[] IS NULL OR j.name = ANY(%(names)s))
{_NEWEST_FIRST} LIMIT %(limit)s
"""

# Every transaction below it has ended: its writes are all visible, and no later commit can
# carry a smaller id (migration 0006).
RUN_VERSION_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon"

# Attempts last written, or deleted (their tombstones, migrations 0009 and 0012: one row per job
# and deleting statement, the attempts in arrays), by a transaction in [after, before), in
# version order: one read per poll for every watcher of the runs API.
RUN_ROWS_CHANGED = f"""
SELECT {_RUN_ROW_COLUMNS}, false AS deleted FROM job_runs r JOIN scheduled_jobs j ON j.id = r.job_id
WHERE r.resource_version >= %(after)s AND r.resource_version < %(before)s
UNION ALL
SELECT a.run_id, t.job_id::text, t.namespace, t.job_name, a.logical_time, a.scheduled_for, a.trigger_type,
       a.status, a.attempt, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, t.deleted_version, a.created_version, true
FROM job_run_tombstones t
CROSS JOIN LATERAL unnest(t.run_ids, t.logical_times, t.scheduled_fors, t.trigger_types, t.statuses, t.attempts,
                          t.created_versions) AS a(run_id, logical_time, scheduled_for, trigger_type, status,
                                                   attempt, created_version)
WHERE t.deleted_version >= %(after)s AND t.deleted_version < %(before)s AND t.namespace IS NOT NULL
ORDER BY resource_version, logical_time, run_id, attempt
"""

# How long a tombstone is kept: a runs API whose poller has not read for longer than half of it
# drops its watch window (runswatch.poll), so no watcher misses a deletion unknowingly.
TOMBSTONE_KEEP_SECONDS = 600

# Tombstones older than the keep, found from the oldest through the version index, so a trim
# costs in proportion to what it deletes. (Versions and deletion times rise together; a
# transaction open for long may put one a little out of order, which only shifts the cut.)
TRIM_TOMBSTONES = """
DELETE FROM job_run_tombstones WHERE deleted_version < coalesce((
    SELECT deleted_version FROM job_run_tombstones
    WHERE deleted_at >= clock_timestamp() - make_interval(secs => %(keep)s)
    ORDER BY deleted_version LIMIT 1), 9223372036854775807)
"""

RUN_COLUMNS = """
run_id, job_id::text AS job_id, logical_time, scheduled_for, trigger_type, status, attempt, started_at,
completed_at, duration_ms, output, error_message, worker, reason, deliveries, next_retry_at
"""


# A PostgreSQL that does not answer (a hung primary, a partition, SIGSTOP) must cost a reader an
# error after a bounded wait, never a hang: connecting gives up after CONNECT_TIMEOUT_SECONDS,
# the server cancels a statement after STATEMENT_TIMEOUT_MS, and since a server that is stopped
# cancels nothing, every read also gives up on the client side after READ_TIMEOUT_SECONDS.
# Set in the DSN (connect_timeout=..., options=-c statement_timeout=...), the DSN's value wins.
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 30_000
READ_TIMEOUT_SECONDS = 15.0
# How long a caller waits for a free pooled connection before it fails.
POOL_WAIT_SECONDS = 10.0


def connection_settings(dsn: str) -> dict[str, Any]:
    """Connection keywords that bound every wait, for what the DSN does not set itself.

    Multi-host DSNs (`postgresql://a:5432,b:5432/db?target_session_attrs=read-write`, as
    Patroni and CloudNativePG document) pass through untouched: libpq picks the writable host,
    and connect_timeout applies to each host it tries.
    """
    given = conninfo_to_dict(dsn)
    settings: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in given:
        settings["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    options = str(given.get("options") or "")
    if "statement_timeout" not in options:
        settings["options"] = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    return settings


class Store:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self.pool = pool
        self._abandoned: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 4, wait_seconds: float = 10.0) -> Store:
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False, kwargs=connection_settings(dsn),
            timeout=POOL_WAIT_SECONDS,
        )
        try:
            await pool.open(wait=True, timeout=wait_seconds)
        except Exception as exc:
            await pool.close()
            raise BackendUnavailable(f"PostgreSQL at {redact_dsn(dsn)} is unreachable: {exc}") from exc
        return cls(pool)

    async def close(self, wait_seconds: float = 5.0) -> None:
        """Close the pool; `wait_seconds`: how long its background tasks (refilling, checking) may take."""
        await self.pool.close(timeout=wait_seconds)

    # ---- jobs ----------------------------------------------------------------------------

    async def upsert_job(
        self, job: JobRef, spec: ScheduledJobSpec, generation: int, next_run_at: datetime | None, *,
        armed_at: datetime | None = None,
    ) -> None:
        """`armed_at`: the `now` the entry was armed from (becomes `armed_since` if the job's
        enabled state or generation changed)."""
        await self._execute(UPSERT_JOB, _job_params(job, spec, generation, next_run_at, armed_at))

    async def upsert_jobs(self, jobs: Sequence[tuple[JobRef, ScheduledJobSpec, int, datetime | None]], *,
                          armed_at: datetime | None = None) -> None:
        """`upsert_job` for many jobs in one pipelined round trip (the operator's start-up)."""
        if not jobs:
            return
        in_lock_order = sorted(jobs, key=lambda job: lock_order(job[0].job_id))
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(UPSERT_JOB, [_job_params(*job, armed_at) for job in in_lock_order])

    async def set_next_run(self, job_id: str, next_run_at: datetime | None) -> None:
        await self._execute(
            "UPDATE scheduled_jobs SET next_run_at = %s, updated_at = now() WHERE id = %s", (next_run_at, job_id)
        )

    async def delete_job(self, job_id: str, *, retain_history: bool) -> None:
        await self.delete_jobs([job_id], retain_history=retain_history)

    async def delete_jobs(self, job_ids: Sequence[str], *, retain_history: bool) -> None:
        """Forget these jobs in one transaction: mark their rows deleted (`retain_history`), or
        delete their rows and runs."""
        if not job_ids:
            return
        ids = list(job_ids)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK_JOBS_IN_ORDER, {"ids": ids})
            if retain_history:
                await conn.execute(
                    "UPDATE scheduled_jobs SET deleted_at = now(), enabled = false, next_run_at = NULL,"
                    " updated_at = now() WHERE id = ANY(%s::uuid[])",
                    (ids,),
                )
            else:
                await conn.execute("DELETE FROM job_runs WHERE job_id = ANY(%s::uuid[])", (ids,))
                await conn.execute("DELETE FROM scheduled_jobs WHERE id = ANY(%s::uuid[])", (ids,))

    async def armable_jobs(self) -> list[dict[str, Any]]:
        """Every live enabled job with what re-arming it after Redis lost its data needs: the
        spec, the last slot fired (`last_schedule_time`), the last slot with a run row, since
        when it has been armed as it is (`armed_since`) and when a slot was last counted missed."""
        return await self._fetch(
            "SELECT j.id::text AS id, j.namespace, j.name, j.spec, j.enabled, j.last_schedule_time, j.armed_since,"
            f" j.last_missed_at, {LAST_RUN_SLOT} AS last_run_slot"
            " FROM scheduled_jobs j WHERE j.deleted_at IS NULL AND j.enabled",
            None,
        )

    async def last_run_slots(self, job_ids: Sequence[str]) -> dict[str, datetime]:
        """Per job, the last slot that has a run row or waits in a buffer (jobs without one are
        left out)."""
        if not job_ids:
            return {}
        rows = await self._fetch(
            f"SELECT j.id::text AS id, {LAST_RUN_SLOT} AS last_run_slot"
            " FROM scheduled_jobs j WHERE j.id = ANY(%s::uuid[])",
            (list(job_ids),),
        )
        return {row["id"]: row["last_run_slot"] for row in rows if row["last_run_slot"] is not None}

    async def recorded_slots(self, job_ids: Sequence[str], since: datetime) -> dict[str, set[int]]:
        """Per job, the logical times (ms) since `since` that have a row other than a manual run's
        (a manual run's logical time is its request's, which may fall on a slot), or that wait in
        a buffer (`buffered_runs`: the rebuild restores those itself). One array per
        job: a rebuild reads up to 10 minutes of every job's rows, and arrays of integers cost a
        quarter of the time of a row each."""
        if not job_ids:
            return {}
        rows = await self._fetch(
            "SELECT s.job_id::text AS job_id,"
            " array_agg(DISTINCT (extract(epoch FROM s.logical_time) * 1000)::bigint) AS slots_ms"
            " FROM (SELECT r.job_id, r.logical_time FROM job_runs r WHERE r.job_id = ANY(%(ids)s::uuid[])"
            "       AND r.logical_time >= %(since)s AND r.trigger_type <> 'manual'"
            "       UNION ALL SELECT b.job_id, b.logical_time FROM buffered_runs b"
            "       WHERE b.job_id = ANY(%(ids)s::uuid[]) AND b.logical_time >= %(since)s) s"
            " GROUP BY s.job_id",
            {"ids": list(job_ids), "since": since},
        )
        return {row["job_id"]: set(row["slots_ms"]) for row in rows}

    async def awaited_retries(self, since: datetime) -> list[dict[str, Any]]:
        """Failed attempts since `since` whose next attempt was due to come and never started:
        the retries Redis held when it lost its data, with each live job's spec to rebuild them."""
        return await self._fetch(
            "SELECT r.run_id, r.job_id::text AS job_id, r.logical_time, r.scheduled_for, r.attempt,"
            " r.next_retry_at, r.reason, j.namespace, j.name, j.spec"
            " FROM job_runs r JOIN scheduled_jobs j ON j.id = r.job_id AND j.deleted_at IS NULL"
            " WHERE r.logical_time >= %(since)s AND r.status IN ('failed', 'timed_out')"
            " AND r.next_retry_at IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM job_runs n WHERE n.logical_time = r.logical_time"
            "  AND n.run_id = r.run_id AND n.attempt = r.attempt + 1)",
            {"since": since},
        )

    async def waiting_buffered_runs(self, since: datetime) -> list[dict[str, Any]]:
        """Slots since `since` fired into a buffer that never started, oldest first per job, with
        each live enabled job's spec: the buffers Redis held when it lost its data."""
        return await self._fetch(WAITING_BUFFERED, {"since": since})

    async def forget_buffered_runs(self, job_ids: Sequence[str]) -> None:
        """Drop these jobs' buffered slots: disarming a job (suspend, delete) drops its buffer."""
        if job_ids:
            await self._execute("DELETE FROM buffered_runs WHERE job_id = ANY(%s::uuid[])", (list(job_ids),))

    async def prune_buffered_runs(self, before: datetime) -> None:
        """Forget buffered slots that started, are older than `before`, or whose job is gone."""
        await self._execute(PRUNE_BUFFERED, {"before": before})

    async def job(self, job_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM scheduled_jobs WHERE id = %s", (job_id,))
        return rows[0] if rows else None

    async def job_by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduled_jobs WHERE namespace = %s AND name = %s AND deleted_at IS NULL",
            (namespace, name),
        )
        return rows[0] if rows else None

    async def jobs_by_id(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """`job` for many ids at once (id -> row, for the ids that have one), with `deleted`."""
        if not job_ids:
            return {}
        rows = await self._fetch(
            f"SELECT {JOB_COLUMNS}, deleted_at IS NOT NULL AS deleted FROM scheduled_jobs WHERE id = ANY(%s::uuid[])",
            (list(job_ids),),
        )
        return {row["id"]: row for row in rows}

    async def job_states_changed_since(self, since: datetime | None) -> list[dict[str, Any]]:
        """`jobs_changed_since` without the spec: what a job's status is built from."""
        return await self._fetch(
            f"SELECT {JOB_STATE_COLUMNS} FROM scheduled_jobs WHERE deleted_at IS NULL AND {CHANGED_SINCE}"
            " ORDER BY updated_at",
            {"since": since},
        )

    async def jobs_changed_since(self, since: datetime | None) -> list[dict[str, Any]]:
        """Live jobs whose row changed after `since` (all of them when None), oldest change first."""
        return await self._fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduled_jobs WHERE deleted_at IS NULL AND {CHANGED_SINCE}"
            " ORDER BY updated_at",
            {"since": since},
        )

    async def live_job_ids(self) -> set[str]:
        rows = await self._fetch("SELECT id::text AS id FROM scheduled_jobs WHERE deleted_at IS NULL", ())
        return {row["id"] for row in rows}

    async def named_pools(self) -> set[str]:
        """Every worker pool a job's spec names (sundial.core.pools adds the built-in ones)."""
        rows = await self._fetch(
            "SELECT DISTINCT spec->>'workerPool' AS pool FROM scheduled_jobs WHERE spec->>'workerPool' IS NOT NULL", ())
        return {str(row["pool"]) for row in rows}

    async def recently_missed(self, job_ids: Sequence[str], within_seconds: float) -> list[MissedSlots]:
        """Those of these live jobs that had a slot recorded missed in the last `within_seconds`,
        the latest first."""
        return await self._fetch_typed(
            MissedSlots,
            "SELECT namespace, name, missed_count, extract(epoch FROM now() - last_missed_at)::float8 AS seconds_ago"
            " FROM scheduled_jobs WHERE id = ANY(%s::uuid[]) AND deleted_at IS NULL"
            " AND last_missed_at >= now() - make_interval(secs => %s) ORDER BY last_missed_at DESC, namespace, name",
            (list(job_ids), within_seconds))

    # ---- namespace policies --------------------------------------------------------------

    async def replace_namespace_policies(self, policies: Mapping[str, EffectivePolicy]) -> None:
        """Make `namespace_policies` hold exactly these (namespace -> effective policy), in one
        transaction, touching only the rows that differ."""
        rows = [(namespace, policy.to_json()) for namespace, policy in sorted(policies.items())]
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM namespace_policies WHERE NOT (namespace = ANY(%s))",
                               ([namespace for namespace, _ in rows],))
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO namespace_policies (namespace, policy) VALUES (%s, %s::jsonb)"
                    " ON CONFLICT (namespace) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()"
                    " WHERE namespace_policies.policy IS DISTINCT FROM EXCLUDED.policy",
                    rows,
                )

    async def namespace_policies(self) -> dict[str, EffectivePolicy]:
        rows = await self._fetch("SELECT namespace, policy FROM namespace_policies", ())
        return {row["namespace"]: EffectivePolicy.from_json(row["policy"]) for row in rows}

    # ---- runs ----------------------------------------------------------------------------

    async def record_runs(self, records: Sequence[RunRecord]) -> None:
        """Write attempt starts and ends, and count the ends into their jobs' rows."""
        if records:
            await self._execute(RECORD_RUNS, (_runs_json(records),))

    async def record_untallied_runs(self, records: Sequence[RunRecord]) -> int:
        """`record_runs`, leaving the counting to a later `tally_runs` (the workers' recorders);
        returns the version written, which a fold has counted once it returns a higher one."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(RECORD_UNTALLIED_RUNS, (_runs_json(records),))
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def tally_runs(self, spacing: float = 0.0) -> int | None:
        """Count the run ends written untallied, whoever wrote them, into their jobs' rows.
        Returns the version up to which every end is counted, or None when another process's
        fold was running or ended less than `spacing` seconds ago (and this one did nothing)."""
        async with self.pool.connection() as conn, conn.transaction():
            # The planner cannot know how many versions a fold's range holds, and on a large history
            # its guess passes jit_above_cost: compiling the plan took 1.3 s of a 0.2 s fold.
            await conn.execute("SET LOCAL jit = off")
            cursor = await conn.execute(TALLY_RUNS, {"spacing": spacing})
            row = await cursor.fetchone()
            if row is not None and row[1]:
                log.warning("run versions are past this cluster's transaction ids (a database restored into"
                            " another cluster): counting the run ends not yet counted, and folding on from here")
                await conn.execute(TALLY_RESTORED_RUNS, {"through": row[2]})
        return None if row is None else int(row[0])

    async def record_fires(self, fires: Sequence[FireRecord]) -> set[str]:
        """Write fire records; returns the jobs whose row another writer held, whose next run,
        last slot and missed count are still to be written (their skipped runs and buffered
        slots were): the caller records those again, folded into later fires."""
        if not fires:
            return set()
        skipped = [record for fire in fires for record in fire.skipped]
        buffered = [(fire.job_id, slot) for fire in fires for slot in fire.buffered]
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(RECORD_FIRES, fire_params(fires))
            held = {row[0] for row in await cursor.fetchall()}
            if skipped:
                await conn.execute(RECORD_RUNS, (_runs_json(skipped),))
            if buffered:
                await conn.execute(RECORD_BUFFERED, _buffered_columns(buffered))
        return held

    async def run_status(self, logical_time: datetime, run_id: str, attempt: int) -> RunStatus | None:
        rows = await self._fetch(
            "SELECT status FROM job_runs WHERE logical_time = %s AND run_id = %s AND attempt = %s",
            (logical_time, run_id, attempt),
        )
        return RunStatus(rows[0]["status"]) if rows else None

    async def latest_states(self, job_id: str, run_ids: Sequence[str], first: datetime, last: datetime,
                            ) -> dict[str, SlotState]:
        """The latest attempt's state of each of these runs of a job that has a row (a backfill's
        slots, between `first` and `last`, which bound the partitions read), and whether it
        failed with a retry to come (the latest attempt, so that retry has not started)."""
        rows = await self._fetch(
            "SELECT DISTINCT ON (run_id) run_id, status,"
            " status IN ('failed', 'timed_out') AND next_retry_at IS NOT NULL AS retry_pending"
            " FROM job_runs WHERE job_id = %s"
            " AND logical_time BETWEEN %s AND %s AND run_id = ANY(%s) ORDER BY run_id, attempt DESC",
            (job_id, first, last, list(run_ids)),
        )
        return {row["run_id"]: SlotState(RunStatus(row["status"]), row["retry_pending"]) for row in rows}

    async def runs(
        self, job_id: str, *, limit: int = 20, offset: int = 0, statuses: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        return await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = %(job_id)s"
            " AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))"
            " ORDER BY logical_time DESC, attempt DESC LIMIT %(limit)s OFFSET %(offset)s",
            {"job_id": job_id, "statuses": list(statuses) if statuses else None, "limit": limit,
             "offset": offset},
        )

    async def count_runs(self, job_id: str, *, statuses: Sequence[str] | None = None) -> int:
        rows = await self._fetch(
            "SELECT count(*) AS n FROM job_runs WHERE job_id = %(job_id)s"
            " AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))",
            {"job_id": job_id, "statuses": list(statuses) if statuses else None},
        )
        return int(rows[0]["n"])

    async def latest_attempt(self, run_id: str) -> dict[str, Any] | None:
        """The last attempt recorded for a run id, found through its job (migration 0011)."""
        job_id = job_id_of_run_id(run_id)
        if job_id is None:
            return None
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = %s AND run_id = %s ORDER BY attempt DESC LIMIT 1",
            (job_id, run_id),
        )
        return rows[0] if rows else None

    async def recent_runs(self, job_ids: Sequence[str], statuses: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The newest runs of these jobs in these states, across jobs, newest first."""
        return await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = ANY(%(job_ids)s::uuid[])"
            " AND status = ANY(%(statuses)s) ORDER BY logical_time DESC, attempt DESC LIMIT %(limit)s",
            {"job_ids": list(job_ids), "statuses": list(statuses), "limit": limit},
        )

    async def run_rows(self, query: RunQuery, limit: int) -> list[RunRow]:
        """Attempts matching `query`, newest first, at most `limit` of them."""
        scoped = query.namespace is not None or query.job_names is not None
        sql = LIST_JOB_RUN_ROWS if scoped else LIST_RUN_ROWS
        return await self._fetch_typed(RunRow, sql, _run_query_params(query, limit=limit))

    async def run_row(self, namespace: str, job_name: str, logical_time: datetime, attempt: int) -> RunRow | None:
        """The attempt of job `job_name` whose logical time falls in the millisecond `logical_time`."""
        params = _run_query_params(RunQuery(namespace=namespace, job_names=[job_name]), limit=1)
        params.update(at_time=logical_time, attempt=attempt)
        rows = await self._fetch_typed(RunRow, LIST_JOB_RUN_ROWS, params)
        return rows[0] if rows else None

    async def run_version_horizon(self) -> int:
        """The resourceVersion below which every write to `job_runs` has ended (RUN_VERSION_HORIZON)."""
        rows = await self._fetch(RUN_VERSION_HORIZON, ())
        return int(rows[0]["horizon"])

    async def runs_changed(self, after: int) -> tuple[list[RunRow], int]:
        """Attempts whose last write has a version in [after, horizon), and that horizon: read the
        horizon first, so every transaction below it had ended before the rows are read."""
        horizon = await self.run_version_horizon()
        if horizon <= after:
            return [], after
        rows = await self._fetch_typed(RunRow, RUN_ROWS_CHANGED, {"after": after, "before": horizon})
        return rows, horizon

    async def ping(self, give_up_after: float | None = None) -> None:
        await self._fetch("SELECT 1 AS ok", (), give_up_after)

    async def job_namespaces(self) -> list[str]:
        rows = await self._fetch(
            "SELECT DISTINCT namespace FROM scheduled_jobs WHERE deleted_at IS NULL ORDER BY namespace", ()
        )
        return [row["namespace"] for row in rows]

    async def running_of(self, job_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """`running` for many jobs in one query: job id -> its attempts in flight."""
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND status = 'running'"
            " ORDER BY started_at",
            (list(job_ids),),
        )
        return _by_job(rows)

    async def latest_runs_of(self, job_ids: Sequence[str], limit: int) -> dict[str, list[dict[str, Any]]]:
        """`runs(job_id, limit=limit)` for many jobs in one query: job id -> its latest attempts."""
        rows = await self._fetch(
            f"SELECT r.* FROM unnest(%s::uuid[]) AS j(id) CROSS JOIN LATERAL ("
            f" SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = j.id"
            " ORDER BY logical_time DESC, attempt DESC LIMIT %s) r",
            (list(job_ids), limit),
        )
        return _by_job(rows)

    async def running(self, job_id: str) -> list[dict[str, Any]]:
        return await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = %s AND status = 'running' ORDER BY started_at",
            (job_id,),
        )

    async def stale_running(self, now: datetime, margin_seconds: float) -> list[RunRecord]:
        """Attempts still `running` long after their timeout: their worker and message are gone.

        A worker that dies has its message reclaimed well within the margin; a row still
        running past it lost its message too (a Redis wipe, say), and would otherwise show as
        running forever.
        """
        rows = await self._fetch(
            "SELECT r.run_id, r.job_id::text AS job_id, r.logical_time, r.scheduled_for, r.trigger_type,"
            " r.attempt, r.started_at, r.worker FROM job_runs r JOIN scheduled_jobs j ON j.id = r.job_id"
            " WHERE r.status = 'running'"
            " AND r.started_at + make_interval(secs => j.timeout_ms / 1000.0 + %(margin)s) < %(now)s",
            {"now": now, "margin": margin_seconds},
        )
        return [
            RunRecord(
                run_id=row["run_id"], job_id=row["job_id"], logical_time=row["logical_time"],
                scheduled_for=row["scheduled_for"], trigger=Trigger(row["trigger_type"]), status=RunStatus.FAILED,
                attempt=row["attempt"], started_at=row["started_at"], completed_at=now, worker=row["worker"],
                error=f"abandoned: worker {row['worker']} stopped and the run was not reclaimed",
            )
            for row in rows
        ]

    async def trim_tombstones(self) -> None:
        """Retention's deletions leave tombstones (migration 0009) that live only as long as a runs
        API needs them; this is their one deleter."""
        await self._execute(TRIM_TOMBSTONES, {"keep": TOMBSTONE_KEEP_SECONDS})

    async def prune_histories(self, limits: Mapping[str, tuple[int, int]]) -> int:
        """Prune these jobs' histories (job id -> (keep successes, keep failures)); the attempts deleted."""
        if not limits:
            return 0
        async with self.pool.connection() as conn:
            cursor = await conn.execute(PRUNE_HISTORIES, {
                "ids": _array_literal(list(limits)),
                "keep_success": _array_literal([str(ok) for ok, _ in limits.values()]),
                "keep_failed": _array_literal([str(bad) for _, bad in limits.values()]),
            })
            return cursor.rowcount

    async def history_limits(self, job_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        rows = await self._fetch(
            "SELECT id::text AS id, coalesce((spec->>'successfulRunsHistoryLimit')::int, 100) AS ok,"
            " coalesce((spec->>'failedRunsHistoryLimit')::int, 200) AS bad"
            " FROM scheduled_jobs WHERE id = ANY(%s::uuid[])",
            (list(job_ids),),
        )
        return {row["id"]: (row["ok"], row["bad"]) for row in rows}

    async def ensure_partitions(self, from_month: datetime, months: int) -> int:
        rows = await self._fetch(
            "SELECT sundial_ensure_job_runs_partitions(%s::date, %s) AS created", (from_month.date(), months)
        )
        return int(rows[0]["created"])

    # ---- plumbing ------------------------------------------------------------------------

    async def _execute(self, sql: str, params: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(sql, params)

    async def _fetch(self, sql: str, params: Any, give_up_after: float | None = None) -> list[dict[str, Any]]:
        """Run a query, giving up after `give_up_after` (READ_TIMEOUT_SECONDS) with TimeoutError."""
        return await self._bounded(self._fetch_rows(dict_row, sql, params), give_up_after)

    async def _fetch_typed(self, row_type: type[T], sql: str, params: Any) -> list[T]:
        """`_fetch`, with each row built as `row_type` (psycopg's class_row)."""
        return await self._bounded(self._fetch_rows(class_row(row_type), sql, params), None)

    async def _bounded(self, fetch: Coroutine[Any, Any, T], give_up_after: float | None) -> T:
        """Not `asyncio.timeout`: cancelling a query psycopg waits for the server to confirm (up to
        ~10 s more from a hung server). The query is cancelled in the background instead, and
        its connection discarded when that ends.
        """
        query = asyncio.ensure_future(fetch)
        done, _ = await asyncio.wait({query}, timeout=give_up_after or READ_TIMEOUT_SECONDS)
        if not done:
            query.cancel()
            self._abandoned.add(query)
            query.add_done_callback(self._abandoned.discard)
            raise TimeoutError(f"PostgreSQL did not answer within {give_up_after or READ_TIMEOUT_SECONDS:g} s")
        return query.result()

    async def _fetch_rows(self, row_factory: AsyncRowFactory[T], sql: str, params: Any) -> list[T]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=row_factory) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()


def lock_order(job_id: str) -> tuple[int, str]:
    """Where PostgreSQL's uuid order puts this job id (`LOCK_JOBS_IN_ORDER`), for writes that
    take their rows one statement at a time."""
    try:
        return uuid.UUID(job_id).int, ""
    except ValueError:  # PostgreSQL refuses it; the order does not matter then
        return -1, job_id


def _buffered_columns(buffered: Sequence[tuple[str, BufferedSlot]]) -> tuple[list[Any], ...]:
    return ([slot.run_id for _, slot in buffered], [job_id for job_id, _ in buffered],
            [slot.logical_time for _, slot in buffered], [slot.scheduled_for for _, slot in buffered],
            [slot.trigger.value for _, slot in buffered])


# msgspec writes a batch's rows ten times faster than json.dumps (a per-run cost in the worker).
_ROWS_ENCODER = msgspec.json.Encoder()


def _runs_json(records: Sequence[RunRecord]) -> str:
    rows = _run_rows(records)
    try:
        text = _ROWS_ENCODER.encode(rows).decode()
    except (TypeError, ValueError):  # a lone UTF-16 surrogate (UnicodeEncodeError), a key that is no string
        return json.dumps(_storable(json.loads(json.dumps(rows))), separators=(",", ":"))
    # PostgreSQL stores no NUL in text or jsonb, and one in a batch would fail every write of
    # it, forever. JSON escapes it, so a substring test keeps the common case free.
    if "\\u0000" in text:
        text = json.dumps(_storable(rows), separators=(",", ":"))
    return text


def _storable(value: Any) -> Any:
    """`value` with every string made storable: NUL becomes U+FFFD, a lone surrogate '?'."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def _run_rows(records: Sequence[RunRecord]) -> list[list[Any]]:
    """Each record as an array in `_RUN_COLUMNS` order."""
    return [
        [
            r.run_id,
            r.job_id,
            r.logical_time.timestamp(),
            None if r.scheduled_for is None else r.scheduled_for.timestamp(),
            r.trigger.value,
            r.status.value,
            r.attempt,
            None if r.started_at is None else r.started_at.timestamp(),
            None if r.completed_at is None else r.completed_at.timestamp(),
            r.duration_ms,
            r.output,
            r.error,
            r.worker,
            r.reason,
            None if r.next_retry_at is None else r.next_retry_at.timestamp(),
        ]
        for r in records
    ]


def _run_query_params(query: RunQuery, *, limit: int) -> dict[str, Any]:
    before_time, before_run, before_attempt = query.before or (None, None, None)
    return {
        "namespace": query.namespace,
        "names": list(query.job_names) if query.job_names is not None else None,
        "statuses": list(query.statuses) if query.statuses is not None else None,
        "triggers": list(query.triggers) if query.triggers is not None else None,
        "before_time": before_time, "before_run": before_run, "before_attempt": before_attempt,
        "at_time": None, "attempt": None, "limit": limit,
    }


def _by_job(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["job_id"], []).append(row)
    return grouped


def _job_params(
    job: JobRef, spec: ScheduledJobSpec, generation: int, next_run_at: datetime | None, armed_at: datetime | None,
) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "namespace": job.namespace,
        "name": job.name,
        "display_name": spec.display_name,
        "description": spec.description,
        "category": spec.category,
        "target": spec.run_target,
        "params": Jsonb(spec.params),
        "schedule": spec.schedule,
        "timezone": spec.time_zone,
        "enabled": not spec.suspend,
        "timeout_ms": spec.timeout_seconds * 1000,
        "attempts": spec.retry.attempts,
        "delay_ms": round(spec.retry.backoff.delay_seconds * 1000),
        "spec": Jsonb(spec.model_dump(mode="json", by_alias=True)),
        "generation": generation,
        "next_run_at": next_run_at,
        "armed_at": armed_at,
    }


def redact_dsn(dsn: str) -> str:
    """Hide a password in a DSN before it goes into an error message or a log line."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else dsn
