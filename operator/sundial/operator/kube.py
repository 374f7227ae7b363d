"""The operator's own Kubernetes API calls: status patches, Events, LISTs, peering objects.

kopf watches and patches through handlers, but has no public API for writing an object from
a background task, so those writes go through lightkube (1.x): async, typed (`py.typed`, so
`mypy --strict` checks the calls), small, with generic resources for CRDs and status
subresources, merge patches, and the same kubeconfig/in-cluster loading kopf does.
`kubernetes_asyncio` would also do, but it is untyped and generated for every API group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.types import PatchType

from sundial.core.crd import API_VERSION, CRD_NAME, GROUP, KIND, PLURAL, VERSION
from sundial.core.policy import POLICY_KIND, POLICY_PLURAL

ScheduledJob = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
TargetPolicy = create_global_resource(GROUP, VERSION, POLICY_KIND, POLICY_PLURAL)
# kopf looks for its peering CRDs under kopf.dev first (zalando.org is the legacy group).
PEERING_GROUP: Final = "kopf.dev"
ClusterKopfPeering = create_global_resource(PEERING_GROUP, "v1", "ClusterKopfPeering", "clusterkopfpeerings")
KopfPeering = create_namespaced_resource(PEERING_GROUP, "v1", "KopfPeering", "kopfpeerings")

CRD_FILE: Final = "deploy/crds/sundial.dev_scheduledjobs.yaml"
PEERING_CRD_FILE: Final = "deploy/crds/kopf-peering.yaml"

# Every way a request can fail without the API server answering it.
TRANSPORT_ERRORS: Final = (httpx2.TransportError, OSError)


class KubeUnavailable(RuntimeError):
    """The cluster cannot be used as configured; the message says why and what to do."""


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str


def load_config() -> KubeConfig:
    """In-cluster service account, else KUBECONFIG, else ~/.kube/config (lightkube's order)."""
    try:
        return KubeConfig.from_env()
    except ConfigError as exc:
        raise KubeUnavailable(f"no Kubernetes configuration ({exc}): set KUBECONFIG or run in a pod") from exc


class KubeApi:
    def __init__(self, client: AsyncClient, *, component: str, instance: str) -> None:
        self.client = client
        self.component = component
        self.instance = instance

    @classmethod
    def connect(cls, config: KubeConfig, *, component: str, instance: str) -> KubeApi:
        # A status write that takes longer than this is retried on the next poll instead.
        timeout = httpx2.Timeout(10.0)
        client = AsyncClient(config, timeout=timeout, field_manager=component)
        return cls(client, component=component, instance=instance)

    @property
    def server(self) -> str:
        return str(self.client.config.cluster.server)

    async def aclose(self) -> None:
        await self.client.close()

    # ---- start-up checks -----------------------------------------------------------------

    async def require_crd(self, name: str, install_hint: str) -> None:
        try:
            await self.client.get(CustomResourceDefinition, name)
        except ApiError as exc:
            if exc.status.code == 404:
                raise KubeUnavailable(f"CRD {name} is not installed: {install_hint}") from exc
            raise KubeUnavailable(f"cannot read CRD {name} from {self.server}: {exc.status.message}") from exc
        except TRANSPORT_ERRORS as exc:
            raise KubeUnavailable(f"Kubernetes API at {self.server} is unreachable: {exc}") from exc

    async def check_scheduledjob_crd(self) -> None:
        await self.require_crd(CRD_NAME, f"kubectl apply -f {CRD_FILE}")

    async def ensure_peering(self, name: str, namespaces: Sequence[str]) -> None:
        """The peering CRD is installed and the peering object(s) exist (kopf only patches them)."""
        hint = f"kubectl apply -f {PEERING_CRD_FILE}, or run with --standalone"
        if namespaces:
            await self.require_crd(f"kopfpeerings.{PEERING_GROUP}", hint)
            for namespace in namespaces:
                await self._create_if_missing(KopfPeering(metadata=ObjectMeta(name=name, namespace=namespace)))
        else:
            await self.require_crd(f"clusterkopfpeerings.{PEERING_GROUP}", hint)
            await self._create_if_missing(ClusterKopfPeering(metadata=ObjectMeta(name=name)))

    async def _create_if_missing(self, obj: Any) -> None:
        try:
            await self.client.create(obj)
        except ApiError as exc:
            if exc.status.code != 409:
                raise KubeUnavailable(f"cannot create the peering object: {exc.status.message}") from exc
        except TRANSPORT_ERRORS as exc:
            raise KubeUnavailable(f"Kubernetes API at {self.server} is unreachable: {exc}") from exc

    # ---- runtime -------------------------------------------------------------------------

    async def peering_statuses(self, name: str, namespaces: Sequence[str]) -> list[Mapping[str, Any]]:
        """The `status` (peer identity -> keep-alive) of each peering object this replica uses."""
        if not namespaces:
            cluster = await self.client.get(ClusterKopfPeering, name)
            return [cluster.get("status") or {}]
        statuses: list[Mapping[str, Any]] = []
        for namespace in namespaces:
            peering = await self.client.get(KopfPeering, name, namespace=namespace)
            statuses.append(peering.get("status") or {})
        return statuses

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str | None:
        """Merge-patch `/status`; the object's new resourceVersion, None when it is gone."""
        try:
            patched = await self.client.patch(
                ScheduledJob.Status, name, {"status": dict(status)}, namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return str(patched["metadata"]["resourceVersion"])

    async def patch_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any], resource_version: str
                             ) -> str | Literal[False] | None:
        """Merge-patch `metadata` if the object is still at `resource_version`: its new
        resourceVersion when done, False when it changed since (whoever changed it decides what
        happens next), None when it is gone."""
        try:
            patched = await self.client.patch(
                ScheduledJob, name, {"metadata": {**metadata, "resourceVersion": resource_version}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            if exc.status.code == 409:
                return False
            raise
        return str(patched["metadata"]["resourceVersion"])

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str, now: datetime) -> None:
        event = Event(
            metadata=ObjectMeta(generateName=f"{ref.name}.", namespace=ref.namespace),
            involvedObject=ObjectReference(
                apiVersion=API_VERSION, kind=KIND, name=ref.name, namespace=ref.namespace, uid=ref.uid
            ),
            type=type_,
            reason=reason,
            message=message,
            count=1,
            firstTimestamp=now,
            lastTimestamp=now,
            source=EventSource(component=self.component),
            reportingComponent=self.component,
            reportingInstance=self.instance,
        )
        await self.client.create(event)

    async def scheduledjob_pages(self, namespaces: Sequence[str], size: int
                                 ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJob in `namespaces` (all when empty), as plain JSON, `size` at a time."""
        for namespace in namespaces or [ALL_NS]:
            page: list[dict[str, Any]] = []
            async for obj in self.client.list(ScheduledJob, namespace=namespace, chunk_size=size):
                page.append(dict(obj))
                if len(page) >= size:
                    yield page
                    page = []
            if page:
                yield page

    async def scheduledjob_version(self, namespace: str | None) -> str:
        """The collection's current resourceVersion: where a watch that needs no LIST starts."""
        listing = self.client.list(ScheduledJob, namespace=namespace or ALL_NS, chunk_size=1)
        async for _ in listing:
            break
        return listing.resourceVersion

    async def watch_scheduledjobs(self, namespace: str | None, resource_version: str, timeout_seconds: int
                                  ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, object as plain JSON) from `resource_version` on, reconnecting after
        each server timeout; raises ApiError 410 when that version is too old."""
        async for kind, obj in self.client.watch(ScheduledJob, namespace=namespace or ALL_NS,
                                                 resource_version=resource_version, server_timeout=timeout_seconds):
            yield kind, obj

    async def job_uids(self, namespaces: Sequence[str]) -> set[str]:
        """UIDs of every ScheduledJob in `namespaces` (all when empty). Raises unless complete."""
        uids: set[str] = set()
        for namespace in namespaces or [ALL_NS]:
            async for obj in self.client.list(ScheduledJob, namespace=namespace, chunk_size=500):
                meta = obj.metadata
                if meta is not None and meta.uid:
                    uids.add(meta.uid)
        return uids

    async def job_statuses(self, namespaces: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """uid -> current `status` of every ScheduledJob, to seed what the sync last wrote."""
        statuses: dict[str, Mapping[str, Any]] = {}
        for namespace in namespaces or [ALL_NS]:
            async for obj in self.client.list(ScheduledJob, namespace=namespace, chunk_size=500):
                meta = obj.metadata
                if meta is not None and meta.uid:
                    statuses[meta.uid] = obj.get("status") or {}
        return statuses

    # ---- policies ------------------------------------------------------------------------

    async def target_policies(self) -> dict[str, Mapping[str, Any]]:
        """name -> spec of every TargetPolicy (none when the CRD is not installed)."""
        policies: dict[str, Mapping[str, Any]] = {}
        try:
            async for obj in self.client.list(TargetPolicy, chunk_size=500):
                policies[str(obj["metadata"]["name"])] = obj.get("spec") or {}
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        return policies

    async def namespace_labels(self) -> dict[str, dict[str, str]]:
        """name -> labels of every namespace."""
        labels: dict[str, dict[str, str]] = {}
        async for namespace in self.client.list(Namespace, chunk_size=500):
            meta = namespace.metadata
            if meta is not None and meta.name:
                labels[meta.name] = dict(meta.labels or {})
        return labels

    async def labels_of_namespace(self, name: str) -> dict[str, str]:
        namespace = await self.client.get(Namespace, name)
        meta = namespace.metadata
        return dict(meta.labels or {}) if meta is not None else {}


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying as it is: no answer, or the server busy or throttling."""
    if isinstance(exc, ApiError):
        return exc.status.code in (409, 429, 500, 502, 503, 504)
    return isinstance(exc, TRANSPORT_ERRORS)
