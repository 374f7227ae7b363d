"""The operator's view of the TargetPolicies, and their projection into PostgreSQL.

Every `refresh_seconds` the operator lists TargetPolicies and namespaces, computes each
namespace's effective policy (`sundial.core.policy`) and makes `namespace_policies` hold exactly
those: workers read that table, never Redis, to decide what a run may do. Admission reads the
same book, so what `kubectl apply` accepts and what a worker runs come from one computation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from lightkube import ApiError

from sundial.core.aio import sleep_unless_stopped
from sundial.core.policy import (
    EffectivePolicy,
    PolicyError,
    TargetPolicySpec,
    effective_policies,
    effective_policy,
    parse_policy,
)
from sundial.core.pools import serving_pool
from sundial.core.secrets import foreign_ref_refusal
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.kube.api import KubeApi
from sundial.kube.errors import TRANSPORT_ERRORS
from sundial.operator.runtime import BACKEND_ERRORS, describe_backend_error

log = logging.getLogger(__name__)

# Refusals re-read the policies at most this often, however many jobs a namespace applies at once.
ON_DEMAND_REFRESH_SECONDS = 1.0


@dataclass
class PolicyBook:
    store: Store
    kube: KubeApi
    default: EffectivePolicy
    refresh_seconds: float = 5.0
    policies: dict[str, TargetPolicySpec] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    _stored: dict[str, EffectivePolicy] | None = None
    _may_list_namespaces: bool = True
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _refreshed_at: float = float("-inf")
    _reads: int = 0  # how many times the policies were read: which book a refusal was checked against

    async def for_namespace(self, namespace: str) -> EffectivePolicy:
        """The namespace's effective policy now; a namespace created since the last refresh has
        its labels read on the spot, so a label-selected grant is not missed."""
        labels = self.labels.get(namespace)
        if labels is None:
            try:
                labels = await self.kube.labels_of_namespace(namespace)
            except ApiError:
                labels = {}
        return effective_policy(self.policies, namespace, labels, self.default)

    async def refusal(self, spec: ScheduledJobSpec, namespace: str) -> str | None:
        """Why the namespace's policy refuses this spec, or None: admission's answer, and the
        Ready condition's when no webhook runs.

        A refusal is checked again against a fresh read of the policies (at most once a second):
        `kubectl apply -f policy.yaml -f jobs/` must not refuse the jobs because the book was
        read a few seconds before the policy existed.
        """
        refusal = foreign_ref_refusal(spec.params, namespace)
        if refusal is not None:
            return refusal
        checked_against = self._reads
        refusal = await self._policy_refusal(spec, namespace)
        if refusal is None or not await self._refresh_soon(checked_against):
            return refusal
        return await self._policy_refusal(spec, namespace)

    async def _policy_refusal(self, spec: ScheduledJobSpec, namespace: str) -> str | None:
        policy = await self.for_namespace(namespace)
        return policy.target_refusal(namespace, spec.run_target) or policy.pool_refusal(namespace, serving_pool(spec))

    async def _refresh_soon(self, checked_against: int) -> bool:
        """Refresh unless another refusal did in the last second; True when the book may differ
        from read number `checked_against`. A refusal that waited here while another refreshed
        is checked again against that read: it used to be returned as it was, and a job applied
        with its TargetPolicy stayed refused until its retry 30 s later."""
        async with self._refreshing:
            if self._reads != checked_against:
                return True
            now = asyncio.get_running_loop().time()
            if now - self._refreshed_at < ON_DEMAND_REFRESH_SECONDS:
                return False
            before = (self.policies, self.labels)
            try:
                await self.refresh()
            except (ApiError, *TRANSPORT_ERRORS, *BACKEND_ERRORS) as exc:
                log.warning("could not re-read the TargetPolicies: %s", exc)
                return False
            finally:
                self._refreshed_at = now
            return (self.policies, self.labels) != before

    async def refresh(self) -> None:
        raw = await self.kube.target_policies()
        policies: dict[str, TargetPolicySpec] = {}
        invalid: dict[str, str] = {}
        for name, spec in raw.items():
            try:
                policies[name] = parse_policy(name, spec)
            except PolicyError as exc:
                invalid[name] = str(exc)
        for name, problem in invalid.items():
            if self.invalid.get(name) != problem:
                log.error("ignoring %s", problem)  # it grants nothing; the rest still apply
        self.policies, self.invalid = policies, invalid
        self.labels = await self._namespace_labels()
        self._reads += 1
        effective = effective_policies(self.policies, self.labels, self.default)
        if effective != self._stored:
            await self.store.replace_namespace_policies(effective)
            self._stored = effective
            log.info("namespace policies: %s", ", ".join(f"{ns} by {p.source}" for ns, p in sorted(effective.items()))
                     or "every namespace has the default")

    async def _namespace_labels(self) -> dict[str, dict[str, str]]:
        if not self._may_list_namespaces:
            return {}
        try:
            return await self.kube.namespace_labels()
        except ApiError as exc:
            if exc.status.code != 403:
                raise
            # Without the right, policies still select namespaces by name.
            log.warning("cannot list namespaces (%s): namespaceSelector in TargetPolicies is ignored",
                        exc.status.message)
            self._may_list_namespaces = False
            return {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except BACKEND_ERRORS as exc:
                log.warning("namespace policies not refreshed: %s", describe_backend_error(exc))
            except Exception:
                log.exception("namespace policies not refreshed")
            await sleep_unless_stopped(stop, self.refresh_seconds)
