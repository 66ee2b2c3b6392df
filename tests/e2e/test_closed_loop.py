"""The closed loop as a user runs it: `kubectl apply`, the operator as its own process, a real Prometheus.

train -> v1 served -> an exporter's drift metric crosses its bound -> the DriftPolicy
retrains -> v2 validated and rolled out -> the drift episode ends. The lineage is
checked at every step, the operator's own metrics are read back through Prometheus,
and the time to recover is measured and printed (a measurement, not an assertion).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import MetricsHandler

from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo, ScrapeTargets
from tests.support.operator import RunningOperator
from tests.support.resources import apply, condition, get_custom, wait_for_status
from tests.support.waiting import wait_until


class DriftGauge:
    """A one-gauge exporter the test controls, scraped by the local Prometheus."""

    def __init__(self, name: str, value: float) -> None:
        registry = CollectorRegistry()
        self.gauge = Gauge(name, "drift metric under test", registry=registry)
        self.gauge.set(value)
        self.server = HTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, value: float) -> None:
        self.gauge.set(value)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def drift_gauge(scrape_targets: ScrapeTargets, namespace: str) -> Iterator[DriftGauge]:
    exporter = DriftGauge("churn_feature_psi", 0.04)
    scrape_targets.add(f"drift-{namespace}", exporter.address)
    yield exporter
    scrape_targets.remove(f"drift-{namespace}")
    exporter.close()


@pytest.fixture
def operator_process(
    perennial_crds: ClusterInfo, namespace: str, tmp_path: Path, scrape_targets: ScrapeTargets
) -> Iterator[RunningOperator]:
    """`perennial run` in its own process; Prometheus scrapes its /metrics."""
    with operator_support.subprocess_operator(
        perennial_crds, [namespace], tmp_path / "operator.log", perennial_crds.prometheus_url
    ) as running:
        address = running.metrics_url.removeprefix("http://").removesuffix("/metrics")
        scrape_targets.add(f"operator-{namespace}", address)
        yield running
        scrape_targets.remove(f"operator-{namespace}")


def manifests(namespace: str, *, policy_cooldown: str, metric_for: str) -> str:
    return f"""
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: churn
spec:
  training:
    image: registry.example/churn-trainer:2.3.0
    dataset: {{uri: "s3://data/churn/2026-11-20/", version: "2026-11-20"}}
    output: {{modelUri: "s3://models/{{namespace}}/{{model}}/{{version}}"}}
    validation: [{{metric: auc, min: 0.9}}]
    podAnnotations:
      sim.perennial.dev/duration: 2s
      sim.perennial.dev/result: '{{"metrics": {{"auc": 0.934, "loss": 0.21}}}}'
  serving:
    image: registry.example/churn-server:1.9.0
    replicas: 2
  promotion:
    requireImprovement: {{metric: auc, minDelta: 0.0}}
  retraining:
    cooldown: 1s
---
apiVersion: perennial.dev/v1alpha1
kind: DriftPolicy
metadata:
  name: churn-drift
spec:
  targetRef: {{name: churn}}
  interval: 10s
  metrics:
    - name: feature_psi
      query: max(churn_feature_psi{{job="drift-{namespace}"}})
      max: 0.2
      for: {metric_for}
  trigger:
    cooldown: {policy_cooldown}
