-- Run versions without a per-row plpgsql call (the runs API, docs/architecture.md).
--
-- 0007's BEFORE INSERT OR UPDATE trigger called plpgsql for every row of every job_runs write:
-- a large share of PostgreSQL's CPU per recorded run. Now:
-- - an insert gets both versions from the columns' DEFAULT (the writing transaction's id);
-- - every UPDATE in sundial.core.store sets resource_version itself (RECORD_RUNS computes the id
--   once per statement);
-- - a safety net for an UPDATE that does not: a row trigger whose WHEN clause (evaluated in C,
--   without calling the function) is true only when the version was left as it was. A writer
--   that forgets costs a plpgsql call per row and is still correct; the store's writers never
--   reach the function.
DROP TRIGGER job_runs_version ON job_runs;
DROP FUNCTION sundial_job_runs_version();

ALTER TABLE job_runs ALTER COLUMN resource_version SET DEFAULT pg_current_xact_id()::text::bigint;
ALTER TABLE job_runs ALTER COLUMN created_version SET DEFAULT pg_current_xact_id()::text::bigint;

CREATE FUNCTION sundial_job_runs_stale_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.resource_version := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_runs_stale_version BEFORE UPDATE ON job_runs
    FOR EACH ROW WHEN (NEW.resource_version = OLD.resource_version)
    EXECUTE FUNCTION sundial_job_runs_stale_version();

-- DELETED watch events: a statement-level trigger (one call per DELETE, whatever its row count)
-- copies what a watcher needs to name each deleted attempt, with the deleting transaction's id
-- as its version, into a small table the runs API's poller reads beside job_runs. The job's
-- namespace and name are read here because a job deleted with its history loses its
-- scheduled_jobs row in the same transaction, just after its runs. Rows are trimmed by time
-- (Store.prune_histories); moving rows between partitions deletes from a partition directly,
-- which fires no trigger on job_runs, so a move is no deletion.
CREATE TABLE job_run_tombstones (
    deleted_version bigint      NOT NULL,
    deleted_at      timestamptz NOT NULL,
    run_id          text        NOT NULL,
    job_id          uuid        NOT NULL,
    namespace       text,
    job_name        text,
    logical_time    timestamptz NOT NULL,
    scheduled_for   timestamptz,
    trigger_type    text        NOT NULL,
    status          text        NOT NULL,
    attempt         integer     NOT NULL,
    created_version bigint      NOT NULL
);
CREATE INDEX job_run_tombstones_by_version ON job_run_tombstones (deleted_version);

-- deleted_at is the statement's wall-clock time, not the transaction's start (now()): the trim
-- goes by it, and a transaction that ran long before deleting must not leave tombstones that
-- look old already.
CREATE FUNCTION sundial_job_runs_tombstones() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    version bigint := pg_current_xact_id()::text::bigint;
    deleted timestamptz := clock_timestamp();
BEGIN
    INSERT INTO job_run_tombstones (deleted_version, deleted_at, run_id, job_id, namespace, job_name,
                                    logical_time, scheduled_for, trigger_type, status, attempt, created_version)
    SELECT version, deleted, o.run_id, o.job_id, j.namespace, j.name, o.logical_time, o.scheduled_for,
           o.trigger_type, o.status, o.attempt, o.created_version
    FROM gone o LEFT JOIN scheduled_jobs j ON j.id = o.job_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_runs_tombstones AFTER DELETE ON job_runs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION sundial_job_runs_tombstones();

-- job_runs_one_per_slot (0001) is read by no query (EXPLAIN of every job_runs read, in
-- docs/performance.md) and cost 12-20 µs of PostgreSQL CPU per scheduled run's insert, about a
-- quarter of the row's write (bench.record_cost). What it guarded is implied by the primary key:
-- every row with a scheduled_for has the run id `<job id>:<slot ms>` (keys.run_id_for_slot, and
-- the same format in broker.py's Lua), and its logical_time is that slot, so (logical_time,
-- run_id, attempt) unique means (job, slot, attempt) unique. A duplicate it caught would also have
-- failed the recorder's whole batch, on every retry.
DROP INDEX job_runs_one_per_slot;
