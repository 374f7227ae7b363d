-- A backfill (sundial.dev/backfill, `sundial backfill`, POST /api/jobs/{id}/backfill) runs the
-- slots of a past window with its own trigger, so run history tells them from scheduled runs.
-- The check is replaced, not widened in place (PostgreSQL cannot); re-checking the rows is one
-- scan at upgrade time, and every existing row passes.
ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_trigger_type_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_trigger_type_check
    CHECK (trigger_type IN ('scheduled', 'manual', 'retry', 'catchup', 'backfill'));
