"""Worker pools: which Redis keyspace serves a job, decided in one place.

A pool is its own worker Deployment consuming only its own keyspace, so one team's slow or hostile
target cannot starve or read another team's runs. The default pool is the deployment's keyspace as
it always was (nothing moves for a job that names no pool); pool `P` lives under the prefix
`<prefix>/P`, which no single-prefix deployment can produce by accident (`/` never appears in the
chart's prefixes). The ticker and consumer of a pool's workers run over that keyspace only.

One pool is built in: the launcher, the only process that holds Kubernetes credentials, runs every
job with a `jobTemplate` by creating a batch/v1 Job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from sundial.core.keys import Keyspace

if TYPE_CHECKING:  # spec.py reads POOL_PATTERN from here
    from sundial.core.spec import ScheduledJobSpec

DEFAULT_POOL: Final = "default"
LAUNCHER_POOL: Final = "launcher"
POOL_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
POOL_SEPARATOR: Final = "/"
# The launcher's only target; a spec with `jobTemplate` runs it (spec.target stays empty).
KUBERNETES_JOB_TARGET: Final = "sundial:kubernetes-job"


def pool_keyspace(base: Keyspace, pool: str) -> Keyspace:
    """The keyspace of `pool` in the deployment whose default keyspace is `base`."""
    if pool == DEFAULT_POOL:
        return base
    return Keyspace(f"{base.prefix}{POOL_SEPARATOR}{pool}", base.shards)


def serving_pool(spec: ScheduledJobSpec) -> str:
    """The pool whose workers fire and run this job: the launcher for a `jobTemplate`."""
    if spec.job_template is not None:
        return LAUNCHER_POOL
    return spec.worker_pool or DEFAULT_POOL


def serving_keyspace(base: Keyspace, spec: ScheduledJobSpec) -> Keyspace:
    """THE answer to "which keyspace serves this job": the operator arms it there, its pool's
    workers fire and run it from there."""
    return pool_keyspace(base, serving_pool(spec))


def stored_spec_pool(spec: Mapping[str, Any] | None) -> str:
    """`serving_pool` of a spec as PostgreSQL stores it (camelCase JSON, absent fields null)."""
    if not spec:
        return DEFAULT_POOL
    if spec.get("jobTemplate"):
        return LAUNCHER_POOL
    return str(spec.get("workerPool") or DEFAULT_POOL)


def every_pool(named: Iterable[str]) -> list[str]:
    """The pools to look at: the default one, the built-in launcher and every pool a job names,
    the default first."""
    others = sorted(set(named) - {DEFAULT_POOL, LAUNCHER_POOL})
    return [DEFAULT_POOL, LAUNCHER_POOL, *others]
