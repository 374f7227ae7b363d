"""Which build of Sundial is running, for `--version` and the `sundial_build_info` series."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def sundial_version() -> str:
    try:
        return version("sundial")
    except PackageNotFoundError:
        # Run from a source tree that was never installed.
        return "0.0.0+unknown"
