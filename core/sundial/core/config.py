"""Every setting of every Sundial process, from environment variables: the single source.

`Settings` is the worker's and the operator's (`SUNDIAL_*`, plus `DATABASE_URL` and `REDIS_URL`),
`DashboardSettings` the dashboard's (`SUNDIAL_DASHBOARD_*`, sharing the backends' variables).
`OTHER_VARIABLES` lists what is read elsewhere (the Kubernetes client, the CLI). docs/configuration.md
is generated from all three (`python -m sundial.core.config_doc`), and a test fails on drift.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sundial.core.keys import Keyspace
from sundial.core.policy import BUILTIN_TARGETS, EffectivePolicy, check_networks, default_policy
from sundial.core.pools import DEFAULT_POOL, POOL_PATTERN, pool_keyspace

# The one definition of the queue grace: the setting's default, and what sundial.core.jobs uses
# when its caller passes no setting.
QUEUE_GRACE_SECONDS: Final = 600.0
# The setting's default, and the recorder's when it is built without settings (tests, benches).
JOB_ROW_INTERVAL_SECONDS: Final = 5.0
JOB_ROWS_PER_SECOND: Final = 1000.0
DEFAULT_REDIS_PREFIX: Final = "sundial"

_DATABASE_URL = AliasChoices("DATABASE_URL", "SUNDIAL_DATABASE_URL")
_REDIS_URL = AliasChoices("REDIS_URL", "SUNDIAL_REDIS_URL")
_DATABASE_HELP = "PostgreSQL URL (postgresql://user:password@host:5432/db); also read as SUNDIAL_DATABASE_URL."
_REDIS_HELP = "Redis URL (redis://host:6379/0, rediss:// for TLS); also read as SUNDIAL_REDIS_URL."


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    """sundial-worker and sundial-operator."""

    model_config = SettingsConfigDict(env_prefix="SUNDIAL_", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias=_DATABASE_URL, description=_DATABASE_HELP)
    redis_url: str = Field(validation_alias=_REDIS_URL, description=_REDIS_HELP)
    redis_prefix: str = Field(
        default=DEFAULT_REDIS_PREFIX, description="Prefix of every Redis key: deployments sharing a Redis differ here."
    )
    redis_shards: int = Field(
        default=1, ge=1, le=1024, description="Redis hash-tag shards the jobs are spread over (Redis Cluster)."
    )

    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="This worker's name in heartbeats and job_runs.worker (default: hostname-pid).",
    )
    concurrency: int = Field(default=5, ge=1, le=10000, description=(
        "Runs one worker executes at once (a launcher: running Jobs it tracks at once, 5000 when unset)."))
    visibility_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A run whose worker stopped heart-beating this long is handed to another."
    )
    shutdown_grace_seconds: float = Field(
        default=25.0, ge=0, description="On SIGTERM, how long running targets may finish before they are abandoned."
    )
    ticker_enabled: bool = Field(default=True, description="Run the ticker (fires due slots) in this worker.")
    consumer_enabled: bool = Field(
        default=True, description="Run the consumer (executes runs); dedicated ticker replicas turn it off."
    )
    ticker_batch: int = Field(default=500, ge=1, description="Due entries the ticker claims per pass.")
    ticker_max_sleep_seconds: float = Field(
        default=0.25, gt=0,
        description="Longest the ticker sleeps, so an entry armed for very soon is never noticed late.",
    )
    ticker_lookahead_seconds: float = Field(
        default=1.0, ge=0, le=5,
        description="Entries due this soon are planned before their slot, so only the final atomic apply is "
                    "left at the slot (0 for manual-clock tests).",
    )
    fire_ahead_seconds: float = Field(
        default=0.5, ge=0, le=2,
        description="Runs of concurrencyPolicy Allow are queued this long before their slot and held by a "
                    "consumer until it, so a crowded second's queueing is done when it comes (0: queue at the "
                    "slot). A job deleted or suspended meanwhile does not start.",
    )
    fire_together_seconds: float = Field(
        default=1.0, ge=0, le=5,
        description="A run queued ahead takes its job's slots that follow within this long into the same queueing "
                    "(1: an every-second job's slots go two at a time, about half the Redis and ticker work per "
                    "fire; the second is queued a second earlier and held until its slot; jobs begin their pairs in "
                    "alternate seconds, by their ids, so each second queues half of them). 0: one slot at a time.",
    )
    on_time_grace_seconds: float = Field(
        default=5.0, ge=0,
        description="How late a slot may fire and still count as on time (not missed) under missedRunPolicy Skip.",
    )
    queue_grace_seconds: float = Field(
        default=QUEUE_GRACE_SECONDS, ge=0,
        description="How long a fired run may wait in the queue before its concurrency claim lapses.",
    )
    queue_max_length: int = Field(
        default=200_000, ge=1,
        description="Overload policy (docs/performance.md): while the queue holds this many runs, the ticker "
                    "records new slots missed instead of queueing them, so Redis memory stays bounded.",
    )
    queue_min_wait_seconds: float = Field(
        default=5.0, ge=0,
        description="A scheduled run that found no free worker within this long of its slot (or by its job's "
                    "next slot, if later) is recorded missed instead of started; startingDeadlineSeconds wins.",
    )
    max_unrecorded_runs: int = Field(
        default=20_000, ge=1,
        description="Finished runs that may wait in memory for PostgreSQL (during a stall) before the worker "
                    "stops taking work; each holds its record and its unacknowledged message.",
    )
    job_row_interval_seconds: float = Field(
        default=JOB_ROW_INTERVAL_SECONDS, ge=0,
        description="How often a busy job's row in PostgreSQL (its status: next run, last schedule time, missed "
                    "slots, run counts, last run) is rewritten: a fire is written at once after a quiet spell, "
                    "later fires and the runs that ended are counted at most once per this long, so an "
                    "every-second job's row is not rewritten every second (0: at once).",
    )
    job_rows_per_second: float = Field(
        default=JOB_ROWS_PER_SECOND, ge=0,
        description="How many busy jobs' rows a worker rewrites a second at most: a worker that fires more "
                    "busy jobs than this in SUNDIAL_JOB_ROW_INTERVAL_SECONDS writes their rows once per "
                    "longer interval instead, so thousands of every-second jobs do not spend PostgreSQL's "
                    "CPU on status rows (0: no limit).",
    )
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, description="Port of /metrics (and the worker's /healthz, /readyz); 0: none."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address /metrics listens on.")
    target_modules: list[str] = Field(
        default_factory=list,
        description="Extra modules to import for their targets, as a JSON list "
                    '(["acme.targets"]); entry points of the group sundial.targets load anyway.',
    )
    http_allow_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http target egress (docs/security.md): comma-separated CIDRs or addresses allowed even "
                    "inside the default-denied ranges (loopback, link-local/metadata, unspecified).",
    )
    http_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http target egress: comma-separated host names (*.example.com for a whole domain) "
                    "whose resolved addresses are allowed even inside the default-denied ranges.",
    )
    http_deny_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http target egress: comma-separated CIDRs always refused, e.g. the addresses of "
                    "Sundial's own services (operator, dashboard, metrics); wins over every allow.",
    )
    http_deny_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http target egress: comma-separated host names always refused "
                    "(*.example.com for a whole domain), e.g. sundial-operator.sundial.svc.",
    )
    http_deny_private: bool = Field(
        default=False,
        description="http target egress: also refuse private ranges (10/8, 172.16/12, 192.168/16, "
                    "100.64/10, fc00::/7) unless allowed above; off by default, in-cluster services "
                    "being what an http target is for.",
    )
    worker_pool: str = Field(
        default=DEFAULT_POOL, pattern=POOL_PATTERN, max_length=40,
        description="Worker pool this worker serves: it fires and runs only the jobs whose spec.workerPool names "
                    "it (docs/security.md), from the pool's own Redis keys.",
    )
    policy_default_targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(BUILTIN_TARGETS),
        description="Targets a namespace no TargetPolicy selects may use, comma-separated (biz:* for a prefix, "
                    "* for all); operator and workers must agree.",
    )
    policy_default_pools: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_POOL],
        description="Worker pools a namespace no TargetPolicy selects may use, comma-separated.",
    )
    policy_refresh_seconds: float = Field(
        default=5.0, gt=0,
        description="How often the operator re-reads TargetPolicies and namespaces, and workers the effective "
                    "policies the operator stored: a policy change takes effect within about twice this.",
    )
    secrets_dir: str = Field(
        default="/var/run/sundial/secrets",
        description="Where the worker reads the Secrets its pool mounts (<dir>/<secret>/<key>) to resolve "
                    "secretKeyRef params.",
    )
    secrets_namespace: str = Field(
        default="",
        description="Namespace whose Secrets are mounted in this worker; jobs of other namespaces cannot "
                    "resolve secretKeyRef here (empty: no Secrets are mounted).",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(default="text", pattern="^(text|json)$", description="text, or json (one object a line).")

    @field_validator("http_allow_cidrs", "http_allow_hosts", "http_deny_cidrs", "http_deny_hosts",
                     "policy_default_targets", "policy_default_pools", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("http_allow_cidrs", "http_deny_cidrs")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)

    @property
    def keyspace(self) -> Keyspace:
        """The deployment's keyspace: the default pool's, and the base of every other pool's."""
        return Keyspace(self.redis_prefix, self.redis_shards)

    @property
    def worker_keyspace(self) -> Keyspace:
        """The keyspace this worker's pool fires and runs from."""
        return pool_keyspace(self.keyspace, self.worker_pool)

    @property
    def default_policy(self) -> EffectivePolicy:
        return default_policy(self.policy_default_targets, self.policy_default_pools)


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AuthMode(StrEnum):
    # The caller's own bearer token goes to the Kubernetes API; the dashboard needs no rights.
    TOKEN = "token"
    # An authenticating proxy in front names the user; the dashboard impersonates them.
    PROXY = "proxy"


