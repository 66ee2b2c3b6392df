"""DriftPolicy end to end: metrics in a real Prometheus decide when a ModelDeployment retrains.

Each test runs a prometheus_client exporter in the test process on loopback, with its own
registry and a ``job`` label unique to the test, and adds it to the local Prometheus's
scrape targets (scraped every 2s); the policies' PromQL selects only that job's series.
The in-process operator queries that Prometheus (PERENNIAL_PROMETHEUS_URL). Policies use
the minimum interval, 10s, so every wait is bounded by a few evaluations.

A Prometheus impostor (aiohttp, on loopback, in a thread of its own) plays a hostile
endpoint: it answers by the query's text (NaN, the infinities, a body over the cap, 500
series, no answer at all). The operator may query it, the real Prometheus and a port
nobody listens on (PERENNIAL_PROMETHEUS_ALLOWED_URLS, set before the operator starts); a
second impostor, the bystander, is not allowed and must never be asked anything.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client
from prometheus_client import Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from perennial.controllers.driftpolicy import DriftPolicyController
from perennial.domain import drift
from tests.support.cluster import ClusterInfo, ScrapeTargets
from tests.support.exporter import Exporter, serve_exporter, wait_scraped
from tests.support.exporter import query_prometheus as prometheus
from tests.support.operator import RunningOperator, free_port
from tests.support.resources import (
    GROUP,
    VERSION,
    apply,
    condition,
    events_for,
    get_custom,
    request_retrain,
    simulated_model,
    wait_for_status,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.usefixtures("operator_in_process"), pytest.mark.timeout(180)]

TARGET = "churn"
POLICY = "churn-drift"
INTERVAL = 10.0  # seconds: the minimum a DriftPolicy accepts, used by every policy here
HEALTHY, DRIFTED = 0.05, 0.31
HISTOGRAM_BUCKETS = (1.0, 2.0, 5.0, 10.0)


# ---------------------------------------------------------------- the exporter
@pytest.fixture
def exporter(namespace: str, scrape_targets: ScrapeTargets) -> Iterator[Exporter]:
    with serve_exporter(scrape_targets, f"drift-{namespace}") as served:
        yield served


def feature_psi(exporter: Exporter, value: float) -> Gauge:
    gauge = Gauge("churn_feature_psi", "PSI of the churn model's input features.", registry=exporter.registry)
    gauge.set(value)
    return gauge


def psi_query(exporter: Exporter) -> str:
    return f'max(churn_feature_psi{{job="{exporter.job}"}})'


# ---------------------------------------------------------------- a hostile Prometheus
MAX_RESPONSE_BYTES = 64 * 1024  # the operator's cap in these tests (PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES)
MAX_TIMEOUT = "5m"  # the operator's cap on one request (PERENNIAL_PROMETHEUS_MAX_TIMEOUT), unless a test lowers it


def impostor_vector(*values: str, labels: Callable[[int], dict[str, str]] = lambda i: {}) -> dict[str, Any]:
    result = [{"metric": labels(i), "value": [1.7e9, value]} for i, value in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def impostor_buckets(*counts: str) -> dict[str, Any]:
    """Cumulative buckets for le 1, 2, 5, 10, +Inf."""
    les = [f"{bound:g}" for bound in HISTOGRAM_BUCKETS] + ["+Inf"]
    return impostor_vector(*counts, labels=lambda i: {"le": les[i]})


# What the impostor answers to each query (the query text is its instruction, not PromQL).
IMPOSTOR_ANSWERS: dict[str, dict[str, Any]] = {
    "answer_healthy": impostor_vector(str(HEALTHY)),
    "answer_plus_inf": impostor_vector("+Inf"),
    "answer_minus_inf": impostor_vector("-Inf"),
    "answer_nan": impostor_vector("NaN"),
    "answer_500_series": impostor_vector(*["0.31"] * 500, labels=lambda i: {"pod": f"p{i}"}),
    "answer_over_the_cap": impostor_vector("0.31", labels=lambda i: {"pad": "x" * (4 * MAX_RESPONSE_BYTES)}),
    "buckets_shifted": impostor_buckets("100", "300", "600", "850", "1000"),
    "buckets_nan_bucket": impostor_buckets("400", "NaN", "900", "980", "1000"),
}
HANG = "answer_never"  # and any query starting so (answer_never_3): each its own PromQL text


@dataclass
class Impostor:
    """An HTTP server on 127.0.0.1 that plays Prometheus by the query's text, in a thread of its own."""

    port: int = field(default_factory=free_port)
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(path, query) of every request, in order."""
    hanging: int = 0
    """Requests held open right now by ``answer_never``."""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._answer)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "")
        self.requests.append((request.path, query))
        if query.startswith(HANG):
            self.hanging += 1
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
        answer = IMPOSTOR_ANSWERS.get(query)
        if answer is None:
            return web.json_response({"status": "error", "errorType": "bad_data", "error": "unknown"}, status=400)
        return web.json_response(answer)


@dataclass(frozen=True)
class Endpoints:
    impostor: Impostor
    """On the allowlist."""
    bystander: Impostor
    """Not on the allowlist: it must never be asked."""
    nowhere: str
    """On the allowlist; nobody listens there."""


@pytest.fixture
def operator_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings a test adds to the operator's: ``parametrize("operator_env", [...], indirect=True)``."""
    added: dict[str, str] = getattr(request, "param", {})
    return added


