"""The DriftPolicy's plan: breach clocks, the drift rule, cooldown, Observe and the retrain handshake.

Pure: statuses are written the way they sit in the API server (camelCase), the target is
the ModelDeployment's status with its ``driftRequests`` answers, Prometheus results are
what the controller hands over, and time is a fixed ``NOW``. Expected values are written
out literally from docs/concepts.md's DriftPolicy section and the handshake in
``perennial.domain.driftpolicy``; none is computed by a second copy of the rules.

The policy in every case: target ``churn``, one metric ``feature_psi`` with ``max: 0.2``,
``interval: 1m``, ``trigger.cooldown: 6h`` unless a case changes it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.domain.driftpolicy import (
    NO_PROMETHEUS,
    MetricResult,
    ObservedPolicy,
    allowed_endpoint,
    answer_to_absorb,
    evaluation_due_in,
    plan_driftpolicy,
    promoted_at,
)
from perennial.domain.plan import Plan

# ---------------------------------------------------------------- the setting
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW_TEXT = "2026-01-01T12:00:00Z"
T_EVALUATED = "2026-01-01T11:59:00Z"  # the previous evaluation, which asked for the retrain
T_OUT = "2026-01-01T11:58:00Z"  # when feature_psi left its bounds
T_CREATED = "2026-01-01T10:00:00Z"  # the policy's creationTimestamp
NAME, NAMESPACE, TARGET, GENERATION = "churn-drift", "ml", "churn", 2
URL = "http://prometheus.monitoring:9090"
QUERY = "max(churn_feature_psi)"

DRIFTED, HEALTHY = 0.31, 0.05
BREACH = "AnyMetric: feature_psi=0.31 > max 0.2"
DETAIL = "feature_psi=0.31 > max 0.2"
SUPPRESSION = "retraining.cooldown holds automatic retrains until 2026-01-01T18:00:00Z"
SUPPRESSED_MESSAGE = f"{BREACH}; the target suppressed the retrain (Cooldown: {SUPPRESSION})"

BREACHED = {"name": "feature_psi", "value": DRIFTED, "max": 0.2, "breached": True, "breachedSince": T_OUT}
WITHIN = {"name": "feature_psi", "value": HEALTHY, "max": 0.2, "breached": False}
PENDING = {"id": T_EVALUATED, "requestedAt": T_EVALUATED, "detail": DETAIL}


def spec(**changes: Any) -> dict[str, Any]:
    trigger = {"cooldown": "6h", **changes.pop("trigger", {})}
    return {
        "targetRef": {"name": TARGET},
        "interval": "1m",
        "metrics": [
            {"name": "feature_psi", "query": "max(churn_feature_psi)", "max": 0.2, **changes.pop("metric", {})}
        ],
        "trigger": trigger,
        **changes,
    }


def conditions(ready: tuple[str, str, str], drifting: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Conditions as a previous pass left them."""
    return [
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": T_EVALUATED, "observedGeneration": 2}
        for t, (s, r, m) in (("Ready", ready), ("Drifting", drifting))
    ]


READY = ("True", "Evaluated", "1 metric(s) evaluated")
ASKED = ("True", "MetricsBreached", f"{BREACH}; asked churn to retrain")


def evaluated(metric: dict[str, Any], drifting: tuple[str, str, str], **fields: Any) -> dict[str, Any]:
    """A status after an evaluation at T_EVALUATED."""
    return {
        "observedGeneration": GENERATION,
        "lastEvaluationTime": T_EVALUATED,
        "metrics": [metric],
        "conditions": conditions(READY, drifting),
        **fields,
    }


def answer(result: str, request: str = T_EVALUATED, **fields: Any) -> dict[str, Any]:
    return {"policy": NAME, "id": request, "result": result, "answeredAt": T_EVALUATED, **fields}


STARTED = answer("Started", trainingJob="churn-v2", message="started churn-v2")
SUPPRESSED = answer("Suppressed", reason="Cooldown", message=SUPPRESSION)
OTHER_POLICY = {**STARTED, "policy": "latency-drift"}


def serving(*answers: dict[str, Any]) -> dict[str, Any]:
    """The target's status: serving version 1, with these answers to DriftPolicies."""
    status: dict[str, Any] = {"servingVersion": "1", "phase": "Serving"}
    if answers:
        status["driftRequests"] = list(answers)
    return status


