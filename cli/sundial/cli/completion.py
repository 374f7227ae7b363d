"""Shell completion, click's: `sundial completion bash|zsh|fish` prints the script to source,
and `kubectl_complete-sundial` answers kubectl's own plugin completion (kubectl >= 1.26 runs it
as `kubectl_complete-sundial __complete ARGS... INCOMPLETE` and reads cobra's line protocol).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import click
from click.shell_completion import CompletionItem, ShellComplete, get_completion_class

from sundial.cli.kube import Kube, KubeError, KubeOptions, KubeUnreachable

SHELLS: Final = ("bash", "zsh", "fish")
# cobra's ShellCompDirectiveNoFileComp: offer these and never fall back to file names.
NO_FILE_COMPLETION: Final = ":4"


def completion_script(group: click.Group, shell: str, prog_name: str) -> str:
    cls = get_completion_class(shell)
    if cls is None:
        raise click.UsageError(f"no completion for shell {shell!r}; one of {', '.join(SHELLS)}")
    complete_var = "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())
    return cls(group, {}, prog_name, complete_var).source()


def kubectl_completions(group: click.Group, argv: list[str]) -> list[str]:
    """Lines for kubectl's plugin completion: `value<TAB>help` each, then the directive."""
    words = argv[1:] if argv[:1] == ["__complete"] else argv
    args, incomplete = words[:-1], (words[-1] if words else "")
    items = ShellComplete(group, {}, "kubectl-sundial", "_KUBECTL_SUNDIAL_COMPLETE").get_completions(args, incomplete)
    return [f"{item.value}\t{item.help}" if item.help else str(item.value) for item in items] + [NO_FILE_COMPLETION]


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """ScheduledJob names in the namespace the command line names so far; none when the cluster
    cannot be asked (completion must never print an error into the prompt)."""
    options = KubeOptions(
        kubeconfig=ctx.params.get("kubeconfig"), context=ctx.params.get("context"),
        namespace=ctx.params.get("namespace"), request_timeout=5.0,
    )
    try:
        names = asyncio.run(_job_names(options))
    except (KubeError, KubeUnreachable, OSError):
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


async def _job_names(options: KubeOptions) -> list[str]:
    kube = Kube.connect(options)
    try:
        return sorted(str(obj["metadata"]["name"]) for obj in await kube.list_jobs(kube.namespace))
    finally:
        await kube.aclose()


def kubectl_complete_main() -> None:
    from sundial.cli.main import cli

    for line in kubectl_completions(cli, sys.argv[1:]):
        click.echo(line)
