"""The launcher's shared Job watch against a real kube-apiserver and Job controller, holding
only the chart's launcher Role: one watch per namespace tells every waiting run how its Job
ended, a Job deleted first answers None, the finished Jobs of a ScheduledJob are known for
pruning, a Job that finished before anyone waited is answered from the list, and an expired
resourceVersion (410) re-lists instead of losing the waiters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import Status

from sundial.devstack.controlplane import ControlPlane
from sundial.launcher.watch import JobWatch
from tests.k8s.conftest import create_namespace, wait_until
from tests.k8s.test_jobs import POD, finish_pod, launcher_kubeconfig, one_pod

pytestmark = [pytest.mark.k8s]

__all__ = ["launcher_kubeconfig"]  # a fixture this module uses


@pytest.fixture(scope="module")
def namespace(sundial_crds: ControlPlane) -> str:
    return create_namespace(sundial_crds, "jobwatch")


@pytest.fixture
async def watch(launcher_kubeconfig: Path) -> AsyncIterator[JobWatch]:
    client = AsyncClient(KubeConfig.from_file(launcher_kubeconfig))
    watch = JobWatch(client, relist_seconds=20)
    try:
        yield watch
    finally:
        await watch.close()
        await client.close()


async def create_job(plane: ControlPlane, namespace: str, name: str) -> None:
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": {"sundial.dev/job-uid": "test"}},
            "spec": {"backoffLimit": 0, "template": {"spec": POD}}}
    await asyncio.to_thread(plane.kubectl, "apply", "-f", "-", input=json.dumps(body))


async def finish(plane: ControlPlane, namespace: str, name: str, exit_code: int) -> None:
    pod = await asyncio.to_thread(one_pod, plane, namespace, name)
    await asyncio.to_thread(finish_pod, plane, namespace, pod, exit_code)


def conditions(job: dict[str, Any] | None) -> set[str]:
    assert job is not None
    return {c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"}


async def test_one_watch_tells_every_waiting_run_how_its_job_ended(
    sundial_crds: ControlPlane, namespace: str, watch: JobWatch,
) -> None:
    for name in ("ok", "bad", "gone"):
        await create_job(sundial_crds, namespace, name)
    waiting = {name: asyncio.create_task(watch.finished(namespace, name)) for name in ("ok", "bad", "gone")}
    await finish(sundial_crds, namespace, "ok", 0)
    await finish(sundial_crds, namespace, "bad", 3)
    await asyncio.to_thread(sundial_crds.kubectl, "delete", "job", "gone", "-n", namespace, "--wait=false")
    async with asyncio.timeout(90):
        ended = {name: await task for name, task in waiting.items()}
    assert "Complete" in conditions(ended["ok"])
    assert "Failed" in conditions(ended["bad"])
    assert ended["gone"] is None
    assert list(watch._namespaces) == [namespace]  # one watch served all three
    # What the history limits prune from, with no LIST: the job's finished Jobs, not the deleted one.
    known = watch.finished_of(namespace, "test")
    assert {job["metadata"]["name"] for job in known} >= {"ok", "bad"}
    assert "gone" not in {job["metadata"]["name"] for job in known}
    assert all(job["metadata"]["creationTimestamp"] for job in known)
    watch.forget(namespace, "bad")
    assert "bad" not in {job["metadata"]["name"] for job in watch.finished_of(namespace, "test")}
    assert watch.finished_of(namespace, "another-job") == []


async def test_a_job_that_finished_before_anyone_waited_is_answered_from_the_list(
    sundial_crds: ControlPlane, namespace: str, watch: JobWatch,
) -> None:
    await create_job(sundial_crds, namespace, "early")
    await finish(sundial_crds, namespace, "early", 0)

    def complete() -> bool:
        job = json.loads(sundial_crds.kubectl("get", "job", "early", "-n", namespace, "-o", "json").stdout)
        return "Complete" in conditions(job)

    await asyncio.to_thread(wait_until, "the Job controller to complete the Job", complete, 90)
    async with asyncio.timeout(30):  # as a restarted launcher adopting its Job would
        assert "Complete" in conditions(await watch.finished(namespace, "early"))


async def test_an_expired_resource_version_lists_again_and_keeps_the_waiters(
    sundial_crds: ControlPlane, namespace: str, watch: JobWatch, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh API server's watch cache still holds every version, so the 410 Gone the server
    # sends once etcd is compacted is put into the first watch's stream here.
    watches: list[str | None] = []
    real_watch = watch.client.watch

    def expiring(*args: Any, **kwargs: Any) -> Any:
        watches.append(kwargs.get("resource_version"))
        if len(watches) > 1:
            return real_watch(*args, **kwargs)

        async def gone() -> AsyncIterator[tuple[str, Any]]:
            raise ApiError(status=Status(code=410, message="too old resource version"))
            yield  # an async generator, as the real watch is

        return gone()

    monkeypatch.setattr(watch.client, "watch", expiring)
    await create_job(sundial_crds, namespace, "expired")
    waiting = asyncio.create_task(watch.finished(namespace, "expired"))
    await finish(sundial_crds, namespace, "expired", 0)
    async with asyncio.timeout(90):
        assert "Complete" in conditions(await waiting)
    assert len(watches) >= 2  # listed again
    assert watches[1] is not None  # and watched from the version the list returned
