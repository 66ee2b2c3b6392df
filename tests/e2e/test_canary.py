"""Canary rollouts end to end: plain Deployments, a real Prometheus, status-only progress.

Each test runs an exporter in the test process (tests/support/exporter.py) that plays the
model servers' online metrics: a gauge ``canary_error_ratio{model, version}`` the test sets
per version, scraped by the local Prometheus every 2s. The model serves 4 replicas; version 1
is trained first, then a manual retrain trains version 2, which the strategy rolls out as a
canary. A watch on the namespace's Deployments records everything the operator made them
(``DeploymentLog``), so the claims cover the whole canary, not a few samples of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from prometheus_client import Gauge

from tests.e2e.test_printer_columns import table
from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo, ScrapeTargets
from tests.support.exporter import Exporter, serve_exporter, wait_scraped
from tests.support.gateway_api import install_httproute_crd
from tests.support.resources import (
    GROUP,
    VERSION,
    apply,
    condition,
    events_for,
    get_custom,
    request_retrain,
    simulated_model,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

MODEL = "churn"
CANARY = f"{MODEL}-canary"
REPLICAS = 4


# ---------------------------------------------------------------- the online metrics
@dataclass
class OnlineMetrics:
    exporter: Exporter
    errors: Gauge

    def set_error_ratio(self, version: str, value: float) -> None:
        self.errors.labels(model=MODEL, version=version).set(value)

    def query(self, version_placeholder: str = "{version}") -> str:
        return f'max(canary_error_ratio{{job="{self.exporter.job}",model="{{model}}",version="{version_placeholder}"}})'


@pytest.fixture
def online(namespace: str, scrape_targets: ScrapeTargets) -> Iterator[OnlineMetrics]:
    with serve_exporter(scrape_targets, f"canary-{namespace}") as exporter:
        gauge = Gauge(
            "canary_error_ratio", "Share of requests failed.", ["model", "version"], registry=exporter.registry
        )
        yield OnlineMetrics(exporter, gauge)


# ---------------------------------------------------------------- what the Deployments went through
@dataclass
class DeploymentLog:
    """Every state of the model's two Deployments seen by a watch, in order."""

    states: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(name, template version, spec.replicas, status.availableReplicas) per event."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def canary_replicas(self) -> list[int]:
        with self.lock:
            return [replicas for name, _, replicas, _ in self.states if name == CANARY]

    def serving_versions(self) -> set[str]:
        with self.lock:
            return {version for name, version, _, _ in self.states if name == MODEL}

    def fewest_available(self) -> int:
        """The fewest available serving pods (both Deployments) at any moment after version 1 served."""
        latest: dict[str, int] = {}
        fewest: int | None = None
        with self.lock:
            for name, _, _, available in self.states:
                latest[name] = available
                total = sum(latest.values())
                if latest.get(MODEL, 0) >= REPLICAS or fewest is not None:
                    fewest = total if fewest is None else min(fewest, total)
        return fewest or 0


@contextmanager
def watching(list_function: Callable[..., Any], args: tuple[Any, ...], seen: Callable[[Any], None]) -> Iterator[None]:
    """Follow a watch of ``list_function(*args)`` in a thread, handing each object to ``seen``."""
    stop = threading.Event()
    stream = watch.Watch()

    def follow() -> None:
        while not stop.is_set():
            for event in stream.stream(list_function, *args, timeout_seconds=5):
                seen(event["object"])
                if stop.is_set():
                    break

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        stream.stop()
        thread.join(timeout=10)


@pytest.fixture
def deployment_log(api_client: client.ApiClient, namespace: str) -> Iterator[DeploymentLog]:
    log = DeploymentLog()

    def seen(body: Any) -> None:
        labels = body.spec.template.metadata.labels or {}
        state = (
            body.metadata.name,
            labels.get("perennial.dev/version", ""),
            body.spec.replicas or 0,
            body.status.available_replicas or 0,
        )
        with log.lock:
            log.states.append(state)

    with watching(client.AppsV1Api(api_client).list_namespaced_deployment, (namespace,), seen):
        yield log


