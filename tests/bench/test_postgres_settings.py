"""A benchmark that tunes its PostgreSQL says so: the setting reaches the server and its output."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import private_postgres_server

pytestmark = [pytest.mark.services, pytest.mark.bench]


def test_an_extra_setting_reaches_the_server_and_is_named(tmp_path: Path) -> None:
    with private_postgres_server(tmp_path / "pg", migrated=False, durable=True,
                                 extra_settings=("max_wal_size=2GB",)) as server, \
            psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute("SHOW max_wal_size").fetchone()
    assert row == ("2GB",)
    assert server.settings == "fsync=on synchronous_commit=on full_page_writes=on max_wal_size=2GB"
