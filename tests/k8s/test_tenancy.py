"""Who may run what, end to end: a namespace editor against the real admission webhook.

A TargetPolicy grants one namespace `noop` in the default pool. Its editor (a user with a Role
on ScheduledJobs, impersonated through the real kubectl) tries a target outside the policy, a
worker pool outside it and a Secret of another namespace: each is denied with a message naming
the policy and the field, and nothing is stored. The operator projects the namespace's
effective policy into PostgreSQL, where the workers read it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sundial.core.policy import default_policy
from sundial.core.spec import parse_spec
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import free_port
from sundial.kube.api import KubeApi
from sundial.operator.policies import PolicyBook
from tests.k8s.conftest import SundialProcess, console_script, create_namespace, operator_process, wait_until

pytestmark = pytest.mark.k8s

EDITOR = "alice"


@pytest.fixture(scope="module")
def team(sundial_crds: ControlPlane) -> Iterator[tuple[str, str]]:
    """(namespace, policy name): the namespace may use noop in the default pool; alice edits its jobs."""
    namespace = create_namespace(sundial_crds, "team")
    policy = f"team-{uuid.uuid4().hex[:6]}"
    sundial_crds.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "sundial.dev/v1alpha1", "kind": "TargetPolicy", "metadata": {"name": policy},
        "spec": {"namespaces": [namespace], "targets": ["noop"], "workerPools": ["default", "pool-a"]},
    }))
    sundial_crds.kubectl("create", "role", "sdj-editor", "-n", namespace, "--verb=*",
                         "--resource=scheduledjobs.sundial.dev")
    sundial_crds.kubectl("create", "rolebinding", "sdj-editor", "-n", namespace, "--role=sdj-editor",
                         f"--user={EDITOR}")
    try:
        yield namespace, policy
    finally:
        sundial_crds.kubectl("delete", "targetpolicy", policy, "--ignore-not-found")


@pytest.fixture(scope="module")
def webhook(sundial_env: dict[str, str], process_logs: Path, team: tuple[str, str]) -> Iterator[SundialProcess]:
    namespace, policy = team
    proc = operator_process(
        {**sundial_env, "SUNDIAL_POLICY_REFRESH_SECONDS": "1"}, process_logs / "operator-tenancy.log",
        "--standalone", "--namespace", namespace, "--webhook", "--webhook-port", str(free_port()),
    ).start()
    try:
        proc.wait_for_log(r"Reconfiguring the validating webhook")
        proc.wait_for_log(rf"{namespace} by TargetPolicy {policy}")
        yield proc
    finally:
        proc.stop()


def as_editor(cp: ControlPlane, namespace: str, name: str, **spec: Any) -> Any:
    spec.setdefault("schedule", "0 0 1 1 *")
    spec.setdefault("timeZone", "UTC")
    manifest = {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob", "metadata": {"name": name},
                "spec": spec}
    return cp.kubectl("--as", EDITOR, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)


@pytest.mark.parametrize(("spec", "message"), [
    ({"target": "http", "params": {"url": "http://169.254.169.254/latest/meta-data/"}},
     "target 'http' is not allowed in namespace {ns} by TargetPolicy {policy} (field spec.targets grants: noop)"),
    ({"target": "noop", "workerPool": "gpu"},
     "worker pool 'gpu' is not allowed in namespace {ns} by TargetPolicy {policy} "
     "(field spec.workerPools grants: default, pool-a)"),
    ({"target": "noop", "params": {"token": {"secretKeyRef": {"name": "db", "key": "password",
                                                               "namespace": "kube-system"}}}},
     "spec.params.token.secretKeyRef: refers to a Secret in namespace kube-system; "
     "a job may only use Secrets of its own namespace ({ns})"),
])
def test_an_editor_is_refused_what_the_policy_does_not_grant_and_nothing_is_stored(
    sundial_crds: ControlPlane, team: tuple[str, str], webhook: SundialProcess, spec: dict[str, Any], message: str,
) -> None:
    namespace, policy = team
    name = f"denied-{uuid.uuid4().hex[:6]}"
    result = as_editor(sundial_crds, namespace, name, **spec)
    assert result.returncode != 0
    assert "denied the request" in result.stderr
    assert message.format(ns=namespace, policy=policy) in result.stderr
    assert sundial_crds.kubectl("get", "sdj", name, "-n", namespace, check=False).returncode != 0, "nothing stored"


async def test_what_the_policy_grants_is_accepted_and_the_policy_reaches_postgres(
    sundial_crds: ControlPlane, team: tuple[str, str], webhook: SundialProcess, store: Store,
) -> None:
    namespace, policy = team
    name = f"allowed-{uuid.uuid4().hex[:6]}"
    result = as_editor(sundial_crds, namespace, name, target="noop")
    assert result.returncode == 0, result.stderr
    projected = (await store.namespace_policies())[namespace]
    assert (projected.policies, projected.targets, projected.worker_pools) == (
        (policy,), ("noop",), ("default", "pool-a"))
    sundial_crds.kubectl("delete", "sdj", name, "-n", namespace, "--wait=false")


def test_the_editor_may_not_touch_policies(sundial_crds: ControlPlane, team: tuple[str, str]) -> None:
    _, policy = team
    result = sundial_crds.kubectl("--as", EDITOR, "delete", "targetpolicy", policy, check=False)
    assert result.returncode != 0
    assert "forbidden" in result.stderr
    wait_until("the policy to still exist",
               lambda: sundial_crds.kubectl("get", "targetpolicy", policy, check=False).returncode == 0, timeout=5)


def pool_worker(sundial_env: dict[str, str], process_logs: Path, pool: str) -> SundialProcess:
    name = f"{pool}-worker-{uuid.uuid4().hex[:6]}"
    return SundialProcess(console_script("sundial-worker", "sundial.worker.main"),
                          {**sundial_env, "SUNDIAL_WORKER_ID": name, "SUNDIAL_WORKER_POOL": pool,
                           "SUNDIAL_POLICY_REFRESH_SECONDS": "1"},
                          process_logs / f"{name}.log")


async def test_a_job_in_pool_a_runs_only_on_pool_a_workers(
    sundial_crds: ControlPlane, sundial_env: dict[str, str], process_logs: Path, team: tuple[str, str],
    webhook: SundialProcess, store: Store,
) -> None:
    namespace, _ = team
    pool_a = pool_worker(sundial_env, process_logs, "pool-a")
    default = pool_worker(sundial_env, process_logs, "default")
    for worker in (pool_a, default):
        worker.start()
    try:
        for worker in (pool_a, default):
            worker.wait_for_log(r"serving targets", timeout=60)
        name = f"pooled-{uuid.uuid4().hex[:6]}"
        assert as_editor(sundial_crds, namespace, name, target="noop", schedule="*/1 * * * * *",
                         workerPool="pool-a").returncode == 0
        uid = json.loads(sundial_crds.kubectl("get", "sdj", name, "-n", namespace, "-o", "json").stdout)[
            "metadata"]["uid"]

        async def three_runs() -> list[dict[str, Any]] | None:
            runs = await store.runs(uid, limit=50)
            return runs if len([r for r in runs if r["status"] == "success"]) >= 3 else None

        runs = None
        for _ in range(120):
            runs = await three_runs()
            if runs:
                break
            await asyncio.sleep(0.5)
        assert runs, "no runs on pool-a's worker"
        assert {r["worker"] for r in runs} == {pool_a.env["SUNDIAL_WORKER_ID"]}, "another pool ran it"
        sundial_crds.kubectl("delete", "sdj", name, "-n", namespace, "--wait=true", "--timeout=60s")
    finally:
        for worker in (pool_a, default):
            worker.stop()


def _ready(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    status = json.loads(cp.kubectl("get", "sdj", name, "-n", namespace, "-o", "json").stdout).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def test_a_job_its_policy_no_longer_grants_says_so_in_its_ready_condition(
    sundial_crds: ControlPlane, team: tuple[str, str], webhook: SundialProcess,
) -> None:
    """Admission judges a spec when it is written; a policy narrowed afterwards is shown on the
    job itself (its runs are refused by the workers too), not found out from failed runs."""
    namespace, policy = team
    name = f"narrowed-{uuid.uuid4().hex[:6]}"
    assert as_editor(sundial_crds, namespace, name, target="noop").returncode == 0
    # No worker runs in this module, so Ready is False for want of one: what matters is the reason.
    wait_until("a Ready condition", lambda: _ready(sundial_crds, namespace, name))
    assert (_ready(sundial_crds, namespace, name) or {})["reason"] != "NotAllowedByPolicy"
    narrowed = {"spec": {"namespaces": [namespace], "targets": ["sleep"], "workerPools": ["default", "pool-a"]}}
    restored = {"spec": {"namespaces": [namespace], "targets": ["noop"], "workerPools": ["default", "pool-a"]}}
    try:
        sundial_crds.kubectl("patch", "targetpolicy", policy, "--type=merge", "-p", json.dumps(narrowed))
        webhook.wait_for_log(rf"{namespace} by TargetPolicy {policy}")
        time.sleep(2)  # the policy book refreshes every second
        sundial_crds.kubectl("annotate", "sdj", name, "-n", namespace, "--overwrite", "sundial.dev/touched=1")
        condition = wait_until("NotAllowedByPolicy", lambda: (c := _ready(sundial_crds, namespace, name)) and
                               c["reason"] == "NotAllowedByPolicy" and c)
        assert isinstance(condition, dict)
        assert condition["reason"] == "NotAllowedByPolicy"
        assert f"target 'noop' is not allowed in namespace {namespace} by TargetPolicy {policy}" in condition["message"]
    finally:
        sundial_crds.kubectl("patch", "targetpolicy", policy, "--type=merge", "-p", json.dumps(restored))
        time.sleep(2)
        sundial_crds.kubectl("delete", "sdj", name, "-n", namespace, "--wait=false")


async def test_jobs_applied_with_their_policy_are_checked_against_the_read_that_has_it(
        sundial_crds: ControlPlane, store: Store, kube: KubeApi) -> None:
    """`kubectl apply -f policy.yaml -f jobs/`: the operator's book was read before the policy
    existed, and several jobs' refusals ask for a fresh read at once. One reads; the others,
    which waited for it, are checked again against that read instead of refused from the old
    one (they stayed NotAllowedByPolicy until their retry 30 s later)."""
    namespace = create_namespace(sundial_crds, "late-policy")
    book = PolicyBook(store, kube, default_policy())
    policy = f"late-{uuid.uuid4().hex[:6]}"
    try:
        await book.refresh()
        sundial_crds.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "sundial.dev/v1alpha1", "kind": "TargetPolicy", "metadata": {"name": policy},
            "spec": {"namespaces": [namespace], "targets": ["biz:*"]},
        }))
        spec = parse_spec({"target": "biz:pipeline", "schedule": "0 0 1 1 *", "timeZone": "UTC"})
        assert await asyncio.gather(*(book.refusal(spec, namespace) for _ in range(3))) == [None] * 3
    finally:
        sundial_crds.kubectl("delete", "targetpolicy", policy, "--ignore-not-found")
