"""The worker's own check of every run against its namespace's TargetPolicy, before running it.

Defence in depth behind admission: a spec written straight into etcd while the webhook was down,
or a message written straight into Redis, never ran code the namespace may not use. The policies
come from PostgreSQL (`namespace_policies`, written only by the operator), never from the
message or Redis, so whoever can write a message cannot also write its permission.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sundial.core.policy import EffectivePolicy
from sundial.core.runs import RunMessage
from sundial.core.secrets import foreign_ref_refusal
from sundial.core.store import Store

log = logging.getLogger(__name__)


@dataclass
class PolicyCache:
    store: Store
    default: EffectivePolicy
    pool: str
    policies: dict[str, EffectivePolicy] = field(default_factory=dict)
    loaded: bool = False

    async def refresh(self) -> None:
        policies = await self.store.namespace_policies()
        if policies != self.policies:
            log.info("namespace policies: %d namespaces with their own, the rest: %s",
                     len(policies), ", ".join(self.default.targets) or "no targets")
        self.policies, self.loaded = policies, True

    def for_namespace(self, namespace: str) -> EffectivePolicy:
        # Not loaded yet (PostgreSQL away at start-up): the default, which only ever narrows.
        return self.policies.get(namespace, self.default)

    def refusal(self, message: RunMessage) -> str | None:
        """Why this run may not run here, or None; the reason is recorded as the run's error."""
        template = message.template
        namespace = template.job.namespace
        policy = self.for_namespace(namespace)
        reason = (policy.target_refusal(namespace, template.target)
                  or policy.pool_refusal(namespace, self.pool)
                  or foreign_ref_refusal(template.params, namespace))
        return None if reason is None else f"refused by the worker before running: {reason}"
