"""The Kubernetes API, called as the person using the dashboard.

The dashboard holds no rights over ScheduledJobs. In `token` mode each request carries the
caller's bearer token; in `proxy` mode the dashboard's own credentials carry `Impersonate-*`
headers naming whoever the authenticating proxy vouched for. Either way the API server's RBAC
decides, and its audit log names the real person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.config.client_adapter import AsyncClient as lightkube_async_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User

from sundial.dashboard.errors import ApiProblem, from_kube_status
from sundial.kube.config import load_config
from sundial.kube.errors import KubeError
from sundial.kube.joblogs import PodLog, run_pod_logs
from sundial.kube.resources import scheduled_jobs_path

FIELD_MANAGER: Final = "sundial-dashboard"
# The page shows the end of each container's log; `kubectl sundial logs` prints it whole.
LOG_TAIL_LINES: Final = 500
MERGE_PATCH: Final = "application/merge-patch+json"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: a bearer token, or a user (and groups) to impersonate."""

    token: str | None = None
    user: str | None = None
    groups: tuple[str, ...] = ()

    def header_items(self) -> list[tuple[str, str]]:
        if self.token:
            return [("Authorization", f"Bearer {self.token}")]
        # Impersonate-Group repeats once per group, which a dict cannot hold.
        return [("Impersonate-User", self.user or "")] + [("Impersonate-Group", group) for group in self.groups]


def load_kube_config() -> SingleConfig:
    """KUBECONFIG (or ~/.kube/config), else the pod's environment, as sundial.kube chooses.

    In-cluster the token is optional: in `token` mode the chart mounts only the cluster CA.
    """
    return load_config()


class KubeGateway:
    """ScheduledJob calls with the caller's identity; errors become `ApiProblem`s."""

    def __init__(self, config: SingleConfig, *, impersonating: bool) -> None:
        params = ConnectionParams(timeout=httpx.Timeout(15))
        # Forwarded tokens must not meet a client certificate from the kubeconfig: the API
        # server would authenticate the certificate first and act as the dashboard.
        forwarding = config._replace(user=User())
        self._config = config if impersonating else forwarding
        self._impersonating = impersonating
        self._http = lightkube_async_client(self._config, params)

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- ScheduledJobs -------------------------------------------------------------------

    async def list_jobs(self, caller: Caller, namespace: str | None) -> list[Obj]:
        items: list[Obj] = []
        params: dict[str, str] = {"limit": "500"}
        while True:
            page = await self._call(caller, "GET", scheduled_jobs_path(namespace), params=params)
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items
            params = {"limit": "500", "continue": token}

    async def get_job(self, caller: Caller, namespace: str, name: str) -> Obj:
        return await self._call(caller, "GET", f"{scheduled_jobs_path(namespace)}/{name}")

    async def create_job(self, caller: Caller, namespace: str, body: Obj, *, dry_run: bool) -> Obj:
        return await self._call(caller, "POST", scheduled_jobs_path(namespace), json=body,
                                params=_write_params(dry_run))

    async def patch_job(self, caller: Caller, namespace: str, name: str, patch: Obj, *, dry_run: bool = False) -> Obj:
        return await self._call(
            caller, "PATCH", f"{scheduled_jobs_path(namespace)}/{name}", json=patch, params=_write_params(dry_run),
            content_type=MERGE_PATCH,
        )

    async def delete_job(self, caller: Caller, namespace: str, name: str) -> None:
        await self._call(caller, "DELETE", f"{scheduled_jobs_path(namespace)}/{name}")

    async def whoami(self, caller: Caller) -> tuple[str, list[str]]:
        review = await self._call(
            caller, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        info = review.get("status", {}).get("userInfo", {})
        return str(info.get("username", "")), list(info.get("groups", []))

    async def run_logs(self, caller: Caller, namespace: str, uid: str, run_id: str | None) -> list[PodLog]:
        """The pod logs of a jobTemplate job's run, read with the caller's own rights."""
        config = self._config if self._impersonating else self._config._replace(user=User(token=caller.token))
        client = AsyncClient(config, timeout=httpx.Timeout(15), field_manager=FIELD_MANAGER)
        if self._impersonating:
            # lightkube has no impersonation setting; its httpx client sends these on every request.
            client._client._client.headers.update(httpx.Headers(caller.header_items()))
        try:
            return await run_pod_logs(client, namespace, uid, run_id, tail_lines=LOG_TAIL_LINES)
        except KubeError as exc:
            raise from_kube_status(exc.code or 502, {"message": str(exc), "reason": exc.reason}) from exc
        except httpx.HTTPError as exc:
            raise ApiProblem(503, "BackendUnavailable", f"Kubernetes API unreachable: {exc}") from exc
        finally:
            await client.close()

    # ---- plumbing ------------------------------------------------------------------------

    async def _call(
        self,
        caller: Caller,
        method: str,
        path: str,
        *,
        json: Obj | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        headers = httpx.Headers(caller.header_items())
        headers["Accept"] = "application/json"
        if json is not None:
            headers["Content-Type"] = content_type
        try:
            response = await self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiProblem(503, "BackendUnavailable", f"Kubernetes API unreachable: {exc}") from exc
        body = _json_or_empty(response)
        if response.is_error:
            raise from_kube_status(response.status_code, body)
        return body


def _write_params(dry_run: bool) -> dict[str, str]:
    params = {"fieldManager": FIELD_MANAGER}
    if dry_run:
        params["dryRun"] = "All"
    return params


def _json_or_empty(response: httpx.Response) -> Obj:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:500]}
    return body if isinstance(body, dict) else {}
