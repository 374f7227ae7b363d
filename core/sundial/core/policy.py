"""Who may run what: the cluster-scoped TargetPolicy, and the effective policy of a namespace.

A cluster admin writes TargetPolicies; each selects namespaces (by name, by labels, or both) and
grants them targets, worker pools and extra http egress. A namespace's effective policy is the
union of every policy selecting it; a namespace no policy selects gets the deployment's default
(`SUNDIAL_POLICY_DEFAULT_TARGETS`, `SUNDIAL_POLICY_DEFAULT_POOLS`: the built-in targets in the
default pool unless the chart says otherwise).

The operator enforces it at admission and projects each namespace's effective policy into
PostgreSQL (`namespace_policies`, written only by the operator); workers read that table and check
every run against it before running anything, so a message written straight into Redis, or a spec
written straight into etcd, is refused too. Pure: no Kubernetes, no I/O.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from sundial.core.pools import DEFAULT_POOL, KUBERNETES_JOB_TARGET, LAUNCHER_POOL, POOL_PATTERN

POLICY_KIND: Final = "TargetPolicy"
POLICY_PLURAL: Final = "targetpolicies"
POLICY_SINGULAR: Final = "targetpolicy"
# A granted target is a name, or a prefix ending in `*` (`biz:*`; `*` alone grants every target).
TARGET_GRANT_PATTERN: Final = r"^(\*|[a-z0-9][a-z0-9_.:-]*\*?)$"
# The launcher's target (a `jobTemplate`) is among them: a namespace editor's `edit` role may
# create Jobs there anyway, so running one on a schedule grants nothing new.
BUILTIN_TARGETS: Final = ("noop", "sleep", "fail", "http", KUBERNETES_JOB_TARGET)
DEFAULT_POLICY_NAME: Final = "(default: no TargetPolicy selects this namespace)"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class NamespaceSelector(_Model):
    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Namespaces carrying every one of these labels are selected."
    )


class EgressGrant(_Model):
    allow_cidrs: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        description="CIDRs or addresses the http target may reach even inside the default-denied ranges.",
    )
    allow_hosts: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        description="Host names (*.example.com for a whole domain) whose addresses the http target may reach.",
    )

    @field_validator("allow_cidrs")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


def check_networks(values: list[str]) -> list[str]:
    """CIDRs or single addresses, as the egress settings and grants take them; a ValueError names a bad one."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR or an IP address") from None
    return values


class TargetPolicySpec(_Model):
    """What a cluster admin writes under `spec:` of a TargetPolicy."""

    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, description="Namespaces selected by name."
    )
    namespace_selector: NamespaceSelector | None = Field(
        default=None, description="Namespaces selected by labels (in addition to the named ones)."
    )
    targets: list[Annotated[str, Field(max_length=255, pattern=TARGET_GRANT_PATTERN)]] = Field(
        default_factory=list, description="Targets the namespaces may use: names, or prefixes ending in * (biz:*)."
    )
    worker_pools: list[Annotated[str, Field(max_length=40, pattern=POOL_PATTERN)]] = Field(
        default_factory=lambda: [DEFAULT_POOL], description="Worker pools the namespaces' jobs may name."
    )
    egress: EgressGrant = Field(
        default_factory=EgressGrant, description="Extra http egress, merged with the workers' own egress settings."
    )

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if namespace in self.namespaces:
            return True
        selector = self.namespace_selector
        if selector is None or not selector.match_labels:
            return False  # an empty selector selects nothing: a typo must not grant everyone
        return all(labels.get(key) == value for key, value in selector.match_labels.items())


class PolicyError(ValueError):
    """A TargetPolicy that cannot be read; the message names it."""


def parse_policy(name: str, raw: Mapping[str, Any]) -> TargetPolicySpec:
    try:
        return TargetPolicySpec.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"TargetPolicy {name}: {problems}") from exc


