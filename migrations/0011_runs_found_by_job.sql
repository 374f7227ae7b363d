-- One index fewer on every run's insert (issue #10; docs/performance.md, "PostgreSQL per
-- recorded run").
--
-- job_runs_run_id (0002) served one read: the dashboard's retry of a run by its id alone. A run
-- id begins with its job's id (`keys.run_id_for_slot`, `keys.run_id_for_manual`), so that read
-- now goes through job_runs_by_job, which every insert maintains anyway, and reads the few
-- hundred rows a job keeps. Every other read of a run already names its logical time, and so
-- uses the primary key. The dropped index took a text key at a random place in its tree on
-- every insert, one more leaf page dirtied (and written in full after each checkpoint) per run.
DROP INDEX IF EXISTS job_runs_run_id;
