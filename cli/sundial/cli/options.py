"""Flags shared by the commands, spelled as kubectl spells them.

Each command takes them after its own name (`kubectl sundial runs nightly -n batch`), as kubectl
users expect; click would only accept group options before the subcommand, so every command
carries its own copy through these decorators.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from sundial.cli.kube import KubeOptions, parse_request_timeout
from sundial.core.config import DEFAULT_REDIS_PREFIX

Command = Callable[..., Any]


@dataclass(frozen=True)
class BackendOptions:
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX

    def require_database(self) -> str:
        if not self.database_url:
            raise click.UsageError("PostgreSQL is not configured: pass --database-url or set DATABASE_URL")
        return self.database_url

    def require_redis(self) -> str:
        if not self.redis_url:
            raise click.UsageError("Redis is not configured: pass --redis-url or set REDIS_URL")
        return self.redis_url


def kube_options(*, all_namespaces: bool = False) -> Callable[[Command], Command]:
    """-n/--namespace, --context, --kubeconfig (and -A when the command can span namespaces),
    handed to the command as one `kube: KubeOptions`."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["kube"] = KubeOptions(
                kubeconfig=kwargs.pop("kubeconfig"),
                context=kwargs.pop("context"),
                namespace=kwargs.pop("namespace"),
                all_namespaces=kwargs.pop("all_namespaces", False),
                impersonate_user=kwargs.pop("impersonate_user"),
                impersonate_groups=tuple(kwargs.pop("impersonate_groups")),
                request_timeout=kwargs.pop("request_timeout"),
            )
            return command(*args, **kwargs)

        if all_namespaces:
            wrapper = click.option(
                "-A", "--all-namespaces", is_flag=True, help="Across all namespaces (NAME must be omitted)."
            )(wrapper)
        wrapper = click.option(
            "--request-timeout", metavar="DURATION", default=None, callback=_request_timeout,
            help="How long to wait for each Kubernetes API request (30s, 1m; 0 waits forever).",
        )(wrapper)
        wrapper = click.option(
            "--as-group", "impersonate_groups", metavar="GROUP", multiple=True,
            help="Group to impersonate for the Kubernetes API (repeatable; needs --as).",
        )(wrapper)
        wrapper = click.option(
            "--as", "impersonate_user", metavar="USER", default=None,
            help="User (or system:serviceaccount:NS:NAME) to impersonate for the Kubernetes API.",
        )(wrapper)
        wrapper = click.option(
            "--kubeconfig", metavar="FILE", default=None,
            help="Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).",
        )(wrapper)
        wrapper = click.option("--context", metavar="NAME", default=None, help="The kubeconfig context to use.")(
            wrapper
        )
        return click.option(
            "-n", "--namespace", metavar="NS", default=None,
            help="Namespace of the ScheduledJob (default: the context's namespace).",
        )(wrapper)

    return decorate


def _request_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_request_timeout(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def backend_options(*, redis: bool = True) -> Callable[[Command], Command]:
    """--database-url (and --redis-url, --redis-prefix), from the same environment variables the
    worker and operator read, handed to the command as one `backends: BackendOptions`."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["backends"] = BackendOptions(
                database_url=kwargs.pop("database_url"),
                redis_url=kwargs.pop("redis_url", None),
                redis_prefix=kwargs.pop("redis_prefix", DEFAULT_REDIS_PREFIX),
            )
            return command(*args, **kwargs)

        if redis:
            wrapper = click.option(
                "--redis-prefix", envvar="SUNDIAL_REDIS_PREFIX", default=DEFAULT_REDIS_PREFIX, show_default=True,
                metavar="PREFIX", help="Redis key prefix of the deployment [env SUNDIAL_REDIS_PREFIX].",
            )(wrapper)
            wrapper = click.option(
                "--redis-url", envvar="REDIS_URL", default=None, metavar="URL", help="Redis URL [env REDIS_URL].",
            )(wrapper)
        return click.option(
            "--database-url", envvar="DATABASE_URL", default=None, metavar="URL",
            help="PostgreSQL URL [env DATABASE_URL].",
        )(wrapper)

    return decorate


def output_option(*choices: str, default: str | None = "table") -> Callable[[Command], Command]:
    """kubectl's -o: `default` (None: the command's own text) unless one of `choices` is asked for."""
    return click.option(
        "-o", "--output", type=click.Choice(choices), default=default, show_default=default is not None,
        help=f"Output format: {'|'.join(choices)}.",
    )
