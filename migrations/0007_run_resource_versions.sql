-- A resourceVersion for every run attempt, so `kubectl get scheduledjobruns -w` and
-- `sundial run --wait` watch instead of polling (docs/architecture.md, "Run history API").
--
-- resource_version is the 64-bit id (xid8) of the last transaction that wrote the row;
-- created_version that of the transaction that inserted it. PostgreSQL sets both here, so no
-- writer can forget them. Transaction ids only grow, and every transaction below the oldest
-- one still running (pg_snapshot_xmin) has ended: the runs API emits a window of versions only
-- once that horizon has passed it, so a transaction that commits late is never skipped.
ALTER TABLE job_runs ADD COLUMN resource_version bigint NOT NULL DEFAULT 0;
ALTER TABLE job_runs ADD COLUMN created_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION sundial_job_runs_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.resource_version := pg_current_xact_id()::text::bigint;
    IF TG_OP = 'INSERT' THEN
        NEW.created_version := NEW.resource_version;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_runs_version BEFORE INSERT OR UPDATE ON job_runs
    FOR EACH ROW EXECUTE FUNCTION sundial_job_runs_version();

-- The watch poller reads the versions above its last horizon.
CREATE INDEX job_runs_by_version ON job_runs (resource_version);
