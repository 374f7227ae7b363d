"""What every Sundial process exports whatever its part.

prometheus-client adds a `_created` series beside every counter and histogram label set; the
rules and dashboards never read them, and with a series per ScheduledJob they double what
Prometheus stores, so they are turned off before any metric is defined.
"""

from __future__ import annotations

import platform
from typing import Final

from prometheus_client import Gauge, disable_created_metrics

from sundial.core.build import sundial_version

disable_created_metrics()  # type: ignore[no-untyped-call]

# The per-job label, named as kube-state-metrics names its CronJob one (`cronjob`): `job` is
# the label Prometheus itself gives every scrape target.
JOB_LABELS: Final = ("namespace", "scheduledjob")

BUILD_INFO = Gauge(
    "sundial_build_info", "Always 1; the labels say which build of which part is running.",
    ["version", "component", "python_version"],
)


def export_build_info(component: str) -> None:
    BUILD_INFO.labels(sundial_version(), component, platform.python_version()).set(1)
