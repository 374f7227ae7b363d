-- A slot of a BufferOne/BufferAll job fired while its run ahead was live waits in a Redis list
-- until that run ends. Redis may lose its data, so the fire is also recorded here, by the
-- ticker's fire record (the same transaction as last_schedule_time): a row here with no
-- job_runs row for its run id is a slot fired into a buffer that has not started, and the
-- workers' rebuild puts it back into the buffer (sundial.core.recovery). Nothing deletes a row
-- on the hot path: the start's job_runs row is what marks it done, and worker housekeeping
-- prunes rows that started, grew old or lost their job. No foreign key, as for job_runs: a fire
-- record may land just after its job was deleted, and must not fail the batch it is in.
CREATE TABLE buffered_runs (
    run_id         text        PRIMARY KEY,
    job_id         uuid        NOT NULL,
    logical_time   timestamptz NOT NULL,
    scheduled_for  timestamptz NOT NULL,
    trigger_type   text        NOT NULL,
    buffered_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buffered_runs_by_job ON buffered_runs (job_id, logical_time DESC);
