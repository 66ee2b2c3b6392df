"""A Prometheus exporter in the test process, scraped by the local cluster's Prometheus.

Each test serves its own ``prometheus_client`` registry on loopback under a ``job`` label
unique to the test, added to the local Prometheus's scrape targets (scraped every 2s), so
its PromQL selects only its own series. ``query_prometheus`` and ``wait_scraped`` read what
Prometheus has.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import HTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

from tests.support.cluster import ClusterInfo, ScrapeTargets
from tests.support.operator import free_port
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Exporter:
    """A Prometheus exporter scraped under ``job``; tests register their metrics in ``registry``."""

    registry: CollectorRegistry
    job: str
    address: str


@contextmanager
def serve_exporter(scrape_targets: ScrapeTargets, job: str) -> Iterator[Exporter]:
    registry = CollectorRegistry()
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scrape_targets.add(job, f"127.0.0.1:{port}")
    try:
        yield Exporter(registry, job, f"127.0.0.1:{port}")
    finally:
        scrape_targets.remove(job)
        server.shutdown()
        server.server_close()


def query_prometheus(cluster: ClusterInfo, query: str) -> dict[str, Any]:
    """The whole /api/v1/query answer, errors (HTTP 400 with JSON) included."""
    url = f"{cluster.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
    return body


def wait_scraped(cluster: ClusterInfo, query: str, expected: float) -> None:
    """Until Prometheus answers ``query`` with one sample equal to ``expected``."""

    def probe() -> bool:
        result = query_prometheus(cluster, query)["data"]["result"]
        return len(result) == 1 and float(result[0]["value"][1]) == expected

    wait_until(probe, timeout=30, what=f"Prometheus: {query} == {expected}")
