"""PostgreSQL that hangs or sits behind a multi-host URL: reads fail fast, writes find the primary."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from sundial.core import store as store_module
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.store import Store
from sundial.devstack.services import Postgres, ServiceError
from tests.chaos.harness import Figures, report, signal_tree
from tests.conftest import unavailable
from tests.integration.engine import new_job, spec

pytestmark = [pytest.mark.services, pytest.mark.chaos]


@pytest.fixture(scope="module")
def read_only_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A server of our own that refuses writes as a standby does (transaction_read_only)."""
    try:
        server = Postgres(tmp_path_factory.mktemp("pg-standby")).start()
    except (ServiceError, OSError) as exc:
        unavailable(str(exc))
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()


def multi_host(standby: Postgres, primary_dsn: str) -> str:
    primary = psycopg.conninfo.conninfo_to_dict(primary_dsn)
    return (f"postgresql://sundial@127.0.0.1:{standby.port},{primary['host']}:{primary['port']}/sundial"
            "?target_session_attrs=read-write")


async def test_a_multi_host_url_finds_the_writable_server(read_only_postgres: Postgres, database_url: str) -> None:
    store = await Store.open(multi_host(read_only_postgres, database_url))
    try:
        job = new_job("multihost")
        await store.upsert_job(job, spec(), 1, SYSTEM_CLOCK.now())
        assert (await store.job(job.job_id)) is not None
    finally:
        await store.close()
    direct = await Store.open(database_url)
    try:
        assert (await direct.job(job.job_id)) is not None, "the write landed on the writable server"
    finally:
        await direct.close()


async def test_reads_against_a_hung_postgres_fail_fast_and_recover(
    read_only_postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = read_only_postgres
    monkeypatch.setattr(store_module, "READ_TIMEOUT_SECONDS", 2.0)
    store = await Store.open(hung.dsn)
    assert hung.process is not None
    try:
        await store.ping()
        signal_tree(hung.process.pid, signal.SIGSTOP)  # a hung primary, as a partition looks
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                await store.ping()
            failed_after = time.monotonic() - started
        finally:
            signal_tree(hung.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        await store.ping()
        recovered_after = time.monotonic() - resumed
    finally:
        await store.close()
    report(Figures("PostgreSQL hung (SIGSTOP), a read", 0, 0, 0, 0, 0.0, recovered_after,
                   f"read_failed_after_s={failed_after:.2f} (timeout 2 s)"))
    assert failed_after < 5.0
