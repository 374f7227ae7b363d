"""The local services refuse shapes they cannot start, before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sundial.devstack.services import RedisClusterSet, ServiceError


@pytest.mark.parametrize("primaries", [0, 1, 2])
def test_a_cluster_of_fewer_than_three_primaries_is_refused_by_name(tmp_path: Path, primaries: int) -> None:
    with pytest.raises(ServiceError, match=f"at least 3 primaries, not {primaries}"):
        RedisClusterSet(tmp_path, primaries=primaries)