class DashboardSettings(BaseSettings):
    """sundial-dashboard."""

    model_config = SettingsConfigDict(env_prefix="SUNDIAL_DASHBOARD_", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias=_DATABASE_URL, description=_DATABASE_HELP)
    redis_url: str = Field(validation_alias=_REDIS_URL, description=_REDIS_HELP)
    redis_prefix: str = Field(
        default=DEFAULT_REDIS_PREFIX, validation_alias=AliasChoices("SUNDIAL_REDIS_PREFIX"),
        description="The deployment's Redis key prefix, as the workers'.",
    )
    redis_shards: int = Field(
        default=1, ge=1, le=1024, validation_alias=AliasChoices("SUNDIAL_REDIS_SHARDS"),
        description="The deployment's Redis shards, as the workers'.",
    )

    host: str = Field(default="0.0.0.0", description="Address the dashboard listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of the REST API and the page.")
    auth: AuthMode = Field(
        default=AuthMode.TOKEN,
        description="token: the caller's bearer token goes to the Kubernetes API; proxy: an authenticating "
                    "proxy names the user in headers and the dashboard impersonates them.",
    )
    user_header: str = Field(default="X-Forwarded-User", description="proxy mode: header carrying the user name.")
    groups_header: str = Field(
        default="X-Forwarded-Groups", description="proxy mode: header carrying the comma-separated groups."
    )
    read_only: bool = Field(default=False, description="Every write answers 403; the page hides its buttons.")
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespaces the dashboard lists; empty: every one the caller can see.",
    )
    default_namespace: str = Field(default="default", description="Namespace of a new job whose request names none.")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted; a larger one is answered 413."
    )
    login_failures: int = Field(
        default=10, ge=1,
        description="Failed logins (401 answers) one client address may have within login_window_seconds "
                    "before it is answered 429 with Retry-After.",
    )
    login_window_seconds: float = Field(
        default=300.0, gt=0, description="The sliding window failed logins are counted over."
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated proxy addresses (or *) whose X-Forwarded-For names the client; behind an "
                    "ingress set it to the ingress pods' addresses, or every client shares the login throttle.",
    )
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("SUNDIAL_LOG_LEVEL"), description="As the workers'."
    )
    log_format: str = Field(
        default="text", pattern="^(text|json)$", validation_alias=AliasChoices("SUNDIAL_LOG_FORMAT"),
        description="As the workers'.",
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(self.redis_prefix, self.redis_shards)


class RunsApiSettings(BaseSettings):
    """sundial-runs-api: run history as the aggregated API runs.sundial.dev."""

    model_config = SettingsConfigDict(env_prefix="SUNDIAL_RUNS_API_", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias=_DATABASE_URL, description=_DATABASE_HELP)
    host: str = Field(default="0.0.0.0", description="Address the API listens on (TLS only).")
    port: int = Field(default=8443, ge=0, le=65535, description="Port the APIService's Service points at.")
    tls_cert_file: str = Field(description="Serving certificate (PEM); the APIService's caBundle signs it.")
    tls_key_file: str = Field(description="Key of the serving certificate (PEM).")
    requestheader_ca_file: str = Field(
        default="",
        description="CA of the API server's front-proxy client certificate; empty: read it, with the allowed "
                    "names and header names, from the ConfigMap kube-system/extension-apiserver-authentication.",
    )
    authorization_cache_seconds: float = Field(
        default=10.0, ge=0, description="How long a SubjectAccessReview answer is reused for the same question.",
    )
    watch_poll_seconds: float = Field(
        default=0.5, gt=0, le=60,
        description="How often the one poller per process reads the runs changed in PostgreSQL for every watcher.",
    )
    watch_capacity: int = Field(
        default=20_000, ge=100,
        description="Changes kept in memory for watches to resume from; an older resourceVersion gets 410 Gone.",
    )
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("SUNDIAL_LOG_LEVEL"), description="As the workers'."
    )
    log_format: str = Field(
        default="text", pattern="^(text|json)$", validation_alias=AliasChoices("SUNDIAL_LOG_FORMAT"),
        description="As the workers'.",
    )