@pytest.fixture
def readiness(api_client: client.ApiClient, namespace: str) -> Iterator[list[tuple[str, str, str]]]:
    """(servingVersion, Ready's status, its reason and message) of every ModelDeployment status the API server held."""
    seen_states: list[tuple[str, str, str]] = []

    def seen(body: Any) -> None:
        status = body.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        if status.get("servingVersion") and ready:
            seen_states.append(
                (status["servingVersion"], ready[0]["status"], f"{ready[0]['reason']}: {ready[0]['message']}")
            )

    args = (GROUP, VERSION, namespace, "modeldeployments")
    with watching(client.CustomObjectsApi(api_client).list_namespaced_custom_object, args, seen):
        yield seen_states


# ---------------------------------------------------------------- the model
def canary_model(
    metrics: list[dict[str, Any]] | None,
    *,
    steps: list[dict[str, Any]],
    progress_deadline: str = "60s",
) -> dict[str, Any]:
    model = simulated_model(MODEL, cooldown="1s")
    model["spec"]["serving"]["replicas"] = REPLICAS
    rollout: dict[str, Any] = {"strategy": "Canary", "steps": steps, "progressDeadline": progress_deadline}
    if metrics is not None:
        rollout["analysis"] = {"interval": "5s", "metrics": metrics}
    model["spec"]["rollout"] = rollout
    return model


