"""Throwaway PostgreSQL and Redis servers on free loopback ports, from the installed binaries.

Used by the test harness, the benchmarks and `make demo`. PostgreSQL refuses to run as root,
so under root the server runs as the `postgres` system user on a data directory it owns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

START_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# A cluster node also listens on its port + 10,000 (the cluster bus), so its own port must be
# at most 55,535; the kernel's ephemeral range often hands out higher ones.
MAX_CLUSTER_NODE_PORT = 55_535


def free_cluster_node_port() -> int:
    """A free port for a Redis Cluster node whose bus port (+10,000) is free too."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port > MAX_CLUSTER_NODE_PORT:
                continue
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
            return port
    raise ServiceError("no free port pair for a Redis Cluster node")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def postgres_bin_dir() -> Path:
    override = os.environ.get("SUNDIAL_PG_BIN")
    if override:
        return Path(override)
    # Debian keeps the server tools out of PATH, one folder per major version: take the newest.
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise ServiceError(
        "PostgreSQL server binaries not found: install the Debian package `postgresql` "
        "(apt-get install -y postgresql) or set SUNDIAL_PG_BIN"
    )


def redis_server_binary() -> str:
    found = os.environ.get("SUNDIAL_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise ServiceError("redis-server not found: install the Debian package `redis-server`")
    return found


@dataclass
class Postgres:
    """A private PostgreSQL cluster tuned for tests (no fsync: never use for real data).

    `durable=True` keeps PostgreSQL's defaults instead (fsync, synchronous_commit and
    full_page_writes on), which is what benchmarks of committed runs must measure.
    `statement_stats=True` loads pg_stat_statements (a benchmark's per-statement figures).
    `extra_settings` (`name=value` each) are passed on to the server and named in `settings`, so
    a benchmark that tunes the server says so (`bench.run_lateness --postgres-setting`).
    """

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    durable: bool = False
    statement_stats: bool = False
    extra_settings: tuple[str, ...] = ()

    @property
    def settings(self) -> str:
        """The durability settings this server runs with (and any extra ones), for benchmark output."""
        durability = ("fsync=on synchronous_commit=on full_page_writes=on" if self.durable
                      else "fsync=off synchronous_commit=off full_page_writes=off")
        return " ".join((durability, *self.extra_settings))

    @property
    def dsn(self) -> str:
        return f"postgresql://sundial@127.0.0.1:{self.port}/sundial"

    def start(self) -> Postgres:
        bin_dir = postgres_bin_dir()
        data = self.root / "pgdata"
        log = self.root / "postgres.log"
        self.root.mkdir(parents=True, exist_ok=True)
        as_user = _postgres_user_prefix(self.root)
        if not (data / "PG_VERSION").exists():
            initdb = subprocess.run(
                [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "sundial", "--auth=trust",
                 "--no-sync", "-E", "UTF8", "--locale=C"],
                capture_output=True, text=True,
            )
            if initdb.returncode != 0:
                raise ServiceError(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()}")
        self.process = subprocess.Popen(
            [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), *(f"-c{setting}" for setting in self.settings.split()),
             "-c", "max_connections=200", "-c", "shared_buffers=256MB",
             *(["-c", "shared_preload_libraries=pg_stat_statements"] if self.statement_stats else [])],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_for_port(self.port, self.process, log, "postgres")
        self._create_database(bin_dir, as_user)
        return self

    def _create_database(self, bin_dir: Path, as_user: list[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            result = subprocess.run(
                [*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "sundial",
                 "sundial"],
                capture_output=True, text=True,
            )
            if result.returncode == 0 or "already exists" in result.stderr:
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"createdb failed: {result.stderr.strip()}")
            time.sleep(0.1)

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT)  # "fast" shutdown

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _postgres_user_prefix(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        user = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceError("running as root needs the `postgres` system user (Debian's postgresql package)") from exc
    for path in [root, *root.parents]:
        if path == Path("/"):
            break
        # The server user must reach its data directory through every parent folder.
        if path.stat().st_uid == 0 and not path.stat().st_mode & 0o001:
            path.chmod(path.stat().st_mode | 0o711)
    os.chown(root, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class RedisServer:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "redis.log"
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.root), *self.extra_args],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_for_port(self.port, self.process, log, "redis-server")
        return self

    def stop(self) -> None:
        _stop(self.process)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisSentinelSet:
    """A primary, a replica and three sentinels watching them, as Redis's docs deploy Sentinel.

    Down after 1 s without a reply, so a failover completes in seconds in tests; production
    sentinels use longer times. `url` is the `redis+sentinel://` URL every Sundial process takes.
    """

    root: Path
    service: str = "sundial"
    primary: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinels: list[RedisServer] = field(init=False)

    def __post_init__(self) -> None:
        self.primary = RedisServer(self.root / "primary")
        self.replica = RedisServer(self.root / "replica")
        self.replica.extra_args = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.sentinels = [RedisServer(self.root / f"sentinel{index}") for index in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> RedisSentinelSet:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.root.mkdir(parents=True, exist_ok=True)
            config = sentinel.root / "sentinel.conf"  # sentinels rewrite their config: a file of their own
            config.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            _start_sentinel(sentinel, config)
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.stop()

    def __enter__(self) -> RedisSentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_sentinel(sentinel: RedisServer, config: Path) -> None:
    log = sentinel.root / "redis.log"
    sentinel.process = subprocess.Popen(
        [redis_server_binary(), str(config), "--sentinel", "--port", str(sentinel.port), "--bind", "127.0.0.1",
         "--daemonize", "no", "--dir", str(sentinel.root)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    _wait_for_port(sentinel.port, sentinel.process, log, "redis-sentinel")


@dataclass
class RedisClusterSet:
    """A Redis Cluster of `primaries` primaries and no replicas, from `redis-server --cluster-enabled yes`."""

    root: Path
    primaries: int = 3
    nodes: list[RedisServer] = field(init=False)

    def __post_init__(self) -> None:
        if self.primaries < 3:  # redis-cli --cluster create refuses fewer, with a cryptic message
            raise ServiceError(f"a Redis Cluster needs at least 3 primaries, not {self.primaries}")
        self.nodes = [RedisServer(self.root / f"node{index}", port=free_cluster_node_port())
                      for index in range(self.primaries)]
        for node in self.nodes:
            node.extra_args = ["--cluster-enabled", "yes", "--cluster-config-file", str(node.root / "nodes.conf"),
                               "--cluster-node-timeout", "2000"]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterSet:
        try:
            self._start()
        except BaseException:
            self.stop()  # the nodes already started would outlive the caller
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        create = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True,
        )
        if create.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed: {create.stdout[-2000:]}{create.stderr}")
        self._wait_until_ok()

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            info = subprocess.run([shutil.which("redis-cli") or "redis-cli", "-p", str(self.nodes[0].port),
                                   "cluster", "info"], capture_output=True, text=True).stdout
            if "cluster_state:ok" in info:
                return
            time.sleep(0.1)
        raise ServiceError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Services:
    """PostgreSQL + Redis together, in one temporary directory."""

    def __init__(self, root: Path | None = None, *, durable_postgres: bool = False,
                 statement_stats: bool = False, postgres_settings: tuple[str, ...] = ()) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="sundial-services-"))
        self.postgres = Postgres(self.root / "postgres", durable=durable_postgres, statement_stats=statement_stats,
                                 extra_settings=postgres_settings)
        self.redis = RedisServer(self.root / "redis")

    def start(self) -> Services:
        self.redis.start()
        try:
            self.postgres.start()
        except BaseException:
            self.redis.stop()
            raise
        return self

    def stop(self) -> None:
        self.postgres.stop()
        self.redis.stop()

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m sundial.devstack.services` starts both in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with Services(args.dir) as services:
        print(f"DATABASE_URL={services.postgres.dsn}")
        print(f"REDIS_URL={services.redis.url}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    sys.exit(0)


if __name__ == "__main__":
    main()
