"""Dashboard settings, from `SUNDIAL_DASHBOARD_*` plus `DATABASE_URL` and `REDIS_URL`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sundial.core.config import config_error
from sundial.core.keys import Keyspace


class AuthMode(StrEnum):
    # The caller's own bearer token goes to the Kubernetes API; the dashboard needs no rights.
    TOKEN = "token"
    # An authenticating proxy in front names the user; the dashboard impersonates them.
    PROXY = "proxy"


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUNDIAL_DASHBOARD_", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL", "SUNDIAL_DATABASE_URL"))
    redis_url: str = Field(validation_alias=AliasChoices("REDIS_URL", "SUNDIAL_REDIS_URL"))
    redis_prefix: str = Field(default="sundial", validation_alias=AliasChoices("SUNDIAL_REDIS_PREFIX"))
    redis_shards: int = Field(default=1, ge=1, le=1024, validation_alias=AliasChoices("SUNDIAL_REDIS_SHARDS"))

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    auth: AuthMode = AuthMode.TOKEN
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"
    read_only: bool = False
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_namespace: str = "default"
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("SUNDIAL_LOG_LEVEL"))
    log_format: str = Field(
        default="text", pattern="^(text|json)$", validation_alias=AliasChoices("SUNDIAL_LOG_FORMAT")
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(self.redis_prefix, self.redis_shards)


def load_dashboard_settings(**overrides: object) -> DashboardSettings:
    try:
        return DashboardSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error(exc, "SUNDIAL_DASHBOARD_") from exc
