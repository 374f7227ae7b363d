-- One tombstone per job and deleting statement, not one per deleted attempt (issue #10;
-- docs/performance.md, "Fifteenth session").
--
-- Retention deletes a row for every row written once a job's history is full: at 10,000
-- every-second jobs, 10,000 deleted attempts a second. 0009's trigger wrote a tombstone row for
-- each (its heap tuple, an entry in the version index, and a delete of both by the trim ten
-- minutes later): about 40 % of PostgreSQL's CPU per pruned row (bench.record_cost,
-- "retention"). A prune statement deletes one job's oldest attempts together, so the trigger now
-- writes one row per job, the attempts' naming fields side by side in arrays, and the runs
-- API's poller unnests them (Store's RUN_ROWS_CHANGED): the DELETED events are the same.
ALTER TABLE job_run_tombstones RENAME TO job_run_tombstones_0009;
ALTER INDEX job_run_tombstones_by_version RENAME TO job_run_tombstones_0009_by_version;

CREATE TABLE job_run_tombstones (
    deleted_version  bigint        NOT NULL,
    deleted_at       timestamptz   NOT NULL,
    job_id           uuid          NOT NULL,
    namespace        text,
    job_name         text,
    -- Per deleted attempt, in the same order in every array.
    run_ids          text[]        NOT NULL,
    logical_times    timestamptz[] NOT NULL,
    scheduled_fors   timestamptz[] NOT NULL,
    trigger_types    text[]        NOT NULL,
    statuses         text[]        NOT NULL,
    attempts         integer[]     NOT NULL,
    created_versions bigint[]      NOT NULL
);

INSERT INTO job_run_tombstones
SELECT deleted_version, min(deleted_at), job_id, min(namespace), min(job_name), array_agg(run_id),
       array_agg(logical_time), array_agg(scheduled_for), array_agg(trigger_type), array_agg(status),
       array_agg(attempt), array_agg(created_version)
FROM job_run_tombstones_0009
GROUP BY deleted_version, job_id;
DROP TABLE job_run_tombstones_0009;

CREATE INDEX job_run_tombstones_by_version ON job_run_tombstones (deleted_version);

-- Each job's attempts gathered first, so its namespace and name are read once, not per attempt.
CREATE OR REPLACE FUNCTION sundial_job_runs_tombstones() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    version bigint := pg_current_xact_id()::text::bigint;
    deleted timestamptz := clock_timestamp();
BEGIN
    INSERT INTO job_run_tombstones (deleted_version, deleted_at, job_id, namespace, job_name, run_ids,
                                    logical_times, scheduled_fors, trigger_types, statuses, attempts,
                                    created_versions)
    SELECT version, deleted, g.job_id, j.namespace, j.name, g.run_ids, g.logical_times, g.scheduled_fors,
           g.trigger_types, g.statuses, g.attempts, g.created_versions
    FROM (SELECT o.job_id, array_agg(o.run_id) AS run_ids, array_agg(o.logical_time) AS logical_times,
                 array_agg(o.scheduled_for) AS scheduled_fors, array_agg(o.trigger_type) AS trigger_types,
                 array_agg(o.status) AS statuses, array_agg(o.attempt) AS attempts,
                 array_agg(o.created_version) AS created_versions
          FROM gone o GROUP BY o.job_id) g
    LEFT JOIN scheduled_jobs j ON j.id = g.job_id;
    RETURN NULL;
END
$$;