@dataclass(frozen=True)
class Case:
    id: str
    status: dict[str, Any]
    target: dict[str, Any] | None
    value: float | None = DRIFTED
    """What Prometheus answered for feature_psi (None: no evaluation, or an error below)."""
    error: MetricResult | None = None
    spec: dict[str, Any] = field(default_factory=spec)
    evaluate: bool = True
    now: datetime = NOW
    # What the plan says, literally.
    expected: dict[str, Any] = field(default_factory=dict)
    """The new status without its conditions."""
    ready: tuple[str, str, str] | None = None
    drifting: tuple[str, str, str] | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    counts: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    requeue: float | None = 60.0


def observe(case: Case) -> ObservedPolicy:
    results: dict[str, MetricResult] = {}
    if case.evaluate and case.target is not None:
        results["feature_psi"] = case.error or MetricResult(case.value)
    return ObservedPolicy(
        name=NAME,
        namespace=NAMESPACE,
        generation=GENERATION,
        spec=DriftPolicySpec.model_validate(case.spec),
        status=DriftPolicyStatus.model_validate(case.status),
        target=ModelDeploymentStatus.model_validate(case.target) if case.target is not None else None,
        now=case.now,
        evaluate=case.evaluate,
        results=results,
        prometheus_url=URL,
        created=datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
    )


def by_type(plan: Plan[DriftPolicyStatus]) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in plan.status.conditions or []}


EVALUATED_OK = ("drift_evaluations", {"result": "success"})

