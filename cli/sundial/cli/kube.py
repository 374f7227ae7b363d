"""The CLI's side of Kubernetes: kubectl's global flags, and the few calls the commands make on
ScheduledJobs and their CRD. Configuration and errors are sundial.kube's, shared with the
dashboard: `KubeUnreachable` (no cluster could be asked: readers may fall back to PostgreSQL)
and `KubeError` (the cluster answered no: that is the answer).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, ConfigError, SingleConfig
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.batch_v1 import CronJob
from lightkube.types import PatchType

from sundial.core.crd import CRD_NAME, GROUP
from sundial.kube import config as kube_config
from sundial.kube.config import DEFAULT_NAMESPACE
from sundial.kube.errors import TRANSPORT_ERRORS, KubeError, KubeUnreachable
from sundial.kube.resources import ScheduledJob

__all__ = ["DEFAULT_NAMESPACE", "JobNotFound", "Kube", "KubeError", "KubeOptions", "KubeUnreachable",
           "default_namespace", "load_config", "parse_request_timeout"]

FIELD_MANAGER: Final = "kubectl-sundial"
# A CLI that hangs on a black-holed API server is worse than one that says so quickly.
TIMEOUT: Final = httpx2.Timeout(15.0, connect=5.0)

Obj = dict[str, Any]


class JobNotFound(KubeError):
    pass


@dataclass(frozen=True)
class KubeOptions:
    """kubectl's global flags, as far as a plugin honours them."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    # --as / --as-group: the API server checks the caller may impersonate, then authorizes as them.
    impersonate_user: str | None = None
    impersonate_groups: tuple[str, ...] = ()
    # --request-timeout in seconds; 0 waits forever, as kubectl's does; None keeps TIMEOUT.
    request_timeout: float | None = None

    @property
    def timeout(self) -> httpx2.Timeout:
        if self.request_timeout is None:
            return TIMEOUT
        return httpx2.Timeout(self.request_timeout or None)

    @property
    def impersonation_headers(self) -> list[tuple[str, str]]:
        if self.impersonate_groups and not self.impersonate_user:
            raise KubeError("--as-group needs --as: the API server impersonates groups only with a user")
        headers = [("Impersonate-User", self.impersonate_user)] if self.impersonate_user else []
        return headers + [("Impersonate-Group", group) for group in self.impersonate_groups]


def parse_request_timeout(value: str) -> float:
    """kubectl's --request-timeout: `0` (none), a bare number of seconds, or 1h2m3s-style units."""
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or units such as 30s, 1m, 1h")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def load_config(options: KubeOptions) -> SingleConfig:
    """The selected context, in kubectl's order (sundial.kube.config)."""
    return kube_config.load_config(options.kubeconfig, options.context)


def default_namespace(options: KubeOptions) -> str:
    """-n, else the context's namespace, else `default` (also when no cluster is configured)."""
    if options.namespace:
        return options.namespace
    try:
        return load_config(options).namespace
    except (KubeUnreachable, KubeError, ConfigError):
        return DEFAULT_NAMESPACE


class Kube:
    def __init__(self, client: AsyncClient, config: SingleConfig, namespace: str) -> None:
        self.client = client
        self.config = config
        self.namespace = namespace

    @classmethod
    def connect(cls, options: KubeOptions) -> Kube:
        config = load_config(options)
        try:
            client = AsyncClient(config, timeout=options.timeout, field_manager=FIELD_MANAGER)
        except ConfigError as exc:
            raise KubeError(f"kubeconfig context {config.context_name}: {exc}") from exc
        impersonation = options.impersonation_headers
        if impersonation:
            # lightkube has no impersonation setting; its httpx client sends these on every request.
            client._client._client.headers.update(httpx2.Headers(impersonation))
        return cls(client, config, options.namespace or config.namespace)

    @property
    def server(self) -> str:
        return str(self.config.cluster.server)

    @property
    def context_name(self) -> str:
        return self.config.context_name

    async def aclose(self) -> None:
        await self.client.close()

    async def get_job(self, name: str, namespace: str) -> Obj:
        with self._errors(job=(name, namespace)):
            return _to_obj(await self.client.get(ScheduledJob, name, namespace=namespace))

    async def watch_job(self, name: str, namespace: str) -> AsyncIterator[Obj]:
        """The ScheduledJob each time it changes (a watch on its name)."""
        with self._errors(job=(name, namespace)):
            async for _, obj in self.client.watch(ScheduledJob, namespace=namespace,
                                                  fields={"metadata.name": name}):
                yield _to_obj(obj)

    async def list_jobs(self, namespace: str | None) -> list[Obj]:
        """Every ScheduledJob in `namespace`, or in all namespaces when None."""
        with self._errors():
            return [
                _to_obj(obj)
                async for obj in self.client.list(ScheduledJob, namespace=namespace or ALL_NS, chunk_size=500)
            ]

    async def merge_patch_job(self, name: str, namespace: str, body: Mapping[str, Any]) -> Obj:
        with self._errors(job=(name, namespace)):
            return _to_obj(await self.client.patch(
                ScheduledJob, name, dict(body), namespace=namespace, patch_type=PatchType.MERGE
            ))

    async def create_job(self, body: Mapping[str, Any]) -> Obj:
        """Create a ScheduledJob (AlreadyExists comes back as a KubeError with code 409)."""
        with self._errors():
            return _to_obj(await self.client.create(ScheduledJob.from_dict(dict(body))))

    async def list_cronjobs(self, namespace: str | None) -> list[Obj]:
        """Every batch/v1 CronJob in `namespace`, or in all namespaces when None."""
        with self._errors():
            return [_to_obj(obj) async for obj in self.client.list(CronJob, namespace=namespace or ALL_NS)]

    async def get_cronjob(self, name: str, namespace: str) -> Obj:
        with self._errors():
            return _to_obj(await self.client.get(CronJob, name, namespace=namespace))

    async def suspend_cronjob(self, name: str, namespace: str) -> None:
        with self._errors():
            await self.client.patch(CronJob, name, {"spec": {"suspend": True}}, namespace=namespace,
                                    patch_type=PatchType.MERGE)

    async def get_crd(self) -> Obj | None:
        """The ScheduledJob CRD, or None when it is not installed."""
        try:
            with self._errors():
                return _to_obj(await self.client.get(CustomResourceDefinition, CRD_NAME))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    @contextmanager
    def _errors(self, *, job: tuple[str, str] | None = None) -> Iterator[None]:
        """Turn lightkube's and the transport's errors into ours; a missing job into JobNotFound."""
        try:
            yield
        except ApiError as exc:
            if job is not None and exc.status.code == 404:
                name, namespace = job
                raise JobNotFound(f'scheduledjobs.{GROUP} "{name}" not found in namespace {namespace}', 404) from exc
            raise self._api_error(exc) from exc
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> KubeUnreachable:
        return KubeUnreachable.at(self.server, exc)

    def _api_error(self, exc: ApiError) -> KubeError:
        return KubeError(f"Kubernetes API: {exc.status.message or exc}", exc.status.code)


def _to_obj(model: Any) -> Obj:
    plain = _plain(model.to_dict())
    if not isinstance(plain, dict):
        raise KubeError(f"unexpected answer from the Kubernetes API: {type(plain).__name__}")
    return plain


def _plain(value: Any) -> Any:
    """lightkube's models as plain JSON-shaped data (datetimes become RFC 3339 strings)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "isoformat"):
        text: str = value.isoformat()
        return text.replace("+00:00", "Z")
    return value
