"""kopf's listing before it watches, through kopf's own code against the real kube-apiserver.

kopf 1.45 lists in pages (`fetching.fetch_objs`) and catches only connection errors around it
(`watching.continuous_watch`): a page whose continue token the API server no longer honours
(410 Gone: the LIST's version left the watch cache and etcd compacted it) ends the operator.
Under load a 10,000-object LIST outlived its token, and the operator exited mid-benchmark.
The operator now has kopf stream the list (`sendInitialEvents`), which has no token to lose.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import kopf
import pytest
from kopf._cogs.clients import auth, errors, fetching, watching
from kopf._cogs.structs import credentials, references
from lightkube.types import PatchType

from sundial.core.crd import GROUP, PLURAL, VERSION
from sundial.devstack.controlplane import ControlPlane
from sundial.kube.api import KubeApi
from sundial.kube.config import load_config
from sundial.kube.resources import ScheduledJob
from sundial.operator.handlers import _choose_listing
from sundial.operator.login import connection_info
from tests.k8s.conftest import create_namespace

pytestmark = pytest.mark.k8s

RESOURCE = references.Resource(group=GROUP, version=VERSION, plural=PLURAL, namespaced=True)
# The watch cache keeps an old version's snapshot until its events are both older than this
# (eventFreshDuration) and pushed out by newer ones. The cache grows (up to 100 Ki events) while
# its events are fresher than that, so an earlier test's burst of ScheduledJobs leaves it large.
CACHE_FRESH_SECONDS = 75
CACHE_CAPACITY_METRIC = re.compile(
    rf'^watch_cache_capacity{{group="{re.escape(GROUP)}",resource="{PLURAL}"}} (\d+)$', re.MULTILINE)
PARALLEL_TOUCHES = 16
log = logging.getLogger(__name__)


@pytest.fixture
async def kopf_api(sundial_crds: ControlPlane) -> AsyncIterator[None]:
    """kopf's API calls authenticated as the operator's login handler would."""
    vault = credentials.Vault()
    await vault.populate({"login": connection_info(load_config(str(sundial_crds.kubeconfig)))})
    token = auth.vault_var.set(vault)
    yield
    auth.vault_var.reset(token)
    await vault.close()


def manifests(namespace: str, count: int) -> str:
    items = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScheduledJob",
              "metadata": {"name": f"listed-{i}", "namespace": namespace},
              "spec": {"target": "noop", "schedule": "0 0 1 1 *", "timeZone": "UTC"}} for i in range(count)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def compact_etcd(plane: ControlPlane) -> None:
    """Compact etcd up to its current revision (what kube-apiserver does every 5 minutes)."""
    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(plane.etcd_url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return cast(dict[str, Any], json.load(response))

    revision = call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
    call("/v3/kv/compaction", {"revision": revision, "physical": True})


def watch_cache_capacity(plane: ControlPlane) -> int:
    """How many ScheduledJob events the API server's watch cache holds now (its own metric)."""
    metrics = plane.kubectl("get", "--raw", "/metrics").stdout
    found = CACHE_CAPACITY_METRIC.search(metrics)
    assert found, "the API server exports no watch_cache_capacity for ScheduledJobs"
    return int(found.group(1))


async def age_out(plane: ControlPlane, namespace: str) -> None:
    """Make every version older than now unservable: out of the watch cache, compacted in etcd."""
    kube = KubeApi.connect(load_config(str(plane.kubeconfig)), component="kopf-listing-test", instance="test")
    gate = asyncio.Semaphore(PARALLEL_TOUCHES)

    async def touch(i: int) -> None:
        async with gate:
            await kube.client.patch(ScheduledJob, "listed-0", {"metadata": {"annotations": {"test/touch": str(i)}}},
                                    namespace=namespace, patch_type=PatchType.MERGE)

    try:
        await asyncio.sleep(CACHE_FRESH_SECONDS + 1)
        # Once its oldest event is stale the cache no longer grows: each new event evicts one.
        await asyncio.gather(*(touch(i) for i in range(watch_cache_capacity(plane) + 50)))
    finally:
        await kube.aclose()
    compact_etcd(plane)


@pytest.mark.timeout(600)  # the watch cache keeps a version at least 75 s
async def test_a_paged_list_outlived_by_its_version_ends_in_410_that_kopf_does_not_catch(
    sundial_crds: ControlPlane, kopf_api: None
) -> None:
    namespace = create_namespace(sundial_crds, "pages")
    sundial_crds.kubectl("apply", "-f", "-", input=manifests(namespace, 3))
    settings = kopf.OperatorSettings()
    settings.watching.chunk_size = 1
    pages = fetching.fetch_objs(settings=settings, resource=RESOURCE, namespace=cast(Any, namespace), logger=log)
    first, _ = await anext(pages)
    assert len(first) == 1
    began = time.monotonic()
    await age_out(sundial_crds, namespace)
    with pytest.raises(errors.APIClientError) as failure:
        await anext(pages)
    assert failure.value.status == 410, failure.value
    print(f"continue token refused after {time.monotonic() - began:.0f} s: {failure.value}")


async def test_the_operator_has_kopf_stream_the_list_with_no_token_to_lose(
    sundial_crds: ControlPlane, kopf_api: None
) -> None:
    namespace = create_namespace(sundial_crds, "stream")
    sundial_crds.kubectl("apply", "-f", "-", input=manifests(namespace, 5))
    settings = kopf.OperatorSettings()
    kube = KubeApi.connect(load_config(str(sundial_crds.kubeconfig)), component="kopf-listing-test", instance="test")
    try:
        await _choose_listing(settings, cast(Any, type("Runtime", (), {"kube": kube})()))
    finally:
        await kube.aclose()
    assert settings.watching.initial_streaming, "this API server (1.34+) streams lists"

    names: list[str] = []
    stream = cast(AsyncGenerator[Any, None], watching.continuous_watch(
        settings=settings, resource=RESOURCE, namespace=cast(Any, namespace),
        operator_pause_waiter=asyncio.get_running_loop().create_future()))
    async with asyncio.timeout(60):
        async for event in stream:
            if event is watching.Bookmark.LISTED:
                break
            if isinstance(event, dict) and event.get("type") is None:  # kopf's mark of a listed object
                names.append(event["object"]["metadata"]["name"])
    await stream.aclose()
    assert sorted(names) == [f"listed-{i}" for i in range(5)]