CASES = [
    # ---------------------------------------------------------------- a. asking
    Case(
        "a breach that holds asks the target for a retrain",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [{**BREACHED, "breachedSince": NOW_TEXT}],
            "retrainRequest": {"id": NOW_TEXT, "requestedAt": NOW_TEXT, "detail": DETAIL},
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; asked churn to retrain"),
        events=[("Warning", "MetricBreached", "feature_psi=0.31 > max 0.2 for 0s")],
        counts=[("drift_breaches", {}), EVALUATED_OK],
    ),
    Case(
        "out of bounds for less than `for`: the clock runs, nothing is asked",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        spec=spec(metric={"for": "5m"}),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [{**BREACHED, "breached": False, "breachedSince": NOW_TEXT}],
        },
        ready=READY,
        drifting=("False", "WithinBounds", "no sustained breach"),
        counts=[EVALUATED_OK],
    ),
    # ---------------------------------------------------------------- b. the answer
    Case(
        "answered Started: a trigger at the request's time, the request cleared",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(STARTED),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [BREACHED],
            "lastTriggerTime": T_EVALUATED,
            "triggerCount": 1,
            "lastTrainingJob": "churn-v2",
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; started churn-v2"),
        events=[("Normal", "RetrainTriggered", "retraining churn: churn-v2 (feature_psi=0.31 > max 0.2)")],
        counts=[("drift_triggers", {"action": "Retrain", "result": "Started"}), EVALUATED_OK],
    ),
    Case(
        "answered Started, between evaluations: only the answer is recorded",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING, triggerCount=3),
        target=serving(STARTED),
        evaluate=False,
        now=datetime(2026, 1, 1, 11, 59, 2, tzinfo=UTC),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": T_EVALUATED,
            "metrics": [BREACHED],
            "lastTriggerTime": T_EVALUATED,
            "triggerCount": 4,
            "lastTrainingJob": "churn-v2",
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; started churn-v2"),
        events=[("Normal", "RetrainTriggered", "retraining churn: churn-v2 (feature_psi=0.31 > max 0.2)")],
        counts=[("drift_triggers", {"action": "Retrain", "result": "Started"})],
        requeue=58.0,
    ),
    Case(
        "answered Suppressed: shown on Drifting, the request cleared, no cooldown started",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(SUPPRESSED),
        expected={"observedGeneration": 2, "lastEvaluationTime": NOW_TEXT, "metrics": [BREACHED]},
        ready=READY,
        drifting=("True", "MetricsBreached", SUPPRESSED_MESSAGE),
        events=[
            (
                "Normal",
                "RetrainSuppressed",
                SUPPRESSED_MESSAGE,
            )
        ],
        counts=[("drift_triggers", {"action": "Retrain", "result": "Suppressed"}), EVALUATED_OK],
    ),
    Case(
        "after a suppression the next evaluation asks again, and Drifting keeps the suppression",
        status=evaluated(
            BREACHED,
            ("True", "MetricsBreached", SUPPRESSED_MESSAGE),
        ),
        target=serving(answer("Suppressed", "2026-01-01T11:58:00Z", reason="Cooldown", message=SUPPRESSION)),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [BREACHED],
            "retrainRequest": {"id": NOW_TEXT, "requestedAt": NOW_TEXT, "detail": DETAIL},
        },
        ready=READY,
        drifting=("True", "MetricsBreached", SUPPRESSED_MESSAGE),
        counts=[EVALUATED_OK],
    ),
    Case(
        "the same suppression again: no second RetrainSuppressed Event",
        status=evaluated(
            BREACHED,
            ("True", "MetricsBreached", SUPPRESSED_MESSAGE),
            retrainRequest=PENDING,
        ),
        target=serving(SUPPRESSED),
        expected={"observedGeneration": 2, "lastEvaluationTime": NOW_TEXT, "metrics": [BREACHED]},
        ready=READY,
        drifting=("True", "MetricsBreached", SUPPRESSED_MESSAGE),
        counts=[("drift_triggers", {"action": "Retrain", "result": "Suppressed"}), EVALUATED_OK],
    ),
    Case(
        "unanswered: the request is kept while the policy drifts",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(OTHER_POLICY),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": T_EVALUATED,  # nothing a reader cares about changed: status stays
            "metrics": [BREACHED],
            "retrainRequest": PENDING,
        },
        ready=READY,
        drifting=ASKED,
        counts=[EVALUATED_OK],
    ),
    Case(
        "an answer to an earlier request is not the answer to this one",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING, lastTriggerTime=T_OUT, triggerCount=1),
        target=serving(answer("Started", T_OUT, trainingJob="churn-v2")),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": T_EVALUATED,  # nothing a reader cares about changed: status stays
            "metrics": [BREACHED],
            "lastTriggerTime": T_OUT,
            "triggerCount": 1,
            "retrainRequest": PENDING,
        },
        ready=READY,
        drifting=ASKED,
        counts=[EVALUATED_OK],
    ),
    Case(
        "recovered before an answer: the request is withdrawn",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(),
        value=HEALTHY,
        expected={"observedGeneration": 2, "lastEvaluationTime": NOW_TEXT, "metrics": [WITHIN]},
        ready=READY,
        drifting=("False", "WithinBounds", "no sustained breach"),
        events=[("Normal", "DriftRecovered", "metrics are back within bounds")],
        counts=[EVALUATED_OK],
    ),
    Case(
        "a run started for a request withdrawn a moment too late is still this policy's trigger",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(STARTED),
        value=HEALTHY,
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [WITHIN],
            "lastTriggerTime": T_EVALUATED,
            "triggerCount": 1,
            "lastTrainingJob": "churn-v2",
        },
        ready=READY,
        drifting=("False", "WithinBounds", "no sustained breach"),
        events=[("Normal", "RetrainTriggered", "retraining churn: churn-v2")],
        counts=[("drift_triggers", {"action": "Retrain", "result": "Started"}), EVALUATED_OK],
    ),
    Case(
        "an answer to a policy of the same name that existed before this one is ignored",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(answer("Started", "2026-01-01T09:00:00Z", trainingJob="churn-v2")),
        value=HEALTHY,
        expected={"observedGeneration": 2, "lastEvaluationTime": T_EVALUATED, "metrics": [WITHIN]},  # unchanged
        ready=READY,
        drifting=("False", "WithinBounds", "no sustained breach"),
        counts=[EVALUATED_OK],
    ),
    Case(
        "the target is gone: Ready False TargetNotFound, the request cleared",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=None,
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [
                {"name": "feature_psi", "max": 0.2, "breached": False, "error": "ModelDeployment churn not found in ml"}
            ],
        },
        ready=("False", "TargetNotFound", "ModelDeployment churn not found in ml"),
        drifting=("False", "NoData", "no metric has data"),
        events=[("Normal", "DriftRecovered", "metrics are back within bounds")],
        counts=[("drift_evaluations", {"result": "error"})],
    ),
    # ---------------------------------------------------------------- c. cooldown and Observe
    Case(
        "within the policy's cooldown nothing is asked",
        status=evaluated(
            BREACHED,
            ("True", "MetricsBreached", f"{BREACH}; started churn-v2"),
            lastTriggerTime="2026-01-01T11:00:00Z",
            triggerCount=1,
            lastTrainingJob="churn-v2",
        ),
        target=serving(answer("Started", "2026-01-01T11:00:00Z", trainingJob="churn-v2")),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [BREACHED],
            "lastTriggerTime": "2026-01-01T11:00:00Z",
            "triggerCount": 1,
            "lastTrainingJob": "churn-v2",
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; policy cooldown until 2026-01-01T17:00:00Z"),
        counts=[EVALUATED_OK],
    ),
    Case(
        "once the cooldown is over the same episode asks again",
        status=evaluated(
            BREACHED,
            ("True", "MetricsBreached", f"{BREACH}; policy cooldown until 2026-01-01T12:00:00Z"),
            lastTriggerTime="2026-01-01T06:00:00Z",
            triggerCount=1,
        ),
        target=serving(),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [BREACHED],
            "lastTriggerTime": "2026-01-01T06:00:00Z",
            "triggerCount": 1,
            "retrainRequest": {"id": NOW_TEXT, "requestedAt": NOW_TEXT, "detail": DETAIL},
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; asked churn to retrain"),
        counts=[EVALUATED_OK],
    ),
    Case(
        "Observe records what it would have done and asks nothing",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        spec=spec(trigger={"action": "Observe"}),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [{**BREACHED, "breachedSince": NOW_TEXT}],
            "lastTriggerTime": NOW_TEXT,
            "triggerCount": 1,
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; action Observe: no retrain"),
        events=[
            ("Warning", "MetricBreached", "feature_psi=0.31 > max 0.2 for 0s"),
            ("Normal", "WouldRetrain", "Observe: would retrain churn (feature_psi=0.31 > max 0.2)"),
        ],
        counts=[
            ("drift_breaches", {}),
            EVALUATED_OK,
            ("drift_triggers", {"action": "Observe", "result": "Observed"}),
        ],
    ),
    Case(
        "switching to Observe withdraws an unanswered request",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(),
        spec=spec(trigger={"action": "Observe"}),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [BREACHED],
            "lastTriggerTime": NOW_TEXT,
            "triggerCount": 1,
        },
        ready=READY,
        drifting=("True", "MetricsBreached", f"{BREACH}; action Observe: no retrain"),
        events=[("Normal", "WouldRetrain", "Observe: would retrain churn (feature_psi=0.31 > max 0.2)")],
        counts=[EVALUATED_OK, ("drift_triggers", {"action": "Observe", "result": "Observed"})],
    ),
    # ---------------------------------------------------------------- d. suspend and errors
    Case(
        "suspend: not evaluated, the request withdrawn",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(),
        spec=spec(suspend=True),
        evaluate=False,
        expected={"observedGeneration": 2, "lastEvaluationTime": T_EVALUATED, "metrics": [BREACHED]},
        ready=READY,
        drifting=("False", "Suspended", "spec.suspend is true: not evaluating"),
        requeue=None,
    ),
    Case(
        "Prometheus unreachable: Ready False, the metric has no value, nothing breaches",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        error=MetricResult(error="PrometheusUnreachable", message=f"{URL}: ClientConnectorError: refused"),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [
                {
                    "name": "feature_psi",
                    "max": 0.2,
                    "breached": False,
                    "error": f"Prometheus unreachable: {URL}: ClientConnectorError: refused",
                }
            ],
        },
        ready=("False", "PrometheusUnreachable", f"{URL}: ClientConnectorError: refused"),
        drifting=("False", "NoData", "no metric has data"),
        counts=[("drift_evaluations", {"result": "error"})],
    ),
    Case(
        "a query error names the metric on Ready",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        error=MetricResult(error="QueryError", message="bad_data: 1:27: parse error: unclosed left parenthesis"),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [
                {
                    "name": "feature_psi",
                    "max": 0.2,
                    "breached": False,
                    "error": "bad_data: 1:27: parse error: unclosed left parenthesis",
                }
            ],
        },
        ready=("False", "QueryError", "feature_psi: bad_data: 1:27: parse error: unclosed left parenthesis"),
        drifting=("False", "NoData", "no metric has data"),
        counts=[("drift_evaluations", {"result": "error"})],
    ),
    Case(
        "+Inf from Prometheus: Ready False with NonFiniteValue, never a breach",
        status=evaluated(WITHIN, ("False", "WithinBounds", "no sustained breach")),
        target=serving(),
        error=MetricResult(error="NonFiniteValue", message="the query's value is +Inf, not a finite number"),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [
                {
                    "name": "feature_psi",
                    "max": 0.2,
                    "breached": False,
                    "error": "the query's value is +Inf, not a finite number",
                }
            ],
        },
        ready=("False", "NonFiniteValue", "feature_psi: the query's value is +Inf, not a finite number"),
        drifting=("False", "NoData", "no metric has data"),
        counts=[("drift_evaluations", {"result": "error"})],
    ),
    *(
        Case(
            f"a {shown} value handed over as a value: withdraws the pending request, never asks again",
            status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
            target=serving(),
            value=value,
            expected={
                "observedGeneration": 2,
                "lastEvaluationTime": NOW_TEXT,
                "metrics": [
                    {
                        "name": "feature_psi",
                        "max": 0.2,
                        "breached": False,
                        "error": f"the value is {shown}, not a finite number",
                    }
                ],
            },
            ready=("False", "NonFiniteValue", f"feature_psi: the value is {shown}, not a finite number"),
            drifting=("False", "NoData", "no metric has data"),
            events=[("Normal", "DriftRecovered", "metrics are back within bounds")],
            counts=[("drift_evaluations", {"result": "error"})],
        )
        for value, shown in ((math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"))
    ),
    Case(
        "no data is no problem and never a breach",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING),
        target=serving(),
        error=MetricResult(error="NoData", message="NoData: the query returned no series"),
        expected={
            "observedGeneration": 2,
            "lastEvaluationTime": NOW_TEXT,
            "metrics": [
                {"name": "feature_psi", "max": 0.2, "breached": False, "error": "NoData: the query returned no series"}
            ],
        },
        ready=READY,
        drifting=("False", "NoData", "no metric has data"),
        events=[("Normal", "DriftRecovered", "metrics are back within bounds")],
        counts=[EVALUATED_OK],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    observed = observe(case)
    before = observed.status.to_api()
    plan = plan_driftpolicy(observed)

    wire = plan.status.to_api()
    wire.pop("conditions", None)
    assert wire == case.expected
    found = by_type(plan)
    assert found.get("Ready") == case.ready
    assert found.get("Drifting") == case.drifting
    assert [(e.type, e.reason, e.message) for e in plan.events] == case.events
    assert [(c.metric, dict(c.labels)) for c in plan.counts] == case.counts
    assert plan.requeue_after == case.requeue
    assert observed.status.to_api() == before, "the plan changed what it observed"


# ---------------------------------------------------------------- beyond the table
def test_no_prometheus_url_is_not_ready() -> None:
    case = Case("", status={}, target=serving())
    plan = plan_driftpolicy(dataclasses.replace(observe(case), prometheus_url=None, results={}))
    assert by_type(plan)["Ready"] == ("False", "PrometheusUnreachable", NO_PROMETHEUS)
    assert plan.status.to_api()["metrics"] == [
        {"name": "feature_psi", "max": 0.2, "breached": False, "error": NO_PROMETHEUS}
    ]


def test_an_endpoint_not_allowed_is_not_ready_and_withdraws_the_request() -> None:
    nowhere = "http://169.254.169.254/latest"
    case = Case("", status=evaluated(BREACHED, ASKED, retrainRequest=PENDING), target=serving())
    observed = dataclasses.replace(observe(case), prometheus_url=nowhere, endpoint_allowed=False, results={})

    plan = plan_driftpolicy(observed)

    status, reason, message = by_type(plan)["Ready"]
    assert (status, reason) == ("False", "EndpointNotAllowed")
    assert nowhere in message
    assert "PERENNIAL_PROMETHEUS_ALLOWED_URLS" in message
    assert plan.status.to_api()["metrics"] == [{"name": "feature_psi", "max": 0.2, "breached": False, "error": message}]
    assert plan.status.retrain_request is None
    assert by_type(plan)["Drifting"] == ("False", "NoData", "no metric has data")
    assert plan.status.last_evaluation_time == NOW, "status is still written"


ALLOWED = ("http://prometheus.monitoring:9090", "https://thanos.obs.svc:10902/prometheus/", "http://10.0.0.7")


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://prometheus.monitoring:9090", ALLOWED[0]),
        ("http://prometheus.monitoring:9090/", ALLOWED[0]),
        ("HTTP://Prometheus.Monitoring:9090//", ALLOWED[0]),
        ("https://thanos.obs.svc:10902/prometheus", ALLOWED[1]),
        ("https://thanos.obs.svc:10902/prometheus/", ALLOWED[1]),
        ("http://10.0.0.7:80/", ALLOWED[2]),
        ("http://10.0.0.7", ALLOWED[2]),
        ("http://prometheus.monitoring:9091", None),
        ("https://prometheus.monitoring:9090", None),
        ("http://prometheus.monitoring:9090/api/v1/admin", None),
        ("http://prometheus.monitoring:9090/..", None),
        ("https://thanos.obs.svc:10902", None),
        ("https://thanos.obs.svc:10902/prometheus/../other", None),
        ("http://prometheus.monitoring:9090@evil.example:9090", None),
        ("http://user@prometheus.monitoring:9090", None),
        ("http://prometheus.monitoring:9090?x=/", None),
        ("http://prometheus.monitoring:9090#frag", None),
        ("http://prometheus.monitoring.evil.example:9090", None),
        ("http://prometheus.monitoring:99999", None),
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://0x0a000007", None),
        ("file:///etc/passwd", None),
    ],
)
def test_allowed_endpoint_compares_scheme_host_port_and_path(url: str, entry: str | None) -> None:
    assert allowed_endpoint(url, ALLOWED) == entry