@pytest.fixture(autouse=True)
def endpoints(
    cluster: ClusterInfo, monkeypatch: pytest.MonkeyPatch, operator_env: dict[str, str]
) -> Iterator[Endpoints]:
    """The impostors, and the operator's settings about them.

    Autouse, so it runs before ``operator_in_process`` starts the operator, which reads
    its settings from this process's environment.
    """
    impostor, bystander = Impostor(), Impostor()
    nowhere = f"http://127.0.0.1:{free_port()}"  # a loopback port nobody listens on
    settings = {
        "PERENNIAL_PROMETHEUS_ALLOWED_URLS": ",".join((cluster.prometheus_url, impostor.url, nowhere)),
        "PERENNIAL_PROMETHEUS_MAX_RESPONSE_BYTES": str(MAX_RESPONSE_BYTES),
        "PERENNIAL_PROMETHEUS_MAX_TIMEOUT": MAX_TIMEOUT,
        **operator_env,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    impostor.start()
    bystander.start()
    try:
        yield Endpoints(impostor, bystander, nowhere)
    finally:
        impostor.stop()
        bystander.stop()


# ---------------------------------------------------------------- Prometheus, read directly
# ---------------------------------------------------------------- manifests
def mdep() -> dict[str, Any]:
    """The target: trains in 1s to auc 0.93; its own cooldown (1s) never holds a retrain back."""
    return simulated_model(TARGET, cooldown="1s")


def dpol(metrics: list[dict[str, Any]], *, name: str = POLICY, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": TARGET}, "interval": f"{INTERVAL:g}s", "metrics": metrics, **spec},
    }


def psi_metric(exporter: Exporter, **bounds: Any) -> dict[str, Any]:
    return {"name": "feature_psi", "query": psi_query(exporter), "max": 0.2, **bounds}


# ---------------------------------------------------------------- reading state
def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """A condition, or {} (for predicates; ``condition`` asserts it exists)."""
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == type_), {})


def is_(status: dict[str, Any], type_: str, value: str, reason: str | None = None) -> bool:
    found = cond(status, type_)
    return found.get("status") == value and (reason is None or found.get("reason") == reason)


def metric0(status: dict[str, Any]) -> dict[str, Any]:
    return dict((status.get("metrics") or [{}])[0])


def evaluated_at(status: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(status["lastEvaluationTime"]).replace("Z", "+00:00"))


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def policy_status(api: client.ApiClient, namespace: str, name: str = POLICY) -> dict[str, Any]:
    status: dict[str, Any] = get_custom(api, namespace, "driftpolicies", name).get("status") or {}
    return status


