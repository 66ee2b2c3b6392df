"""The operator's own Prometheus registry and the metrics every controller shares.

One registry, not the process-global default, so tests that run several operators in
one process never collide and /metrics shows exactly what Perennial exports.
"""

from __future__ import annotations

import platform
import threading
import time
import weakref
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perennial import __version__
from perennial.domain.plan import Count

# `*_created` series double the exposition and no alert or dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

T = TypeVar("T")

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

# ---------------------------------------------------------------- reconciles and API calls
RESULTS = ("success", "error")
KINDS = ("TrainingJob", "ModelDeployment", "DriftPolicy")
# Every kind the operator watches (and caches): its own three and the children it owns.
WATCHED_KINDS = (*KINDS, "Job", "Deployment", "Service")

RECONCILES = Counter(
    "perennial_reconciles_total",
    "Reconciles run, by kind and result (error: an exception; the object is retried with backoff).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "perennial_reconcile_duration_seconds",
    "Time one reconcile took, API calls included.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "perennial_api_requests_total",
    "Requests the operator made to the Kubernetes API (watches excluded), by method and HTTP code.",
    ["method", "code"],
    registry=REGISTRY,
)
EVENTS_DROPPED = Counter(
    "perennial_events_dropped_total",
    "Kubernetes Events not posted because the operator's Event backlog was full.",
    registry=REGISTRY,
)
STATUS_CONFLICTS = Counter(
    "perennial_status_conflicts_total",
    "Status writes refused with 409 Conflict (the object changed since it was read): re-read and planned again.",
    ["kind"],
    registry=REGISTRY,
)
RESYNCS = Counter(
    "perennial_resyncs_total",
    "Periodic resyncs of the watch caches (a LIST of every watched kind), by result (error: a LIST failed).",
    ["result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "perennial_leader",
    "1 while this replica holds the leader election Lease and reconciles; 0 while it stands by.",
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "perennial_leader_transitions_total",
    "Times this replica started (became) or stopped (lost or released) leading.",
    ["transition"],
    registry=REGISTRY,
)
RESYNC_REMOVED = Counter(
    "perennial_resync_removed_total",
    "Cached objects a resync found deleted from the API server (their DELETED watch event was missed), by kind.",
    ["kind"],
    registry=REGISTRY,
)
API_REQUEST_DURATION = Histogram(
    "perennial_api_request_duration_seconds",
    "Latency of the operator's Kubernetes API requests, client-side rate limiting excluded.",
    ["method"],
    registry=REGISTRY,
)

# ---------------------------------------------------------------- work queues
# client-go's workqueue metrics, labelled by `controller`: the name of the controller whose
# queue it is, its kind in lower case (`modeldeployment`), as controller-runtime names them.
CONTROLLERS = tuple(kind.lower() for kind in KINDS)

WORKQUEUE_ADDS = Counter(
    "perennial_workqueue_adds_total",
    "Keys added to a controller's work queue (client-go's workqueue_adds_total); adding a key"
    " already waiting is not counted.",
    ["controller"],
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "perennial_workqueue_retries_total",
    "Keys put back with backoff after a failed reconcile (client-go's workqueue_retries_total).",
    ["controller"],
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "perennial_workqueue_queue_duration_seconds",
    "Time a key waited in its work queue before its reconcile started (client-go's workqueue_queue_duration_seconds).",
    ["controller"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "perennial_workqueue_work_duration_seconds",
    "Time a worker spent on one key, its reconcile (client-go's workqueue_work_duration_seconds).",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
for _controller in CONTROLLERS:
    WORKQUEUE_ADDS.labels(controller=_controller)
    WORKQUEUE_RETRIES.labels(controller=_controller)
    WORKQUEUE_QUEUE_DURATION.labels(controller=_controller)
    WORKQUEUE_WORK_DURATION.labels(controller=_controller)


class WorkQueueState(Protocol):
    """What the scrape reads from a work queue (``perennial.adapters.workqueue.WorkQueue``)."""

    controller: str

    def __len__(self) -> int:
        """Keys waiting (not being reconciled)."""

    def processing_since(self) -> tuple[float, ...]:
        """When (``time.monotonic()``) each reconcile in flight started."""


_work_queues: weakref.WeakSet[WorkQueueState] = weakref.WeakSet()
_work_queues_lock = threading.Lock()  # the scrape runs in a thread, beside the event loop


def register_work_queue(queue: WorkQueueState) -> None:
    """Export ``queue``'s depth and in-flight work at every scrape, for as long as it exists."""
    with _work_queues_lock:
        _work_queues.add(queue)


class _WorkQueueCollector(Collector):
    """Depth, unfinished work and longest running reconcile, computed at scrape time.

    Nothing on the hot path: a queue keeps the start time of each reconcile in flight (which
    it needs anyway) and the scrape reads them. Queues of one controller (several operators
    in one test process) add up; the longest is the longest of them.
    """

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        depth = dict.fromkeys(CONTROLLERS, 0.0)
        unfinished = dict.fromkeys(CONTROLLERS, 0.0)
        longest = dict.fromkeys(CONTROLLERS, 0.0)
        with _work_queues_lock:
            queues = list(_work_queues)
        for queue in queues:
            name = queue.controller
            started = queue.processing_since()
            depth[name] = depth.get(name, 0.0) + len(queue)
            unfinished[name] = unfinished.get(name, 0.0) + sum(now - t for t in started)
            longest[name] = max(longest.get(name, 0.0), max((now - t for t in started), default=0.0))
        return self._families(depth, unfinished, longest)

    @staticmethod
    def _families(
        depth: Mapping[str, float] | None = None,
        unfinished: Mapping[str, float] | None = None,
        longest: Mapping[str, float] | None = None,
    ) -> Iterator[Metric]:
        for name, documentation, values in (
            (
                "perennial_workqueue_depth",
                "Keys waiting in a controller's work queue for a reconcile (client-go's workqueue_depth).",
                depth,
            ),
            (
                "perennial_workqueue_unfinished_work_seconds",
                "Seconds of work in progress not yet observed by work_duration: the sum of the ages of the"
                " reconciles in flight; growing steadily means stuck workers (client-go's"
                " workqueue_unfinished_work_seconds).",
                unfinished,
            ),
            (
                "perennial_workqueue_longest_running_processor_seconds",
                "Age of the longest reconcile in flight (client-go's workqueue_longest_running_processor_seconds).",
                longest,
            ),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["controller"])
            for controller, value in (values or {}).items():
                family.add_metric([controller], value)
            yield family


REGISTRY.register(_WorkQueueCollector())

# ---------------------------------------------------------------- training runs
RUN_RESULTS = ("Succeeded", "Failed", "Rejected")

TRAINING_RUNS_STARTED = Counter(
    "perennial_training_runs_started_total",
    "Training runs started (a Job created for a TrainingJob).",
    registry=REGISTRY,
)
TRAINING_RUNS_FINISHED = Counter(
    "perennial_training_runs_finished_total",
    "Training runs finished, by result (Succeeded, Failed, Rejected).",
    ["result"],
    registry=REGISTRY,
)
TRAINING_DURATION = Histogram(
    "perennial_training_duration_seconds",
    "Wall-clock duration of finished training runs, by result.",
    ["result"],
    buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=REGISTRY,
)

# Every labelled series exists from the start, so alerts never see a missing series.
for _kind in KINDS:
    RECONCILE_DURATION.labels(kind=_kind)
    STATUS_CONFLICTS.labels(kind=_kind)
    for _result in RESULTS:
        RECONCILES.labels(kind=_kind, result=_result)
for _result in RESULTS:
    RESYNCS.labels(result=_result)
for _kind in WATCHED_KINDS:
    RESYNC_REMOVED.labels(kind=_kind)
for _transition in ("started", "stopped"):
    LEADER_TRANSITIONS.labels(transition=_transition)
for _run_result in RUN_RESULTS:
    TRAINING_RUNS_FINISHED.labels(result=_run_result)
    TRAINING_DURATION.labels(result=_run_result)

# ---------------------------------------------------------------- the loop
TRIGGER_REASONS = ("Initial", "SpecChange", "Schedule", "Drift", "Manual")
SUPPRESSION_REASONS = ("Cooldown", "TrainingInProgress", "CircuitOpen", "NoImprovement", "Suspended")
AUTOMATIC_RETRAIN_STATES = ("Active", "Suspended", "CircuitOpen", "NoImprovement")
PROMOTION_RESULTS = ("Promoted", "Candidate", "NotPromoted")
ROLLOUT_RESULTS = ("Started", "Succeeded", "RolledBack")
ROLLBACK_REASONS = ("ProgressDeadlineExceeded", "AnalysisFailed", "AnalysisNoData")

RETRAINS_TRIGGERED = Counter(
    "perennial_retrains_triggered_total",
    "Trainings started by a ModelDeployment, by trigger reason.",
    ["reason"],
    registry=REGISTRY,
)
RETRAINS_SUPPRESSED = Counter(
    "perennial_retrains_suppressed_total",
    "Retrain triggers that did not start a training, by trigger reason and why (counted once per episode).",
    ["reason", "suppression"],
    registry=REGISTRY,
)
PROMOTIONS = Counter(
    "perennial_promotions_total",
    "Promotion decisions on finished trainings, by result.",
    ["result"],
    registry=REGISTRY,
)
ROLLOUTS = Counter(
    "perennial_rollouts_total",
    "Serving rollouts, by result: Started, Succeeded, RolledBack.",
    ["result"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "perennial_rollbacks_total",
    "Rollouts rolled back, by reason: ProgressDeadlineExceeded (not Available in time), AnalysisFailed (a canary"
    " analysis metric breached), AnalysisNoData (no conclusive canary analysis by progressDeadline after a pause).",
    ["reason"],
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "perennial_model_info",
    "Always 1 for the version each ModelDeployment serves.",
    ["namespace", "model", "version"],
    registry=REGISTRY,
)

MODEL_READY = Gauge(
    "perennial_model_ready",
    "1 while a ModelDeployment's Ready condition is True (a validated version serves and is available), else 0.",
    ["namespace", "model"],
    registry=REGISTRY,
)

MODEL_AUTOMATIC_RETRAINS = Gauge(
    "perennial_model_automatic_retrains",
    "1 for the state of each ModelDeployment's automatic (drift, schedule) retrains, 0 for the others:"
    " Active, Suspended, CircuitOpen (runs keep failing), NoImprovement (runs keep not beating the champion).",
    ["namespace", "model", "state"],
    registry=REGISTRY,
)

MODEL_LAST_TRAINING = Gauge(
    "perennial_model_last_successful_training_timestamp_seconds",
    "When the training of each ModelDeployment's newest successfully trained version started (the createdAt of"
    " the newest version in status.versions that trained and passed validation: Candidate, Serving, Retired or"
    " RolledBack), in Unix seconds; no series until one has.",
    ["namespace", "model"],
    registry=REGISTRY,
)
MODEL_MAX_TRAINING_AGE = Gauge(
    "perennial_model_max_training_age_seconds",
    "How old a ModelDeployment's last successful training may grow before PerennialModelStale fires: two periods"
    " of spec.retraining.schedule (its longest gap between two firings; plus the cooldown when the cooldown is"
    " longer than that gap). No series without a schedule or while suspended.",
    ["namespace", "model"],
    registry=REGISTRY,
)
MODEL_CANARY_WEIGHT = Gauge(
    "perennial_model_canary_weight_percent",
    "The share of each ModelDeployment's serving replicas (or HTTPRoute traffic) its canary has, in percent: the"
    " current step's weight (the last step's while a canary that passed is promoted), 0 without a canary.",
    ["namespace", "model"],
    registry=REGISTRY,
)
MODEL_ROLLOUTS = Counter(
    "perennial_model_rollouts_total",
    "Serving rollouts of each ModelDeployment, by result: Started, Succeeded, RolledBack.",
    ["namespace", "model", "result"],
    registry=REGISTRY,
)

for _reason in TRIGGER_REASONS:
    RETRAINS_TRIGGERED.labels(reason=_reason)
    for _suppression in SUPPRESSION_REASONS:
        RETRAINS_SUPPRESSED.labels(reason=_reason, suppression=_suppression)
for _result in PROMOTION_RESULTS:
    PROMOTIONS.labels(result=_result)
for _result in ROLLOUT_RESULTS:
    ROLLOUTS.labels(result=_result)
for _reason in ROLLBACK_REASONS:
    ROLLBACKS.labels(reason=_reason)


class _ModelSeries:
    """One ModelDeployment's series: looked up once, updated each reconcile, removed together.

    Bounded cardinality: one series a model for each gauge (perennial_model_info follows the
    serving version), four for the automatic-retrains state, three rollout counters.
    """

    __slots__ = (
        "canary_weight",
        "last_training",
        "last_training_at",
        "max_age",
        "model",
        "namespace",
        "ready",
        "retrains",
        "rollouts",
        "version",
    )

    def __init__(self, namespace: str, model: str) -> None:
        self.namespace, self.model = namespace, model
        self.ready = MODEL_READY.labels(namespace, model)
        self.canary_weight = MODEL_CANARY_WEIGHT.labels(namespace, model)
        self.retrains: str | None = None  # the automatic-retrains state exported
        self.version: str | None = None  # the serving version perennial_model_info names
        self.last_training: Gauge | None = None
        self.last_training_at = 0.0  # what it says (never moves back)
        self.max_age: Gauge | None = None
        # Created at 0 with the model, so increase() sees its first rollout.
        self.rollouts = {result: MODEL_ROLLOUTS.labels(namespace, model, result) for result in ROLLOUT_RESULTS}

    def remove(self) -> None:
        namespace, model = self.namespace, self.model
        MODEL_READY.remove(namespace, model)
        MODEL_CANARY_WEIGHT.remove(namespace, model)
        if self.retrains is not None:
            for state in AUTOMATIC_RETRAIN_STATES:
                MODEL_AUTOMATIC_RETRAINS.remove(namespace, model, state)
        if self.version is not None:
            MODEL_INFO.remove(namespace, model, self.version)
        if self.last_training is not None:
            MODEL_LAST_TRAINING.remove(namespace, model)
        if self.max_age is not None:
            MODEL_MAX_TRAINING_AGE.remove(namespace, model)
        for result in ROLLOUT_RESULTS:
            MODEL_ROLLOUTS.remove(namespace, model, result)


_models: dict[tuple[str, str], _ModelSeries] = {}


def export_model(
    namespace: str,
    model: str,
    *,
    ready: bool,
    automatic_retrains: str | None,
    serving_version: str | None,
    last_training: float | None,
    max_training_age: float | None,
    canary_weight: int = 0,
    counts: Iterable[Count] = (),
) -> None:
    """Export one ModelDeployment's state after a reconcile; ``counts`` are its plan's counts
    (the rollouts among them are also counted per model)."""
    series = _models.get((namespace, model))
    if series is None:
        series = _models[(namespace, model)] = _ModelSeries(namespace, model)
    series.ready.set(1 if ready else 0)
    series.canary_weight.set(canary_weight)
    if automatic_retrains is not None and automatic_retrains != series.retrains:
        for state in AUTOMATIC_RETRAIN_STATES:
            MODEL_AUTOMATIC_RETRAINS.labels(namespace, model, state).set(state == automatic_retrains)
        series.retrains = automatic_retrains
    if serving_version and serving_version != series.version:
        if series.version is not None:
            MODEL_INFO.remove(namespace, model, series.version)
        MODEL_INFO.labels(namespace, model, serving_version).set(1)
        series.version = serving_version
    if last_training is not None and last_training < series.last_training_at:
        last_training = series.last_training_at  # its record was pruned (historyLimit): the time stands
    series.last_training_at = last_training or 0.0
    series.last_training = _set_or_remove(MODEL_LAST_TRAINING, series.last_training, namespace, model, last_training)
    series.max_age = _set_or_remove(MODEL_MAX_TRAINING_AGE, series.max_age, namespace, model, max_training_age)
    for item in counts:
        if item.metric == "rollouts":
            series.rollouts[item.labels["result"]].inc()


def _set_or_remove(gauge: Gauge, child: Gauge | None, namespace: str, model: str, value: float | None) -> Gauge | None:
    """Set a per-model gauge's one series to ``value``; None removes it. Returns the series."""
    if value is None:
        if child is not None:
            gauge.remove(namespace, model)
        return None
    if child is None:
        child = gauge.labels(namespace, model)
    child.set(value)
    return child


def forget_model(namespace: str, model: str) -> None:
    """Remove a deleted ModelDeployment's series, and the drift values of the policies that target it."""
    series = _models.pop((namespace, model), None)
    if series is not None:
        series.remove()
    for policy in _policies_by_model.pop((namespace, model), set()):
        _forget_values(namespace, policy)  # the policy's last evaluation is not the model's: it stays


def forget_all_objects() -> None:
    """Remove every per-model and per-policy series: a replica that stops leading stops speaking for them
    (frozen values on a standby would double every model in a sum and keep stale alerts firing)."""
    for namespace, model in list(_models):
        forget_model(namespace, model)
    for namespace, policy in {*_policies, *_policies_evaluated}:
        forget_policy(namespace, policy)


# ---------------------------------------------------------------- drift
DRIFT_EVALUATIONS = Counter(
    "perennial_drift_evaluations_total",
    "DriftPolicy evaluations, by result (error: the policy is not Ready: target, Prometheus or a query).",
    ["result"],
    registry=REGISTRY,
)
DRIFT_EVALUATION_DURATION = Histogram(
    "perennial_drift_evaluation_duration_seconds",
    "Time one DriftPolicy evaluation took, Prometheus queries included.",
    registry=REGISTRY,
)
DRIFT_METRIC_VALUE = Gauge(
    "perennial_drift_metric_value",
    "The last value of each DriftPolicy metric (a PromQL value or a distribution statistic); `model` is the"
    " policy's target ModelDeployment.",
    ["namespace", "model", "policy", "metric"],
    registry=REGISTRY,
)
DRIFT_POLICY_LAST_EVALUATION = Gauge(
    "perennial_drift_policy_last_evaluation_timestamp_seconds",
    "When each DriftPolicy was last evaluated, Unix seconds (its status is written only when something changes,"
    " and its lastEvaluationTime is a heartbeat).",
    ["namespace", "policy"],
    registry=REGISTRY,
)
PROMETHEUS_QUERIES = Counter(
    "perennial_prometheus_queries_total",
    "PromQL queries of DriftPolicies and canary analyses, by outcome: sent (a request to Prometheus) or shared"
    " (answered by an identical request, same endpoint, query and time, already in flight).",
    ["outcome"],
    registry=REGISTRY,
)
DRIFT_BREACHES = Counter(
    "perennial_drift_breaches_total",
    "Metrics that became breached (outside their bounds for `for`).",
    registry=REGISTRY,
)
DRIFT_TRIGGERS = Counter(
    "perennial_drift_triggers_total",
    "Drift triggers by action and result: Retrain/Started, Retrain/Suppressed (by the target), Observe/Observed.",
    ["action", "result"],
    registry=REGISTRY,
)
for _result in RESULTS:
    DRIFT_EVALUATIONS.labels(result=_result)
for _action, _result in (("Retrain", "Started"), ("Retrain", "Suppressed"), ("Observe", "Observed")):
    DRIFT_TRIGGERS.labels(action=_action, result=_result)
for _outcome in ("sent", "shared"):
    PROMETHEUS_QUERIES.labels(outcome=_outcome)


class _PolicySeries:
    """One DriftPolicy's value series (one a metric of its spec), all naming its target model."""

    __slots__ = ("model", "values")

    def __init__(self, model: str) -> None:
        self.model = model
        self.values: dict[str, Gauge] = {}


_policies: dict[tuple[str, str], _PolicySeries] = {}
_policies_by_model: dict[tuple[str, str], set[str]] = {}
_policies_evaluated: set[tuple[str, str]] = set()  # the policies with a last-evaluation series


def set_drift_evaluated(namespace: str, policy: str, timestamp: float) -> None:
    """A policy was evaluated at ``timestamp`` (Unix seconds), whatever it found, target or not."""
    _policies_evaluated.add((namespace, policy))
    DRIFT_POLICY_LAST_EVALUATION.labels(namespace, policy).set(timestamp)


def set_drift_values(namespace: str, policy: str, model: str, values: Mapping[str, float | None]) -> None:
    """Export one evaluation of a policy whose target is ``model``.

    ``values`` names every metric of the policy's spec: a metric no longer there loses its
    series; None (an error, no data) keeps the last value. A new target replaces the series.
    """
    series = _policies.get((namespace, policy))
    if series is not None and series.model != model:
        _forget_values(namespace, policy)
        series = None
    if series is None:
        series = _policies[(namespace, policy)] = _PolicySeries(model)
        _policies_by_model.setdefault((namespace, model), set()).add(policy)
    if any(metric not in values for metric in series.values):  # removed from the spec
        for metric in [m for m in series.values if m not in values]:
            del series.values[metric]
            DRIFT_METRIC_VALUE.remove(namespace, model, policy, metric)
    for metric, value in values.items():
        if value is None:
            continue
        child = series.values.get(metric)
        if child is None:
            child = series.values[metric] = DRIFT_METRIC_VALUE.labels(namespace, model, policy, metric)
        child.set(value)


def forget_policy(namespace: str, policy: str) -> None:
    """Remove a deleted DriftPolicy's series: its values and its last evaluation time."""
    if (namespace, policy) in _policies_evaluated:
        _policies_evaluated.discard((namespace, policy))
        DRIFT_POLICY_LAST_EVALUATION.remove(namespace, policy)
    _forget_values(namespace, policy)


def _forget_values(namespace: str, policy: str) -> None:
    series = _policies.pop((namespace, policy), None)
    if series is None:
        return
    others = _policies_by_model.get((namespace, series.model))
    if others is not None:
        others.discard(policy)
        if not others:
            del _policies_by_model[(namespace, series.model)]
    for metric in series.values:
        DRIFT_METRIC_VALUE.remove(namespace, series.model, policy, metric)


# What a plan's ``Count("promotions", {"result": "Promoted"})`` increments: the domain names
# the counter, the controller bumps it (the domain imports no metrics library).
COUNTERS: dict[str, Counter] = {
    "training_runs_started": TRAINING_RUNS_STARTED,
    "retrains_triggered": RETRAINS_TRIGGERED,
    "retrains_suppressed": RETRAINS_SUPPRESSED,
    "promotions": PROMOTIONS,
    "rollouts": ROLLOUTS,
    "rollbacks": ROLLBACKS,
    "drift_evaluations": DRIFT_EVALUATIONS,
    "drift_breaches": DRIFT_BREACHES,
    "drift_triggers": DRIFT_TRIGGERS,
}


def count(metric: str, labels: Mapping[str, str]) -> None:
    counter = COUNTERS[metric]
    (counter.labels(**labels) if labels else counter).inc()


async def measured_reconcile(kind: str, reconcile: Awaitable[T]) -> T:
    """Run one reconcile, counting it by result and timing it."""
    with RECONCILE_DURATION.labels(kind=kind).time():
        try:
            result = await reconcile
        except Exception:
            RECONCILES.labels(kind=kind, result="error").inc()
            raise
    RECONCILES.labels(kind=kind, result="success").inc()
    return result
