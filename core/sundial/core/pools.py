"""Which worker pool runs a job, as a Redis keyspace of its own.

Each pool is a separate keyspace (its own entries, due index, queue and consumer group), so
the workers of one pool never read another pool's runs. Today there are two: the default pool
of Python-target workers, and the launcher, the only process that holds Kubernetes
credentials, which runs every job with a `jobTemplate` by creating a batch/v1 Job.
"""

from __future__ import annotations

from typing import Final

from sundial.core.keys import Keyspace

# The launcher's only target; a spec with `jobTemplate` runs it (spec.target stays empty).
KUBERNETES_JOB_TARGET: Final = "sundial:kubernetes-job"
LAUNCHER_POOL: Final = "launcher"
DEFAULT_POOL: Final = "default"


def pool_for_target(target: str) -> str:
    """The pool whose workers run `target`."""
    return LAUNCHER_POOL if target == KUBERNETES_JOB_TARGET else DEFAULT_POOL


def keyspace_for(base: Keyspace, pool: str) -> Keyspace:
    """The keyspace of `pool` in a deployment whose default pool uses `base`."""
    if pool == DEFAULT_POOL:
        return base
    return Keyspace(f"{base.prefix}-{pool}", base.shards)