def wait_policy(
    api: client.ApiClient,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 45,
    name: str = POLICY,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Poll the policy's status until ``predicate`` holds; every status read goes to ``seen``."""

    def observed(status: dict[str, Any]) -> bool:
        if seen is not None and status:
            seen.append(status)
        return predicate(status)

    return wait_for_status(api, namespace, "driftpolicies", name, observed, what=what, timeout=timeout)


def operator_sample(operator: RunningOperator, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


LAST_EVALUATION = "perennial_drift_policy_last_evaluation_timestamp_seconds"


def last_evaluation(operator: RunningOperator, namespace: str, name: str = POLICY) -> float:
    """When the operator last evaluated the policy (Unix seconds; 0 before its first evaluation).

    Status is written only when something changes (and with a heartbeat every 10 minutes),
    so the operator's gauge, not status.lastEvaluationTime, tells that an evaluation ran.
    """
    return operator_sample(operator, LAST_EVALUATION, {"namespace": namespace, "policy": name}) or 0.0


def evaluations_after(
    operator: RunningOperator,
    api: client.ApiClient,
    namespace: str,
    count: int,
    *,
    name: str = POLICY,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Wait until the operator evaluated the policy ``count`` more times from now; its status then.

    Evaluations of one policy are at least ``interval`` apart, so ``count`` more have run once
    its last-evaluation gauge moved ``count`` intervals. Every status read meanwhile goes to ``seen``.
    """
    start = wait_until(lambda: last_evaluation(operator, namespace, name), timeout=30, what=f"{name} evaluated")
    wait_policy(
        api,
        namespace,
        lambda _: last_evaluation(operator, namespace, name) >= start + count * INTERVAL,
        what=f"{count} more evaluation(s)",
        timeout=count * (INTERVAL * 1.1 + 2) + 15,
        name=name,
        seen=seen,
    )
    return policy_status(api, namespace, name)


def mdep_status(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = get_custom(api, namespace, "modeldeployments", TARGET).get("status") or {}
    return status


def served(version: str) -> Callable[[dict[str, Any]], bool]:
    def predicate(status: dict[str, Any]) -> bool:
        return (
            status.get("servingVersion") == version
            and status.get("phase") == "Serving"
            and not status.get("activeTrainingJob")
            and is_(status, "Ready", "True")
        )

    return predicate


def serve_v1(cluster: ClusterInfo, api: client.ApiClient, namespace: str) -> None:
    """Create the target and wait until version 1 serves: a retrain can start from then on."""
    apply(cluster, namespace, mdep())
    wait_for_status(api, namespace, "modeldeployments", TARGET, served("1"), what="v1 served", timeout=90)


def training_jobs(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")
    return {item["metadata"]["name"]: item for item in listed["items"]}


def policy_events(api: client.ApiClient, namespace: str, name: str = POLICY) -> list[tuple[str, str, str]]:
    return events_for(api, namespace, name, kind="DriftPolicy")


def wait_event(api: client.ApiClient, namespace: str, reason: str, name: str = POLICY) -> tuple[str, str, str]:
    def probe() -> tuple[str, str, str] | None:
        return next((e for e in policy_events(api, namespace, name) if e[1] == reason), None)

    return wait_until(probe, timeout=30, what=f"an Event {reason} on DriftPolicy {name}")


def breached_exactly_when_due(seen: Sequence[dict[str, Any]], value: float, hold: timedelta) -> None:
    """Every evaluation seen with ``value`` out of bounds is breached iff it was out for ``hold``."""
    for status in seen:
        entry = metric0(status)
        if entry.get("value") != value:
            continue
        assert entry.get("breachedSince"), f"out of bounds without breachedSince: {entry}"
        out_for = evaluated_at(status) - timestamp(entry["breachedSince"])
        assert entry["breached"] is (out_for >= hold), f"breached={entry['breached']} after {out_for}: {status}"


# ---------------------------------------------------------------- 1. a sustained breach retrains once
def test_value_out_of_bounds_for_its_duration_triggers_exactly_one_retrain(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    gauge = feature_psi(exporter, HEALTHY)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), HEALTHY)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter, **{"for": "15s"})]))

    healthy = wait_policy(
        api_client,
        namespace,
        lambda s: metric0(s).get("value") == HEALTHY and is_(s, "Ready", "True"),
        what="evaluated within bounds",
    )
    assert is_(healthy, "Drifting", "False", "WithinBounds"), healthy
    assert metric0(healthy) == {"name": "feature_psi", "value": HEALTHY, "max": 0.2, "breached": False}

    gauge.set(DRIFTED)
    seen: list[dict[str, Any]] = []
    first_out = wait_policy(
        api_client,
        namespace,
        lambda s: metric0(s).get("value") == DRIFTED,
        what=f"an evaluation reading {DRIFTED}",
        seen=seen,
    )
    # Out of bounds, but not for 15s yet: the clock runs, nothing is breached.
    assert metric0(first_out)["breached"] is False, first_out
    assert metric0(first_out)["breachedSince"], first_out
    assert is_(first_out, "Drifting", "False"), first_out
    assert not first_out.get("triggerCount")

    # Drifting asks the target in status.retrainRequest; the trigger is recorded once the
    # target answered in its status.driftRequests (a second or so later).
    drifting = wait_policy(
        api_client,
        namespace,
        lambda s: is_(s, "Drifting", "True") and s.get("triggerCount") == 1,
        what="Drifting, and the target's answer recorded",
        timeout=60,
        seen=seen,
    )
    breached_exactly_when_due(seen, DRIFTED, timedelta(seconds=15))
    entry = metric0(drifting)
    assert entry["breached"] is True
    assert entry["value"] == DRIFTED
    assert entry["breachedSince"] == metric0(first_out)["breachedSince"], "the breach clock restarted"
    assert timestamp(drifting["lastTriggerTime"]) - timestamp(entry["breachedSince"]) >= timedelta(seconds=15)
    assert drifting["triggerCount"] == 1
    assert drifting["lastTrainingJob"] == "churn-v2"
    assert cond(drifting, "Drifting")["reason"] == "MetricsBreached"
    assert is_(drifting, "Ready", "True"), drifting
    assert "retrainRequest" not in drifting, "an answered request is cleared"
    asked = [s["retrainRequest"] for s in seen if s.get("retrainRequest")]
    if asked:  # the request may have been answered between two polls
        assert asked[0]["id"] == drifting["lastTriggerTime"]
        assert asked[0]["detail"] == "feature_psi=0.31 > max 0.2"
    answers = mdep_status(api_client, namespace)["driftRequests"]
    assert [(a["policy"], a["id"], a["result"], a["trainingJob"]) for a in answers] == [
        (POLICY, drifting["lastTriggerTime"], "Started", "churn-v2")
    ]

    trigger = get_custom(api_client, namespace, "trainingjobs", "churn-v2")["spec"]["trigger"]
    assert trigger["reason"] == "Drift"
    assert trigger["source"] == POLICY
    assert "feature_psi" in trigger["detail"]
    assert "0.31" in trigger["detail"]
    assert "max 0.2" in trigger["detail"]
    last_retrain = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        TARGET,
        lambda s: (s.get("lastRetrain") or {}).get("reason") == "Drift",
        what="lastRetrain Drift",
        timeout=15,
    )["lastRetrain"]
    assert last_retrain["source"] == POLICY
    assert wait_event(api_client, namespace, "RetrainTriggered")[0] == "Normal"
    assert wait_event(api_client, namespace, "MetricBreached")[0] == "Warning"

    # Still breached at the next evaluation: no second retrain in this episode.
    later = evaluations_after(operator_in_process, api_client, namespace, 1)
    assert is_(later, "Drifting", "True")
    assert later["triggerCount"] == 1
    assert training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v2"}


# ---------------------------------------------------------------- 2. cooldown
def test_staying_breached_through_the_cooldown_triggers_no_second_retrain(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    feature_psi(exporter, DRIFTED)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), DRIFTED)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)], trigger={"cooldown": "1h"}))

    wait_policy(api_client, namespace, lambda s: s.get("triggerCount") == 1, what="the first trigger")
    # v2 is trained and served, and the target's own 1s cooldown is long over: from now on
    # only the policy's cooldown can hold a retrain back.
    wait_for_status(api_client, namespace, "modeldeployments", TARGET, served("2"), what="v2 served", timeout=60)
    seen: list[dict[str, Any]] = []
    final = evaluations_after(operator_in_process, api_client, namespace, 2, seen=seen)
    assert all(metric0(s)["breached"] is True for s in seen), "the gauge stayed high: every evaluation breaches"
    assert is_(final, "Drifting", "True"), final
    assert final["triggerCount"] == 1
    assert final["lastTrainingJob"] == "churn-v2"
    assert training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v2"}
    assert mdep_status(api_client, namespace)["latestVersion"] == "2"


# ---------------------------------------------------------------- 2b. status is written when something changes
def test_a_value_moving_within_its_bounds_writes_nothing_and_a_crossing_is_written_at_once(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    """Every evaluation sets the operator's gauges (the value, the evaluation time); the
    DriftPolicy itself (its resourceVersion) stays as the first evaluation wrote it while the
    value stays within [0, 0.2], and the evaluation that reads a value out of bounds writes it."""
    gauge = feature_psi(exporter, HEALTHY)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), HEALTHY)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)]))
    settled = wait_policy(
        api_client,
        namespace,
        lambda s: metric0(s).get("value") == HEALTHY and is_(s, "Ready", "True"),
        what="the first evaluation written",
    )
    version = get_custom(api_client, namespace, "driftpolicies", POLICY)["metadata"]["resourceVersion"]
    events = policy_events(api_client, namespace)
    first = last_evaluation(operator_in_process, namespace)
    value_series = {"namespace": namespace, "policy": POLICY, "metric": "feature_psi"}

    def read_by_an_evaluation(value: float) -> float:
        """Wait for an evaluation after now that read ``value``; its time."""
        after = last_evaluation(operator_in_process, namespace)
        return wait_until(
            lambda: (
                last_evaluation(operator_in_process, namespace) > after
                and operator_sample(operator_in_process, "perennial_drift_metric_value", value_series) == value
                and last_evaluation(operator_in_process, namespace)
            ),
            timeout=2 * INTERVAL * 1.1 + 10,
            what=f"an evaluation that read {value}",
        )

    # Steady, then moving within its bounds: one evaluation at least for each value.
    for value in (HEALTHY, 0.07, 0.11, 0.06):
        gauge.set(value)
        wait_scraped(perennial_crds, psi_query(exporter), value)
        latest = read_by_an_evaluation(value)
    assert latest - first >= 3 * INTERVAL, "evaluated all along"
    idle = get_custom(api_client, namespace, "driftpolicies", POLICY)
    assert idle["metadata"]["resourceVersion"] == version, "an evaluation that changed nothing wrote the policy"
    assert idle["status"] == settled
    assert policy_events(api_client, namespace) == events

    # Out of bounds: the evaluation that reads it writes it.
    gauge.set(DRIFTED)
    read_by_an_evaluation(DRIFTED)
    out = wait_policy(
        api_client, namespace, lambda s: metric0(s).get("value") == DRIFTED, what="the crossing written", timeout=5
    )
    crossed = last_evaluation(operator_in_process, namespace)
    assert 0 <= crossed - evaluated_at(out).timestamp() < 1, "written by the evaluation that read it"
    assert metric0(out)["breachedSince"] == out["lastEvaluationTime"]
    assert metric0(out)["breached"] is True


# ---------------------------------------------------------------- 3. recovery
def test_recovery_clears_drifting(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, exporter: Exporter
) -> None:
    gauge = feature_psi(exporter, DRIFTED)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), DRIFTED)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)]))
    wait_policy(
        api_client,
        namespace,
        lambda s: is_(s, "Drifting", "True") and s.get("triggerCount") == 1,
        what="Drifting after the first trigger",
    )

    gauge.set(HEALTHY)
    recovered = wait_policy(api_client, namespace, lambda s: is_(s, "Drifting", "False"), what="Drifting False")
    assert cond(recovered, "Drifting")["reason"] == "WithinBounds"
    assert metric0(recovered) == {"name": "feature_psi", "value": HEALTHY, "max": 0.2, "breached": False}
    assert is_(recovered, "Ready", "True")
    assert recovered["triggerCount"] == 1
    assert wait_event(api_client, namespace, "DriftRecovered")[0] == "Normal"


# ---------------------------------------------------------------- 4. Observe is a dry run
def test_observe_never_creates_a_training_job(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    feature_psi(exporter, DRIFTED)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), DRIFTED)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)], trigger={"action": "Observe"}))

    observed = wait_policy(api_client, namespace, lambda s: s.get("triggerCount") == 1, what="an observed trigger")
    assert is_(observed, "Drifting", "True"), observed
    assert observed["lastTriggerTime"]
    assert "lastTrainingJob" not in observed
    kind, _, message = wait_event(api_client, namespace, "WouldRetrain")
    assert kind == "Normal"
    assert TARGET in message
    assert "feature_psi" in message

    later = evaluations_after(operator_in_process, api_client, namespace, 1)
    assert later["triggerCount"] == 1
    assert training_jobs(api_client, namespace).keys() == {"churn-v1"}
    target = mdep_status(api_client, namespace)
    assert target["latestVersion"] == "1"
    assert target["lastRetrain"]["reason"] == "Initial"


# ---------------------------------------------------------------- 5. distribution tests
REFERENCE_COUNTS = (400, 300, 200, 80, 20)  # per bin: <=1, <=2, <=5, <=10, +Inf
SHIFTED_COUNTS = (100, 200, 300, 250, 150)
BIN_SAMPLES = (0.5, 1.5, 3.0, 7.0, 20.0)  # one value inside each bin


def observe(histogram: Histogram, counts: Sequence[int]) -> None:
    for value, count in zip(BIN_SAMPLES, counts, strict=True):
        for _ in range(count):
            histogram.observe(value)


def as_vector(counts: Sequence[int]) -> dict[str, Any]:
    """``counts`` as Prometheus answers ``sum by (le) (x_bucket)``: cumulative, one series per le."""
    les = [f"{bound:g}" for bound in HISTOGRAM_BUCKETS] + ["+Inf"]
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
    return {
        "resultType": "vector",
        "result": [{"metric": {"le": le}, "value": [0, str(total)]} for le, total in zip(les, cumulative, strict=True)],
    }


def tenure_histograms(exporter: Exporter, current: Sequence[int], reference: Sequence[int]) -> None:
    registry = exporter.registry
    observe(Histogram("churn_tenure", "Tenure now.", buckets=HISTOGRAM_BUCKETS, registry=registry), current)
    observe(Histogram("churn_tenure_reference", "Tenure.", buckets=HISTOGRAM_BUCKETS, registry=registry), reference)


def tenure_metric(exporter: Exporter, min_samples: int) -> dict[str, Any]:
    return {
        "name": "tenure_shift",
        "distribution": {
            "test": "psi",
            "current": f'sum by (le) (churn_tenure_bucket{{job="{exporter.job}"}})',
            "baseline": {"query": f'sum by (le) (churn_tenure_reference_bucket{{job="{exporter.job}"}})'},
            "minSamples": min_samples,
        },
        "max": 0.25,
    }


def wait_histograms_scraped(cluster: ClusterInfo, exporter: Exporter, current: int, reference: int) -> None:
    for name, total in (("churn_tenure", current), ("churn_tenure_reference", reference)):
        wait_scraped(cluster, f'sum({name}_count{{job="{exporter.job}"}})', float(total))


def test_distribution_shift_is_detected_with_the_expected_psi(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, exporter: Exporter
) -> None:
    tenure_histograms(exporter, SHIFTED_COUNTS, REFERENCE_COUNTS)
    _, p, q = drift.align(drift.buckets(as_vector(SHIFTED_COUNTS)), drift.buckets(as_vector(REFERENCE_COUNTS)))
    expected = drift.psi(p, q)
    assert expected > 0.25, "the shift must be a major one for this test"
    serve_v1(perennial_crds, api_client, namespace)
    wait_histograms_scraped(perennial_crds, exporter, sum(SHIFTED_COUNTS), sum(REFERENCE_COUNTS))
    apply(perennial_crds, namespace, dpol([tenure_metric(exporter, 100)]))

    drifting = wait_policy(api_client, namespace, lambda s: s.get("triggerCount") == 1, what="a retrain")
    entry = metric0(drifting)
    assert entry["name"] == "tenure_shift"
    assert entry["value"] == pytest.approx(expected, abs=1e-6)
    assert entry["breached"] is True
    assert "error" not in entry
    assert is_(drifting, "Drifting", "True"), drifting
    assert is_(drifting, "Ready", "True"), drifting
    assert drifting["lastTrainingJob"] == "churn-v2"
    trigger = get_custom(api_client, namespace, "trainingjobs", "churn-v2")["spec"]["trigger"]
    assert (trigger["reason"], trigger["source"]) == ("Drift", POLICY)
    assert "tenure_shift" in trigger["detail"]
    assert "max 0.25" in trigger["detail"]


def test_distribution_below_min_samples_is_no_data_and_never_a_breach(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, exporter: Exporter
) -> None:
    few_current, few_reference = (5, 10, 15, 10, 10), (20, 15, 10, 3, 2)  # 50 each, and clearly shifted
    tenure_histograms(exporter, few_current, few_reference)
    serve_v1(perennial_crds, api_client, namespace)
    wait_histograms_scraped(perennial_crds, exporter, sum(few_current), sum(few_reference))
    apply(perennial_crds, namespace, dpol([tenure_metric(exporter, 100)]))

    status = wait_policy(api_client, namespace, lambda s: bool(metric0(s).get("error")), what="a metric error")
    entry = metric0(status)
    assert "NoData" in entry["error"]
    assert "minSamples" in entry["error"]
    assert entry["breached"] is False
    assert "value" not in entry
    assert "breachedSince" not in entry
    assert is_(status, "Drifting", "False", "NoData"), status
    assert not status.get("triggerCount")
    assert training_jobs(api_client, namespace).keys() == {"churn-v1"}


# ---------------------------------------------------------------- 6. Prometheus unreachable
def test_unreachable_prometheus_is_not_ready_and_never_retrains(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    endpoints: Endpoints,
    operator_in_process: RunningOperator,
) -> None:
    feature_psi(exporter, DRIFTED)  # the real data would breach
    serve_v1(perennial_crds, api_client, namespace)
    nowhere = endpoints.nowhere  # allowed, but nobody listens there
    apply(
        perennial_crds,
        namespace,
        dpol([psi_metric(exporter)], prometheus={"url": nowhere, "timeout": "2s"}),
    )

    status = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "False"), what="Ready False")
    ready = condition(status, "Ready")
    assert ready["reason"] == "PrometheusUnreachable"
    assert nowhere in ready["message"]
    entry = metric0(status)
    assert "unreachable" in entry["error"].lower()
    assert nowhere in entry["error"]
    assert entry["breached"] is False
    assert "value" not in entry
    assert is_(status, "Drifting", "False"), status

    later = evaluations_after(operator_in_process, api_client, namespace, 1)
    assert cond(later, "Ready")["reason"] == "PrometheusUnreachable"
    assert not later.get("triggerCount")
    assert training_jobs(api_client, namespace).keys() == {"churn-v1"}


# ---------------------------------------------------------------- 7. the target appears later
def test_missing_target_is_not_ready_until_it_is_created(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, exporter: Exporter
) -> None:
    feature_psi(exporter, HEALTHY)
    wait_scraped(perennial_crds, psi_query(exporter), HEALTHY)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)]))

    status = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "False"), what="Ready False")
    ready = condition(status, "Ready")
    assert ready["reason"] == "TargetNotFound"
    assert TARGET in ready["message"]
    assert metric0(status).get("error")
    assert not status.get("triggerCount")

    # Just after that evaluation: the next one is an interval away. The target's arrival
    # does not wait for it (else Ready would stay wrong, and be corrected by a status write
    # an interval later): well within the interval the policy is evaluated against it.
    apply(perennial_crds, namespace, mdep())
    ready_now = wait_policy(
        api_client,
        namespace,
        lambda s: is_(s, "Ready", "True"),
        what="Ready soon after the target exists, not at the next interval",
        timeout=INTERVAL * 0.6,
    )
    assert metric0(ready_now) == {"name": "feature_psi", "value": HEALTHY, "max": 0.2, "breached": False}
    assert is_(ready_now, "Drifting", "False", "WithinBounds"), ready_now


# ---------------------------------------------------------------- 8. bad queries
def test_query_errors_are_explained(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, exporter: Exporter
) -> None:
    segments = Gauge("churn_feature_psi", "PSI by segment.", ["segment"], registry=exporter.registry)
    for segment in ("new", "loyal", "lapsed"):
        segments.labels(segment=segment).set(DRIFTED)
    wait_scraped(perennial_crds, f'count(churn_feature_psi{{job="{exporter.job}"}})', 3.0)
    apply(perennial_crds, namespace, mdep())
    broken = f'max(churn_feature_psi{{job="{exporter.job}"}}'  # the closing parenthesis is missing
    several = f'churn_feature_psi{{job="{exporter.job}"}}'
    apply(perennial_crds, namespace, dpol([{"name": "feature_psi", "query": broken, "max": 0.2}], name="syntax"))
    apply(perennial_crds, namespace, dpol([{"name": "feature_psi", "query": several, "max": 0.2}], name="series"))

    answer = prometheus(perennial_crds, broken)
    assert answer["status"] == "error", answer
    syntax = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "False"), what="Ready False", name="syntax")
    ready = condition(syntax, "Ready")
    assert ready["reason"] == "QueryError"
    assert answer["error"] in ready["message"], "Prometheus's own message"
    assert answer["error"] in metric0(syntax)["error"]
    assert metric0(syntax)["breached"] is False

    series = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "False"), what="Ready False", name="series")
    ready = condition(series, "Ready")
    assert ready["reason"] == "QueryError"
    for text in (ready["message"], metric0(series)["error"]):
        assert "3 series" in text
        assert "aggregate" in text
    assert metric0(series)["breached"] is False
    assert "value" not in metric0(series)
    assert not series.get("triggerCount")


# ---------------------------------------------------------------- 9. the operator's own metrics
def test_drift_values_and_triggers_are_in_the_operator_metrics(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    started = {"action": "Retrain", "result": "Started"}
    before = operator_sample(operator_in_process, "perennial_drift_triggers_total", started) or 0.0
    feature_psi(exporter, DRIFTED)
    serve_v1(perennial_crds, api_client, namespace)
    wait_scraped(perennial_crds, psi_query(exporter), DRIFTED)
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)]))
    wait_policy(api_client, namespace, lambda s: s.get("lastTrainingJob") == "churn-v2", what="a retrain")

    series = {"namespace": namespace, "policy": POLICY, "metric": "feature_psi"}
    assert operator_sample(operator_in_process, "perennial_drift_metric_value", series) == DRIFTED
    after = operator_sample(operator_in_process, "perennial_drift_triggers_total", started)
    assert after is not None
    assert after >= 1
    assert after - before >= 1


# ---------------------------------------------------------------- 10. a hostile Prometheus
def impostor_metric(query: str, **bounds: Any) -> dict[str, Any]:
    """A metric whose value the impostor makes up; min 0 and max 0.2 unless changed."""
    return {"name": "feature_psi", "query": query, "min": 0.0, "max": 0.2, **bounds}


def no_retrain_asked(seen: Sequence[dict[str, Any]]) -> None:
    for status in seen:
        assert "retrainRequest" not in status, status
        assert not status.get("triggerCount"), status
        assert not is_(status, "Drifting", "True"), status


def test_values_that_are_not_numbers_and_oversized_answers_are_explained_and_never_retrain(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    endpoints: Endpoints,
    operator_in_process: RunningOperator,
) -> None:
    serve_v1(perennial_crds, api_client, namespace)
    at = {"url": endpoints.impostor.url, "timeout": "5s"}
    nan_baseline = {
        "name": "tenure_shift",
        "distribution": {
            "test": "psi",
            "current": "buckets_shifted",
            "baseline": {"query": "buckets_nan_bucket"},
            "minSamples": 10,
        },
        "max": 0.25,
    }
    cases = {
        "plus-inf": ([impostor_metric("answer_plus_inf")], "NonFiniteValue", "feature_psi: the query's value is +Inf"),
        "minus-inf": ([impostor_metric("answer_minus_inf")], "NonFiniteValue", "the query's value is -Inf"),
        "nan": ([impostor_metric("answer_nan")], "NonFiniteValue", "the query's value is NaN"),
        "nan-baseline": ([nan_baseline], "NonFiniteValue", "tenure_shift: the baseline bucket le=2 is NaN"),
        "over-the-cap": ([impostor_metric("answer_over_the_cap")], "QueryError", "larger than 64 KiB"),
        "many-series": ([impostor_metric("answer_500_series")], "QueryError", "500 series; aggregate"),
    }
    apply(
        perennial_crds,
        namespace,
        "\n---\n".join(json.dumps(dpol(metrics, name=name, prometheus=at)) for name, (metrics, _, _) in cases.items()),
    )

    for name, (_, reason, text) in cases.items():
        seen: list[dict[str, Any]] = []
        status = wait_policy(
            api_client, namespace, lambda s: bool(cond(s, "Ready")), what=f"{name}: Ready", name=name, seen=seen
        )
        ready = condition(status, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason), (name, status)
        assert text in ready["message"], (name, ready)
        entry = metric0(status)
        assert text.split(": ", 1)[-1] in entry["error"], (name, entry)
        assert entry["breached"] is False, (name, entry)
        assert "value" not in entry, (name, entry)
        assert status["lastEvaluationTime"], "status is written"
        assert is_(status, "Drifting", "False", "NoData"), (name, status)
        # A second evaluation gives the same answer, and still asks for nothing.
        if name == "plus-inf":
            later = evaluations_after(operator_in_process, api_client, namespace, 1, name=name)
            assert later == status, "the same error again: status is not written again"
        else:
            later = status
        no_retrain_asked([*seen, later])
        assert cond(later, "Ready")["reason"] == reason
    assert training_jobs(api_client, namespace).keys() == {"churn-v1"}
    assert endpoints.bystander.requests == []


def test_an_endpoint_that_hangs_does_not_hold_back_other_policies(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    endpoints: Endpoints,
) -> None:
    feature_psi(exporter, HEALTHY)
    apply(perennial_crds, namespace, mdep())
    wait_scraped(perennial_crds, psi_query(exporter), HEALTHY)
    # More hanging policies than the controller has workers, each with a query of its own
    # (identical ones would share one request); the CRD's longest timeout.
    workers = DriftPolicyController.workers
    hanging = [f"hang-{i}" for i in range(workers + 4)]
    at = {"url": endpoints.impostor.url, "timeout": MAX_TIMEOUT}
    apply(
        perennial_crds,
        namespace,
        "\n---\n".join(
            json.dumps(dpol([impostor_metric(f"{HANG}_{i}")], name=name, prometheus=at))
            for i, name in enumerate(hanging)
        ),
    )
    wait_until(
        lambda: endpoints.impostor.hanging >= workers,
        timeout=30,
        what=f"{workers} queries held open by the impostor",
    )

    apply(perennial_crds, namespace, dpol([psi_metric(exporter)]))
    healthy = wait_policy(
        api_client,
        namespace,
        lambda s: metric0(s).get("value") == HEALTHY and is_(s, "Ready", "True"),
        what="the healthy policy evaluated while the others hang",
    )

    assert is_(healthy, "Drifting", "False", "WithinBounds"), healthy
    assert endpoints.impostor.hanging >= workers, "the hanging queries were still open"
    for name in hanging:
        assert "lastEvaluationTime" not in policy_status(api_client, namespace, name), name


def test_identical_queries_of_several_policies_in_flight_together_are_sent_once(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    endpoints: Endpoints,
    operator_in_process: RunningOperator,
) -> None:
    """Five policies with the same query to the same endpoint: one request, which the impostor
    holds open, answers them all; the operator counts the four others as shared."""
    shared = {"outcome": "shared"}
    before = operator_sample(operator_in_process, "perennial_prometheus_queries_total", shared) or 0.0
    apply(perennial_crds, namespace, mdep())
    query = f"{HANG}_shared"
    at = {"url": endpoints.impostor.url, "timeout": MAX_TIMEOUT}
    apply(
        perennial_crds,
        namespace,
        "\n---\n".join(json.dumps(dpol([impostor_metric(query)], name=f"same-{i}", prometheus=at)) for i in range(5)),
    )

    wait_until(
        lambda: (
            (operator_sample(operator_in_process, "perennial_prometheus_queries_total", shared) or 0.0) - before >= 4
        ),
        timeout=45,
        what="four policies waiting for the first one's request",
    )
    assert [q for _, q in endpoints.impostor.requests if q == query] == [query], "sent once"
    assert endpoints.impostor.hanging == 1


@pytest.mark.parametrize("operator_env", [{"PERENNIAL_PROMETHEUS_MAX_TIMEOUT": "2s"}], indirect=True)
def test_the_operator_caps_a_policys_timeout(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, endpoints: Endpoints
) -> None:
    apply(perennial_crds, namespace, mdep())
    at = {"url": endpoints.impostor.url, "timeout": "5m"}
    apply(perennial_crds, namespace, dpol([impostor_metric(HANG)], prometheus=at))

    status = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "False"), what="Ready False", timeout=30)

    ready = condition(status, "Ready")
    assert ready["reason"] == "PrometheusUnreachable"
    assert "no answer within 2s" in ready["message"]
    assert "spec.prometheus.timeout 5m, capped at 2s" in ready["message"]
    assert "PERENNIAL_PROMETHEUS_MAX_TIMEOUT" in ready["message"]
    assert metric0(status)["breached"] is False
    assert is_(status, "Drifting", "False", "NoData"), status


def test_the_api_refuses_a_timeout_over_5m(perennial_crds: ClusterInfo, namespace: str) -> None:
    for timeout, refused in (("5m1s", True), ("6m", True), ("1h", True), ("5m", False)):
        body = dpol(
            [{"name": "feature_psi", "query": "x", "max": 0.2}], name=f"t{timeout}", prometheus={"timeout": timeout}
        )
        created = perennial_crds.kubectl_run("create", "-n", namespace, "-f", "-", stdin=json.dumps(body), check=False)
        assert (created.returncode != 0) is refused, (timeout, created.stderr)
        if refused:
            assert "spec.prometheus.timeout: Invalid value" in created.stderr, created.stderr
            assert "prometheus.timeout must be at most 5m" in created.stderr, created.stderr


def test_a_url_not_allowed_gets_a_condition_and_no_request_is_sent(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    endpoints: Endpoints,
    operator_in_process: RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep())
    impostor, bystander = endpoints.impostor, endpoints.bystander
    refused = {
        "elsewhere": bystander.url,  # a server the operator is not allowed to ask
        "another-path": f"{impostor.url}/federate",  # an allowed server, another path
        "user-info": f"http://127.0.0.1:{impostor.port}@127.0.0.1:{bystander.port}",
        "cloud-metadata": "http://169.254.169.254/latest/meta-data",
    }
    allowed = {"trailing-slash": f"{impostor.url}/", "double-slash": f"{impostor.url}//"}
    manifests = [
        dpol([impostor_metric("answer_healthy")], name=name, prometheus={"url": url})
        for name, url in {**refused, **allowed}.items()
    ]
    apply(perennial_crds, namespace, "\n---\n".join(json.dumps(m) for m in manifests))

    for name, url in refused.items():
        status = wait_policy(api_client, namespace, lambda s: bool(cond(s, "Ready")), what="Ready", name=name)
        ready = condition(status, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "EndpointNotAllowed"), (name, status)
        assert url in ready["message"]
        assert "PERENNIAL_PROMETHEUS_ALLOWED_URLS" in ready["message"]
        assert metric0(status)["error"] == ready["message"]
        assert metric0(status)["breached"] is False
        assert is_(status, "Drifting", "False", "NoData"), status
        assert status["lastEvaluationTime"], "status is written"
    for name in allowed:
        status = wait_policy(api_client, namespace, lambda s: is_(s, "Ready", "True"), what="Ready True", name=name)
        assert metric0(status)["value"] == HEALTHY
    later = evaluations_after(operator_in_process, api_client, namespace, 1, name="elsewhere")
    assert cond(later, "Ready")["reason"] == "EndpointNotAllowed"

    assert bystander.requests == [], "a refused endpoint was asked"
    assert {path for path, _ in impostor.requests} == {"/api/v1/query"}, impostor.requests


# ---------------------------------------------------------------- the futility breaker
def test_three_drift_retrains_not_better_stop_the_fourth_until_a_person_asks(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    exporter: Exporter,
    operator_in_process: RunningOperator,
) -> None:
    """A drift that retraining cannot fix: every run is validated (auc 0.93) but never beats the
    champion by minDelta, so after three of them the fourth drift trigger is suppressed."""
    feature_psi(exporter, DRIFTED)
    model = simulated_model(TARGET, cooldown="1s", maxConsecutiveNotPromoted=3)
    model["spec"]["promotion"] = {"requireImprovement": {"metric": "auc", "minDelta": 0.01}}
    apply(perennial_crds, namespace, model)
    wait_for_status(api_client, namespace, "modeldeployments", TARGET, served("1"), what="v1 served", timeout=90)
    wait_scraped(perennial_crds, psi_query(exporter), DRIFTED)
    # The policy's cooldown of 1s: a sustained breach asks again at every evaluation.
    apply(perennial_crds, namespace, dpol([psi_metric(exporter)], trigger={"cooldown": "1s"}))

    status = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        TARGET,
        lambda s: is_(s, "RetrainSuppressed", "True", "NoImprovement"),
        what="the futility breaker open",
        timeout=4 * (INTERVAL * 1.1 + 5) + 30,
    )
    message = cond(status, "RetrainSuppressed")["message"]
    assert "3 automatic runs in a row (churn-v2, churn-v3, churn-v4) were validated but not better" in message
    assert "than serving version 1" in message
    assert status["automaticRetrains"] == "NoImprovement"
    assert status["consecutiveNotPromoted"] == 3
    assert status["servingVersion"] == "1"
    for record in status["versions"][1:]:
        assert record["trigger"]["reason"] == "Drift", record
        assert record["decision"]["result"] == "NotPromoted", record
        assert record["decision"]["reason"].startswith("auc 0.93 < champion 0.93 + minDelta 0.01"), record
    assert set(training_jobs(api_client, namespace)) == {"churn-v1", "churn-v2", "churn-v3", "churn-v4"}
    held = {"namespace": namespace, "model": TARGET}
    assert operator_sample(operator_in_process, "perennial_model_automatic_retrains", held | {"state": "NoImprovement"})
    assert operator_sample(operator_in_process, "perennial_model_automatic_retrains", held | {"state": "Active"}) == 0

    # The policy keeps asking and keeps being told no: two more evaluations start nothing.
    evaluations_after(operator_in_process, api_client, namespace, 2)
    assert set(training_jobs(api_client, namespace)) == {"churn-v1", "churn-v2", "churn-v3", "churn-v4"}
    answer = next(a for a in mdep_status(api_client, namespace)["driftRequests"] if a["policy"] == POLICY)
    assert (answer["result"], answer["reason"]) == ("Suppressed", "NoImprovement")

    # A person asks: the run starts, the breaker counts afresh and drift may retrain again.
    request_retrain(perennial_crds, namespace, TARGET, "look-again")
    restarted = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        TARGET,
        lambda s: s.get("automaticRetrains") == "Active" and int(s.get("latestVersion", "0")) >= 5,
        what="the breaker reset by a manual request",
    )
    (v5,) = [r for r in restarted["versions"] if r["version"] == "5"]
    assert v5["trigger"]["reason"] == "Manual"
