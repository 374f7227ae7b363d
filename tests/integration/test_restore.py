"""A database dumped and restored into another cluster (pg_dump, then psql) keeps its counts.

Run ends are counted by the fold from their writing transaction's id (migration 0013), and a
restored cluster numbers its transactions from where its own counter stood, usually far below
the source's. Without a repair the fold's watermark stays above every new end and no run is
counted again: each job's counters and last run froze. Real PostgreSQL clusters, a real
pg_dump and a real restore.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from sundial.core.migrate import migrate
from sundial.core.runs import RunStatus
from sundial.core.store import Store
from sundial.devstack.services import Postgres, postgres_bin_dir
from tests.conftest import private_postgres_server
from tests.integration.test_run_tally import a_job, counts, ended

pytestmark = pytest.mark.services

# Transactions spent on the source first, so its run versions are well above anything the
# restored cluster numbers (a fresh cluster's restore takes a few hundred).
SOURCE_TRANSACTIONS = 3_000


def spend_transactions(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:  # one transaction each (a pipeline shares one)
        for _ in range(count):
            conn.execute("SELECT pg_current_xact_id()")


def dump_and_restore(source: Postgres, target: Postgres, dump: Path) -> None:
    bin_dir = postgres_bin_dir()
    subprocess.run([str(bin_dir / "pg_dump"), "--no-owner", "--file", str(dump), source.dsn], check=True)
    subprocess.run([str(bin_dir / "psql"), "--quiet", "--set", "ON_ERROR_STOP=1", "--file", str(dump), target.dsn],
                   check=True, stdout=subprocess.DEVNULL)


def newest_version(dsn: str) -> tuple[int, int]:
    """(the highest run version stored, written or created, the cluster's current transaction id)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT (SELECT max(greatest(resource_version, created_version)) FROM job_runs),"
                           " pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_database_restored_into_another_cluster_counts_every_end_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (private_postgres_server(tmp_path / "source") as source,
          private_postgres_server(tmp_path / "target", migrated=False) as target):
        spend_transactions(source.dsn, SOURCE_TRANSACTIONS)
        store = await Store.open(source.dsn, max_size=2)
        try:
            job = await a_job(store, "restored")
            await store.record_untallied_runs([ended(job, 0), ended(job, 1)])
            await store.tally_runs()
            await store.record_runs([ended(job, -1)])  # counted as written (a run closed outside the hot path)
            # At the dump: one end not yet folded, one attempt still running.
            await store.record_untallied_runs([ended(job, 2), ended(job, 3, RunStatus.RUNNING)])
            assert (await counts(store, job))[0] == 3
        finally:
            await store.close()
        dump_and_restore(source, target, tmp_path / "dump.sql")

        assert migrate(target.dsn) == [], "the restored schema is current"
        stored, numbering = newest_version(target.dsn)
        assert numbering < stored, "the restored cluster numbers its transactions below the source's"

        store = await Store.open(target.dsn, max_size=2)
        try:
            await store.record_untallied_runs([ended(job, 3), ended(job, 4, RunStatus.FAILED)])
            await store.tally_runs()
            assert await counts(store, job) == (6, 5, 1, "failed", ended(job, 4).run_id)
            stored, numbering = newest_version(target.dsn)
            assert stored < numbering, "every version renumbered into this cluster's"
            await store.tally_runs()
            assert (await counts(store, job))[0] == 6, "counted once"

            await store.record_untallied_runs([ended(job, 5)])
            await store.tally_runs()
            assert await counts(store, job) == (7, 6, 1, "success", ended(job, 5).run_id), "and folding goes on"
            repairs = [r for r in caplog.records if "past this cluster's transaction ids" in r.getMessage()]
            assert len(repairs) == 1
        finally:
            await store.close()