def test_nothing_is_allowed_from_an_empty_allowlist() -> None:
    assert allowed_endpoint("http://prometheus.monitoring:9090", ()) is None
    assert allowed_endpoint("http://prometheus.monitoring:9090", ("",)) is None


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    case = Case("", status=evaluated(BREACHED, ASKED, retrainRequest=PENDING), target=serving(STARTED))
    plan = plan_driftpolicy(observe(case))
    drifting = next(c for c in plan.status.conditions or [] if c.type == "Drifting")
    assert drifting.to_api() == {
        "type": "Drifting",
        "status": "True",
        "reason": "MetricsBreached",
        "message": f"{BREACH}; started churn-v2",
        "lastTransitionTime": T_EVALUATED,
        "observedGeneration": 2,
    }


@pytest.mark.parametrize(
    ("status", "target", "absorbed"),
    [
        ({"retrainRequest": PENDING}, serving(STARTED), True),
        ({"retrainRequest": PENDING}, serving(SUPPRESSED), True),
        ({"retrainRequest": PENDING}, serving(), False),
        ({"retrainRequest": PENDING}, serving(OTHER_POLICY), False),
        ({"retrainRequest": PENDING}, None, False),
        ({}, serving(SUPPRESSED), False),
        ({}, serving(STARTED), True),
        ({"lastTriggerTime": T_EVALUATED, "triggerCount": 1}, serving(STARTED), False),
        ({}, serving(answer("Started", "2026-01-01T09:59:59Z", trainingJob="churn-v2")), False),
    ],
    ids=[
        "the answer to the pending request",
        "a suppression of the pending request",
        "no answer yet",
        "another policy's answer",
        "no target",
        "a suppression already recorded",
        "a run started after the request was withdrawn",
        "a run already recorded",
        "an answer older than the policy",
    ],
)
def test_answer_to_absorb(status: dict[str, Any], target: dict[str, Any] | None, absorbed: bool) -> None:
    case = Case("", status=status, target=target)
    assert (answer_to_absorb(observe(case)) is not None) is absorbed