def status_of(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return dict(get_custom(api, namespace, "modeldeployments", MODEL).get("status") or {})


def wait_status(
    api: client.ApiClient, namespace: str, what: str, predicate: Any, timeout: float = 90
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = status_of(api, namespace)
        return status if predicate(status) else None

    return wait_until(probe, timeout=timeout, what=f"{MODEL}: {what}")


def condition_reason(status: dict[str, Any], type_: str) -> str | None:
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    return str(found[0]["reason"]) if found else None


def serving(version: str) -> Any:
    def predicate(status: dict[str, Any]) -> bool:
        ready = condition_reason(status, "Ready") == "Serving"
        return status.get("servingVersion") == version and not status.get("rollout") and ready

    return predicate


def record(status: dict[str, Any], version: str) -> dict[str, Any]:
    (found,) = [r for r in status.get("versions") or [] if r["version"] == version]
    return dict(found)


def at_step(step: int, *, paused: bool = False) -> Any:
    def predicate(status: dict[str, Any]) -> bool:
        rollout = status.get("rollout") or {}
        return (
            rollout.get("stage") == "Step"
            and rollout.get("step") == step
            and (not paused or bool(rollout.get("pauseStartedAt")))
        )

    return predicate


def no_diff(cluster: ClusterInfo, namespace: str, manifest: dict[str, Any]) -> None:
    """`kubectl diff` of the applied manifest finds nothing: the operator changed status only."""
    result = cluster.kubectl_run("diff", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
    assert result.returncode == 0, (
        f"kubectl diff found changes (rc {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def deployment_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def serve_v1(cluster: ClusterInfo, api: client.ApiClient, namespace: str, model: dict[str, Any]) -> None:
    apply(cluster, namespace, model)
    wait_status(api, namespace, "version 1 serves on every replica", serving("1"))
    wait_until(
        lambda: (
            (client.AppsV1Api(api).read_namespaced_deployment(MODEL, namespace).status.available_replicas or 0)
            >= REPLICAS
        ),
        timeout=60,
        what="4 available replicas of version 1",
    )


def rollbacks(running: operator_support.RunningOperator, reason: str) -> float:
    for line in running.metrics_text().splitlines():
        if line.startswith(f'perennial_rollbacks_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


# ---------------------------------------------------------------- the tests
@pytest.mark.usefixtures("operator_in_process")
def test_a_canary_that_passes_every_step_ends_serving_with_only_status_changed(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    online: OnlineMetrics,
    deployment_log: DeploymentLog,
    readiness: list[tuple[str, str, str]],
) -> None:
    online.set_error_ratio("1", 0.01)
    online.set_error_ratio("2", 0.012)
    wait_scraped(perennial_crds, online.query("2").replace("{model}", MODEL), 0.012)
    metrics = [
        {"name": "error_ratio", "query": online.query(), "max": 0.05},
        # The canary against the stable version, both from the same exporter.
        {"name": "worse_than_stable", "query": f"{online.query()} - {online.query('{stableVersion}')}", "max": 0.01},
    ]
    model = canary_model(metrics, steps=[{"weight": 25, "pause": "6s"}, {"weight": 50, "pause": "6s"}])
    serve_v1(perennial_crds, api_client, namespace, model)
    no_diff(perennial_crds, namespace, model)

    request_retrain(perennial_crds, namespace, MODEL, "canary-passes")
    annotated = {
        **model,
        "metadata": {**model["metadata"], "annotations": {"perennial.dev/retrain-request": "canary-passes"}},
    }
    step1 = wait_status(api_client, namespace, "canary step 1 paused", at_step(1, paused=True))
    assert (step1["rollout"]["weight"], step1["rollout"]["canaryReplicas"]) == (25, 1)
    assert step1["rollout"]["steps"] == 2
    assert condition(step1, "Ready")["status"] == "True"
    assert step1["servingVersion"] == "1"
    no_diff(perennial_crds, namespace, annotated)

    step2 = wait_status(api_client, namespace, "canary step 2 paused", at_step(2, paused=True), timeout=60)
    assert (step2["rollout"]["weight"], step2["rollout"]["canaryReplicas"]) == (50, 2)
    assert {m["name"]: m.get("value") for m in step2["rollout"].get("analysis") or []} in (
        {},
        {"error_ratio": 0.012, "worse_than_stable": pytest.approx(0.002)},
    )
    no_diff(perennial_crds, namespace, annotated)

    final = wait_status(api_client, namespace, "version 2 serves", serving("2"), timeout=90)
    assert record(final, "2")["state"] == "Serving"
    assert record(final, "1")["state"] == "Retired"
    assert condition(final, "Degraded")["reason"] == "RolloutSucceeded"
    no_diff(perennial_crds, namespace, annotated)
    wait_until(lambda: not deployment_exists(api_client, namespace, CANARY), timeout=30, what="the canary removed")
    serving_deployment = client.AppsV1Api(api_client).read_namespaced_deployment(MODEL, namespace)
    assert serving_deployment.spec.template.metadata.labels["perennial.dev/version"] == "2"
    assert serving_deployment.spec.replicas == REPLICAS
    assert readiness, "the watch saw the ModelDeployment serve"
    assert [state for state in readiness if state[1] != "True"] == []

    assert sorted(set(deployment_log.canary_replicas())) == [1, 2]
    assert deployment_log.fewest_available() >= REPLICAS, deployment_log.states
    reasons = [reason for _, reason, _ in events_for(api_client, namespace, MODEL, "ModelDeployment")]
    assert reasons.count("CanaryStep") >= 2
    assert "CanaryPassed" in reasons
    assert "RolloutSucceeded" in reasons


def test_a_canary_whose_error_rate_breaches_at_the_first_step_is_aborted_and_the_stable_version_untouched(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    online: OnlineMetrics,
    deployment_log: DeploymentLog,
    readiness: list[tuple[str, str, str]],
    operator_in_process: operator_support.RunningOperator,
) -> None:
    online.set_error_ratio("1", 0.01)
    online.set_error_ratio("2", 0.2)
    wait_scraped(perennial_crds, online.query("2").replace("{model}", MODEL), 0.2)
    model = canary_model(
        [{"name": "error_ratio", "query": online.query(), "max": 0.05}],
        steps=[{"weight": 25, "pause": "30s"}, {"weight": 75, "pause": "30s"}],
    )
    serve_v1(perennial_crds, api_client, namespace, model)
    before = rollbacks(operator_in_process, "AnalysisFailed")

    request_retrain(perennial_crds, namespace, MODEL, "canary-breaches")
    aborted = wait_status(
        api_client, namespace, "version 2 rolled back", lambda s: record_state(s, "2") == "RolledBack", timeout=90
    )
    rollback = record(aborted, "2")["rollback"]
    assert rollback["reason"] == "AnalysisFailed"
    assert "error_ratio=0.2 > max 0.05" in rollback["message"]
    assert rollback["analysis"][0]["value"] == 0.2
    assert "rollout" not in aborted
    assert aborted["servingVersion"] == "1"
    assert condition(aborted, "Degraded")["reason"] == "AnalysisFailed"
    assert condition(aborted, "Ready")["status"] == "True", condition(aborted, "Ready")
    annotated = {
        **model,
        "metadata": {**model["metadata"], "annotations": {"perennial.dev/retrain-request": "canary-breaches"}},
    }
    no_diff(perennial_crds, namespace, annotated)

    wait_until(lambda: not deployment_exists(api_client, namespace, CANARY), timeout=30, what="the canary removed")
    wait_until(
        lambda: client.AppsV1Api(api_client).read_namespaced_deployment(MODEL, namespace).spec.replicas == REPLICAS,
        timeout=30,
        what="the stable version back at full size",
    )
    assert deployment_log.serving_versions() == {"1"}, "the serving Deployment never ran version 2"
    assert max(deployment_log.canary_replicas()) == 1, "never more than the first step's share (25% of 4)"
    assert rollbacks(operator_in_process, "AnalysisFailed") == before + 1
    wait_status(api_client, namespace, "the stable version available again", serving("1"), timeout=30)
    assert [state for state in readiness if state[1] != "True"] == []
    warnings = [(kind, reason) for kind, reason, _ in events_for(api_client, namespace, MODEL, "ModelDeployment")]
    assert ("Warning", "AnalysisFailed") in warnings
    # Not retried: no version 3, and version 2 stays RolledBack.
    assert status_of(api_client, namespace)["latestVersion"] == "2"


def record_state(status: dict[str, Any], version: str) -> str | None:
    found = [r for r in status.get("versions") or [] if r["version"] == version]
    return str(found[0].get("state")) if found else None


@pytest.mark.usefixtures("operator_in_process")
def test_no_analysis_data_holds_the_step_until_the_deadline_then_aborts(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, online: OnlineMetrics
) -> None:
    online.set_error_ratio("1", 0.01)  # version 2 never gets a series
    model = canary_model(
        [{"name": "error_ratio", "query": online.query(), "max": 0.05}],
        steps=[{"weight": 25, "pause": "5s"}],
        progress_deadline="20s",
    )
    serve_v1(perennial_crds, api_client, namespace, model)
    request_retrain(perennial_crds, namespace, MODEL, "no-data")

    held = wait_status(
        api_client,
        namespace,
        "the step held for want of data",
        lambda s: condition_reason(s, "Progressing") == "AnalysisInconclusive",
        timeout=60,
    )
    assert "error_ratio" in condition(held, "Progressing")["message"]
    assert held["rollout"]["step"] == 1
    assert condition(held, "Ready")["status"] == "True"

    aborted = wait_status(
        api_client, namespace, "version 2 rolled back", lambda s: record_state(s, "2") == "RolledBack", timeout=60
    )
    assert record(aborted, "2")["rollback"]["reason"] == "AnalysisNoData"
    assert condition(aborted, "Degraded")["reason"] == "AnalysisNoData"
    held_at = datetime.fromisoformat(held["rollout"]["pauseStartedAt"].replace("Z", "+00:00"))
    rolled_back_at = datetime.fromisoformat(record(aborted, "2")["rollback"]["time"].replace("Z", "+00:00"))
    assert (rolled_back_at - held_at).total_seconds() >= 5 + 20, "not before the pause plus progressDeadline"
    wait_until(lambda: not deployment_exists(api_client, namespace, CANARY), timeout=30, what="the canary removed")


@pytest.mark.usefixtures("operator_in_process")
def test_a_pin_cancels_a_canary_and_a_pinned_version_rolls_out_at_once(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, online: OnlineMetrics
) -> None:
    online.set_error_ratio("1", 0.01)
    online.set_error_ratio("2", 0.01)
    model = canary_model(
        [{"name": "error_ratio", "query": online.query(), "max": 0.05}],
        steps=[{"weight": 25, "pause": "10m"}],
    )
    serve_v1(perennial_crds, api_client, namespace, model)
    request_retrain(perennial_crds, namespace, MODEL, "pin")
    wait_status(api_client, namespace, "canary step 1 paused", at_step(1, paused=True))
    _, rows = table(perennial_crds, namespace, "modeldeployments", "-o", "wide")
    assert (rows[MODEL]["PHASE"], rows[MODEL]["STEP"], rows[MODEL]["CANARY"]) == ("Rolling", "1", "25")

    perennial_crds.kubectl_run(
        "patch", "-n", namespace, f"mdep/{MODEL}", "--type=merge", "-p", '{"spec": {"pinnedVersion": "1"}}'
    )
    cancelled = wait_status(api_client, namespace, "canary cancelled", lambda s: not s.get("rollout"), timeout=30)
    assert record(cancelled, "2")["state"] == "Candidate"
    assert cancelled["servingVersion"] == "1"
    wait_until(lambda: not deployment_exists(api_client, namespace, CANARY), timeout=30, what="the canary removed")

    # A pin is a person's decision: version 2 rolls out at once, no canary, no 10m pause.
    perennial_crds.kubectl_run(
        "patch", "-n", namespace, f"mdep/{MODEL}", "--type=merge", "-p", '{"spec": {"pinnedVersion": "2"}}'
    )
    # The rollout may be over between two reads (kwok's pods are ready at once): every status
    # seen on the way is checked, not one that must be caught in flight.
    seen: list[dict[str, Any]] = []

    def serves_v2(status: dict[str, Any]) -> bool:
        seen.append(status)
        return bool(serving("2")(status))

    wait_status(api_client, namespace, "version 2 serves", serves_v2, timeout=60)
    rollouts = [status["rollout"] for status in seen if status.get("rollout")]
    assert all(r.get("strategy") is None and r.get("step") is None for r in rollouts), rollouts
    assert not deployment_exists(api_client, namespace, CANARY)


def test_an_operator_restart_mid_step_resumes_the_pause_without_restarting_or_skipping_it(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, online: OnlineMetrics, tmp_path: Path
) -> None:
    online.set_error_ratio("1", 0.01)
    online.set_error_ratio("2", 0.01)
    pause = 25
    model = canary_model(
        [{"name": "error_ratio", "query": online.query(), "max": 0.05}],
        steps=[{"weight": 25, "pause": f"{pause}s"}, {"weight": 50, "pause": "5s"}],
    )
    url = perennial_crds.prometheus_url
    with operator_support.in_process(perennial_crds, [namespace], url):
        serve_v1(perennial_crds, api_client, namespace, model)
        request_retrain(perennial_crds, namespace, MODEL, "restart")
        first = wait_status(api_client, namespace, "canary step 1 paused", at_step(1, paused=True))
    paused_at = first["rollout"]["pauseStartedAt"]
    stopped = time.monotonic()

    with operator_support.in_process(perennial_crds, [namespace], url):
        restarted = time.monotonic()
        resumed = status_of(api_client, namespace)
        assert resumed["rollout"]["step"] == 1
        assert resumed["rollout"]["pauseStartedAt"] == paused_at
        second = wait_status(api_client, namespace, "canary step 2", at_step(2), timeout=90)
        wait_status(api_client, namespace, "version 2 serves", serving("2"), timeout=90)

    pause_started = datetime.fromisoformat(paused_at.replace("Z", "+00:00"))
    step2_started = datetime.fromisoformat(second["rollout"]["stepStartedAt"].replace("Z", "+00:00"))
    waited = (step2_started - pause_started).total_seconds()
    assert waited >= pause, f"step 1 lasted {waited:.0f}s: its {pause}s pause was cut short"
    downtime = restarted - stopped
    assert waited < pause + downtime + 15, f"step 1 lasted {waited:.0f}s: its pause started again after the restart"


# ---------------------------------------------------------------- traffic by an HTTPRoute
ROUTE = "churn-route"


def http_route(namespace: str) -> dict[str, Any]:
    """A route a user wrote: a match and a filter the operator must leave alone, and the two
    backends whose weights it sets (here, 100/0 as a user would start)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "edge"}],  # no gateway runs here: only the weights are checked
            "hostnames": ["churn.example"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-model", "value": "churn"}]},
                        }
                    ],
                    "backendRefs": [
                        {"name": f"{MODEL}-stable", "port": 8080, "weight": 100},
                        {"name": f"{MODEL}-canary", "port": 8080, "weight": 0},
                    ],
                }
            ],
        },
    }


def route_weights(api: client.ApiClient, namespace: str) -> tuple[int, int]:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", ROUTE
    )
    stable, canary_ref = route["spec"]["rules"][0]["backendRefs"]
    return int(stable.get("weight", 1)), int(canary_ref.get("weight", 1))


@pytest.mark.usefixtures("operator_in_process")
def test_with_an_http_route_the_operator_sets_only_the_weights_and_the_stable_version_keeps_every_replica(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    online: OnlineMetrics,
    deployment_log: DeploymentLog,
) -> None:
    install_httproute_crd(perennial_crds)
    apply(perennial_crds, namespace, http_route(namespace))
    online.set_error_ratio("1", 0.01)
    online.set_error_ratio("2", 0.01)
    model = canary_model(
        [{"name": "error_ratio", "query": online.query(), "max": 0.05}],
        steps=[{"weight": 20, "pause": "5s"}, {"weight": 60, "pause": "5s"}],
    )
    model["spec"]["rollout"]["canary"] = {"httpRoute": ROUTE}
    serve_v1(perennial_crds, api_client, namespace, model)
    assert route_weights(api_client, namespace) == (100, 0)
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_service(f"{MODEL}-stable", namespace).spec.selector["perennial.dev/track"] == "stable"
    assert core.read_namespaced_service(f"{MODEL}-canary", namespace).spec.selector["perennial.dev/track"] == "canary"

    seen: list[tuple[int, int]] = []

    def weights_become(expected: tuple[int, int]) -> bool:
        weights = route_weights(api_client, namespace)
        if not seen or seen[-1] != weights:
            seen.append(weights)
        return weights == expected

    request_retrain(perennial_crds, namespace, MODEL, "routed")
    wait_until(lambda: weights_become((80, 20)), timeout=60, what="the route at step 1's weights")
    step1 = wait_status(api_client, namespace, "canary step 1 paused", at_step(1, paused=True))
    assert (step1["rollout"]["canaryReplicas"], step1["rollout"]["stableReplicas"]) == (1, REPLICAS)
    wait_until(lambda: weights_become((40, 60)), timeout=60, what="the route at step 2's weights")
    wait_status(api_client, namespace, "version 2 serves", serving("2"), timeout=90)
    wait_until(lambda: weights_become((100, 0)), timeout=30, what="all traffic to the stable Service")
    assert seen[-3:] == [(80, 20), (40, 60), (100, 0)], seen
    assert set(seen) == {(100, 0), (80, 20), (40, 60)}, f"no other weights: {seen}"

    route = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", ROUTE
    )
    written = http_route(namespace)["spec"]
    assert route["spec"]["hostnames"] == written["hostnames"]
    assert route["spec"]["rules"][0]["matches"] == written["rules"][0]["matches"]
    assert route["spec"]["rules"][0]["filters"] == written["rules"][0]["filters"]
    # The stable version kept every replica: the route, not the replica share, moved traffic.
    assert min(replicas for name, _, replicas, _ in deployment_log.states if name == MODEL) == REPLICAS
    assert sorted(set(deployment_log.canary_replicas())) == [1, 2]
    serving_pods = f"perennial.dev/model={MODEL},perennial.dev/version=2,!perennial.dev/training-job"
    pods = core.list_namespaced_pod(namespace, label_selector=serving_pods)
    tracks = {p.metadata.labels.get("perennial.dev/track") for p in pods.items if not p.metadata.deletion_timestamp}
    assert tracks == {"stable"}, "version 2 serves from the stable Deployment, its pods labelled for the stable Service"
