"""Fixtures for tests against the local Kubernetes control plane (etcd + kube-apiserver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sundial.devstack.controlplane import ControlPlane, ControlPlaneError, controlplane_bin_dir


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """One control plane for the whole session.

    Never skips: when the binaries cannot be built or the server does not come up, every
    test that uses it fails with the reason (locally and in CI alike).
    """
    try:
        bin_dir = controlplane_bin_dir()
    except ControlPlaneError as exc:
        error = (
            "cannot build the local control plane binaries (tools/controlplane/build.sh; set "
            f"SUNDIAL_CONTROLPLANE_BIN or KUBEBUILDER_ASSETS to use prebuilt ones):\n{exc}"
        )
    else:
        plane = ControlPlane(bin_dir=bin_dir)
        try:
            plane.start()
        except ControlPlaneError as exc:
            error = f"cannot start the local control plane:\n{exc}"
        else:
            try:
                yield plane
            finally:
                plane.stop()
            return
    pytest.fail(error, pytrace=False)  # outside `except`: no chained traceback noise
