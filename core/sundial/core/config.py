"""Process settings, from environment variables (`SUNDIAL_*`, plus `DATABASE_URL` and `REDIS_URL`)."""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sundial.core.keys import Keyspace


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUNDIAL_", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL", "SUNDIAL_DATABASE_URL"))
    redis_url: str = Field(validation_alias=AliasChoices("REDIS_URL", "SUNDIAL_REDIS_URL"))
    redis_prefix: str = "sundial"
    redis_shards: int = Field(default=1, ge=1, le=1024)

    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    concurrency: int = Field(default=5, ge=1, le=10000)
    # A run whose worker stopped heart-beating this long is handed to another worker.
    visibility_timeout_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    ticker_enabled: bool = True
    # Dedicated ticker replicas (or benchmarks) run with the consumer off.
    consumer_enabled: bool = True
    ticker_batch: int = Field(default=500, ge=1)
    # Longest the ticker sleeps, so an entry armed for "very soon" is never noticed late.
    ticker_max_sleep_seconds: float = Field(default=0.25, gt=0)
    # Entries due this soon are claimed and planned before their slot, so a second on which
    # thousands of jobs fire only costs the final atomic apply. Zero for manual-clock tests.
    ticker_lookahead_seconds: float = Field(default=1.0, ge=0, le=5)
    on_time_grace_seconds: float = Field(default=5.0, ge=0)
    # How long a fired run may wait in the queue before its concurrency claim lapses.
    queue_grace_seconds: float = Field(default=600.0, ge=0)
    # Overload policy (docs/performance.md): the ticker records slots missed instead of queueing
    # them while the queue holds this many runs, and a scheduled run that found no free worker
    # within this long of its slot (or by its job's next slot, if later) is recorded missed.
    queue_max_length: int = Field(default=200_000, ge=1)
    queue_min_wait_seconds: float = Field(default=5.0, ge=0)
    # Finished runs that may wait in memory for PostgreSQL (during a stall) before the worker
    # stops taking work; each holds its record and its unacknowledged message.
    max_unrecorded_runs: int = Field(default=20_000, ge=1)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    target_modules: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    log_format: str = Field(default="text", pattern="^(text|json)$")

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(self.redis_prefix, self.redis_shards)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error(exc, "SUNDIAL_") from exc


def config_error(exc: ValidationError, env_prefix: str) -> ConfigError:
    """One line naming each bad or missing environment variable."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = name if name.isupper() else f"{env_prefix}{name.upper()}"
        reason = "is not set" if error["type"] == "missing" else error["msg"]
        problems.append(f"{variable} {reason}")
    return ConfigError("invalid configuration: " + "; ".join(problems))
