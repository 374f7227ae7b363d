"""What an aggregated API server asks the cluster: whom to believe, and what they may do.

The kube-apiserver authenticates every caller (tokens, exec plugins, client certificates) and
forwards the request over a client certificate of its own (the front proxy), naming the
caller in headers. The server trusts those headers only from that certificate, whose CA and
header names the kube-apiserver publishes in kube-system/extension-apiserver-authentication
(readable through the `extension-apiserver-authentication-reader` Role), and asks a
SubjectAccessReview (the `system:auth-delegator` ClusterRole) whether the caller may act.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import ConfigMap

from sundial.kube.errors import KubeError

AUTHENTICATION_CONFIGMAP: Final = ("kube-system", "extension-apiserver-authentication")


@dataclass(frozen=True)
class FrontProxy:
    """How the kube-apiserver's front proxy names callers, and the CA of its client certificate."""

    ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> FrontProxy:
        ca = data.get("requestheader-client-ca-file", "")
        if not ca.strip():
            raise KubeError(
                f"{'/'.join(AUTHENTICATION_CONFIGMAP)} has no requestheader-client-ca-file: start kube-apiserver "
                "with --requestheader-client-ca-file (the front proxy) to serve aggregated APIs"
            )

        def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            return tuple(str(item) for item in json.loads(raw)) if raw else default

        return cls(
            ca_pem=ca,
            allowed_names=listed("requestheader-allowed-names", ()),
            username_headers=listed("requestheader-username-headers", cls.username_headers),
            group_headers=listed("requestheader-group-headers", cls.group_headers),
            extra_prefixes=listed("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )


async def read_front_proxy(client: AsyncClient) -> FrontProxy:
    namespace, name = AUTHENTICATION_CONFIGMAP
    try:
        configmap = await client.get(ConfigMap, name, namespace=namespace)
    except ApiError as exc:
        raise KubeError(f"cannot read {namespace}/{name}: {exc.status.message}", exc.status.code) from exc
    return FrontProxy.from_configmap(configmap.data or {})


@dataclass(frozen=True)
class Caller:
    """A caller as the front proxy named them."""

    user: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


@dataclass(frozen=True)
class Access:
    """One question for the authorizer: may the caller `verb` the resource (in `namespace`)?"""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None


async def review_access(client: AsyncClient, caller: Caller, access: Access) -> tuple[bool, str]:
    """(allowed, the authorizer's reason) from a SubjectAccessReview."""
    review = SubjectAccessReview(spec=SubjectAccessReviewSpec(
        user=caller.user, groups=list(caller.groups), extra={key: list(values) for key, values in caller.extra},
        resourceAttributes=ResourceAttributes(
            verb=access.verb, group=access.group, resource=access.resource, namespace=access.namespace or "",
            name=access.name,
        ),
    ))
    try:
        answer = await client.create(review)
    except ApiError as exc:
        raise KubeError(f"SubjectAccessReview failed: {exc.status.message}", exc.status.code) from exc
    except (httpx2.TransportError, OSError) as exc:
        raise KubeError(f"SubjectAccessReview failed: the API server did not answer ({exc})") from exc
    status = answer.status
    if status is None:
        return False, "the authorizer gave no answer"
    return bool(status.allowed), str(status.reason or status.evaluationError or "")
