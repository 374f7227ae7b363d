"""Where the `http` target may reach: the worker's egress policy, and the resolver that enforces it.

Without it, anyone allowed to create a ScheduledJob could use the shared workers as a proxy into
the cluster, or to the cloud's instance metadata service and its credentials. The check runs on
the address actually connected to: names through `GuardedResolver` (so DNS rebinding cannot slip
a denied address past an earlier check), literal IPs before each request, every redirect hop again.

An `EgressPolicy` is a frozen value: today the worker builds one from its settings; a later
per-namespace policy narrows or widens it per run, and each distinct policy gets its own session.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, replace

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from sundial.worker.targets.registry import PermanentFailure

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = "link-local/metadata range"
# Always denied unless an allow rule names them: nothing a job should reach through a shared worker.
DEFAULT_DENIED: tuple[tuple[str, str], ...] = (
    ("169.254.0.0/16", METADATA),
    ("fd00:ec2::254/128", METADATA),
    ("fe80::/10", METADATA),
    ("127.0.0.0/8", "loopback range"),
    ("::1/128", "loopback range"),
    ("0.0.0.0/8", "unspecified address"),
    ("::/128", "unspecified address"),
)
PRIVATE_RANGES: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")


class EgressRefused(PermanentFailure):
    """The policy refused a destination; retrying cannot change the verdict."""

    def __init__(self, destination: str, rule: str) -> None:
        super().__init__(f"http target refused {destination}: {rule} denied by the worker's egress policy")
        self.destination = destination
        self.rule = rule


@dataclass(frozen=True)
class DenyRule:
    network: IPNetwork
    reason: str


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs or single addresses; raises ValueError naming a bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def _normalise(address: IPAddress) -> IPAddress:
    # ::ffff:169.254.169.254 is the metadata address too.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _matches_host(host: str, patterns: frozenset[str]) -> bool:
    """Exact names, or `*.example.com` for any name under example.com."""
    host = host.lower().rstrip(".")
    if host in patterns:
        return True
    return any(p.startswith("*.") and host.endswith(p[1:]) for p in patterns)


@dataclass(frozen=True)
class EgressPolicy:
    """Explicit denies win, then allows, then the default denies; anything else is allowed."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    deny_networks: tuple[IPNetwork, ...] = ()
    deny_hosts: frozenset[str] = frozenset()
    deny_private: bool = False

    @classmethod
    def build(
        cls,
        *,
        allow_cidrs: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        deny_hosts: Iterable[str] = (),
        deny_private: bool = False,
    ) -> EgressPolicy:
        return cls(
            allow_networks=parse_networks(allow_cidrs),
            allow_hosts=frozenset(h.strip().lower().rstrip(".") for h in allow_hosts if h.strip()),
            deny_networks=parse_networks(deny_cidrs),
            deny_hosts=frozenset(h.strip().lower().rstrip(".") for h in deny_hosts if h.strip()),
            deny_private=deny_private,
        )

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - frozen values; one widened policy per namespace grant
    def widened(self, allow_cidrs: tuple[str, ...], allow_hosts: tuple[str, ...]) -> EgressPolicy:
        """This policy with further allows (a namespace's TargetPolicy grant); denies unchanged."""
        more = EgressPolicy.build(allow_cidrs=allow_cidrs, allow_hosts=allow_hosts)
        return replace(self, allow_networks=self.allow_networks + more.allow_networks,
                       allow_hosts=self.allow_hosts | more.allow_hosts)

    def refusal_for_host(self, host: str) -> str | None:
        """Why a host name is refused before it is even resolved, or None."""
        if _matches_host(host, self.deny_hosts):
            return "a Sundial service host name"
        return None

    def refusal_for_address(self, address: IPAddress, host: str | None = None) -> str | None:
        """Why connecting to `address` (resolved from `host`, if a name) is refused, or None."""
        address = _normalise(address)
        if any(address in network for network in self.deny_networks):
            return "a Sundial service address range"
        if any(address in network for network in self.allow_networks):
            return None
        if host is not None and _matches_host(host, self.allow_hosts):
            return None
        for rule in _DEFAULT_RULES:
            if address in rule.network:
                return rule.reason
        if self.deny_private and any(address in network for network in _PRIVATE_NETWORKS):
            return "private range"
        return None

    def check_host(self, host: str) -> None:
        """Before a request: a literal IP is checked here (no resolver runs for it), a name's denial too."""
        literal = _literal_address(host)
        reason = self.refusal_for_address(literal) if literal else self.refusal_for_host(host)
        if reason is not None:
            raise EgressRefused(host, reason)


_DEFAULT_RULES: tuple[DenyRule, ...] = tuple(
    DenyRule(ipaddress.ip_network(cidr), reason) for cidr, reason in DEFAULT_DENIED
)
_PRIVATE_NETWORKS: tuple[IPNetwork, ...] = parse_networks(PRIVATE_RANGES)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then drops every address the policy refuses.

    The connector connects only to what this returns, so the check holds for the address actually
    used; a name with nothing allowed left is refused with the rule that refused its first address.
    """

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.policy.check_host(host)
        results = await self.inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusal: tuple[str, str] | None = None
        for result in results:
            reason = self.policy.refusal_for_address(ipaddress.ip_address(result["host"]), host)
            if reason is None:
                allowed.append(result)
            elif refusal is None:
                refusal = (result["host"], reason)
        if not allowed and refusal is not None:
            raise EgressRefused(f"{host} ({refusal[0]})", refusal[1])
        return allowed

    async def close(self) -> None:
        await self.inner.close()