@dataclass(frozen=True)
class EffectivePolicy:
    """What one namespace may do; `policies` names where each grant came from."""

    policies: tuple[str, ...]
    targets: tuple[str, ...]
    worker_pools: tuple[str, ...]
    allow_cidrs: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        if not self.policies:
            return DEFAULT_POLICY_NAME
        return "TargetPolicy " + ", ".join(self.policies)

    def allows_target(self, target: str) -> bool:
        return any(_grants(grant, target) for grant in self.targets)

    def allows_pool(self, pool: str) -> bool:
        # A job reaches the launcher only by carrying a jobTemplate, never by naming it.
        return pool == LAUNCHER_POOL or pool in self.worker_pools

    def target_refusal(self, namespace: str, target: str) -> str | None:
        if self.allows_target(target):
            return None
        granted = ", ".join(self.targets) or "none"
        return (f"target {target!r} is not allowed in namespace {namespace} by {self.source} "
                f"(field spec.targets grants: {granted})")

    def pool_refusal(self, namespace: str, pool: str) -> str | None:
        if self.allows_pool(pool):
            return None
        granted = ", ".join(self.worker_pools) or "none"
        return (f"worker pool {pool!r} is not allowed in namespace {namespace} by {self.source} "
                f"(field spec.workerPools grants: {granted})")

    def to_json(self) -> str:
        return json.dumps({
            "policies": list(self.policies), "targets": list(self.targets), "worker_pools": list(self.worker_pools),
            "allow_cidrs": list(self.allow_cidrs), "allow_hosts": list(self.allow_hosts),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | Mapping[str, Any]) -> EffectivePolicy:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return cls(
            policies=tuple(data["policies"]), targets=tuple(data["targets"]),
            worker_pools=tuple(data["worker_pools"]), allow_cidrs=tuple(data.get("allow_cidrs", ())),
            allow_hosts=tuple(data.get("allow_hosts", ())),
        )


def _grants(grant: str, target: str) -> bool:
    if grant.endswith("*"):
        return target.startswith(grant[:-1])
    return grant == target


def default_policy(targets: Sequence[str] = BUILTIN_TARGETS, pools: Sequence[str] = (DEFAULT_POOL,)
                   ) -> EffectivePolicy:
    return EffectivePolicy(policies=(), targets=tuple(targets), worker_pools=tuple(pools))


def effective_policy(policies: Mapping[str, TargetPolicySpec], namespace: str, labels: Mapping[str, str],
                     default: EffectivePolicy) -> EffectivePolicy:
    """The union of every policy selecting `namespace`; `default` when none does."""
    chosen = sorted(name for name, policy in policies.items() if policy.selects(namespace, labels))
    if not chosen:
        return default
    picked = [policies[name] for name in chosen]
    return EffectivePolicy(
        policies=tuple(chosen),
        targets=_union(p.targets for p in picked),
        worker_pools=_union(p.worker_pools for p in picked),
        allow_cidrs=_union(p.egress.allow_cidrs for p in picked),
        allow_hosts=_union(p.egress.allow_hosts for p in picked),
    )


def _union(lists: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(sorted({item for items in lists for item in items}))


def effective_policies(policies: Mapping[str, TargetPolicySpec], namespaces: Mapping[str, Mapping[str, str]],
                       default: EffectivePolicy) -> dict[str, EffectivePolicy]:
    """namespace -> effective policy, for every namespace some policy selects (the rest: `default`)."""
    out: dict[str, EffectivePolicy] = {}
    # A namespace named by a policy counts even when the listing missed it (created since, or
    # the operator may not list namespaces).
    named: dict[str, Mapping[str, str]] = {ns: {} for policy in policies.values() for ns in policy.namespaces}
    for namespace, labels in {**named, **namespaces}.items():
        policy = effective_policy(policies, namespace, labels, default)
        if policy.policies:
            out[namespace] = policy
    return out
