-- Sundial schema, adapted from the original BullMQ design for Kubernetes: a job's id is its
-- ScheduledJob UID; namespace and name sit beside it. The resource stays the source of truth:
-- these rows are its projection plus the run history.

CREATE TABLE scheduled_jobs (
    id                 uuid PRIMARY KEY,
    namespace          text        NOT NULL,
    name               text        NOT NULL,
    display_name       text,
    description        text,
    category           text        NOT NULL DEFAULT 'system',
    job_target         text        NOT NULL,
    job_params         jsonb       NOT NULL DEFAULT '{}',
    cron_expression    text        NOT NULL,
    timezone           text        NOT NULL DEFAULT 'America/Sao_Paulo',
    enabled            boolean     NOT NULL DEFAULT true,
    timeout_ms         integer     NOT NULL DEFAULT 300000,
    retry_attempts     integer     NOT NULL DEFAULT 3,
    retry_delay_ms     integer     NOT NULL DEFAULT 5000,
    spec               jsonb       NOT NULL,
    generation         bigint      NOT NULL DEFAULT 0,

    next_run_at        timestamptz,
    last_schedule_time timestamptz,
    last_run_id        text,
    last_run_at        timestamptz,
    last_status        text,
    last_duration_ms   integer,
    last_error         text,
    last_success_at    timestamptz,

    run_count          bigint      NOT NULL DEFAULT 0,
    success_count      bigint      NOT NULL DEFAULT 0,
    fail_count         bigint      NOT NULL DEFAULT 0,
    missed_count       bigint      NOT NULL DEFAULT 0,

    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Set when the resource is deleted with history retention on; the row stays for reporting.
    deleted_at         timestamptz
);

CREATE UNIQUE INDEX scheduled_jobs_live_name ON scheduled_jobs (namespace, name) WHERE deleted_at IS NULL;
CREATE INDEX scheduled_jobs_category ON scheduled_jobs (category);
-- The operator follows changes by this column to rebuild status without scanning.
CREATE INDEX scheduled_jobs_updated ON scheduled_jobs (updated_at);

-- One row per attempt. Range-partitioned by month on logical_time (the slot for scheduled
-- runs, the request time otherwise), so old history is dropped or archived a partition at a
-- time and every query with a time window prunes to a few partitions.
CREATE TABLE job_runs (
    run_id         text        NOT NULL,
    -- No foreign key: runs are written at full queue speed, and a run may land just after its
    -- job was deleted; the operator deletes or retains history explicitly (see README).
    job_id         uuid        NOT NULL,
    logical_time   timestamptz NOT NULL,
    scheduled_for  timestamptz,
    trigger_type   text        NOT NULL CHECK (trigger_type IN ('scheduled', 'manual', 'retry', 'catchup')),
    status         text        NOT NULL CHECK (status IN ('running', 'success', 'failed', 'timed_out',
                                                          'cancelled', 'skipped')),
    attempt        integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    started_at     timestamptz,
    completed_at   timestamptz,
    duration_ms    integer,
    output         jsonb,
    error_message  text,
    worker         text,
    reason         text,
    deliveries     integer     NOT NULL DEFAULT 1,
    next_retry_at  timestamptz,
    CHECK (scheduled_for IS NULL OR scheduled_for = logical_time),
    PRIMARY KEY (logical_time, run_id, attempt)
) PARTITION BY RANGE (logical_time);

-- Two logical runs of the same (job, slot) are impossible whatever their run ids; each retry
-- attempt is its own row. (logical_time equals scheduled_for there, and partitioned unique
-- indexes must carry the partition key.)
CREATE UNIQUE INDEX job_runs_one_per_slot
    ON job_runs (job_id, scheduled_for, attempt, logical_time) WHERE scheduled_for IS NOT NULL;
-- A job's latest runs; retention by job.
CREATE INDEX job_runs_by_job ON job_runs (job_id, logical_time DESC);
-- Failures across jobs, newest first.
CREATE INDEX job_runs_failures ON job_runs (logical_time DESC)
    WHERE status IN ('failed', 'timed_out', 'cancelled');
-- Runs in flight, for status.active and stuck-run detection.
CREATE INDEX job_runs_running ON job_runs (job_id) WHERE status = 'running';

CREATE TABLE job_runs_default PARTITION OF job_runs DEFAULT;

-- Monthly partitions from `from_month` for `months` months; idempotent and safe to race.
-- Rows that already landed in the default partition for that month (a catch-up run far in the
-- past, say) move into the new partition instead of blocking its creation.
CREATE FUNCTION sundial_ensure_job_runs_partitions(from_month date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    month_start date;
    month_end date;
    part_name text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sundial_job_runs_partitions'));
    FOR i IN 0 .. months - 1 LOOP
        month_start := (date_trunc('month', from_month) + make_interval(months => i))::date;
        month_end := (month_start + interval '1 month')::date;
        part_name := format('job_runs_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE job_runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part_name);
            EXECUTE format(
                'WITH moved AS (DELETE FROM job_runs_default WHERE logical_time >= %L AND logical_time < %L'
                ' RETURNING *) INSERT INTO %I SELECT * FROM moved', month_start, month_end, part_name);
            EXECUTE format('ALTER TABLE job_runs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           part_name, month_start, month_end);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

SELECT sundial_ensure_job_runs_partitions((now() - interval '1 month')::date, 4);
