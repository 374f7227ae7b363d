"""`Observations` adds to a histogram exactly what as many `observe` calls would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from sundial.worker.metrics import LATENESS_BUCKETS, Observations


def _histogram() -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("lateness_seconds", "Lateness.", buckets=LATENESS_BUCKETS, registry=registry), registry


@pytest.mark.parametrize("values", [
    [],
    [0.3] * 500,  # a batch fired at once
    [0.005, 0.0051, 0.01],  # on a bucket's bound, and just past it
    [-0.4, -0.4, 0.0],  # fired ahead of the slot
    [301.0, 1e9, 0.25, 0.3, 0.3],  # past the last bound: +Inf
])
def test_observations_add_what_observing_each_value_adds(values: list[float]) -> None:
    observed, observed_registry = _histogram()
    gathered, gathered_registry = _histogram()
    observations = Observations(gathered)
    for value in values:
        observed.observe(value)
        observations.add(value)
    observations.flush()
    observations.flush()  # nothing twice
    for bound in [*(str(float(bound)) for bound in LATENESS_BUCKETS), "+Inf"]:
        labels = {"le": bound}
        expected = observed_registry.get_sample_value("lateness_seconds_bucket", labels)
        assert expected is not None, labels
        assert gathered_registry.get_sample_value("lateness_seconds_bucket", labels) == expected, bound
    assert gathered_registry.get_sample_value("lateness_seconds_count") == len(values)
    # One multiplication, not many additions: equal but for the last bits.
    assert (gathered_registry.get_sample_value("lateness_seconds_sum")
            == pytest.approx(observed_registry.get_sample_value("lateness_seconds_sum"), rel=1e-12, abs=1e-12))
