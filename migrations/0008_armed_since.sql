-- When a job's current arming began: the instant its enabled state or generation last changed,
-- on the clock of the process that armed it (the same `now` from which the entry's first slot
-- was planned). After Redis lost its data, the rebuild looks for slots that fired but whose
-- queue message was lost only after this instant: before it, a job that was suspended or had
-- another schedule skipped slots on purpose, and those gaps in its run history are not losses.
-- `updated_at` cannot tell: every status change moves it. Existing rows start now, so nothing
-- from before the upgrade is taken for a loss. now() is not volatile, so adding the column
-- rewrites no table.
ALTER TABLE scheduled_jobs ADD COLUMN IF NOT EXISTS armed_since timestamptz NOT NULL DEFAULT now();

-- When a ticker last counted a slot of the job missed (its missed-run policy dropped it, or the
-- queue was full): such a slot fired nothing and has no row, so it looks like a lost one; the
-- rebuild looks for lost runs only after this instant too. NULL: never.
ALTER TABLE scheduled_jobs ADD COLUMN IF NOT EXISTS last_missed_at timestamptz;
