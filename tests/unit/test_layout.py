"""The layout shows the architecture: one folder per part, each with its own import rules."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("core", "kube", "cli", "devstack", "operator", "worker", "launcher", "dashboard")
KUBERNETES_CLIENTS = {"kopf", "lightkube", "kubernetes", "kubernetes_asyncio"}


def banned(part: str) -> set[str]:
    config = tomllib.loads((ROOT / part / "ruff.toml").read_text()) if (ROOT / part / "ruff.toml").exists() else {}
    assert config.get("extend") in (None, "../pyproject.toml"), "a part's rules extend the project's"
    return set(config.get("lint", {}).get("flake8-tidy-imports", {}).get("banned-api", {}))


@pytest.mark.parametrize("part", PARTS)
def test_each_folder_holds_exactly_its_own_part(part: str) -> None:
    assert [p.name for p in (ROOT / part / "sundial").iterdir() if p.name != "__pycache__"] == [part]
    assert not (ROOT / part / "sundial" / "__init__.py").exists(), "sundial is a namespace package"


def test_source_roots_are_the_parts() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert sorted(pyproject["tool"]["hatch"]["build"]["dev-mode-dirs"]) == sorted(PARTS)
    assert set(pyproject["tool"]["mypy"]["mypy_path"]) == set(PARTS)
    assert set(pyproject["tool"]["ruff"]["src"]) >= set(PARTS)
    shipped = {p.split("/")[0] for p in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    assert shipped == set(PARTS) - {"devstack"}, "the dev stack never ships"


def test_import_rules() -> None:
    others = {f"sundial.{part}" for part in PARTS}
    assert banned("core") >= KUBERNETES_CLIENTS | (others - {"sundial.core"})
    assert banned("worker") >= KUBERNETES_CLIENTS | {"sundial.operator", "sundial.dashboard", "sundial.cli",
                                                     "sundial.kube"}
    # The client layer the CLI and the dashboard share may be imported by them (and the operator).
    for part in ("operator", "dashboard", "cli", "worker", "kube"):
        assert banned(part) >= others - {"sundial.core", "sundial.kube", f"sundial.{part}"}, part
    # The launcher is a worker with Kubernetes credentials: the worker's machinery plus the client layer.
    assert banned("launcher") >= others - {"sundial.core", "sundial.kube", "sundial.worker", "sundial.launcher"}
