"""The operator's own Prometheus registry and the metrics every controller shares.

One registry, not the process-global default, so tests that run several operators in
one process never collide and /metrics shows exactly what Perennial exports.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Gauge, GCCollector, PlatformCollector, ProcessCollector

from perennial import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "perennial_build_info",
    "Always 1; the labels say which build of the operator is running.",
    ["version", "python_version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)
