"""docs/configuration.md, generated from sundial.core.config: every environment variable.

    python -m sundial.core.config_doc > docs/configuration.md     # regenerate
    python -m sundial.core.config_doc --check docs/configuration.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from sundial.core.config import OTHER_VARIABLES, DashboardSettings, RunsApiSettings, Settings

REGENERATE: Final = "python -m sundial.core.config_doc > docs/configuration.md"
MODELS: Final[tuple[tuple[str, type[BaseSettings]], ...]] = (
    ("sundial-worker and sundial-operator", Settings),
    ("sundial-dashboard", DashboardSettings),
    ("sundial-runs-api", RunsApiSettings),
)


def variables(model: type[BaseSettings]) -> list[tuple[str, FieldInfo]]:
    """(environment variable, field) for each field, as pydantic-settings reads them."""
    prefix = str(model.model_config.get("env_prefix", ""))
    found = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        variable = str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"{prefix}{name}".upper()
        found.append((variable, field))
    return found


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        return "(computed)" if isinstance(value, str) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{getattr(value, 'value', value)}`"


def render() -> str:
    lines = [
        "# Configuration: every environment variable",
        "",
        f"Generated from `sundial.core.config` by `{REGENERATE}`; a unit test fails when it drifts.",
        "The Helm chart sets these from its values (deploy/helm/sundial/README.md).",
    ]
    for title, model in MODELS:
        lines += ["", f"## {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        for variable, field in variables(model):
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{variable}` | {_default(field)} | {meaning} |")
    lines += ["", "## Read elsewhere", "", "| variable | read by | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{variable}` | {who} | {meaning} |" for variable, who, meaning in OTHER_VARIABLES]
    lines += ["", "The CLI's `--database-url`, `--redis-url` and `--redis-prefix` default to `DATABASE_URL`,",
              "`REDIS_URL` and `SUNDIAL_REDIS_PREFIX` (docs/cli.md)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sundial.core.config_doc", description=__doc__)
    parser.add_argument("--check", metavar="FILE", type=Path, help="exit 1 when FILE is stale")
    args = parser.parse_args(argv)
    if args.check is None:
        sys.stdout.write(render())
        return 0
    if args.check.exists() and args.check.read_text() == render():
        return 0
    sys.stderr.write(f"{args.check} is stale; regenerate with: {REGENERATE}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
