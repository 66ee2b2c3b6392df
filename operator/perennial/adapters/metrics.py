"""The operator's own Prometheus registry and the metrics every controller shares.

One registry, not the process-global default, so tests that run several operators in
one process never collide and /metrics shows exactly what Perennial exports.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Awaitable, Mapping
from typing import TypeVar

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

from perennial import __version__

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
WORKQUEUE_DEPTH = Gauge(
    "perennial_workqueue_depth",
    "Objects waiting in a work queue for a reconcile (client-go's workqueue_depth).",
    ["kind"],
    registry=REGISTRY,
)
WORKQUEUE_WAIT = Histogram(
    "perennial_workqueue_wait_seconds",
    "Time an object waited in its work queue before its reconcile started (client-go's queue_duration).",
    ["kind"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
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

for _reason in TRIGGER_REASONS:
    RETRAINS_TRIGGERED.labels(reason=_reason)
    for _suppression in SUPPRESSION_REASONS:
        RETRAINS_SUPPRESSED.labels(reason=_reason, suppression=_suppression)
for _result in PROMOTION_RESULTS:
    PROMOTIONS.labels(result=_result)
for _result in ROLLOUT_RESULTS:
    ROLLOUTS.labels(result=_result)

_served: dict[tuple[str, str], str] = {}


def set_model_info(namespace: str, model: str, version: str) -> None:
    """Point perennial_model_info at the serving version (one series per model)."""
    previous = _served.get((namespace, model))
    if previous == version:
        return
    if previous is not None:
        MODEL_INFO.remove(namespace, model, previous)
    MODEL_INFO.labels(namespace=namespace, model=model, version=version).set(1)
    _served[(namespace, model)] = version


def set_model_ready(namespace: str, model: str, ready: bool) -> None:
    MODEL_READY.labels(namespace=namespace, model=model).set(1 if ready else 0)


def set_model_automatic_retrains(namespace: str, model: str, state: str) -> None:
    for candidate in AUTOMATIC_RETRAIN_STATES:
        MODEL_AUTOMATIC_RETRAINS.labels(namespace=namespace, model=model, state=candidate).set(candidate == state)


def forget_model(namespace: str, model: str) -> None:
    previous = _served.pop((namespace, model), None)
    if previous is not None:
        MODEL_INFO.remove(namespace, model, previous)
    with contextlib.suppress(KeyError):  # never reconciled
        MODEL_READY.remove(namespace, model)
    for state in AUTOMATIC_RETRAIN_STATES:
        with contextlib.suppress(KeyError):
            MODEL_AUTOMATIC_RETRAINS.remove(namespace, model, state)


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
    "The last value of each DriftPolicy metric (a PromQL value or a distribution statistic).",
    ["namespace", "policy", "metric"],
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

_drift_series: dict[tuple[str, str], set[str]] = {}


def set_drift_value(namespace: str, policy: str, metric: str, value: float) -> None:
    DRIFT_METRIC_VALUE.labels(namespace=namespace, policy=policy, metric=metric).set(value)
    _drift_series.setdefault((namespace, policy), set()).add(metric)


def forget_policy(namespace: str, policy: str) -> None:
    for metric in _drift_series.pop((namespace, policy), set()):
        DRIFT_METRIC_VALUE.remove(namespace, policy, metric)


# What a plan's ``Count("promotions", {"result": "Promoted"})`` increments: the domain names
# the counter, the controller bumps it (the domain imports no metrics library).
COUNTERS: dict[str, Counter] = {
    "training_runs_started": TRAINING_RUNS_STARTED,
    "retrains_triggered": RETRAINS_TRIGGERED,
    "retrains_suppressed": RETRAINS_SUPPRESSED,
    "promotions": PROMOTIONS,
    "rollouts": ROLLOUTS,
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
