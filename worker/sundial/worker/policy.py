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
from sundial.core.store import Store

log = logging.getLogger(__name__)


# Distinct (namespace, target) answers kept between refreshes; past it they are worked out again.
MAX_REMEMBERED = 4096


@dataclass
class PolicyCache:
    store: Store
    default: EffectivePolicy
    pool: str
    policies: dict[str, EffectivePolicy] = field(default_factory=dict)
    loaded: bool = False
    # Each (namespace, target)'s answer until the policies change: hashing a policy (for a cache
    # keyed by it) cost more per run than deciding.
    _refusals: dict[tuple[str, str], str | None] = field(default_factory=dict)

    async def refresh_quietly(self) -> None:
        """`refresh` for the periodic loop: while PostgreSQL is away the last policies stay."""
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("namespace policies not refreshed (%s); the last ones read stay in force", exc)

    async def refresh(self) -> None:
        policies = await self.store.namespace_policies()
        if policies != self.policies:
            log.info("namespace policies: %d namespaces with their own, the rest: %s",
                     len(policies), ", ".join(self.default.targets) or "no targets")
        self.policies, self.loaded = policies, True
        self._refusals = {}

    def for_namespace(self, namespace: str) -> EffectivePolicy:
        # Not loaded yet (PostgreSQL away at start-up): the default, which only ever narrows.
        return self.policies.get(namespace, self.default)

    def refusal(self, message: RunMessage) -> str | None:
        """Why this run may not run here, or None; the reason is recorded as the run's error.

        Secret references are checked where they are resolved (`MountedSecrets`), which refuses
        another namespace's Secret whatever the message says.
        """
        template = message.template
        key = (template.job.namespace, template.target)
        try:
            return self._refusals[key]
        except KeyError:
            pass
        if len(self._refusals) >= MAX_REMEMBERED:
            self._refusals = {}
        refusal = self._refusals[key] = _refusal(self.for_namespace(key[0]), key[0], key[1], self.pool)
        return refusal


def _refusal(policy: EffectivePolicy, namespace: str, target: str, pool: str) -> str | None:
    # Pure: its answer depends only on its arguments, so PolicyCache remembers it per
    # (namespace, target) until the policies change.
    reason = policy.target_refusal(namespace, target) or policy.pool_refusal(namespace, pool)
    return None if reason is None else f"refused by the worker before running: {reason}"
