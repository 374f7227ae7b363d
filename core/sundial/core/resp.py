"""Redis connections that pack commands in C (hiredis), as redis-py's synchronous client does.

redis-py's asyncio connections pack every command in Python, rebuilding a growing buffer per
argument (redis/redis-py#4176, open). The ticker's `APPLY_PLANS` call carries about 2,000
arguments per 500 entries and the ack script one per message, so packing was 9 % of a busy
worker's CPU (py-spy, 10,000 every-second schedules); `hiredis.pack_command` writes the same
bytes about 8 times faster. A command hiredis cannot pack (an argument it refuses) falls back to
redis-py's own packing, so what reaches the server never depends on which one ran.

Used for plain, TLS and Unix-socket connections and Sentinel-managed ones; Redis Cluster's
client builds its node connections itself and keeps redis-py's packing.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.typing import EncodableT


class _HiredisPacking:
    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
            args = (*name.split(), *args[1:])  # "CONFIG GET" is sent as two arguments
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]
        except (TypeError, UnicodeError):
            # bytearray, memoryview or a bool (redis-py packs the first two and refuses the last
            # with its own error), or text that only redis-py's error handler can encode.
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]


class PackedConnection(_HiredisPacking, Connection):
    pass


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class PackedSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    pass


PACKED: dict[type[Any], type[Any]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}