# Read outside the settings models: (variable, who reads it, meaning).
OTHER_VARIABLES: Final[tuple[tuple[str, str, str], ...]] = (
    ("KUBECONFIG", "operator, dashboard, runs API, CLI",
     "Kubeconfig file(s), as kubectl reads them; in a pod the service account is used instead."),
    ("KUBERNETES_SERVICE_HOST", "dashboard, runs API", "Set by Kubernetes in every pod: the in-cluster API server."),
    ("KUBERNETES_SERVICE_PORT", "dashboard, runs API",
     "Set by Kubernetes in every pod: the in-cluster API server's port."),
    ("POD_ID", "operator", "Peering identity (the chart sets it to the pod name); default: user@host/pid."),
    ("NO_COLOR", "CLI", "Any value turns colour off (https://no-color.org)."),
)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error(exc, "SUNDIAL_") from exc


def load_dashboard_settings(**overrides: object) -> DashboardSettings:
    try:
        return DashboardSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error(exc, "SUNDIAL_DASHBOARD_") from exc


def load_runs_api_settings(**overrides: object) -> RunsApiSettings:
    try:
        return RunsApiSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error(exc, "SUNDIAL_RUNS_API_") from exc


def config_error(exc: ValidationError, env_prefix: str) -> ConfigError:
    """One line naming each bad or missing environment variable."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = name if name.isupper() else f"{env_prefix}{name.upper()}"
        reason = "is not set" if error["type"] == "missing" else error["msg"]
        problems.append(f"{variable} {reason}")
    return ConfigError("invalid configuration: " + "; ".join(problems))