HALF_A_MINUTE_AGO = datetime(2026, 1, 1, 11, 59, 30, tzinfo=UTC)
HEARTBEAT_WRITTEN = {"lastEvaluationTime": "2026-01-01T11:52:00Z", "observedGeneration": 2}  # 8 minutes ago


@pytest.mark.parametrize(
    ("status", "remembered", "generation", "seconds"),
    [
        ({}, None, 2, 0.0),
        ({"lastEvaluationTime": T_EVALUATED, "observedGeneration": 2}, None, 2, 0.0),
        ({"lastEvaluationTime": "2026-01-01T11:59:30Z", "observedGeneration": 2}, None, 2, 30.0),
        ({"lastEvaluationTime": "2026-01-01T11:59:30Z", "observedGeneration": 1}, None, 2, 0.0),
        (HEARTBEAT_WRITTEN, HALF_A_MINUTE_AGO, 2, 30.0),
        (HEARTBEAT_WRITTEN, None, 2, -420.0),  # overdue: now
        ({}, HALF_A_MINUTE_AGO, 2, 30.0),
        ({"lastEvaluationTime": "2026-01-01T11:59:50Z", "observedGeneration": 2}, HALF_A_MINUTE_AGO, 2, 50.0),
    ],
    ids=[
        "never evaluated",
        "an interval ago",
        "half an interval ago",
        "the spec changed since",
        "status is an old heartbeat: the controller's memory counts",
        "a new leader with an old heartbeat evaluates at once",
        "evaluated, not written yet",
        "the later of memory and status",
    ],
)
def test_evaluation_due_in(
    status: dict[str, Any], remembered: datetime | None, generation: int, seconds: float
) -> None:
    due = evaluation_due_in(
        DriftPolicySpec.model_validate(spec()), DriftPolicyStatus.model_validate(status), generation, NOW, remembered
    )
    assert due == seconds


