"""What ships beside the code: the licence, and the pinned versions every install uses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    # PEP 503 normalisation, so `psycopg[binary]>=3.2` and `psycopg==3.2.9` meet.
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_licence_is_the_apache_2_text_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_constraints_pin_every_dependency_and_never_sundial() -> None:
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pinned = {}
    for line in lines:
        name, _, version = line.partition("==")
        assert version, f"constraints.txt pins exact versions only: {line!r}"
        pinned[_name(name)] = version
    assert "sundial" not in pinned
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(req) for req in [*project["dependencies"], *project["optional-dependencies"]["dev"]]}
    assert wanted - set(pinned) == set(), "run `make constraints` after adding a dependency"


def test_make_setup_and_the_image_install_from_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in makefile
    assert "$(STAMP): pyproject.toml constraints.txt" in makefile
    assert "-c constraints.txt" in (ROOT / "Dockerfile").read_text()
