"""docs/configuration.md is generated from sundial.core.config and names every variable read."""

from __future__ import annotations

import re
from pathlib import Path

from sundial.core import config_doc

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
# Where the shipped processes and the CLI live (the dev stack and tests set their own).
SOURCE_ROOTS = ("core/sundial/core", "cli", "operator", "worker", "dashboard")
READS = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|envvar=)["']([A-Z_][A-Z0-9_]*)["']""")


def documented() -> set[str]:
    return set(re.findall(r"^\| `([A-Z_][A-Z0-9_]*)` \|", DOC.read_text(), flags=re.M))


def test_reference_is_up_to_date() -> None:
    assert config_doc.main(["--check", str(DOC)]) == 0, f"regenerate with: {config_doc.REGENERATE}"


def test_every_variable_the_code_reads_is_documented() -> None:
    read = {name for root in SOURCE_ROOTS if (ROOT / root).is_dir()
            for path in (ROOT / root).rglob("*.py") for name in READS.findall(path.read_text())}
    assert read, "the scan found nothing: has the layout moved?"
    assert read - documented() == set()


def test_every_variable_the_chart_sets_is_documented() -> None:
    templates = ROOT / "deploy" / "helm" / "sundial" / "templates"
    # The bundled PostgreSQL and Redis are third-party images with variables of their own.
    ours = [path for path in templates.glob("*.yaml") if not path.name.startswith("bundled-")]
    set_by_chart = {name for path in ours
                    for name in re.findall(r"-\s*name:\s*([A-Z][A-Z0-9_]+)\s*$", path.read_text(), flags=re.M)}
    assert set_by_chart, "the scan found nothing: has the chart moved?"
    # POD_IP only feeds the operator's --webhook-host=$(POD_IP) argument; nothing reads it.
    assert set_by_chart - documented() - {"POD_IP"} == set()
