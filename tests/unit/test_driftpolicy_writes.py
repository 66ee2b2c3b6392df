"""When a DriftPolicy's status is written: only when something a reader cares about changes, and a heartbeat.

The binding contract (docs/operations.md, *When a DriftPolicy's status is written*): an
evaluation writes status when a metric's ``breached``, ``breachedSince``, error, or the
side of its bounds its value lies on changes, when a condition's status, reason or
message changes (other than in the numbers it quotes), when ``retrainRequest``, a trigger
or ``observedGeneration`` changes, and for the heartbeat: ``lastEvaluationTime`` at least
max(10 * interval, 10m) old. Otherwise status stays exactly as it is and no Event is posted.

Each test plays evaluations in order through the pure plan, keeping only what a write
would have left in the API server: the plan remembers nothing else, so every step is also
what a restarted operator would do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.adapters import metrics
from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.domain.driftpolicy import (
    MetricResult,
    ObservedPolicy,
    heartbeat,
    plan_driftpolicy,
    reader_view,
    steady,
)
from perennial.domain.plan import Plan

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
URL = "http://prometheus.monitoring:9090"


def spec(interval: str = "1m", **metric: Any) -> DriftPolicySpec:
    bounds = metric or {"max": 0.2}
    return DriftPolicySpec.model_validate(
        {
            "targetRef": {"name": "churn"},
            "interval": interval,
            "metrics": [{"name": "feature_psi", "query": "max(churn_feature_psi)", **bounds}],
            "trigger": {"cooldown": "6h"},
        }
    )


Result = float | MetricResult
"""What Prometheus gave at one evaluation: a value, or an error."""


@dataclass
class Step:
    at: datetime
    plan: Plan[DriftPolicyStatus]
    written: bool


@dataclass
class Policy:
    """A DriftPolicy as the API server holds it, evaluated step by step through the plan."""

    spec: DriftPolicySpec
    status: DriftPolicyStatus = dataclasses.field(default_factory=DriftPolicyStatus)
    target: dict[str, Any] = dataclasses.field(default_factory=lambda: {"servingVersion": "1", "phase": "Serving"})
    steps: list[Step] = dataclasses.field(default_factory=list)

    def evaluate(self, at: datetime, result: Result, **changes: Any) -> Step:
        results = {"feature_psi": result if isinstance(result, MetricResult) else MetricResult(result)}
        observed = ObservedPolicy(
            name="churn-drift",
            namespace="ml",
            generation=1,
            spec=self.spec,
            status=self.status,
            target=ModelDeploymentStatus.model_validate(self.target),
            now=at,
            results=results,
            prometheus_url=URL,
            created=START - timedelta(hours=1),
        )
        before = self.status.to_api()
        plan = plan_driftpolicy(dataclasses.replace(observed, **changes))
        assert self.status.to_api() == before, "the plan changed what it observed"
        written = plan.status.to_api() != before
        if written:
            self.status = plan.status
        else:
            assert plan.events == [], "an Event tells of a written change"
        step = Step(at, plan, written)
        self.steps.append(step)
        return step

    def run(self, results: Sequence[Result], every: timedelta, start: datetime = START) -> list[Step]:
        return [self.evaluate(start + i * every, result) for i, result in enumerate(results)]

    @property
    def api(self) -> dict[str, Any]:
        return self.status.to_api()


def written_at(steps: Sequence[Step]) -> list[timedelta]:
    return [step.at - START for step in steps if step.written]


def drifting(status: DriftPolicyStatus) -> tuple[str, str, str]:
    found = next(c for c in status.conditions or [] if c.type == "Drifting")
    return found.status, found.reason, found.message


def jitter(i: int) -> float:
    """A value that moves at every evaluation, inside [0.04, 0.06]."""
    return 0.05 + ((i * 7) % 5 - 2) / 200


# ---------------------------------------------------------------- a steady policy
@pytest.mark.parametrize(
    ("interval", "evaluations", "heartbeat_after", "writes"),
    [
        ("10s", 12 * 6, timedelta(minutes=10), [timedelta(0), timedelta(minutes=10)]),
        ("1m", 25, timedelta(minutes=10), [timedelta(0), timedelta(minutes=10), timedelta(minutes=20)]),
        ("2m", 25, timedelta(minutes=20), [timedelta(0), timedelta(minutes=20), timedelta(minutes=40)]),
    ],
)
def test_a_value_that_moves_within_its_bounds_writes_only_the_first_evaluation_and_the_heartbeat(
    interval: str, evaluations: int, heartbeat_after: timedelta, writes: list[timedelta]
) -> None:
    policy = Policy(spec(interval))
    assert heartbeat(policy.spec) == heartbeat_after
    every = parse_duration(interval)
    steps = policy.run([jitter(i) for i in range(evaluations)], every)

    assert written_at(steps) == writes
    # What a heartbeat writes is current: the evaluation's time and value.
    last = max(i for i, step in enumerate(steps) if step.written)
    assert policy.api["lastEvaluationTime"] == f"2026-01-01T12:{writes[-1].seconds // 60:02d}:00Z"
    assert policy.api["metrics"] == [{"name": "feature_psi", "value": jitter(last), "max": 0.2, "breached": False}]
    for step in steps:  # every evaluation is counted (the operator's metrics) and schedules the next, written or not
        assert [(c.metric, dict(c.labels)) for c in step.plan.counts] == [("drift_evaluations", {"result": "success"})]
        assert step.plan.requeue_after == every.total_seconds()


def test_a_status_left_unchanged_is_exactly_the_one_observed() -> None:
    policy = Policy(spec())
    policy.evaluate(START, 0.05)
    step = policy.evaluate(START + timedelta(minutes=1), 0.07)
    assert not step.written
    assert step.plan.status == policy.status
    assert step.plan.status is not policy.status, "a copy: the plan never shares what it observed"


# ---------------------------------------------------------------- crossing a bound
def test_a_value_leaving_its_bounds_is_written_at_once_and_the_breach_when_for_has_passed() -> None:
    policy = Policy(spec(max=0.2, **{"for": "5m"}))
    values = [0.05, 0.06, 0.31, 0.33, 0.29, 0.35, 0.32, 0.30, 0.34, 0.36]
    steps = policy.run(values, timedelta(minutes=1))

    # The first evaluation; out of bounds at 2m (breachedSince); breached at 7m (5m later).
    assert written_at(steps) == [timedelta(0), timedelta(minutes=2), timedelta(minutes=7)]
    out = steps[2].plan.status.to_api()["metrics"][0]
    assert out == {
        "name": "feature_psi",
        "value": 0.31,
        "max": 0.2,
        "breached": False,
        "breachedSince": "2026-01-01T12:02:00Z",
    }
    breached = steps[7].plan.status.to_api()
    assert breached["metrics"][0] == {
        "name": "feature_psi",
        "value": 0.30,
        "max": 0.2,
        "breached": True,
        "breachedSince": "2026-01-01T12:02:00Z",
    }, "the clock ran from status alone: nothing was written between 2m and 7m"
    assert breached["retrainRequest"]["detail"] == "feature_psi=0.3 > max 0.2"
    assert [e.reason for e in steps[7].plan.events] == ["MetricBreached"]


def test_coming_back_within_bounds_is_written_at_once() -> None:
    policy = Policy(spec(max=0.2, **{"for": "5m"}))
    steps = policy.run([0.05, 0.31, 0.32, 0.1, 0.12], timedelta(minutes=1))
    assert written_at(steps) == [timedelta(0), timedelta(minutes=1), timedelta(minutes=3)]
    assert policy.api["metrics"] == [{"name": "feature_psi", "value": 0.1, "max": 0.2, "breached": False}]


def test_jumping_from_below_min_to_above_max_is_written() -> None:
    policy = Policy(spec(min=0.0, max=0.2, **{"for": "10m"}))
    steps = policy.run([-0.1, -0.2, 0.3], timedelta(minutes=1))
    assert written_at(steps) == [timedelta(0), timedelta(minutes=2)]
    assert policy.api["metrics"][0]["value"] == 0.3
    assert policy.api["metrics"][0]["breachedSince"] == "2026-01-01T12:00:00Z", "still out: the same clock"


# ---------------------------------------------------------------- messages that quote a value
def test_drifting_quotes_the_value_of_the_last_write_and_is_not_rewritten_as_the_value_moves() -> None:
    """A breach whose request the target has not answered yet: the value moves, nothing is written."""
    policy = Policy(spec())
    asked = policy.evaluate(START, 0.31)
    assert asked.written
    message = "AnyMetric: feature_psi=0.31 > max 0.2; asked churn to retrain"
    assert drifting(policy.status) == ("True", "MetricsBreached", message)

    steps = policy.run([0.33, 0.35, 0.29, 0.4], timedelta(minutes=1), start=START + timedelta(minutes=1))
    assert not any(step.written for step in steps)
    assert drifting(policy.status) == ("True", "MetricsBreached", message)
    assert policy.api["metrics"][0]["value"] == 0.31, "the value written with the message"
    assert policy.api["retrainRequest"]["detail"] == "feature_psi=0.31 > max 0.2"

    beat = policy.evaluate(START + timedelta(minutes=10), 0.37)
    assert beat.written
    assert drifting(policy.status) == ("True", "MetricsBreached", message.replace("0.31", "0.37"))
    assert policy.api["metrics"][0]["value"] == 0.37, "the heartbeat writes the message and the value together"
    assert policy.api["retrainRequest"]["detail"] == "feature_psi=0.31 > max 0.2", "the request is the one asked"
    assert beat.plan.events == []


def test_the_same_suppression_with_another_value_posts_no_second_event() -> None:
    policy = Policy(spec())
    policy.evaluate(START, 0.31)
    request = policy.api["retrainRequest"]["id"]
    suppressed = {
        "policy": "churn-drift",
        "id": request,
        "result": "Suppressed",
        "reason": "Cooldown",
        "message": "retraining.cooldown holds automatic retrains until 2026-01-01T18:00:00Z",
        "answeredAt": request,
    }
    policy.target = {**policy.target, "driftRequests": [suppressed]}
    first = policy.evaluate(START + timedelta(minutes=1), 0.32, evaluate=False)
    assert [e.reason for e in first.plan.events] == ["RetrainSuppressed"]

    asked_again = policy.evaluate(START + timedelta(minutes=2), 0.33)  # asks again, keeps the suppression shown
    assert asked_again.written
    assert "the target suppressed the retrain" in drifting(policy.status)[2]
    policy.target = {**policy.target, "driftRequests": [{**suppressed, "id": policy.api["retrainRequest"]["id"]}]}
    again = policy.evaluate(START + timedelta(minutes=3), 0.34)
    assert again.written, "the answer is recorded: the request cleared"
    assert [e.reason for e in again.plan.events] == [], "the same suppression, up to the value quoted: told once"


# ---------------------------------------------------------------- errors
NO_DATA = "NoData: current window has {} observations, fewer than minSamples 100"
SERIES = "the query returned {} series; aggregate it to one (e.g. max(...), avg(...))"


def no_data(count: int) -> MetricResult:
    return MetricResult(error="NoData", message=NO_DATA.format(count))


def query_error(count: int) -> MetricResult:
    return MetricResult(error="QueryError", message=SERIES.format(count))


def test_an_error_is_written_when_it_starts_changes_or_ends_not_when_only_its_numbers_move() -> None:
    policy = Policy(spec())
    results: list[Result] = [0.05, no_data(40), no_data(57), no_data(80), query_error(3), query_error(4), 0.06, 0.07]
    steps = policy.run(results, timedelta(minutes=1))

    assert written_at(steps) == [timedelta(minutes=m) for m in (0, 1, 4, 6)]
    texts = [s.plan.status.to_api()["metrics"][0].get("error") for s in steps]
    assert texts[1:4] == [NO_DATA.format(40)] * 3, "the count of observations is the one written"
    ready = [next(c for c in s.plan.status.conditions or [] if c.type == "Ready") for s in steps]
    assert (ready[5].reason, ready[5].message) == ("QueryError", f"feature_psi: {SERIES.format(3)}")
    assert policy.api["metrics"] == [{"name": "feature_psi", "value": 0.06, "max": 0.2, "breached": False}]


def test_a_value_that_is_not_a_finite_number_is_an_error_written_once() -> None:
    policy = Policy(spec())
    steps = policy.run([0.05, float("nan"), float("nan"), float("inf")], timedelta(minutes=1))
    assert written_at(steps) == [timedelta(0), timedelta(minutes=1), timedelta(minutes=3)]
    assert policy.api["metrics"][0]["error"] == "the value is +Inf, not a finite number"
    assert policy.api["metrics"][0]["breached"] is False


def test_a_configuration_problem_whose_message_changes_only_in_a_number_posts_no_event_until_written() -> None:
    def unknown(more: int) -> tuple[str, str]:
        return (
            "EndpointUnknown",
            f"spec.prometheus.endpoint thanos-eu is unknown (the operator defines a and {more} more)",
        )

    policy = Policy(spec())
    first = policy.evaluate(START, MetricResult(), endpoint_problem=unknown(21), results={})
    assert first.written
    assert [(e.type, e.reason) for e in first.plan.events] == [("Warning", "EndpointUnknown")]
    second = policy.evaluate(START + timedelta(minutes=1), MetricResult(), endpoint_problem=unknown(22), results={})
    assert not second.written
    assert second.plan.events == []


# ---------------------------------------------------------------- the view
def test_the_readers_view_ignores_the_evaluation_time_values_on_the_same_side_and_numbers_in_text() -> None:
    def status(value: float | None, **changes: Any) -> DriftPolicyStatus:
        metric = {
            "name": "feature_psi",
            "max": 0.2,
            "breached": False,
            **({"value": value} if value is not None else {}),
        }
        return DriftPolicyStatus.model_validate(
            {
                "observedGeneration": 1,
                "lastEvaluationTime": "2026-01-01T12:00:00Z",
                "metrics": [metric],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Evaluated", "message": "1 metric(s) evaluated"}
                ],
                **changes,
            }
        )

    same = reader_view(status(0.05))
    assert reader_view(status(0.19, lastEvaluationTime="2026-01-01T12:05:00Z")) == same
    assert reader_view(status(0.21)) != same, "above max"
    assert reader_view(status(None)) != same, "no value"
    assert reader_view(status(0.05, triggerCount=1)) != same
    assert reader_view(status(0.05, observedGeneration=2)) != same
    assert steady("feature_psi=0.31 > max 0.2; policy cooldown until 2026-01-01T17:00:00Z") == (
        "feature_psi=# > max #; policy cooldown until #-#-#T#:#:#Z"
    )
    assert steady("1e-05 < min 2.5E+3") == "# < min #"


# ---------------------------------------------------------------- the operator's metric of the evaluation time
def sample(name: str, labels: dict[str, str]) -> float | None:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return None if value is None else float(value)


def test_the_last_evaluation_time_is_a_gauge_per_policy_gone_with_the_policy_or_the_lead() -> None:
    gauge = "perennial_drift_policy_last_evaluation_timestamp_seconds"
    ns = "ns-last-evaluation"
    churn, fraud = {"namespace": ns, "policy": "churn-drift"}, {"namespace": ns, "policy": "fraud-drift"}
    metrics.set_drift_evaluated(ns, "churn-drift", 1767268800.0)
    metrics.set_drift_values(ns, "churn-drift", "churn", {"feature_psi": 0.3})
    metrics.set_drift_evaluated(ns, "fraud-drift", 1767268810.0)  # its target missing: no value, still evaluated
    assert sample(gauge, churn) == 1767268800.0
    assert sample(gauge, fraud) == 1767268810.0
    metrics.set_drift_evaluated(ns, "churn-drift", 1767268860.0)
    assert sample(gauge, churn) == 1767268860.0

    metrics.forget_model(ns, "churn")  # the target deleted: its values go, the policy's evaluation time stays
    assert (
        sample(
            "perennial_drift_metric_value",
            {"namespace": ns, "model": "churn", "policy": "churn-drift", "metric": "feature_psi"},
        )
        is None
    )
    assert sample(gauge, churn) == 1767268860.0

    metrics.forget_policy(ns, "churn-drift")
    assert sample(gauge, churn) is None
    metrics.forget_all_objects()  # a replica that stops leading
    assert sample(gauge, fraud) is None
