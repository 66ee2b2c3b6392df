"""Canary rollouts, pass by pass: replica shares, pauses, analysis verdicts, aborts, pins.

Same conventions as test_modeldeployment_plan.py (whose helpers this reuses): each test
observes the model as the controller would, with the Deployments the operator applied plus
the status the API server would report, and reads the plan. ``NOW`` is 2026-11-26 12:00 UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.domain import canary
from perennial.domain import modeldeployment as md
from perennial.domain.driftpolicy import MetricResult, metric_status
from perennial.domain.modeldeployment_plan import ObservedModel, plan_modeldeployment
from perennial.domain.plan import ChildRef, Count, Plan
from tests.unit.test_modeldeployment_plan import (
    NOW,
    REF,
    candidate,
    condition,
    event_reasons,
    make_spec,
    observe,
    record,
    run,
    serving_status,
    training_v2,
    version_states,
    wire,
)

ERRORS = 'sum(rate(errors_total{model="{model}",namespace="{namespace}",version="{version}"}[1m]))'
STEPS = [{"weight": 25, "pause": "2m"}, {"weight": 50, "pause": "2m"}]


def canary_spec(*, steps: Any = None, analysis: Any = "default", **rollout: Any) -> ModelDeploymentSpec:
    """Four serving replicas, a two-step canary (25%, 50%; 2m pauses) with an error-rate analysis."""
    fields: dict[str, Any] = {"strategy": "Canary", "steps": steps or STEPS, "progressDeadline": "5m", **rollout}
    if analysis == "default":
        analysis = {"interval": "30s", "metrics": [{"name": "errors", "query": ERRORS, "max": 0.05}]}
    if analysis is not None:
        fields["analysis"] = analysis
    return make_spec(serving={"image": "registry.example/churn-server:1.9.0", "replicas": 4}, rollout=fields)


def deployment(
    spec: ModelDeploymentSpec,
    version: str,
    *,
    replicas: int,
    available: int | None = None,
    is_canary: bool = False,
    rolled_out: bool = True,
) -> dict[str, Any]:
    """A Deployment the operator applied, as the API server reports it (``available`` of ``replicas``)."""
    body = md.desired_deployment(
        REF, spec, version, f"s3://models/churn/{version}", replicas=replicas, canary=is_canary
    )
    available = replicas if available is None else available
    body["metadata"]["generation"] = 3
    body["status"] = {
        "observedGeneration": 3,
        "replicas": replicas,
        "updatedReplicas": replicas if rolled_out else 0,
        "readyReplicas": available,
        "availableReplicas": available if rolled_out else 0,
        "conditions": [{"type": "Available", "status": "True" if available else "False"}],
    }
    return body


def deployments(plan: Plan[ModelDeploymentStatus]) -> dict[str, tuple[str, int]]:
    """Applied Deployments by name: (version, replicas)."""
    return {
        child["metadata"]["name"]: (
            child["spec"]["template"]["metadata"]["labels"]["perennial.dev/version"],
            child["spec"]["replicas"],
        )
        for child in plan.apply
        if child["kind"] == "Deployment"
    }


def max_unavailable(plan: Plan[ModelDeploymentStatus], name: str = "churn") -> int:
    (found,) = [c for c in plan.apply if c["kind"] == "Deployment" and c["metadata"]["name"] == name]
    return int(found["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"])


def next_pass(observed: ObservedModel, plan: Plan[ModelDeploymentStatus], **changes: Any) -> ObservedModel:
    return dataclasses.replace(observed, status=plan.status.model_copy(deep=True), **changes)


def reading(version: str = "2", step: int = 1, *, at: timedelta, **values: float | None) -> canary.AnalysisReading:
    results = {
        name: MetricResult(value) if value is not None else MetricResult(error="NoData", message="NoData: no series")
        for name, value in values.items()
    }
    return canary.AnalysisReading(version, step, NOW + at, results)


def v2_promoted(spec: ModelDeploymentSpec) -> tuple[ObservedModel, Plan[ModelDeploymentStatus]]:
    """The pass that sees version 2 (auc 0.95) succeed while version 1 serves on 4 replicas."""
    status = serving_status(training_v2({"reason": "Drift"}), activeTrainingJob="churn-v2")
    observed = observe(
        spec,
        status,
        runs=[run(1), run(2, "Drift", metrics={"auc": 0.95})],
        deployment=deployment(spec, "1", replicas=4),
    )
    return observed, plan_modeldeployment(observed)


def paused(spec: ModelDeploymentSpec) -> tuple[ObservedModel, Plan[ModelDeploymentStatus]]:
    """Step 1 with its one canary replica available: the pause started at NOW."""
    observed, plan = v2_promoted(spec)
    observed = next_pass(observed, plan, canary=deployment(spec, "2", replicas=1, is_canary=True))
    return observed, plan_modeldeployment(observed)


# ---------------------------------------------------------------- arithmetic
@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 25, 1), (4, 50, 2), (5, 10, 1), (5, 30, 2), (10, 5, 1), (3, 100, 3), (1, 20, 1), (7, 50, 4), (0, 50, 1)],
)
def test_a_step_takes_its_weight_of_the_replicas_rounded_and_at_least_one(
    total: int, weight: int, expected: int
) -> None:
    assert canary.canary_replicas(total, weight) == expected


@pytest.mark.parametrize(
    ("total", "canary_replicas", "available", "stable"),
    [(4, 1, 0, 4), (4, 1, 1, 3), (4, 2, 1, 3), (4, 2, 2, 2), (1, 1, 1, 1), (3, 3, 3, 1), (0, 1, 1, 0)],
)
def test_the_stable_version_gives_up_only_what_the_canary_has_available(
    total: int, canary_replicas: int, available: int, stable: int
) -> None:
    assert canary.stable_replicas(total, canary_replicas, available) == stable


def test_placeholders_are_filled_and_promql_braces_stay() -> None:
    query = canary.expand(
        ERRORS + ' / on() sum(x{version="{stableVersion}"})',
        model="churn",
        namespace="ml",
        version="3",
        stable_version="2",
    )
    assert query == ('sum(rate(errors_total{model="churn",namespace="ml",version="3"}[1m])) / on() sum(x{version="2"})')


# ---------------------------------------------------------------- a canary, step by step
def test_a_promoted_version_starts_a_canary_at_its_first_step_and_the_stable_version_keeps_every_replica() -> None:
    spec = canary_spec()
    _, plan = v2_promoted(spec)

    assert version_states(plan) == {"1": "Serving", "2": "Candidate"}
    assert wire(plan)["rollout"] == {
        "version": "2",
        "previousVersion": "1",
        "startedAt": "2026-11-26T12:00:00Z",
        "strategy": "Canary",
        "stage": "Step",
        "step": 1,
        "steps": 2,
        "weight": 25,
        "canaryReplicas": 1,
        "stableReplicas": 4,
        "stepStartedAt": "2026-11-26T12:00:00Z",
    }
    assert deployments(plan) == {"churn-canary": ("2", 1), "churn": ("1", 4)}
    canary_deployment = plan.apply[1]
    assert canary_deployment["spec"]["selector"]["matchLabels"]["perennial.dev/track"] == "canary"
    assert canary_deployment["spec"]["template"]["metadata"]["labels"]["perennial.dev/track"] == "canary"
    assert "perennial.dev/track" not in plan.apply[2]["spec"]["template"]["metadata"]["labels"]
    assert condition(plan, "Ready") == ("True", "Serving", "version 1 is serving and available")
    assert condition(plan, "Progressing") == (
        "True",
        "CanaryStep",
        "version 2: canary step 1/2 at 25%: waiting for 1 canary, 4 stable replica(s) to be available",
    )
    assert "CanaryStep" in event_reasons(plan)
    assert wire(plan)["phase"] == "Rolling"
    assert plan.requeue_after == 300.0  # the step's progressDeadline


def test_the_first_version_is_never_a_canary() -> None:
    spec = canary_spec()
    status = {
        "latestVersion": "1",
        "activeTrainingJob": "churn-v1",
        "versions": [
            {"version": "1", "trainingJob": "churn-v1", "state": "Training", "trigger": {"reason": "Initial"}}
        ],
    }
    plan = plan_modeldeployment(observe(spec, status, runs=[run(1)]))
    assert wire(plan)["rollout"] == {"version": "1", "startedAt": "2026-11-26T12:00:00Z"}


def test_the_pause_starts_once_the_canary_is_available_and_the_stable_version_shrinks_by_as_much() -> None:
    spec = canary_spec()
    _, plan = paused(spec)

    rollout = wire(plan)["rollout"]
    assert rollout["pauseStartedAt"] == "2026-11-26T12:00:00Z"
    assert (rollout["canaryReplicas"], rollout["stableReplicas"]) == (1, 3)
    assert deployments(plan) == {"churn-canary": ("2", 1), "churn": ("1", 3)}
    assert max_unavailable(plan) == 2, "replicas lent to the canary: the serving Deployment stays Available"
    assert max_unavailable(plan, "churn-canary") == 0
    assert condition(plan, "Progressing")[1] == "CanaryStep"
    assert "paused until 2026-11-26T12:02:00Z" in condition(plan, "Progressing")[2]
    assert plan.requeue_after == 0.0  # the analysis is due: nothing read in this step yet


def test_an_analysis_breach_aborts_at_once_and_the_stable_version_serves_at_full_size() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(seconds=30), errors=0.2), now=NOW + timedelta(seconds=30)
    )
    plan = plan_modeldeployment(observed)

    message = "version 2's canary failed its analysis at step 1: errors=0.2 > max 0.05; rolled back to version 1"
    assert version_states(plan) == {"1": "Serving", "2": "RolledBack"}
    assert record(plan, "2")["rollback"] == {
        "time": "2026-11-26T12:00:30Z",
        "reason": "AnalysisFailed",
        "message": message,
        "analysis": [
            {"name": "errors", "value": 0.2, "max": 0.05, "breached": True, "breachedSince": "2026-11-26T12:00:30Z"}
        ],
    }
    status = wire(plan)
    assert "rollout" not in status
    assert (status["servingVersion"], status["lastRolledBack"]) == ("1", "2")
    assert deployments(plan) == {"churn": ("1", 4)}
    assert max_unavailable(plan) == 2, "the serving Deployment stays Available while it grows back"
    assert plan.delete == [ChildRef("deployments", "churn-canary")]
    assert condition(plan, "Degraded") == ("True", "AnalysisFailed", message)
    assert condition(plan, "Ready") == ("True", "Serving", "version 1 is serving and available")
    assert "AnalysisFailed" in event_reasons(plan)
    assert Count("rollbacks", {"reason": "AnalysisFailed"}) in plan.counts
    assert plan.create == []  # an aborted version is not retried


def test_a_value_out_of_bounds_for_less_than_its_for_holds_then_breaches() -> None:
    spec = canary_spec(analysis={"metrics": [{"name": "errors", "query": ERRORS, "max": 0.05, "for": "1m"}]})
    observed, plan = paused(spec)
    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(seconds=10), errors=0.2), now=NOW + timedelta(seconds=10)
    )
    plan = plan_modeldeployment(observed)
    assert wire(plan)["rollout"]["analysis"][0]["breachedSince"] == "2026-11-26T12:00:10Z"
    assert version_states(plan)["2"] == "Candidate"

    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(seconds=75), errors=0.3), now=NOW + timedelta(seconds=75)
    )
    plan = plan_modeldeployment(observed)
    assert version_states(plan)["2"] == "RolledBack"
    assert record(plan, "2")["rollback"]["reason"] == "AnalysisFailed"


def test_a_step_passes_when_its_pause_ends_with_every_metric_in_bounds() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(seconds=30), errors=0.01), now=NOW + timedelta(seconds=30)
    )
    plan = plan_modeldeployment(observed)
    assert wire(plan)["rollout"]["step"] == 1
    assert plan.requeue_after == 30.0  # the next reading

    # The pause ended at 12:02: a reading from before it is not enough.
    observed = next_pass(observed, plan, analysis=None, now=NOW + timedelta(minutes=2))
    plan = plan_modeldeployment(observed)
    assert wire(plan)["rollout"]["step"] == 1
    assert condition(plan, "Progressing")[1] == "CanaryStep"

    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(minutes=2), errors=0.01), now=NOW + timedelta(minutes=2)
    )
    plan = plan_modeldeployment(observed)
    rollout = wire(plan)["rollout"]
    # The canary's one available pod still stands in for one stable replica: no scaling up and down.
    assert (rollout["step"], rollout["weight"], rollout["canaryReplicas"], rollout["stableReplicas"]) == (2, 50, 2, 3)
    assert rollout["stepStartedAt"] == "2026-11-26T12:02:00Z"
    assert "pauseStartedAt" not in rollout
    assert "analysis" not in rollout
    assert deployments(plan) == {"churn-canary": ("2", 2), "churn": ("1", 3)}
    assert [e.message for e in plan.events if e.reason == "CanaryStep"] == [
        "version 2: canary step 1/2 passed (errors=0.01); step 2/2 at 50%"
    ]


def test_after_the_last_step_the_serving_deployment_rolls_to_the_canary_then_the_canary_goes() -> None:
    spec = canary_spec(steps=[{"weight": 25, "pause": "0s"}], analysis=None)
    observed, plan = paused(spec)  # no analysis, no pause: the step passes as soon as it is available

    rollout = wire(plan)["rollout"]
    assert (rollout["stage"], rollout["weight"]) == ("Promote", 25)  # the share of the step it passed
    assert deployments(plan) == {"churn-canary": ("2", 1), "churn": ("2", 4)}
    assert condition(plan, "Progressing")[1] == "Promoting"
    assert "CanaryPassed" in event_reasons(plan)

    observed = next_pass(observed, plan, deployment=deployment(spec, "2", replicas=4), now=NOW + timedelta(seconds=20))
    plan = plan_modeldeployment(observed)
    assert version_states(plan) == {"1": "Retired", "2": "Serving"}
    assert "rollout" not in wire(plan)
    assert deployments(plan) == {"churn": ("2", 4)}
    assert plan.delete == [ChildRef("deployments", "churn-canary")]
    assert condition(plan, "Degraded") == ("False", "RolloutSucceeded", "version 2 serves")


def test_no_data_at_the_end_of_a_pause_holds_the_step_until_the_deadline_then_aborts() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(minutes=2), errors=None), now=NOW + timedelta(minutes=2)
    )
    plan = plan_modeldeployment(observed)
    assert condition(plan, "Progressing") == (
        "True",
        "AnalysisInconclusive",
        "version 2: canary step 1/2 at 25%: the pause ended, the analysis is inconclusive: errors: NoData: no series",
    )
    assert "AnalysisInconclusive" in event_reasons(plan)
    assert condition(plan, "Ready")[0] == "True"

    # Still nothing 5m (progressDeadline) after the pause: aborted.
    observed = next_pass(
        observed,
        plan,
        analysis=reading(at=timedelta(minutes=7, seconds=1), errors=None),
        now=NOW + timedelta(minutes=7, seconds=1),
    )
    plan = plan_modeldeployment(observed)
    assert version_states(plan)["2"] == "RolledBack"
    assert record(plan, "2")["rollback"]["reason"] == "AnalysisNoData"
    assert condition(plan, "Degraded")[1] == "AnalysisNoData"
    assert plan.delete == [ChildRef("deployments", "churn-canary")]


def test_a_canary_that_never_becomes_available_is_rolled_back_after_the_deadline() -> None:
    spec = canary_spec()
    observed, plan = v2_promoted(spec)
    observed = next_pass(
        observed,
        plan,
        canary=deployment(spec, "2", replicas=1, available=0, is_canary=True),
        now=NOW + timedelta(minutes=5, seconds=1),
    )
    plan = plan_modeldeployment(observed)
    assert version_states(plan)["2"] == "RolledBack"
    assert record(plan, "2")["rollback"]["reason"] == "ProgressDeadlineExceeded"
    assert condition(plan, "Degraded")[1] == "RolledBack"


def test_a_restart_mid_pause_neither_restarts_nor_skips_the_pause() -> None:
    """The operator restarted at 12:01: the pass reads only status and the caches."""
    spec = canary_spec()
    observed, plan = paused(spec)
    restarted = next_pass(
        observed, plan, analysis=reading(at=timedelta(minutes=1), errors=0.01), now=NOW + timedelta(minutes=1)
    )
    plan = plan_modeldeployment(restarted)
    rollout = wire(plan)["rollout"]
    assert (rollout["step"], rollout["pauseStartedAt"]) == (1, "2026-11-26T12:00:00Z")
    assert plan.requeue_after == 30.0


@pytest.mark.parametrize(
    ("replicas", "steps", "lent"),
    [
        (4, [{"weight": 25, "pause": "1m"}, {"weight": 50, "pause": "1m"}], 2),
        (4, [{"weight": 100, "pause": "1m"}], 3),
        (1, [{"weight": 50, "pause": "1m"}], 0),
        (10, [{"weight": 10, "pause": "1m"}], 1),
    ],
)
def test_the_serving_deployment_may_lend_the_canary_its_largest_share(
    replicas: int, steps: list[dict[str, Any]], lent: int
) -> None:
    spec = make_spec(
        serving={"image": "registry.example/churn-server:1.9.0", "replicas": replicas},
        rollout={"strategy": "Canary", "steps": steps},
    )
    plan = plan_modeldeployment(observe(spec, serving_status(), runs=[run(1)], deployment=None))
    assert max_unavailable(plan) == lent


def test_a_rolling_rollout_lends_nothing() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), serving_status(), runs=[run(1)], deployment=deployment(make_spec(), "1", replicas=1))
    )
    assert max_unavailable(plan) == 0


# ---------------------------------------------------------------- people
def test_a_pin_to_the_stable_version_cancels_the_canary() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    pinned = spec.model_copy(update={"pinned_version": "1"})
    plan = plan_modeldeployment(next_pass(observed, plan, spec=pinned))
    assert "rollout" not in wire(plan)
    assert version_states(plan) == {"1": "Serving", "2": "Candidate"}
    assert deployments(plan) == {"churn": ("1", 4)}
    assert plan.delete == [ChildRef("deployments", "churn-canary")]


def test_a_pin_to_the_canary_version_promotes_it_at_once() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    pinned = spec.model_copy(update={"pinned_version": "2"})
    plan = plan_modeldeployment(next_pass(observed, plan, spec=pinned))
    assert wire(plan)["rollout"]["stage"] == "Promote"
    assert deployments(plan) == {"churn-canary": ("2", 1), "churn": ("2", 4)}


def test_a_pin_rolls_out_at_once_without_a_canary() -> None:
    spec = canary_spec().model_copy(update={"pinned_version": "2"})
    status = serving_status(candidate(2, {"result": "Candidate", "reason": "manual"}))
    plan = plan_modeldeployment(
        observe(spec, status, runs=[run(1), run(2)], deployment=deployment(spec, "1", replicas=4))
    )
    assert wire(plan)["rollout"] == {"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T12:00:00Z"}
    assert deployments(plan) == {"churn": ("2", 4)}


def test_removing_the_steps_under_a_canary_promotes_it() -> None:
    spec = canary_spec()
    observed, plan = paused(spec)
    rolling = make_spec(serving={"image": "registry.example/churn-server:1.9.0", "replicas": 4})
    plan = plan_modeldeployment(next_pass(observed, plan, spec=rolling))
    assert wire(plan)["rollout"]["stage"] == "Promote"


# ---------------------------------------------------------------- when to read
def test_the_analysis_is_read_every_interval_during_a_pause_and_once_at_its_end() -> None:
    spec = canary_spec()
    status = ModelDeploymentStatus.model_validate(
        {
            "rollout": {
                "version": "2",
                "strategy": "Canary",
                "stage": "Step",
                "step": 1,
                "pauseStartedAt": "2026-11-26T12:00:00Z",
                "lastAnalysisTime": "2026-11-26T12:01:45Z",
            }
        }
    )
    rollout = status.rollout
    assert rollout is not None
    assert not canary.analysis_due(spec, rollout, NOW + timedelta(minutes=1, seconds=50))
    assert canary.analysis_due(spec, rollout, NOW + timedelta(minutes=2))  # the pause's end
    assert canary.next_analysis_in(spec, rollout, NOW + timedelta(minutes=1, seconds=50)) == 10.0
    waiting = rollout.model_copy(update={"pause_started_at": None})
    assert not canary.analysis_due(spec, waiting, NOW)  # no pause yet: nothing to judge


@pytest.mark.parametrize(
    ("values", "final", "result"),
    [
        ({"errors": 0.01}, False, "Passed"),
        ({"errors": None}, False, "Inconclusive"),
        ({"errors": None}, True, "Inconclusive"),
        ({"errors": 0.2}, False, "Failed"),
    ],
)
def test_the_verdict_of_a_reading(values: Mapping[str, float | None], final: bool, result: str) -> None:
    spec = canary_spec()
    states = canary.analysis_states(spec, [], reading(at=timedelta(0), **values))
    assert canary.verdict([metric_status(s) for s in states], final=final).result == result


# ---------------------------------------------------------------- traffic by an HTTPRoute
def route(*rules: list[dict[str, Any]], resource_version: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "churn-route", "namespace": "ml", "resourceVersion": resource_version},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}], "backendRefs": refs}
                for refs in rules
            ],
        },
    }


def ref(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "port": 8080, **fields}


def routed_spec() -> ModelDeploymentSpec:
    return canary_spec(analysis=None, canary={"httpRoute": "churn-route"})


def weights(body: Mapping[str, Any]) -> list[list[tuple[str, Any]]]:
    return [[(r["name"], r.get("weight")) for r in rule["backendRefs"]] for rule in body["spec"]["rules"]]


def test_only_the_weights_of_the_models_two_backends_change() -> None:
    given = route(
        [ref("churn-stable", weight=100), ref("churn-canary", weight=0), ref("mirror", weight=3)],
        [ref("churn-stable"), ref("churn-canary", namespace="ml")],
    )
    update = canary.weighted_route(given, "churn", (75, 25))
    assert update.problem is None
    assert update.body is not None
    assert weights(update.body) == [
        [("churn-stable", 75), ("churn-canary", 25), ("mirror", 3)],
        [("churn-stable", 75), ("churn-canary", 25)],
    ]
    assert update.body["spec"]["rules"][0]["matches"] == given["spec"]["rules"][0]["matches"]
    assert update.body["metadata"]["resourceVersion"] == "7", "written back only if nobody changed it since"
    assert weights(given)[1] == [("churn-stable", None), ("churn-canary", None)], "the observed route is not touched"
    assert canary.weighted_route(update.body, "churn", (75, 25)) == canary.RouteUpdate(None)


@pytest.mark.parametrize(
    "refs",
    [
        [ref("churn-stable")],
        [ref("churn-stable"), ref("churn-canary", kind="ServiceImport", group="multicluster.x-k8s.io")],
        [ref("churn-stable"), ref("churn-canary", namespace="other")],
    ],
    ids=["missing", "another-kind", "another-namespace"],
)
def test_a_route_without_both_backends_is_a_problem_named_in_words(refs: list[dict[str, Any]]) -> None:
    update = canary.weighted_route(route(refs), "churn", (75, 25))
    assert update.body is None
    assert update.problem == (
        "HTTPRoute churn-route has no backendRef to the Service churn-canary: add both churn-stable and"
        " churn-canary (port: spec.serving.port) to a rule"
    )


def test_with_an_http_route_the_weights_follow_the_steps_and_the_stable_version_keeps_every_replica() -> None:
    spec = routed_spec()
    observed, plan = v2_promoted(spec)
    given = route([ref("churn-stable", weight=100), ref("churn-canary", weight=0)])
    observed = next_pass(observed, plan, canary=deployment(spec, "2", replicas=1, is_canary=True), route=given)
    plan = plan_modeldeployment(observed)

    assert applied_names(plan) == [
        "Service/churn",
        "Service/churn-stable",
        "Service/churn-canary",
        "Deployment/churn-canary",
        "Deployment/churn",
    ]
    services = {c["metadata"]["name"]: c["spec"]["selector"] for c in plan.apply if c["kind"] == "Service"}
    assert services["churn-stable"]["perennial.dev/track"] == "stable"
    assert services["churn-canary"]["perennial.dev/track"] == "canary"
    assert deployments(plan) == {"churn-canary": ("2", 1), "churn": ("1", 4)}
    serving = plan.apply[-1]
    assert serving["spec"]["template"]["metadata"]["labels"]["perennial.dev/track"] == "stable"
    assert "perennial.dev/track" not in serving["spec"]["selector"]["matchLabels"]
    assert max_unavailable(plan) == 0
    (written,) = plan.update
    assert weights(written) == [[("churn-stable", 75), ("churn-canary", 25)]]
    # The weights are not in place yet: the pause waits for them.
    assert "pauseStartedAt" not in wire(plan)["rollout"]
    assert condition(plan, "Progressing")[2].endswith("setting the weights of HTTPRoute churn-route")

    plan = plan_modeldeployment(next_pass(observed, plan, route=written))
    assert wire(plan)["rollout"]["pauseStartedAt"] == "2026-11-26T12:00:00Z"
    assert plan.update == []


def test_with_an_http_route_an_abort_gives_the_stable_version_all_the_traffic() -> None:
    spec = canary_spec(canary={"httpRoute": "churn-route"})
    observed, plan = v2_promoted(spec)
    placed = route([ref("churn-stable", weight=75), ref("churn-canary", weight=25)])
    observed = next_pass(observed, plan, canary=deployment(spec, "2", replicas=1, is_canary=True), route=placed)
    plan = plan_modeldeployment(observed)
    observed = next_pass(
        observed, plan, analysis=reading(at=timedelta(seconds=30), errors=0.2), now=NOW + timedelta(seconds=30)
    )
    plan = plan_modeldeployment(observed)
    assert version_states(plan)["2"] == "RolledBack"
    (written,) = plan.update
    assert weights(written) == [[("churn-stable", 100), ("churn-canary", 0)]]


def test_a_missing_route_holds_the_step_and_says_why() -> None:
    spec = routed_spec()
    observed, plan = v2_promoted(spec)
    problem = "HTTPRoute churn-route cannot be read (404 NotFound): httproutes.gateway.networking.k8s.io not found"
    observed = next_pass(
        observed, plan, canary=deployment(spec, "2", replicas=1, is_canary=True), route_problem=problem
    )
    plan = plan_modeldeployment(observed)
    assert "pauseStartedAt" not in wire(plan)["rollout"]
    assert condition(plan, "Progressing")[2].endswith(problem)

    plan = plan_modeldeployment(next_pass(observed, plan, now=NOW + timedelta(minutes=5, seconds=1)))
    assert version_states(plan)["2"] == "RolledBack"
    assert f"could not get its traffic ({problem})" in record(plan, "2")["rollback"]["message"]


def applied_names(plan: Plan[ModelDeploymentStatus]) -> list[str]:
    return [f"{child['kind']}/{child['metadata']['name']}" for child in plan.apply]
