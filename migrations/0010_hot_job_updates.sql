-- HOT updates of a job's row on the hot path (issue #10; docs/performance.md, "PostgreSQL per
-- recorded run").
--
-- An every-second job's row is updated twice a second: by the ticker's fire record
-- (RECORD_FIRES) and by the recorder's counters (RECORD_RUNS). Both set `updated_at`, which
-- was indexed for the operator's status sync (`Store.job_states_changed_since`, `updated_at >
-- cursor`), so neither update could be HOT: each wrote a new entry into every index of the
-- table. PostgreSQL can update a row in place in its page (HOT: no index entry) only when no
-- indexed column's value changes and the page has room.
--
-- The index now covers `changed_bucket`, the 10-second interval `updated_at` falls in, kept by
-- PostgreSQL itself (a stored generated column, so no writer can forget it): its value changes
-- at most once per 10 s per row, so at most one in 20 of an every-second job's updates is
-- non-HOT. The poll still finds what changed through the index: a row with `updated_at >
-- since` has `changed_bucket >= bucket(since)` (the function only grows), and those rows are
-- the last 10-15 s of changes. Dropping the index altogether and scanning the table on every
-- poll cost 112-152 ms of CPU per poll at 100,000 jobs (bench.status_poll_cost); this index
-- keeps the poll as cheap as the old one.
--
-- fillfactor 70 leaves room in each page for the new versions of its rows (a HOT update needs
-- room in the row's own page; PostgreSQL prunes the dead versions when a page fills). Adding a
-- stored column rewrites the table once, under an exclusive lock, which also packs the
-- existing rows at the new fillfactor (5.4 s for 100,000 jobs, during which job rows' writers
-- wait).
DROP INDEX scheduled_jobs_updated;
ALTER TABLE scheduled_jobs SET (fillfactor = 70),
    ADD COLUMN changed_bucket bigint GENERATED ALWAYS AS
        (floor(extract(epoch FROM updated_at - timestamptz '1970-01-01 00:00:00+00') / 10)::bigint) STORED;
-- Live rows only, as the poll reads: without the predicate the planner combined it with the
-- whole of scheduled_jobs_live_name (a BitmapAnd) to find them. deleted_at is already in that
-- index's predicate, so this adds no column whose change makes an update non-HOT.
CREATE INDEX scheduled_jobs_changed ON scheduled_jobs (changed_bucket) WHERE deleted_at IS NULL;