"""


def prometheus_value(cluster: ClusterInfo, query: str) -> float | None:
    url = f"{cluster.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def scraped(cluster: ClusterInfo, query: str, value: float) -> Callable[[], bool]:
    """A probe: Prometheus answers ``query`` with ``value``."""
    return lambda: prometheus_value(cluster, query) == value


def evaluated(value: float) -> Callable[[dict[str, Any]], bool]:
    """A DriftPolicy status predicate: its last evaluation saw ``value``."""

    def seen(status: dict[str, Any]) -> bool:
        return bool((status.get("metrics") or [{}])[0].get("value") == value)

    return seen


def training_jobs(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "perennial.dev", "v1alpha1", namespace, "trainingjobs"
    )["items"]
    return sorted(items, key=lambda t: int(t["spec"]["version"]))


def test_drift_retrains_and_the_new_version_serves(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    drift_gauge: DriftGauge,
    operator_process: RunningOperator,
    report_measurement: Callable[[str], None],
) -> None:
    apply(perennial_crds, namespace, manifests(namespace, policy_cooldown="1h", metric_for="10s"))

    # v1: trained, validated, served.
    served = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and s.get("phase") == "Serving",
        what="v1 serving",
    )
    assert condition(served, "Ready")["status"] == "True"
    (v1,) = served["versions"]
    assert (v1["state"], v1["trigger"]["reason"], v1["metrics"]["auc"]) == ("Serving", "Initial", 0.934)
    assert v1["modelUri"] == f"s3://models/{namespace}/churn/1"
    assert v1["dataset"] == {"uri": "s3://data/churn/2026-11-20/", "version": "2026-11-20"}
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment_status("churn", namespace)
    assert deployment.status.available_replicas == 2
    assert client.CoreV1Api(api_client).read_namespaced_service("churn", namespace).spec.ports[0].name == "http"
    wait_for_status(
        api_client,
        namespace,
        "driftpolicies",
        "churn-drift",
        lambda s: (s.get("metrics") or [{}])[0].get("value") == 0.04,
        what="the policy sees 0.04",
    )

    # Drift: the metric leaves its bound and stays out for `for`.
    drift_gauge.set(0.31)
    onset = time.monotonic()
    policy = wait_for_status(
        api_client,
        namespace,
        "driftpolicies",
        "churn-drift",
        lambda s: s.get("triggerCount") == 1,
        what="the drift trigger",
        timeout=120,
    )
    detected = time.monotonic()
    assert condition(policy, "Drifting")["status"] == "True"
    assert policy["lastTrainingJob"] == "churn-v2"
    assert policy["metrics"][0]["breached"] is True
    trigger = get_custom(api_client, namespace, "trainingjobs", "churn-v2")["spec"]["trigger"]
    assert trigger == {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"}

    # v2: trained, validated, promoted against v1, rolled out; v1 retired.
    model = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "2" and s.get("phase") == "Serving",
        what="v2 serving",
        timeout=120,
    )
    recovered = time.monotonic()
    states = {r["version"]: r["state"] for r in model["versions"]}
    assert states == {"1": "Retired", "2": "Serving"}
    v2 = next(r for r in model["versions"] if r["version"] == "2")
    assert v2["decision"] == {
        "result": "Promoted",
        "reason": "auc 0.934 >= champion 0.934 + minDelta 0"
        " (champion's number from its own run: no champion_auc reported)",
        "comparedTo": "1",
    }
    assert model["lastRetrain"]["reason"] == "Drift"
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment("churn", namespace)
    assert deployment.spec.template.metadata.labels["perennial.dev/version"] == "2"

    # The episode ends.
    drift_gauge.set(0.05)
    wait_for_status(
        api_client,
        namespace,
        "driftpolicies",
        "churn-drift",
        lambda s: condition(s, "Drifting")["status"] == "False" if s.get("conditions") else False,
        what="the drift episode over",
        timeout=60,
    )
    assert [t["metadata"]["name"] for t in training_jobs(api_client, namespace)] == ["churn-v1", "churn-v2"]

    # What the operator reported, read back through the real Prometheus.
    selector = f'namespace="{namespace}",model="churn",version="2"'
    assert wait_until(
        lambda: prometheus_value(perennial_crds, f"perennial_model_info{{{selector}}}") == 1.0,
        timeout=60,
        what="perennial_model_info for v2 in Prometheus",
    )
    triggered = prometheus_value(perennial_crds, 'perennial_retrains_triggered_total{reason="Drift"}')
    assert triggered is not None
    assert triggered >= 1
    report_measurement(
        f"time to recover: {recovered - onset:.1f}s from drift onset to v2 serving "
        f"(detection {detected - onset:.1f}s: interval 10s + for 10s; training, promotion and rollout "
        f"{recovered - detected:.1f}s)"
    )


def test_a_flapping_metric_retrains_no_more_than_its_cooldown_allows(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    drift_gauge: DriftGauge,
    operator_process: RunningOperator,
) -> None:
    apply(perennial_crds, namespace, manifests(namespace, policy_cooldown="40s", metric_for="0s"))
    wait_for_status(
        api_client, namespace, "modeldeployments", "churn", lambda s: s.get("servingVersion") == "1", what="v1 serving"
    )
    # Flap around the bound (0.2): each value holds until one evaluation has seen it
    # (about 10s each: the interval), six flips, about a minute.
    query = f'max(churn_feature_psi{{job="drift-{namespace}"}})'
    for flip in range(6):
        value = 0.31 if flip % 2 == 0 else 0.1
        drift_gauge.set(value)
        wait_until(scraped(perennial_crds, query, value), timeout=30, what=f"Prometheus scraped {value}")
        wait_for_status(
            api_client,
            namespace,
            "driftpolicies",
            "churn-drift",
            evaluated(value),
            what=f"an evaluation saw {value}",
            timeout=60,
        )
    drift_retrains = [t for t in training_jobs(api_client, namespace) if t["spec"]["trigger"]["reason"] == "Drift"]
    # ~60s of flapping with a 40s cooldown: the first breach fires, then at most one more.
    assert 1 <= len(drift_retrains) <= 2, [t["metadata"]["name"] for t in drift_retrains]
    policy = get_custom(api_client, namespace, "driftpolicies", "churn-drift")["status"]
    assert policy["triggerCount"] == len(drift_retrains)