TARGET_MISSING = {
    "lastEvaluationTime": "2026-01-01T11:59:30Z",
    "observedGeneration": 2,
    "conditions": [{"type": "Ready", "status": "False", "reason": "TargetNotFound", "message": "not found"}],
}
EVALUATED_WITH_TARGET = {
    "lastEvaluationTime": "2026-01-01T11:59:30Z",
    "observedGeneration": 2,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Evaluated", "message": "1 metric(s) evaluated"}],
}


@pytest.mark.parametrize(
    ("status", "target_found", "seconds"),
    [
        (TARGET_MISSING, True, 0.0),
        (TARGET_MISSING, False, 30.0),
        (EVALUATED_WITH_TARGET, False, 0.0),
        (EVALUATED_WITH_TARGET, True, 30.0),
        (EVALUATED_WITH_TARGET, None, 30.0),
    ],
    ids=[
        "the target appeared: at once",
        "still missing: on schedule",
        "the target went: at once",
        "still there: on schedule",
        "not told: on schedule",
    ],
)
def test_a_status_wrong_about_its_target_is_due_at_once(
    status: dict[str, Any], target_found: bool | None, seconds: float
) -> None:
    due = evaluation_due_in(
        DriftPolicySpec.model_validate(spec()),
        DriftPolicyStatus.model_validate(status),
        2,
        NOW,
        None,
        target_found=target_found,
    )
    assert due == seconds


def test_between_evaluations_the_next_one_is_due_an_interval_after_the_remembered_one() -> None:
    case = Case(
        "",
        status=evaluated(BREACHED, ASKED, retrainRequest=PENDING) | {"lastEvaluationTime": "2026-01-01T11:52:00Z"},
        target=serving(STARTED),
        evaluate=False,
    )
    plan = plan_driftpolicy(dataclasses.replace(observe(case), last_evaluation=HALF_A_MINUTE_AGO))
    assert plan.requeue_after == 30.0
    assert plan.status.trigger_count == 1, "the answer is recorded"


def test_promoted_at_is_the_serving_versions_promotion() -> None:
    target = ModelDeploymentStatus.model_validate(
        {
            "servingVersion": "2",
            "versions": [
                {"version": "1", "promotedAt": "2026-01-01T08:00:00Z"},
                {"version": "2", "promotedAt": "2026-01-01T10:00:00Z"},
            ],
        }
    )
    assert promoted_at(target) == datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert promoted_at(ModelDeploymentStatus.model_validate({})) is None
