"""The operator's calls on the Kubernetes API: status and metadata patches, Events, LISTs, the
watch, the CRD and peering checks.

kopf watches and patches through handlers, but has no public API for writing an object from
a background task, so those writes go through lightkube (1.x): async, typed (`py.typed`, so
`mypy --strict` checks the calls), small, with generic resources for CRDs and status
subresources and merge patches. Configuration comes from `sundial.kube.config` and failures
map to `sundial.kube.errors`, as for the CLI and the dashboard.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, ConfigError, SingleConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.types import PatchType

from sundial.core.crd import API_VERSION, CRD_NAME, GROUP, KIND, VERSION
from sundial.core.policy import POLICY_KIND, POLICY_PLURAL
from sundial.kube.errors import TRANSPORT_ERRORS, KubeError, KubeUnreachable
from sundial.kube.resources import ScheduledJob

TargetPolicy = create_global_resource(GROUP, VERSION, POLICY_KIND, POLICY_PLURAL)

# kopf looks for its peering CRDs under kopf.dev first (zalando.org is the legacy group).
PEERING_GROUP: Final = "kopf.dev"
ClusterKopfPeering = create_global_resource(PEERING_GROUP, "v1", "ClusterKopfPeering", "clusterkopfpeerings")
KopfPeering = create_namespaced_resource(PEERING_GROUP, "v1", "KopfPeering", "kopfpeerings")

CRD_FILE: Final = "deploy/crds/sundial.dev_scheduledjobs.yaml"
PEERING_CRD_FILE: Final = "deploy/crds/kopf-peering.yaml"
# A status write that takes longer than this is retried on the next poll instead.
REQUEST_TIMEOUT: Final = httpx2.Timeout(10.0)


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str


class KubeApi:
    def __init__(self, client: AsyncClient, *, component: str, instance: str) -> None:
        self.client = client
        self.component = component
        self.instance = instance

    @classmethod
    def connect(cls, config: SingleConfig, *, component: str, instance: str) -> KubeApi:
        try:
            client = AsyncClient(config, timeout=REQUEST_TIMEOUT, field_manager=component)
        except ConfigError as exc:
            raise KubeError(f"kubeconfig context {config.context_name}: {exc}") from exc
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
                raise KubeError(f"CRD {name} is not installed: {install_hint}", 404) from exc
            raise KubeError(f"cannot read CRD {name} from {self.server}: {exc.status.message}",
                            exc.status.code) from exc
        except TRANSPORT_ERRORS as exc:
            raise KubeUnreachable.at(self.server, exc) from exc

    async def server_version(self) -> tuple[int, int]:
        """The API server's (major, minor) version, from `/version` ("1", "35+" on some
        distributions: the digits count)."""
        try:
            # lightkube has no call for non-resource paths: its HTTP client, with its auth, does.
            response = await self.client._client._client.get("/version")
            response.raise_for_status()
            info = response.json()
        except TRANSPORT_ERRORS as exc:
            raise KubeUnreachable.at(self.server, exc) from exc
        except httpx2.HTTPStatusError as exc:
            raise KubeError(f"cannot read the version of {self.server}: HTTP {exc.response.status_code}",
                            exc.response.status_code) from exc

        def number(field: str) -> int:
            digits = "".join(itertools.takewhile(str.isdigit, str(info.get(field, ""))))
            return int(digits or 0)

        return number("major"), number("minor")

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
                raise KubeError(f"cannot create the peering object: {exc.status.message}", exc.status.code) from exc
        except TRANSPORT_ERRORS as exc:
            raise KubeUnreachable.at(self.server, exc) from exc

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

    async def list_scheduledjobs(self, namespace: str | None, size: int,
                                 sink: Callable[[dict[str, Any]], None]) -> str:
        """Hand every ScheduledJob in `namespace` (all when None) to `sink` as plain JSON, `size`
        per request; returns the LIST's resourceVersion, where a watch that misses nothing starts."""
        listing = self.client.list(ScheduledJob, namespace=namespace or ALL_NS, chunk_size=size)
        async for obj in listing:
            sink(dict(obj))
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

