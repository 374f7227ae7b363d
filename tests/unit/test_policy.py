"""Who may run what: TargetPolicy selection and union, the default, refusals that name the policy
and the field; worker pools' keyspaces; secretKeyRef parsing, resolution and redaction."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest

from sundial.core.keys import Keyspace
from sundial.core.policy import (
    DEFAULT_POLICY_NAME,
    EffectivePolicy,
    PolicyError,
    TargetPolicySpec,
    default_policy,
    effective_policies,
    effective_policy,
    parse_policy,
)
from sundial.core.pools import DEFAULT_POOL, pool_keyspace, serving_keyspace
from sundial.core.runs import RunStatus
from sundial.core.secrets import SecretRef, SecretRefError, foreign_ref_refusal, secret_refs
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.worker.executor import Outcome
from sundial.worker.secrets import REDACTED, MountedSecrets, RedactSecrets, bind_run_secrets, redact_outcome
from sundial.worker.targets.egress import EgressPolicy

DEFAULT = default_policy()


def policy(**spec: Any) -> TargetPolicySpec:
    return TargetPolicySpec.model_validate(spec)


def test_a_namespace_no_policy_selects_gets_the_builtin_targets_in_the_default_pool() -> None:
    chosen = effective_policy({"biz": policy(namespaces=["biz"], targets=["biz:*"])}, "other", {}, DEFAULT)
    assert chosen == DEFAULT
    assert chosen.source == DEFAULT_POLICY_NAME
    assert [t for t in ("noop", "sleep", "fail", "http", "biz:pipeline") if chosen.allows_target(t)] == [
        "noop", "sleep", "fail", "http"]
    assert chosen.allows_pool(DEFAULT_POOL)
    assert not chosen.allows_pool("team-a")


def test_policies_selecting_a_namespace_are_united_by_name_and_by_labels() -> None:
    policies = {
        "by-name": policy(namespaces=["team-a"], targets=["noop"], egress={"allowCidrs": ["10.1.0.0/16"]}),
        "by-label": policy(namespaceSelector={"matchLabels": {"tier": "batch"}}, targets=["biz:*"],
                           workerPools=["batch"], egress={"allowHosts": ["api.example.com"]}),
        "elsewhere": policy(namespaces=["team-b"], targets=["*"]),
    }
    chosen = effective_policy(policies, "team-a", {"tier": "batch"}, DEFAULT)
    assert chosen.policies == ("by-label", "by-name")
    assert [t for t in ("biz:pipeline", "noop", "http", "bizarre") if chosen.allows_target(t)] == [
        "biz:pipeline", "noop"]
    assert chosen.worker_pools == ("batch", DEFAULT_POOL)
    assert (chosen.allow_cidrs, chosen.allow_hosts) == (("10.1.0.0/16",), ("api.example.com",))
    # Not selected: the label is missing, and an empty selector selects nobody.
    assert effective_policy(policies, "team-c", {}, DEFAULT) == DEFAULT
    assert not policy(namespaceSelector={"matchLabels": {}}).selects("any", {"a": "b"})


def test_refusals_name_the_policy_and_the_field() -> None:
    chosen = effective_policy({"team-a": policy(namespaces=["team-a"], targets=["noop"])}, "team-a", {}, DEFAULT)
    assert chosen.target_refusal("team-a", "http") == (
        "target 'http' is not allowed in namespace team-a by TargetPolicy team-a (field spec.targets grants: noop)")
    assert chosen.pool_refusal("team-a", "gpu") == (
        "worker pool 'gpu' is not allowed in namespace team-a by TargetPolicy team-a "
        "(field spec.workerPools grants: default)")
    assert chosen.target_refusal("team-a", "noop") is None
    assert DEFAULT_POLICY_NAME in (DEFAULT.target_refusal("x", "biz:pipeline") or "")


def test_effective_policies_round_trip_through_json_and_cover_named_namespaces_not_listed() -> None:
    policies = {"a": policy(namespaces=["new-ns"], targets=["noop"], egress={"allowCidrs": ["10.0.0.1"]})}
    found = effective_policies(policies, {"old-ns": {}}, DEFAULT)
    assert list(found) == ["new-ns"]
    assert EffectivePolicy.from_json(found["new-ns"].to_json()) == found["new-ns"]


@pytest.mark.parametrize(("spec", "problem"), [
    ({"targets": ["Not A Target"]}, "spec.targets.0"),
    ({"egress": {"allowCidrs": ["not-a-cidr"]}}, "not a CIDR"),
    ({"workerPools": ["UPPER"]}, "spec.workerPools.0"),
    ({"surprise": True}, "spec.surprise"),
])
def test_a_bad_policy_is_refused_with_its_name(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("broken", spec)
    assert str(caught.value).startswith("TargetPolicy broken: ")
    assert problem in str(caught.value)


# ---- pools -------------------------------------------------------------------------------------


def test_the_default_pool_is_the_deployments_keyspace_and_others_get_their_own() -> None:
    base = Keyspace("sundial", 4)
    assert pool_keyspace(base, DEFAULT_POOL) is base
    team = pool_keyspace(base, "team-a")
    assert team == Keyspace("sundial/team-a", 4)
    assert team.for_job("j").queue != base.for_job("j").queue
    job = parse_spec({"target": "noop", "schedule": "@daily", "workerPool": "team-a"})
    assert serving_keyspace(base, job) == team
    assert serving_keyspace(base, parse_spec({"target": "noop", "schedule": "@daily"})) is base


def test_a_pool_name_must_be_a_dns_label_and_naming_none_keeps_the_fingerprint() -> None:
    with pytest.raises(SpecError, match=r"spec\.workerPool"):
        parse_spec({"target": "noop", "schedule": "@daily", "workerPool": "Team A"})
    plain = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "@daily"})
    pooled = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "@daily", "workerPool": "a"})
    assert plain.fingerprint() != pooled.fingerprint()
    assert plain.fingerprint() == ScheduledJobSpec.model_validate(
        {"target": "noop", "schedule": "@daily", "workerPool": None}).fingerprint()


# ---- secrets -----------------------------------------------------------------------------------

HEADERS = {"headers": {"Authorization": {"secretKeyRef": {"name": "api-token", "key": "header"}}}}


def test_references_are_found_wherever_they_sit_and_malformed_ones_say_where() -> None:
    params = {**HEADERS, "list": [{"secretKeyRef": {"name": "b", "key": "k", "namespace": "ns"}}]}
    assert list(secret_refs(params)) == [
        ("spec.params.headers.Authorization", SecretRef("api-token", "header")),
        ("spec.params.list[0]", SecretRef("b", "k", "ns")),
    ]
    with pytest.raises(SecretRefError, match=r"spec.params.x.secretKeyRef.key: not a Secret data key"):
        list(secret_refs({"x": {"secretKeyRef": {"name": "a", "key": ".."}}}))


def test_a_reference_to_another_namespaces_secret_is_refused() -> None:
    foreign = {"token": {"secretKeyRef": {"name": "stolen", "key": "k", "namespace": "team-b"}}}
    assert foreign_ref_refusal(foreign, "team-a") == (
        "spec.params.token.secretKeyRef: refers to a Secret in namespace team-b; a job may only use Secrets "
        "of its own namespace (team-a)")
    assert foreign_ref_refusal({"token": {"secretKeyRef": {"name": "s", "key": "k", "namespace": "team-a"}}},
                               "team-a") is None


def mounted(tmp_path: Path, namespace: str = "team-a") -> MountedSecrets:
    (tmp_path / "api-token").mkdir()
    (tmp_path / "api-token" / "header").write_text("Bearer s3cr3t-value")
    return MountedSecrets(tmp_path, namespace)


def test_mounted_secrets_resolve_for_their_namespace_only(tmp_path: Path) -> None:
    secrets = mounted(tmp_path)
    params, values = secrets.resolve(HEADERS, "team-a")
    assert params == {"headers": {"Authorization": "Bearer s3cr3t-value"}}
    assert values == ("Bearer s3cr3t-value",)
    assert HEADERS["headers"]["Authorization"] == {"secretKeyRef": {"name": "api-token", "key": "header"}}
    with pytest.raises(SecretRefError, match="mounts no Secrets of namespace team-b"):
        secrets.resolve(HEADERS, "team-b")
    with pytest.raises(SecretRefError, match="Secret other key k is not mounted"):
        secrets.resolve({"x": {"secretKeyRef": {"name": "other", "key": "k"}}}, "team-a")


def test_output_errors_and_log_lines_are_redacted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, values = mounted(tmp_path).resolve(HEADERS, "team-a")
    echoed = Outcome(RunStatus.SUCCESS, output={"echo": {"Authorization": "Bearer s3cr3t-value", "n": 1}},
                     error="sent Bearer s3cr3t-value")
    clean = redact_outcome(echoed, values)
    assert clean.output == {"echo": {"Authorization": REDACTED, "n": 1}}
    assert clean.error == f"sent {REDACTED}"

    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "header was %s", ("Bearer s3cr3t-value",), None)
    bind_run_secrets(values)
    try:
        RedactSecrets().filter(record)
    finally:
        bind_run_secrets(())
    assert record.getMessage() == f"header was {REDACTED}"


def test_a_namespace_grant_widens_the_workers_egress_but_never_its_denies() -> None:
    worker = EgressPolicy.build(deny_cidrs=["10.9.0.0/16"])
    widened = worker.widened(("169.254.10.0/24", "10.9.1.0/24"), ("meta.internal",))
    assert worker.refusal_for_address(ipaddress.ip_address("169.254.10.5")) is not None
    assert widened.refusal_for_address(ipaddress.ip_address("169.254.10.5")) is None
    assert widened.refusal_for_address(ipaddress.ip_address("10.9.1.5")) == "a Sundial service address range"
    assert widened.refusal_for_address(ipaddress.ip_address("169.254.169.254")) is not None
    assert widened.refusal_for_address(ipaddress.ip_address("127.0.0.1"), "meta.internal") is None
    assert worker.widened(("169.254.10.0/24",), ()) is worker.widened(("169.254.10.0/24",), ())
