-- The dashboard retries a failed run by its run id alone; without this, finding it would read
-- every partition. Small: one entry per attempt.
CREATE INDEX job_runs_run_id ON job_runs (run_id, attempt DESC);
