-- Run ends are counted into their job's row by a periodic fold, not by the statement that
-- writes them (issue #10; docs/performance.md, "Sixteenth session").
--
-- RECORD_RUNS updated a job's scheduled_jobs row (counters, last run) in the statement that
-- wrote its runs: an every-second job's row was rewritten, and locked first, every second by
-- every batch, about 45 % of PostgreSQL's CPU per recorded run (bench.record_cost, "insert").
-- The workers' recorders now write runs untallied (`tallied` false) and every few seconds one of
-- them folds every run that ended since the last fold into the counters (Store.tally_runs): a
-- job's row once per fold, however many of its runs ended meanwhile.
--
-- Which runs are folded is decided by the rows themselves, so no count is lost with a worker:
-- `run_tally.through` is the first resourceVersion (writing transaction id, migration 0007) not
-- yet folded; a fold takes the untallied ends from there up to the oldest transaction still
-- running (pg_snapshot_xmin: every writer below it has ended) and moves `through` there, in one
-- transaction, one fold at a time (the row's lock). Retention keeps an untallied end until it
-- is folded.
--
-- `tallied` defaults to true: rows written the old way (their counts taken in the same
-- statement, by the statement a worker of an earlier version still sends during a rolling
-- upgrade, or by `Store.record_runs` for runs closed outside the hot path) are never folded again.
ALTER TABLE job_runs ADD COLUMN tallied boolean NOT NULL DEFAULT true;

CREATE TABLE run_tally (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through   bigint  NOT NULL
);
INSERT INTO run_tally (through) VALUES (pg_current_xact_id()::text::bigint);
-- Planned as the one row it is (an unanalyzed table is guessed at a thousand rows a page).
ANALYZE run_tally;
