"""Commands packed by hiredis are byte for byte what redis-py's own packing sends."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from sundial.core.broker import redis_from_url
from sundial.core.resp import PackedConnection, PackedSSLConnection, PackedUnixConnection


@pytest.mark.parametrize(
    "args",
    [
        ("PING",),
        ("SET", "key", "value"),
        ("CONFIG GET", "hz"),  # a command name of two words is sent as two arguments
        (b"CLIENT SETNAME", b"worker"),
        ("XADD", "queue", "*", "run", "job:1700000000000", "attempt", 1, "exp", 1700000000123),
        ("ZADD", "due", 0.30000000000000004, "a", 1e20, "b", -0.0, "c", float("inf"), "d"),
        ("SET", "text", "São Paulo ☀"),
        ("SET", "bytes", b"\x00\xff\r\n"),
        ("SET", "view", memoryview(b"abc"), bytearray(b"def")),
        ("EVALSHA", "f" * 40, 3, *(f"sundial:{{0}}:entry:{i}" for i in range(3)), *range(1000)),
    ],
)
def test_the_same_bytes_as_redis_py(args: tuple[EncodableT, ...]) -> None:
    assert b"".join(PackedConnection().pack_command(*args)) == b"".join(Connection().pack_command(*args))


def test_what_hiredis_refuses_is_packed_by_redis_py() -> None:
    lone_surrogate = ("SET", "key", "\udc80")
    packed = PackedConnection(encoding_errors="replace").pack_command(*lone_surrogate)
    assert packed == Connection(encoding_errors="replace").pack_command(*lone_surrogate)
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "key", True)


@pytest.mark.parametrize(
    ("url", "packed"),
    [
        ("redis://localhost:6379/0", PackedConnection),
        ("rediss://localhost:6380/0", PackedSSLConnection),
        ("unix:///tmp/redis.sock", PackedUnixConnection),
    ],
)
def test_clients_pack_in_c(url: str, packed: type[Connection | UnixDomainSocketConnection]) -> None:
    assert redis_from_url(url).connection_pool.connection_class is packed
