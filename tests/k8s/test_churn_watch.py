"""The churn watch on its own, in this process, against the real kube-apiserver, PostgreSQL and Redis.

No kopf runs over the test's namespace, so whatever happens to the jobs is the churn watch's
doing. What it must not miss: objects created, or deleted, before it started. It used to start
watching at the collection's current version, and such objects waited for kopf's per-object
queue: after a mass apply right after start-up, minutes.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.jobs import arm_job
from sundial.core.runs import JobRef
from sundial.core.spec import parse_spec
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.kube.api import KubeApi
from sundial.operator.churn import ChurnWatch
from sundial.operator.peering import PeeringGate
from sundial.operator.runtime import JobDeps, JobLocks, Tombstones
from tests.k8s.conftest import create_namespace, eventually

pytestmark = pytest.mark.k8s

FINALIZER = "sundial.dev/finalizer"
GRACE_SECONDS = 42.0


def apply(plane: ControlPlane, namespace: str, name: str, **metadata: object) -> str:
    manifest = {"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
                "metadata": {"name": name, "namespace": namespace, **metadata},
                "spec": {"target": "noop", "schedule": "0 0 1 1 *", "timeZone": "UTC"}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    out = plane.kubectl("get", "sdj", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    return str(out.stdout)


async def test_objects_created_or_deleted_before_the_watch_started_are_acted_on(
    sundial_crds: ControlPlane, store: Store, broker: Broker, kube: KubeApi
) -> None:
    namespace = create_namespace(sundial_crds, "churn")
    created = [apply(sundial_crds, namespace, f"early-{i}") for i in range(3)]
    doomed = apply(sundial_crds, namespace, "doomed", finalizers=[FINALIZER])
    spec = parse_spec({"target": "noop", "schedule": "0 0 1 1 *", "timeZone": "UTC"})
    await arm_job(broker, store, JobRef(doomed, namespace, "doomed"), spec, 1, SYSTEM_CLOCK.now())
    sundial_crds.kubectl("delete", "sdj", "doomed", "-n", namespace, "--wait=false")

    deps = JobDeps(store, broker, kube, PeeringGate(None, "test", 0, SYSTEM_CLOCK), JobLocks(),
                   Tombstones(SYSTEM_CLOCK), {}, SYSTEM_CLOCK, GRACE_SECONDS)
    watch = ChurnWatch(deps, namespaces=[namespace], legacy_finalizer=FINALIZER)
    stop = asyncio.Event()
    task = asyncio.create_task(watch.run(stop))
    try:
        async def all_armed() -> bool:
            rows = await store.jobs_by_id(created)
            entries = await broker.entries(created)
            return len(rows) == len(created) and all(entries.values())

        await eventually("the jobs created before the watch armed", all_armed)

        async def released() -> bool:
            gone = not sundial_crds.kubectl("get", "sdj", "doomed", "-n", namespace, "--ignore-not-found",
                                            "-o", "name").stdout.strip()
            return gone and await broker.entry(doomed) is None and await store.job(doomed) is None

        await eventually("the job deleted before the watch disarmed and released", released)
        # The queue grace is the setting the deps carry, not the module default.
        entry_ttl = await broker.redis.hget(broker.keys.for_job(created[0]).entry(created[0]), "active_ttl")
        assert entry_ttl is not None
        assert int(entry_ttl) == round((spec.timeout_seconds + GRACE_SECONDS) * 1000)

        # And what happens afterwards still arrives through the watch.
        later = apply(sundial_crds, namespace, "later")

        async def later_armed() -> bool:
            return await broker.entry(later) is not None

        await eventually("a job created afterwards armed", later_armed)
    finally:
        stop.set()
        await task
