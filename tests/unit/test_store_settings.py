"""Every PostgreSQL wait is bounded unless the DSN says otherwise."""

from __future__ import annotations

import pytest

from sundial.core.store import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_MS, connection_settings

DEFAULT_OPTIONS = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u@db/app", {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": DEFAULT_OPTIONS}),
        ("postgresql://u@a:5432,b:5433/app?target_session_attrs=read-write",
         {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": DEFAULT_OPTIONS}),
        ("postgresql://u@db/app?connect_timeout=2", {"options": DEFAULT_OPTIONS}),
        ("host=db dbname=app options='-c search_path=x'",
         {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": f"-c search_path=x {DEFAULT_OPTIONS}"}),
        ("postgresql://u@db/app?options=-c%20statement_timeout%3D5s", {"connect_timeout": CONNECT_TIMEOUT_SECONDS}),
    ],
)
def test_connection_settings(dsn: str, expected: dict[str, object]) -> None:
    assert connection_settings(dsn) == {"autocommit": True, **expected}
