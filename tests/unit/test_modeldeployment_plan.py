"""One ModelDeployment pass, ``plan_modeldeployment``, rule by rule (README, "The loop").

Each test observes a ModelDeployment the way the controller would (its spec, its status as
the API server returns it, its TrainingJobs and Deployment from the caches, the
DriftPolicies' pending requests, ``NOW``) and checks the plan: the status it writes, the
TrainingJob it creates, the children it applies, what it deletes, its Events. Expected
values are written out literally, from the README; nothing here re-derives them with the
domain's own functions (the one exception compares two plans: the pass after a crash must
restore what the pass before it wrote). The Deployment a pass observes is built with
``desired_deployment`` (that is what the operator applied) plus a status, as the API
server would report it.

Time is fixed: ``NOW`` is 2026-11-26 (a Thursday), 12:00 UTC.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.domain import modeldeployment as md
from perennial.domain.modeldeployment_plan import ObservedModel, phase_of, plan_modeldeployment, record_child_outcomes
from perennial.domain.plan import ChildRef, Count, Event, Plan

# ---------------------------------------------------------------- the model
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MODEL, NAMESPACE = "churn", "ml"
UID = "0b7c3d2e-0000-4000-8000-00000000c0de"
REF = md.ModelRef(MODEL, NAMESPACE, UID, generation=3)
TRAINER = "registry.example/churn-trainer:2.3.0"
SERVER = "registry.example/churn-server:1.9.0"
SPEC_HASH = "9710e2d9a7cc99af"  # training_hash of the spec make_spec() returns (see test_training_hash_golden)
RETRAIN_REQUEST = "perennial.dev/retrain-request"
DRIFT = md.DriftRequest("churn-drift", "ep-3", "feature_psi=0.31 > max 0.2")


def make_spec(*, training: Mapping[str, Any] | None = None, **fields: Any) -> ModelDeploymentSpec:
    """The ModelDeployment's spec as a user writes it (camelCase): the minimal one plus ``fields``."""
    return ModelDeploymentSpec.model_validate(
        {
            "training": {"image": TRAINER, "output": {"modelUri": "s3://models/{model}/{version}"}, **(training or {})},
            "serving": {"image": SERVER},
            **fields,
        }
    )


def status_of(document: Mapping[str, Any]) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(document)


def observe(
    spec: ModelDeploymentSpec | None = None,
    status: Mapping[str, Any] | ModelDeploymentStatus | None = None,
    *,
    runs: Sequence[md.Run] = (),
    annotations: Mapping[str, str] | None = None,
    deployment: Mapping[str, Any] | None = None,
    drift: Sequence[md.DriftRequest] = (),
    now: datetime = NOW,
    runs_listed: bool = True,
    taken_names: frozenset[str] = frozenset(),
    refused_training: str | None = None,
) -> ObservedModel:
    if not isinstance(status, ModelDeploymentStatus):
        status = status_of(status or {})
    return ObservedModel(
        ref=REF,
        spec=spec or make_spec(),
        annotations=dict(annotations or {}),
        status=status,
        runs={run.version: run for run in runs},
        runs_listed=runs_listed,
        deployment=deployment,
        drift_requests=list(drift),
        now=now,
        taken_names=taken_names,
        refused_training=refused_training,
    )


def later(
    observed: ObservedModel,
    plan: Plan[ModelDeploymentStatus],
    *,
    runs: Sequence[md.Run] | None = None,
    drift: Sequence[md.DriftRequest] | None = None,
    **changes: Any,
) -> ObservedModel:
    """The next pass: the status ``plan`` wrote, and whatever else changed."""
    if runs is not None:
        changes["runs"] = {run.version: run for run in runs}
    if drift is not None:
        changes["drift_requests"] = list(drift)
    return dataclasses.replace(observed, status=plan.status.model_copy(deep=True), **changes)


# ---------------------------------------------------------------- what a pass observes
def training_job(
    version: int,
    trigger: Mapping[str, str],
    *,
    phase: str | None = None,
    metrics: Mapping[str, float] | None = None,
    reason: str = "",
    annotations: Mapping[str, str] | None = None,
    created: str = "2026-11-26T09:00:00Z",
    image: str = TRAINER,
) -> dict[str, Any]:
    """A TrainingJob of this model as the API server returns it."""
    body: dict[str, Any] = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": f"churn-v{version}",
            "namespace": NAMESPACE,
            "creationTimestamp": created,
            "labels": {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/model": MODEL},
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "image": image,
            "output": {"modelUri": "s3://models/{model}/{version}"},
            "model": MODEL,
            "version": str(version),
            "trigger": dict(trigger),
        },
    }
    return with_phase(body, phase, metrics=metrics, reason=reason)


def with_phase(
    body: Mapping[str, Any], phase: str | None, *, metrics: Mapping[str, float] | None = None, reason: str = ""
) -> dict[str, Any]:
    """``body`` as its TrainingJob controller reports it once it reached ``phase``."""
    reported = copy.deepcopy(dict(body))
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if phase in ("Succeeded", "Rejected"):
        status["metrics"] = dict(metrics or {})
        status["modelUri"] = f"s3://models/churn/{reported['spec']['version']}"
    if phase == "Succeeded":
        status["conditions"] = [{"type": "Succeeded", "status": "True", "reason": reason or "Validated"}]
    elif phase in ("Failed", "Rejected"):
        status["conditions"] = [{"type": "Succeeded", "status": "False", "reason": reason}]
    reported["status"] = status
    return reported


def seen(body: Mapping[str, Any], phase: str | None = None, **kwargs: Any) -> md.Run:
    """What the next pass knows of a TrainingJob a plan created (now created by the API server)."""
    created = copy.deepcopy(dict(body))
    created["metadata"].setdefault(
        "creationTimestamp", created["metadata"]["annotations"]["perennial.dev/triggered-at"]
    )
    return md.run_from(with_phase(created, phase, **kwargs))


def run(version: int, trigger: str = "Initial", phase: str | None = "Succeeded", **kwargs: Any) -> md.Run:
    return md.run_from(training_job(version, {"reason": trigger}, phase=phase, **kwargs))


def serving_deployment(
    version: str, *, spec: ModelDeploymentSpec | None = None, rolled_out: bool = True, available: bool = True
) -> dict[str, Any]:
    """The model's Deployment, running ``version``; rolled out and Available unless told otherwise."""
    deployment = md.desired_deployment(REF, spec or make_spec(), version, f"s3://models/churn/{version}")
    deployment["metadata"]["generation"] = 2
    deployment["status"] = {
        "observedGeneration": 2,
        "replicas": 1,
        "updatedReplicas": 1 if rolled_out else 0,
        "readyReplicas": 1 if available else 0,
        "availableReplicas": 1 if rolled_out and available else 0,
        "conditions": [{"type": "Available", "status": "True" if available else "False"}],
    }
    return deployment


V1_SERVING: dict[str, Any] = {
    "version": "1",
    "trainingJob": "churn-v1",
    "state": "Serving",
    "modelUri": "s3://models/churn/1",
    "metrics": {"auc": 0.93},
    "image": TRAINER,
    "trigger": {"reason": "Initial"},
    "createdAt": "2026-11-26T09:00:00Z",
    "promotedAt": "2026-11-26T09:20:00Z",
    "decision": {"result": "Promoted", "reason": "validated; no version serving yet"},
}


def serving_status(*versions: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """Status of a model that serves version 1 (trained at 09:00, Initial), plus ``versions`` and ``fields``."""
    return {
        "phase": "Serving",
        "latestVersion": str(max([1] + [int(v["version"]) for v in versions])),
        "servingVersion": "1",
        "servingModelUri": "s3://models/churn/1",
        "trainingSpecHash": SPEC_HASH,
        "consecutiveFailures": 0,
        "lastRetrain": {"time": "2026-11-26T09:00:00Z", "reason": "Initial"},
        "versions": [V1_SERVING, *versions],
        **fields,
    }


def training_v2(trigger: Mapping[str, str], created: str = "2026-11-26T11:50:00Z") -> dict[str, Any]:
    """Version 2's record while its TrainingJob runs."""
    return {
        "version": "2",
        "trainingJob": "churn-v2",
        "state": "Training",
        "image": TRAINER,
        "trigger": dict(trigger),
        "createdAt": created,
    }


def candidate(version: int, decision: Mapping[str, str], auc: float = 0.95) -> dict[str, Any]:
    return {
        "version": str(version),
        "trainingJob": f"churn-v{version}",
        "state": "Candidate",
        "modelUri": f"s3://models/churn/{version}",
        "metrics": {"auc": auc},
        "image": TRAINER,
        "trigger": {"reason": "Drift", "source": "churn-drift"},
        "createdAt": "2026-11-26T11:00:00Z",
        "decision": dict(decision),
    }


# ---------------------------------------------------------------- reading a plan
def wire(plan: Plan[ModelDeploymentStatus]) -> dict[str, Any]:
    """The status the plan writes, as ``kubectl get -o yaml`` would show it."""
    return plan.status.to_api()


def version_states(plan: Plan[ModelDeploymentStatus]) -> dict[str, str | None]:
    return {r.version: r.state for r in plan.status.versions or []}


def record(plan: Plan[ModelDeploymentStatus], version: str) -> dict[str, Any]:
    found = [r.to_api() for r in plan.status.versions or [] if r.version == version]
    assert len(found) == 1, f"version {version} in status.versions: {found}"
    return found[0]


def condition(plan: Plan[ModelDeploymentStatus], type_: str) -> tuple[str, str, str]:
    found = [c for c in plan.status.conditions or [] if c.type == type_]
    assert len(found) == 1, f"condition {type_}: {found}"
    return (found[0].status, found[0].reason, found[0].message)


def applied(plan: Plan[ModelDeploymentStatus]) -> list[str]:
    return [f"{child['kind']}/{child['metadata']['name']}" for child in plan.apply]


def applied_deployment(plan: Plan[ModelDeploymentStatus]) -> dict[str, Any]:
    deployments = [child for child in plan.apply if child["kind"] == "Deployment"]
    assert len(deployments) == 1
    return deployments[0]


def deployed(plan: Plan[ModelDeploymentStatus]) -> tuple[str, str]:
    """The version and the model URI the applied Deployment serves."""
    template = applied_deployment(plan)["spec"]["template"]
    env = template["spec"]["containers"][0]["env"]
    return template["metadata"]["labels"]["perennial.dev/version"], env[0]["value"]


def created_names(plan: Plan[ModelDeploymentStatus]) -> list[str]:
    return [body["metadata"]["name"] for body in plan.create]


def event_reasons(plan: Plan[ModelDeploymentStatus]) -> list[str]:
    return [event.reason for event in plan.events]


def drift_answers(plan: Plan[ModelDeploymentStatus]) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = wire(plan).get("driftRequests", [])
    return answers


# ---------------------------------------------------------------- 2. triggers: the first pass
def test_first_pass_creates_the_initial_training_job() -> None:
    plan = plan_modeldeployment(observe())

    assert created_names(plan) == ["churn-v1"]
    job = plan.create[0]
    assert job["metadata"]["annotations"] == {
        "perennial.dev/triggered-at": "2026-11-26T12:00:00Z",
        "perennial.dev/training-spec-hash": SPEC_HASH,
    }
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "perennial",
        "perennial.dev/model": "churn",
        "perennial.dev/version": "1",
    }
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "churn",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["spec"] == {
        "image": TRAINER,
        "output": {"modelUri": "s3://models/{model}/{version}"},
        "workers": 1,
        "backoffLimit": 2,
        "ttlAfterFinished": "24h",
        "model": "churn",
        "version": "1",
        "trigger": {"reason": "Initial", "detail": "no version yet"},
    }


def test_first_pass_records_version_1_in_training() -> None:
    plan = plan_modeldeployment(observe())

    status = wire(plan)
    assert status["latestVersion"] == "1"
    assert status["activeTrainingJob"] == "churn-v1"
    assert status["versions"] == [
        {
            "version": "1",
            "trainingJob": "churn-v1",
            "state": "Training",
            "image": TRAINER,
            "trigger": {"reason": "Initial", "detail": "no version yet"},
            "createdAt": "2026-11-26T12:00:00Z",
        }
    ]
    assert status["lastRetrain"] == {"time": "2026-11-26T12:00:00Z", "reason": "Initial"}
    assert status["trainingSpecHash"] == SPEC_HASH
    assert "lastAutomaticRetrain" not in status  # the Initial training does not start the cooldown
    assert (status["phase"], status["observedGeneration"]) == ("Training", 3)


def test_first_pass_serves_nothing_before_a_version_passes_its_gates() -> None:
    plan = plan_modeldeployment(observe())

    assert plan.apply == []
    assert condition(plan, "Ready") == ("False", "NoVersion", "no validated version serves yet")
    assert condition(plan, "Training") == ("True", "Initial", "training churn-v1")
    assert condition(plan, "Progressing") == ("False", "Stable", "no rollout in progress")
    assert condition(plan, "RetrainSuppressed") == ("False", "Started", "Initial started version 1")
    assert condition(plan, "Degraded") == ("False", "AsExpected", "")


def test_first_pass_tells_what_it_started() -> None:
    plan = plan_modeldeployment(observe())

    assert plan.events == [Event("Normal", "RetrainStarted", "training version 1 (Initial: no version yet)")]
    assert plan.counts == [Count("retrains_triggered", {"reason": "Initial"})]
    assert (plan.delete, plan.requeue_after) == ([], None)


def test_a_pass_that_finds_nothing_new_creates_nothing_and_says_nothing() -> None:
    first = observe()
    plan = plan_modeldeployment(first)

    again = plan_modeldeployment(
        later(first, plan, runs=[seen(plan.create[0], "Running")], now=NOW + timedelta(minutes=1))
    )

    assert (again.create, again.apply, again.delete, again.events) == ([], [], [], [])
    assert wire(again) == wire(plan)


# ---------------------------------------------------------------- 1. lineage: promotion
def test_a_succeeded_first_version_is_promoted_and_rolled_out() -> None:
    first = observe()
    plan = plan_modeldeployment(first)
    v1 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.93})

    plan = plan_modeldeployment(later(first, plan, runs=[v1], now=NOW + timedelta(minutes=10)))

    assert record(plan, "1") == {
        "version": "1",
        "trainingJob": "churn-v1",
        "state": "Candidate",  # Serving once its rollout completes
        "modelUri": "s3://models/churn/1",
        "metrics": {"auc": 0.93},
        "image": TRAINER,
        "trigger": {"reason": "Initial", "detail": "no version yet"},
        "createdAt": "2026-11-26T12:00:00Z",
        "decision": {"result": "Promoted", "reason": "validated; no version serving yet"},
    }
    assert wire(plan)["rollout"] == {"version": "1", "startedAt": "2026-11-26T12:10:00Z"}
    assert applied(plan) == ["Service/churn", "Deployment/churn"]
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert "activeTrainingJob" not in wire(plan)
    assert wire(plan)["consecutiveFailures"] == 0
    assert wire(plan)["phase"] == "Rolling"
    assert condition(plan, "Progressing") == ("True", "RollingOut", "rolling out version 1")
    assert condition(plan, "Training") == ("False", "Idle", "no training running")
    assert plan.events == [Event("Normal", "Promoted", "version 1 promoted: validated; no version serving yet")]
    assert plan.counts == [Count("promotions", {"result": "Promoted"}), Count("rollouts", {"result": "Started"})]
    assert plan.requeue_after == 600.0  # the progress deadline


def test_manual_policy_leaves_a_validated_version_a_candidate() -> None:
    spec = make_spec(promotion={"policy": "Manual"})
    first = observe(spec)
    plan = plan_modeldeployment(first)
    v1 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.93})

    plan = plan_modeldeployment(later(first, plan, runs=[v1], now=NOW + timedelta(minutes=10)))

    assert record(plan, "1")["state"] == "Candidate"
    assert record(plan, "1")["decision"] == {
        "result": "Candidate",
        "reason": "validated; no version serving yet; set spec.pinnedVersion to promote (policy Manual)",
    }
    assert "rollout" not in wire(plan)
    assert plan.apply == []
    assert condition(plan, "Ready") == (
        "False",
        "AwaitingPromotion",
        "version 1 is a Candidate: set spec.pinnedVersion to serve it",
    )
    assert event_reasons(plan) == ["Candidate"]


REQUIRE_AUC = {"requireImprovement": {"metric": "auc", "minDelta": 0.01}}
FROM_ITS_OWN_RUN = " (champion's number from its own run: no champion_auc reported)"


def test_a_version_that_does_not_improve_enough_is_not_promoted_and_stays_pinnable() -> None:
    spec = make_spec(promotion=REQUIRE_AUC)
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")
    runs = [run(1), run(2, "Drift", metrics={"auc": 0.935})]

    plan = plan_modeldeployment(observe(spec, status, runs=runs, deployment=serving_deployment("1")))

    assert record(plan, "2")["state"] == "Candidate"
    assert record(plan, "2")["decision"] == {
        "result": "NotPromoted",
        "reason": "auc 0.935 < champion 0.93 + minDelta 0.01" + FROM_ITS_OWN_RUN,
        "comparedTo": "1",
    }
    assert "rollout" not in wire(plan)
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert plan.events == [
        Event(
            "Normal",
            "NotPromoted",
            "version 2 not promoted: auc 0.935 < champion 0.93 + minDelta 0.01" + FROM_ITS_OWN_RUN,
        )
    ]
    assert plan.counts == [Count("promotions", {"result": "NotPromoted"})]
    assert wire(plan)["phase"] == "Serving"


def test_a_version_that_improves_enough_is_promoted_with_the_evidence() -> None:
    spec = make_spec(promotion=REQUIRE_AUC)
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")
    runs = [run(1), run(2, "Drift", metrics={"auc": 0.95})]

    plan = plan_modeldeployment(observe(spec, status, runs=runs, deployment=serving_deployment("1")))

    assert record(plan, "2")["decision"] == {
        "result": "Promoted",
        "reason": "auc 0.95 >= champion 0.93 + minDelta 0.01" + FROM_ITS_OWN_RUN,
        "comparedTo": "1",
    }
    assert wire(plan)["rollout"] == {"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T12:00:00Z"}
    assert deployed(plan) == ("2", "s3://models/churn/2")
    assert wire(plan)["phase"] == "Rolling"
    # Ready stays True while the previous version still serves.
    assert condition(plan, "Ready") == ("True", "Serving", "version 1 is serving and available")


V1_CHAMPION = {"version": "1", "modelUri": "s3://models/churn/1"}


def finish_v2(
    spec: ModelDeploymentSpec,
    metrics: Mapping[str, float],
    trigger: str = "Drift",
    *,
    champion: Mapping[str, str] | None = V1_CHAMPION,
    **fields: Any,
) -> Plan[ModelDeploymentStatus]:
    """The pass that sees version 2's run (``trigger``, given ``champion`` to score) succeed with
    ``metrics`` while version 1 (auc 0.93) serves."""
    v2 = training_v2({"reason": trigger})
    if champion is not None:
        v2["champion"] = dict(champion)
    status = serving_status(v2, activeTrainingJob="churn-v2", **fields)
    runs = [run(1), run(2, trigger, metrics=metrics)]
    return plan_modeldeployment(observe(spec, status, runs=runs, deployment=serving_deployment("1")))


@pytest.mark.parametrize(
    ("metrics", "result", "reason"),
    [
        pytest.param(
            {"auc": 0.95, "champion_auc": 0.945},
            "NotPromoted",
            "auc 0.95 < champion 0.945 + minDelta 0.01 (both on this run's holdout: champion_auc)",
            id="the-champion-scored-on-the-same-holdout-is-better-than-its-own-record",
        ),
        pytest.param(
            {"auc": 0.91, "champion_auc": 0.89},
            "Promoted",
            "auc 0.91 >= champion 0.89 + minDelta 0.01 (both on this run's holdout: champion_auc)",
            id="both-worse-on-the-new-data-the-challenger-less-so",
        ),
    ],
)
def test_a_reported_champion_score_on_the_same_holdout_decides(
    metrics: Mapping[str, float], result: str, reason: str
) -> None:
    plan = finish_v2(make_spec(promotion=REQUIRE_AUC), metrics)

    assert record(plan, "2")["decision"] == {"result": result, "reason": reason, "comparedTo": "1"}
    assert plan.counts[0] == Count("promotions", {"result": result})


@pytest.mark.parametrize(
    ("metrics", "result", "reason"),
    [
        pytest.param(
            {"auc": 0.95, "rmse": 1.9},
            "Promoted",
            "rmse 1.9 <= champion 2 - minDelta 0.1 (Minimize; both on this run's holdout: champion_rmse)",
            id="lower-by-enough",
        ),
        pytest.param(
            {"auc": 0.95, "rmse": 1.95},
            "NotPromoted",
            "rmse 1.95 > champion 2 - minDelta 0.1 (Minimize; both on this run's holdout: champion_rmse)",
            id="lower-but-not-by-enough",
        ),
        pytest.param(
            {"auc": 0.95, "rmse": 2.5},
            "NotPromoted",
            "rmse 2.5 > champion 2 - minDelta 0.1 (Minimize; both on this run's holdout: champion_rmse)",
            id="higher",
        ),
    ],
)
def test_a_minimize_goal_promotes_the_lower_value(metrics: dict[str, float], result: str, reason: str) -> None:
    spec = make_spec(promotion={"requireImprovement": {"metric": "rmse", "goal": "Minimize", "minDelta": 0.1}})

    plan = finish_v2(spec, {**metrics, "champion_rmse": 2.0})

    assert record(plan, "2")["decision"] == {"result": result, "reason": reason, "comparedTo": "1"}


@pytest.mark.parametrize(
    ("champion", "why"),
    [
        pytest.param(
            {"version": "3", "modelUri": "s3://models/churn/3"},
            "champion_auc ignored: the run was given version 3 to score, version 1 serves",
            id="another-version-served-when-the-run-started",
        ),
        pytest.param(None, "champion_auc ignored: the run was given no champion to score, version 1 serves", id="none"),
    ],
)
def test_a_champion_score_of_another_version_is_not_compared(champion: Mapping[str, str] | None, why: str) -> None:
    """What serves changed during the run (a pin, a rollback): its champion_auc scored another model."""
    plan = finish_v2(make_spec(promotion=REQUIRE_AUC), {"auc": 0.95, "champion_auc": 0.97}, champion=champion)

    assert record(plan, "2")["decision"] == {
        "result": "Promoted",
        "reason": f"auc 0.95 >= champion 0.93 + minDelta 0.01 (champion's number from its own run: {why})",
        "comparedTo": "1",
    }


def test_a_minimize_goal_without_a_champion_score_compares_with_the_recorded_number() -> None:
    spec = make_spec(promotion={"requireImprovement": {"metric": "auc", "goal": "Minimize"}})

    plan = finish_v2(spec, {"auc": 0.92})

    assert record(plan, "2")["decision"]["reason"] == (
        "auc 0.92 <= champion 0.93 - minDelta 0"
        " (Minimize; champion's number from its own run: no champion_auc reported)"
    )
    assert record(plan, "2")["decision"]["result"] == "Promoted"


# ---------------------------------------------------------------- the futility breaker
NOT_BETTER = {"result": "NotPromoted", "reason": "auc 0.93 < champion 0.93 + minDelta 0.01", "comparedTo": "1"}


@pytest.mark.parametrize(
    ("trigger", "before", "after"),
    [
        pytest.param("Drift", 1, 2, id="a-drift-run-counts"),
        pytest.param("Schedule", 0, 1, id="a-scheduled-run-counts"),
        pytest.param("Manual", 2, 2, id="a-manual-run-does-not-count"),
        pytest.param("SpecChange", 2, 2, id="a-spec-change-run-does-not-count"),
    ],
)
def test_automatic_runs_validated_but_not_better_count_in_a_row(trigger: str, before: int, after: int) -> None:
    plan = finish_v2(make_spec(promotion=REQUIRE_AUC), {"auc": 0.93}, trigger, consecutiveNotPromoted=before)

    assert record(plan, "2")["decision"]["result"] == "NotPromoted"
    assert wire(plan)["consecutiveNotPromoted"] == after
    assert wire(plan)["consecutiveFailures"] == 0  # a validated run is no failure
    assert wire(plan)["automaticRetrains"] == "Active"


def test_a_promoted_run_ends_the_streak() -> None:
    plan = finish_v2(make_spec(promotion=REQUIRE_AUC), {"auc": 0.95}, consecutiveNotPromoted=2)

    assert wire(plan)["consecutiveNotPromoted"] == 0


def test_the_third_run_not_better_stops_automatic_retrains_and_says_which_runs() -> None:
    spec = make_spec(promotion=REQUIRE_AUC)
    v2, v3 = candidate(2, NOT_BETTER, auc=0.93), candidate(3, NOT_BETTER, auc=0.92)
    status = serving_status(
        v2,
        v3,
        {**training_v2({"reason": "Schedule"}), "version": "4", "trainingJob": "churn-v4"},
        activeTrainingJob="churn-v4",
        consecutiveNotPromoted=2,
    )
    runs = [run(1), run(2, "Drift", metrics={"auc": 0.93}), run(3, "Drift", metrics={"auc": 0.92})]
    finished = observe(spec, status, runs=[*runs, run(4, "Schedule", metrics={"auc": 0.931})])
    finished = dataclasses.replace(finished, deployment=serving_deployment("1"))

    plan = plan_modeldeployment(finished)

    assert wire(plan)["consecutiveNotPromoted"] == 3
    assert wire(plan)["automaticRetrains"] == "NoImprovement"
    message = (
        "Drift: 3 automatic runs in a row (churn-v2, churn-v3, churn-v4) were validated but not better"
        " than serving version 1; automatic retrains stop until a manual request or a spec change"
    )
    suppressed = plan_modeldeployment(later(finished, plan, drift=[DRIFT]))
    assert suppressed.create == []
    assert condition(suppressed, "RetrainSuppressed") == ("True", "NoImprovement", message)
    assert [(a["result"], a["reason"], a["message"]) for a in drift_answers(suppressed)] == [
        ("Suppressed", "NoImprovement", message)
    ]
    assert suppressed.counts == [Count("retrains_suppressed", {"reason": "Drift", "suppression": "NoImprovement"})]
    assert Event("Normal", "RetrainSuppressed", message) in suppressed.events

    # A person asks: the run starts and the breaker counts afresh.
    manual = plan_modeldeployment(later(finished, plan, annotations={RETRAIN_REQUEST: "try-again"}))
    assert created_names(manual) == ["churn-v5"]
    assert wire(manual)["consecutiveNotPromoted"] == 0
    assert wire(manual)["automaticRetrains"] == "Active"
    assert condition(manual, "RetrainSuppressed")[:2] == ("False", "Started")


def test_a_spec_change_resets_the_futility_breaker() -> None:
    spec = make_spec(promotion=REQUIRE_AUC, training={"hyperparameters": {"depth": "8"}})
    status = serving_status(consecutiveNotPromoted=3)

    plan = plan_modeldeployment(observe(spec, status, runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT]))

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"]["reason"] == "SpecChange"
    assert wire(plan)["consecutiveNotPromoted"] == 0


@pytest.mark.parametrize(
    ("spec_fields", "status_fields", "state"),
    [
        pytest.param({}, {}, "Active", id="active"),
        pytest.param({"suspend": True}, {"consecutiveFailures": 3}, "Suspended", id="suspend-first"),
        pytest.param({}, {"consecutiveFailures": 3, "consecutiveNotPromoted": 3}, "CircuitOpen", id="circuit"),
        pytest.param({}, {"consecutiveNotPromoted": 3}, "NoImprovement", id="no-improvement"),
        pytest.param({"retraining": {"maxConsecutiveNotPromoted": 4}}, {"consecutiveNotPromoted": 3}, "Active", id="4"),
    ],
)
def test_the_automatic_retrains_column_names_what_holds_them(
    spec_fields: dict[str, Any], status_fields: dict[str, Any], state: str
) -> None:
    status = serving_status(**status_fields)

    plan = plan_modeldeployment(
        observe(make_spec(**spec_fields), status, runs=[run(1)], deployment=serving_deployment("1"))
    )

    assert wire(plan)["automaticRetrains"] == state


@pytest.mark.parametrize(
    ("phase", "reason", "state", "message"),
    [
        pytest.param(
            "Failed",
            "BackoffLimitExceeded",
            "Failed",
            "version 2 failed (BackoffLimitExceeded); the serving version keeps serving",
            id="failed",
        ),
        pytest.param(
            "Rejected",
            "ValidationFailed",
            "Rejected",
            "version 2 rejected (ValidationFailed); the serving version keeps serving",
            id="rejected",
        ),
    ],
)
def test_a_run_that_fails_counts_toward_the_circuit_and_serving_goes_on(
    phase: str, reason: str, state: str, message: str
) -> None:
    status = serving_status(
        training_v2({"reason": "Schedule", "source": "0 3 * * *"}), activeTrainingJob="churn-v2", consecutiveFailures=1
    )
    runs = [run(1), run(2, "Schedule", phase=phase, reason=reason)]

    plan = plan_modeldeployment(observe(make_spec(), status, runs=runs, deployment=serving_deployment("1")))

    assert record(plan, "2")["state"] == state
    assert record(plan, "2")["decision"] == {"result": "NotPromoted", "reason": f"training {phase}: {reason}"}
    assert wire(plan)["consecutiveFailures"] == 2
    assert "activeTrainingJob" not in wire(plan)
    assert plan.events == [Event("Warning", f"Version{state}", message)]
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert wire(plan)["phase"] == "Serving"


def test_a_failed_first_version_leaves_the_model_failed() -> None:
    first = observe()
    plan = plan_modeldeployment(first)
    v1 = seen(plan.create[0], "Failed", reason="BackoffLimitExceeded")

    plan = plan_modeldeployment(later(first, plan, runs=[v1], now=NOW + timedelta(minutes=10)))

    assert version_states(plan) == {"1": "Failed"}
    assert wire(plan)["consecutiveFailures"] == 1
    assert wire(plan)["phase"] == "Failed"
    assert plan.apply == []
    assert plan.create == []  # nothing retrains until something asks


def test_a_succeeded_run_closes_the_circuit() -> None:
    status = serving_status(
        training_v2({"reason": "Manual", "source": "r-1"}), activeTrainingJob="churn-v2", consecutiveFailures=3
    )
    runs = [run(1), run(2, "Manual", metrics={"auc": 0.95})]

    plan = plan_modeldeployment(observe(make_spec(), status, runs=runs, deployment=serving_deployment("1")))

    assert wire(plan)["consecutiveFailures"] == 0


def test_a_recorded_training_job_that_is_gone_has_failed() -> None:
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")

    plan = plan_modeldeployment(observe(make_spec(), status, runs=[run(1)], deployment=serving_deployment("1")))

    assert record(plan, "2")["state"] == "Failed"
    assert record(plan, "2")["decision"] == {"result": "NotPromoted", "reason": "training Failed: TrainingJobDeleted"}
    assert "activeTrainingJob" not in wire(plan)


def test_a_training_job_missing_from_the_cache_only_is_not_taken_for_gone() -> None:
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")

    plan = plan_modeldeployment(
        observe(make_spec(), status, runs=[run(1)], deployment=serving_deployment("1"), runs_listed=False)
    )

    assert record(plan, "2")["state"] == "Training"
    assert wire(plan)["activeTrainingJob"] == "churn-v2"
    assert plan.create == []


# ---------------------------------------------------------------- 2. triggers
def test_a_manual_request_starts_a_training_and_is_remembered() -> None:
    plan = plan_modeldeployment(
        observe(
            make_spec(),
            serving_status(),
            runs=[run(1)],
            annotations={RETRAIN_REQUEST: "r-1"},
            deployment=serving_deployment("1"),
        )
    )

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"] == {
        "reason": "Manual",
        "source": "r-1",
        "detail": "perennial.dev/retrain-request=r-1",
    }
    assert plan.create[0]["metadata"]["annotations"] == {
        "perennial.dev/triggered-at": "2026-11-26T12:00:00Z",
        "perennial.dev/training-spec-hash": SPEC_HASH,
        "perennial.dev/handled-retrain-request": "r-1",
    }
    assert wire(plan)["handledRetrainRequest"] == "r-1"
    assert wire(plan)["lastRetrain"] == {"time": "2026-11-26T12:00:00Z", "reason": "Manual", "source": "r-1"}
    assert "lastAutomaticRetrain" not in wire(plan)  # a person's request does not start the cooldown


def test_a_handled_manual_request_does_not_run_again() -> None:
    status = serving_status(handledRetrainRequest="r-1")

    plan = plan_modeldeployment(
        observe(
            make_spec(), status, runs=[run(1)], annotations={RETRAIN_REQUEST: "r-1"}, deployment=serving_deployment("1")
        )
    )

    assert plan.create == []


def test_a_spec_change_retrains_with_the_new_spec() -> None:
    spec = make_spec(training={"image": "registry.example/churn-trainer:2.4.0"})

    plan = plan_modeldeployment(observe(spec, serving_status(), runs=[run(1)], deployment=serving_deployment("1")))

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["image"] == "registry.example/churn-trainer:2.4.0"
    assert plan.create[0]["spec"]["trigger"] == {"reason": "SpecChange", "detail": "spec.training changed"}
    assert plan.create[0]["metadata"]["annotations"]["perennial.dev/training-spec-hash"] == "c09ea6383ad4ceeb"
    assert wire(plan)["trainingSpecHash"] == "c09ea6383ad4ceeb"


def test_a_due_schedule_retrains_and_records_the_next_firing() -> None:
    spec = make_spec(retraining={"schedule": "0 11 * * *"})
    status = serving_status(nextScheduledRetrain="2026-11-26T11:00:00Z")

    plan = plan_modeldeployment(observe(spec, status, runs=[run(1)], deployment=serving_deployment("1")))

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"] == {
        "reason": "Schedule",
        "source": "0 11 * * *",
        "detail": "scheduled for 2026-11-26T11:00:00Z",
    }
    assert wire(plan)["nextScheduledRetrain"] == "2026-11-27T11:00:00Z"
    assert wire(plan)["lastAutomaticRetrain"] == "2026-11-26T12:00:00Z"


def test_one_run_answers_every_pending_trigger() -> None:
    spec = make_spec(retraining={"schedule": "0 11 * * *"})
    status = serving_status(nextScheduledRetrain="2026-11-26T11:00:00Z")

    plan = plan_modeldeployment(
        observe(
            spec,
            status,
            runs=[run(1)],
            annotations={RETRAIN_REQUEST: "r-1"},
            deployment=serving_deployment("1"),
            drift=[DRIFT],
        )
    )

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"]["reason"] == "Manual"  # the most important names it
    assert wire(plan)["handledRetrainRequest"] == "r-1"
    assert wire(plan)["nextScheduledRetrain"] == "2026-11-27T11:00:00Z"
    assert [(a["policy"], a["id"], a["result"], a.get("trainingJob")) for a in drift_answers(plan)] == [
        ("churn-drift", "ep-3", "Started", "churn-v2")
    ]


def test_a_drift_request_starts_a_training_and_is_answered() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT])
    )

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"] == {
        "reason": "Drift",
        "source": "churn-drift",
        "detail": "feature_psi=0.31 > max 0.2",
    }
    assert plan.create[0]["metadata"]["annotations"] == {
        "perennial.dev/triggered-at": "2026-11-26T12:00:00Z",
        "perennial.dev/training-spec-hash": SPEC_HASH,
        "perennial.dev/starts-cooldown": "true",
        "perennial.dev/drift-requests": '{"churn-drift": "ep-3"}',
    }
    assert drift_answers(plan) == [
        {
            "policy": "churn-drift",
            "id": "ep-3",
            "result": "Started",
            "trainingJob": "churn-v2",
            "message": "started churn-v2",
            "answeredAt": "2026-11-26T12:00:00Z",
        }
    ]
    assert wire(plan)["lastAutomaticRetrain"] == "2026-11-26T12:00:00Z"


def test_an_answered_drift_request_does_not_run_again() -> None:
    first = observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT])
    plan = plan_modeldeployment(first)
    v2 = seen(plan.create[0], "Running")

    again = plan_modeldeployment(later(first, plan, runs=[run(1), v2], now=NOW + timedelta(minutes=1)))

    assert again.create == []
    assert drift_answers(again) == drift_answers(plan)


def test_a_drift_request_during_a_training_is_suppressed() -> None:
    status = serving_status(training_v2({"reason": "Manual", "source": "r-1"}), activeTrainingJob="churn-v2")
    runs = [run(1), run(2, "Manual", phase="Running")]

    plan = plan_modeldeployment(
        observe(make_spec(), status, runs=runs, deployment=serving_deployment("1"), drift=[DRIFT])
    )

    assert plan.create == []
    assert drift_answers(plan) == [
        {
            "policy": "churn-drift",
            "id": "ep-3",
            "result": "Suppressed",
            "reason": "TrainingInProgress",
            "message": "Drift: a training is already running",
            "answeredAt": "2026-11-26T12:00:00Z",
        }
    ]
    assert condition(plan, "RetrainSuppressed") == (
        "True",
        "TrainingInProgress",
        "Drift: a training is already running",
    )
    assert plan.events == [Event("Normal", "RetrainSuppressed", "Drift: a training is already running")]
    assert plan.counts == [Count("retrains_suppressed", {"reason": "Drift", "suppression": "TrainingInProgress"})]


def test_the_circuit_breaker_suppresses_drift() -> None:
    status = serving_status(consecutiveFailures=3)
    message = (
        "Drift: 3 runs in a row failed or were rejected; automatic retrains stop"
        " until a manual request or a spec change succeeds"
    )

    plan = plan_modeldeployment(
        observe(make_spec(), status, runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT])
    )

    assert plan.create == []
    assert [(a["result"], a["reason"], a["message"]) for a in drift_answers(plan)] == [
        ("Suppressed", "CircuitOpen", message)
    ]
    assert condition(plan, "RetrainSuppressed") == ("True", "CircuitOpen", message)
    assert plan.counts == [Count("retrains_suppressed", {"reason": "Drift", "suppression": "CircuitOpen"})]


def test_a_manual_request_runs_through_an_open_circuit() -> None:
    status = serving_status(consecutiveFailures=3)

    plan = plan_modeldeployment(
        observe(
            make_spec(), status, runs=[run(1)], annotations={RETRAIN_REQUEST: "r-1"}, deployment=serving_deployment("1")
        )
    )

    assert created_names(plan) == ["churn-v2"]


def test_suspend_skips_a_missed_schedule() -> None:
    spec = make_spec(retraining={"schedule": "0 11 * * *"}, suspend=True)
    status = serving_status(nextScheduledRetrain="2026-11-26T11:00:00Z")

    plan = plan_modeldeployment(observe(spec, status, runs=[run(1)], deployment=serving_deployment("1")))

    assert plan.create == []
    assert condition(plan, "RetrainSuppressed") == ("True", "Suspended", "Schedule: spec.suspend is true")
    assert wire(plan)["nextScheduledRetrain"] == "2026-11-27T11:00:00Z"


def test_a_manual_request_waits_for_the_running_training_then_runs() -> None:
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")
    waiting = observe(
        make_spec(),
        status,
        runs=[run(1), run(2, "Drift", phase="Running")],
        annotations={RETRAIN_REQUEST: "r-1"},
        deployment=serving_deployment("1"),
    )
    plan = plan_modeldeployment(waiting)
    assert plan.create == []
    assert condition(plan, "RetrainSuppressed") == (
        "True",
        "TrainingInProgress",
        "Manual: a training is already running",
    )

    ended = later(waiting, plan, runs=[run(1), run(2, "Drift", phase="Failed", reason="BackoffLimitExceeded")])
    plan = plan_modeldeployment(ended)

    assert created_names(plan) == ["churn-v3"]
    assert plan.create[0]["spec"]["trigger"]["reason"] == "Manual"


# ---------------------------------------------------------------- 2. triggers: the cooldown
def test_the_initial_training_does_not_start_the_cooldown() -> None:
    first = observe()
    plan = plan_modeldeployment(first)
    v1 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.93})

    plan = plan_modeldeployment(later(first, plan, runs=[v1], now=NOW + timedelta(minutes=10), drift=[DRIFT]))

    assert created_names(plan) == ["churn-v2"]
    assert plan.create[0]["spec"]["trigger"]["reason"] == "Drift"


def test_a_manual_retrain_does_not_start_the_cooldown() -> None:
    first = observe(
        make_spec(),
        serving_status(),
        runs=[run(1)],
        annotations={RETRAIN_REQUEST: "r-1"},
        deployment=serving_deployment("1"),
    )
    plan = plan_modeldeployment(first)
    v2 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.95})

    plan = plan_modeldeployment(later(first, plan, runs=[run(1), v2], now=NOW + timedelta(minutes=10), drift=[DRIFT]))

    assert created_names(plan) == ["churn-v3"]


def test_a_drift_retrain_starts_the_cooldown() -> None:
    first = observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT])
    plan = plan_modeldeployment(first)
    v2 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.95})
    second_request = md.DriftRequest("churn-drift", "ep-4", "feature_psi=0.35 > max 0.2")

    plan = plan_modeldeployment(
        later(first, plan, runs=[run(1), v2], now=NOW + timedelta(minutes=20), drift=[second_request])
    )

    assert plan.create == []
    assert [(a["id"], a["result"], a["reason"], a["message"]) for a in drift_answers(plan)] == [
        ("ep-4", "Suppressed", "Cooldown", "Drift: in cooldown until 2026-11-26T13:00:00Z")
    ]


def test_a_pass_in_cooldown_looks_again_when_it_ends() -> None:
    status = serving_status(lastAutomaticRetrain="2026-11-26T11:10:00Z")

    plan = plan_modeldeployment(
        observe(make_spec(), status, runs=[run(1)], deployment=serving_deployment("1"), drift=[DRIFT])
    )

    assert condition(plan, "RetrainSuppressed") == ("True", "Cooldown", "Drift: in cooldown until 2026-11-26T12:10:00Z")
    assert plan.requeue_after == 600.0


# ---------------------------------------------------------------- 2. triggers: allocation
def test_a_taken_name_is_skipped() -> None:
    plan = plan_modeldeployment(observe(taken_names=frozenset({"churn-v1"})))

    assert created_names(plan) == ["churn-v2"]
    assert wire(plan)["latestVersion"] == "2"
    assert wire(plan)["activeTrainingJob"] == "churn-v2"


def test_an_existing_training_job_of_this_model_is_never_reused_for_a_new_version() -> None:
    status = serving_status()
    runs = [run(1), run(4, "Manual", phase="Failed", reason="BackoffLimitExceeded")]

    plan = plan_modeldeployment(
        observe(
            make_spec(), status, runs=runs, annotations={RETRAIN_REQUEST: "r-9"}, deployment=serving_deployment("1")
        )
    )

    assert created_names(plan) == ["churn-v5"]


def test_a_refused_training_job_is_a_suppression_with_the_api_message() -> None:
    message = 'admission webhook "quota.example" denied the request: trainingjobs are limited to 3'

    plan = plan_modeldeployment(observe(refused_training=message))

    assert plan.create == []
    assert condition(plan, "RetrainSuppressed") == ("True", "TrainingJobRefused", message)
    assert plan.events == [Event("Normal", "RetrainSuppressed", message)]
    status = wire(plan)
    assert "latestVersion" not in status
    assert "versions" not in status
    assert "activeTrainingJob" not in status


# ---------------------------------------------------------------- 1./2. adoption after a crash
# A pass creates a TrainingJob and crashes before it writes status: the next pass finds the
# TrainingJob (in ``runs``) without a record. It records it, and restores what its trigger
# consumed from the TrainingJob's annotations, so the same trigger does not start a second
# training. The adopted runs here have already finished, so only that bookkeeping (not a
# running training) stands between the trigger and a second TrainingJob.
def test_adopting_an_initial_training_job() -> None:
    v1 = training_job(
        1,
        {"reason": "Initial", "detail": "no version yet"},
        phase="Succeeded",
        metrics={"auc": 0.93},
        created="2026-11-26T11:50:01Z",
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:50:00Z",
            "perennial.dev/training-spec-hash": SPEC_HASH,
        },
    )

    plan = plan_modeldeployment(observe(make_spec(), {}, runs=[md.run_from(v1)]))

    assert plan.create == []
    status = wire(plan)
    assert status["latestVersion"] == "1"
    assert status["trainingSpecHash"] == SPEC_HASH
    assert status["lastRetrain"] == {"time": "2026-11-26T11:50:00Z", "reason": "Initial"}
    assert "lastAutomaticRetrain" not in status
    assert record(plan, "1")["createdAt"] == "2026-11-26T11:50:00Z"
    assert record(plan, "1")["trigger"] == {"reason": "Initial", "detail": "no version yet"}
    assert record(plan, "1")["decision"] == {"result": "Promoted", "reason": "validated; no version serving yet"}
    assert status["rollout"] == {"version": "1", "startedAt": "2026-11-26T12:00:00Z"}


def test_adopting_a_running_initial_training_job() -> None:
    v1 = training_job(
        1,
        {"reason": "Initial", "detail": "no version yet"},
        phase="Running",
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:59:58Z",
            "perennial.dev/training-spec-hash": SPEC_HASH,
        },
    )

    plan = plan_modeldeployment(observe(make_spec(), {}, runs=[md.run_from(v1)]))

    assert plan.create == []
    assert wire(plan)["activeTrainingJob"] == "churn-v1"
    assert version_states(plan) == {"1": "Training"}
    assert condition(plan, "Training") == ("True", "Initial", "training churn-v1")


def test_adopting_a_manual_training_job() -> None:
    v2 = training_job(
        2,
        {"reason": "Manual", "source": "r-1", "detail": "perennial.dev/retrain-request=r-1"},
        phase="Succeeded",
        metrics={"auc": 0.95},
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:50:00Z",
            "perennial.dev/training-spec-hash": SPEC_HASH,
            "perennial.dev/handled-retrain-request": "r-1",
        },
    )

    plan = plan_modeldeployment(
        observe(
            make_spec(),
            serving_status(),
            runs=[run(1), md.run_from(v2)],
            annotations={RETRAIN_REQUEST: "r-1"},
            deployment=serving_deployment("1"),
        )
    )

    assert plan.create == []
    assert wire(plan)["handledRetrainRequest"] == "r-1"
    assert wire(plan)["latestVersion"] == "2"
    assert wire(plan)["lastRetrain"] == {"time": "2026-11-26T11:50:00Z", "reason": "Manual", "source": "r-1"}


def test_adopting_a_spec_change_training_job() -> None:
    spec = make_spec(training={"image": "registry.example/churn-trainer:2.4.0"})
    v2 = training_job(
        2,
        {"reason": "SpecChange", "detail": "spec.training changed"},
        phase="Succeeded",
        metrics={"auc": 0.95},
        image="registry.example/churn-trainer:2.4.0",
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:50:00Z",
            "perennial.dev/training-spec-hash": "c09ea6383ad4ceeb",
        },
    )

    plan = plan_modeldeployment(
        observe(spec, serving_status(), runs=[run(1), md.run_from(v2)], deployment=serving_deployment("1"))
    )

    assert plan.create == []
    assert wire(plan)["trainingSpecHash"] == "c09ea6383ad4ceeb"
    assert record(plan, "2")["image"] == "registry.example/churn-trainer:2.4.0"


def test_adopting_a_schedule_training_job() -> None:
    spec = make_spec(retraining={"schedule": "0 11 * * *"})
    v2 = training_job(
        2,
        {"reason": "Schedule", "source": "0 11 * * *", "detail": "scheduled for 2026-11-26T11:00:00Z"},
        phase="Succeeded",
        metrics={"auc": 0.95},
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:00:05Z",
            "perennial.dev/training-spec-hash": SPEC_HASH,
        },
    )
    status = serving_status(nextScheduledRetrain="2026-11-26T11:00:00Z")

    plan = plan_modeldeployment(
        observe(spec, status, runs=[run(1), md.run_from(v2)], deployment=serving_deployment("1"))
    )

    assert plan.create == []
    assert wire(plan)["nextScheduledRetrain"] == "2026-11-27T11:00:00Z"
    assert wire(plan)["lastAutomaticRetrain"] == "2026-11-26T11:00:05Z"
    assert wire(plan)["lastRetrain"] == {
        "time": "2026-11-26T11:00:05Z",
        "reason": "Schedule",
        "source": "0 11 * * *",
    }


def test_adopting_a_drift_training_job() -> None:
    v2 = training_job(
        2,
        {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"},
        phase="Succeeded",
        metrics={"auc": 0.95},
        annotations={
            "perennial.dev/triggered-at": "2026-11-26T11:50:00Z",
            "perennial.dev/training-spec-hash": SPEC_HASH,
            "perennial.dev/drift-requests": json.dumps({"churn-drift": "ep-3"}),
        },
    )

    plan = plan_modeldeployment(
        observe(
            make_spec(),
            serving_status(),
            runs=[run(1), md.run_from(v2)],
            deployment=serving_deployment("1"),
            drift=[DRIFT],
        )
    )

    assert plan.create == []
    assert drift_answers(plan) == [
        {
            "policy": "churn-drift",
            "id": "ep-3",
            "result": "Started",
            "trainingJob": "churn-v2",
            "answeredAt": "2026-11-26T12:00:00Z",
        }
    ]
    assert wire(plan)["lastAutomaticRetrain"] == "2026-11-26T11:50:00Z"


CRASH_SCENARIOS = [
    pytest.param({}, {}, (), id="initial"),
    pytest.param({}, {RETRAIN_REQUEST: "r-1"}, (), id="manual"),
    pytest.param({"training": {"image": "registry.example/churn-trainer:2.4.0"}}, {}, (), id="spec-change"),
    pytest.param({"retraining": {"schedule": "0 11 * * *"}}, {}, (), id="schedule"),
    pytest.param({}, {}, (DRIFT,), id="drift"),
    pytest.param({}, {RETRAIN_REQUEST: "r-1"}, (DRIFT,), id="manual-and-drift"),
    pytest.param(
        {"training": {"image": "registry.example/churn-trainer:2.4.0"}, "retraining": {"schedule": "0 11 * * *"}},
        {},
        (),
        id="spec-change-and-schedule",
    ),
]


@pytest.mark.parametrize(("spec_fields", "annotations", "drift"), CRASH_SCENARIOS)
def test_a_crash_after_creating_a_training_job_loses_no_bookkeeping(
    spec_fields: dict[str, Any], annotations: dict[str, str], drift: tuple[md.DriftRequest, ...]
) -> None:
    """README: "A restart loses nothing". The pass after a crash restores what the pass
    that created the TrainingJob would have written."""
    spec = make_spec(**spec_fields)
    if spec_fields or annotations or drift:
        status: dict[str, Any] = serving_status(nextScheduledRetrain="2026-11-26T11:00:00Z")
        runs, deployment = [run(1)], serving_deployment("1")
    else:
        status, runs, deployment = {}, [], None
    before = observe(spec, status, runs=runs, annotations=annotations, deployment=deployment, drift=drift)
    written = plan_modeldeployment(before)
    assert len(written.create) == 1

    created = seen(written.create[0], "Running")
    crashed = dataclasses.replace(
        before, runs={**before.runs, created.version: created}, now=NOW + timedelta(seconds=5)
    )
    restored = plan_modeldeployment(crashed)

    assert restored.create == []
    latest = written.status.latest_version or ""
    assert record(restored, latest) == record(written, latest)
    fields = [
        "latestVersion",
        "activeTrainingJob",
        "lastRetrain",
        "lastAutomaticRetrain",
        "trainingSpecHash",
        "handledRetrainRequest",
        "nextScheduledRetrain",
    ]
    assert {f: wire(restored).get(f) for f in fields} == {f: wire(written).get(f) for f in fields}
    assert [(a["policy"], a["id"], a["result"], a.get("trainingJob")) for a in drift_answers(restored)] == [
        (a["policy"], a["id"], a["result"], a.get("trainingJob")) for a in drift_answers(written)
    ]


# ---------------------------------------------------------------- 3. serving: the pin
def test_a_pin_holds_serving_while_a_new_version_validates() -> None:
    spec = make_spec(pinnedVersion="1")
    status = serving_status(training_v2({"reason": "Drift", "source": "churn-drift"}), activeTrainingJob="churn-v2")
    runs = [run(1), run(2, "Drift", metrics={"auc": 0.95})]

    plan = plan_modeldeployment(observe(spec, status, runs=runs, deployment=serving_deployment("1")))

    assert record(plan, "2")["state"] == "Candidate"
    assert record(plan, "2")["decision"] == {
        "result": "Candidate",
        "reason": "validated; spec.pinnedVersion 1 holds serving",
        "comparedTo": "1",
    }
    assert "rollout" not in wire(plan)
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert plan.events == [
        Event("Normal", "Candidate", "version 2 is a candidate: validated; spec.pinnedVersion 1 holds serving")
    ]
    assert wire(plan)["phase"] == "Serving"


def test_a_pin_rolls_out_a_candidate() -> None:
    spec = make_spec(pinnedVersion="2", promotion={"policy": "Manual"})
    status = serving_status(candidate(2, {"result": "Candidate", "reason": "validated; set spec.pinnedVersion"}))

    plan = plan_modeldeployment(observe(spec, status, runs=[run(1), run(2)], deployment=serving_deployment("1")))

    assert wire(plan)["rollout"] == {"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T12:00:00Z"}
    assert record(plan, "2")["decision"] == {"result": "Pinned", "reason": "spec.pinnedVersion selects it"}
    assert deployed(plan) == ("2", "s3://models/churn/2")
    assert plan.events == [Event("Normal", "Pinned", "rolling out pinned version 2")]


def test_a_pin_to_a_retired_version_rolls_back_to_it() -> None:
    v1 = {**V1_SERVING, "state": "Retired"}
    v2 = {**candidate(2, {"result": "Promoted", "reason": "validated"}), "state": "Serving"}
    status = {**serving_status(), "servingVersion": "2", "latestVersion": "2", "versions": [v1, v2]}

    plan = plan_modeldeployment(
        observe(make_spec(pinnedVersion="1"), status, runs=[run(1), run(2)], deployment=serving_deployment("2"))
    )

    assert wire(plan)["rollout"] == {"version": "1", "previousVersion": "2", "startedAt": "2026-11-26T12:00:00Z"}
    assert deployed(plan) == ("1", "s3://models/churn/1")


@pytest.mark.parametrize(
    "pinned",
    [pytest.param("7", id="never-allocated"), pytest.param("2", id="failed-version")],
)
def test_a_pin_to_an_unknown_version_degrades_and_serving_keeps(pinned: str) -> None:
    failed = {"version": "2", "trainingJob": "churn-v2", "state": "Failed", "trigger": {"reason": "Manual"}}
    message = f"spec.pinnedVersion {pinned} is not a trained version in status.versions; 1 keeps serving"

    plan = plan_modeldeployment(
        observe(
            make_spec(pinnedVersion=pinned),
            serving_status(failed),
            runs=[run(1), run(2, "Manual", phase="Failed")],
            deployment=serving_deployment("1"),
        )
    )

    assert condition(plan, "Degraded") == ("True", "PinnedVersionUnknown", message)
    assert plan.events == [Event("Warning", "PinnedVersionUnknown", message)]
    assert "rollout" not in wire(plan)
    assert wire(plan)["servingVersion"] == "1"
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert wire(plan)["phase"] == "Degraded"


def test_clearing_an_unknown_pin_clears_degraded() -> None:
    first = observe(make_spec(pinnedVersion="7"), serving_status(), runs=[run(1)], deployment=serving_deployment("1"))
    plan = plan_modeldeployment(first)

    plan = plan_modeldeployment(later(first, plan, spec=make_spec()))

    assert condition(plan, "Degraded") == ("False", "PinCleared", "spec.pinnedVersion is empty")
    assert wire(plan)["phase"] == "Serving"


def test_a_pin_back_to_the_serving_version_cancels_the_rollout() -> None:
    v2 = candidate(2, {"result": "Promoted", "reason": "validated", "comparedTo": "1"})
    status = serving_status(v2, rollout={"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T11:58:00Z"})

    plan = plan_modeldeployment(
        observe(
            make_spec(pinnedVersion="1"),
            status,
            runs=[run(1), run(2)],
            deployment=serving_deployment("2", rolled_out=False),
        )
    )

    assert "rollout" not in wire(plan)
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert record(plan, "2")["decision"] == {
        "result": "Candidate",
        "reason": "spec.pinnedVersion 1 holds serving",
        "comparedTo": "1",
    }
    assert plan.events == [Event("Normal", "Pinned", "rollout of version 2 cancelled: pinned to version 1")]


def test_a_pin_to_the_version_that_was_just_rolled_back_is_not_retried() -> None:
    v2 = {**candidate(2, {"result": "Pinned", "reason": "spec.pinnedVersion selects it"}), "state": "RolledBack"}
    status = serving_status(v2, lastRolledBack="2")

    plan = plan_modeldeployment(
        observe(make_spec(pinnedVersion="2"), status, runs=[run(1), run(2)], deployment=serving_deployment("1"))
    )

    assert "rollout" not in wire(plan)
    assert deployed(plan) == ("1", "s3://models/churn/1")


# ---------------------------------------------------------------- 3. serving: rollout and rollback
ROLLING_V2 = serving_status(
    candidate(2, {"result": "Promoted", "reason": "validated", "comparedTo": "1"}),
    phase="Rolling",
    rollout={"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T11:58:00Z"},
)


def test_a_rollout_completes_when_the_new_version_is_available_everywhere() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), ROLLING_V2, runs=[run(1), run(2)], deployment=serving_deployment("2"))
    )

    assert version_states(plan) == {"1": "Retired", "2": "Serving"}
    assert record(plan, "2")["promotedAt"] == "2026-11-26T12:00:00Z"
    assert record(plan, "1")["promotedAt"] == "2026-11-26T09:20:00Z"
    status = wire(plan)
    assert (status["servingVersion"], status["servingModelUri"]) == ("2", "s3://models/churn/2")
    assert "rollout" not in status
    assert status["phase"] == "Serving"
    assert condition(plan, "Degraded") == ("False", "RolloutSucceeded", "version 2 serves")
    assert condition(plan, "Ready") == ("True", "Serving", "version 2 is serving and available")
    assert condition(plan, "Progressing") == ("False", "Stable", "no rollout in progress")
    assert plan.events == [Event("Normal", "RolloutSucceeded", "version 2 is serving")]
    assert plan.counts == [Count("rollouts", {"result": "Succeeded"})]
    assert deployed(plan) == ("2", "s3://models/churn/2")


def test_a_rollout_in_progress_waits_for_its_deadline_while_the_previous_version_serves() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), ROLLING_V2, runs=[run(1), run(2)], deployment=serving_deployment("2", rolled_out=False))
    )

    assert wire(plan)["rollout"] == {"version": "2", "previousVersion": "1", "startedAt": "2026-11-26T11:58:00Z"}
    assert plan.requeue_after == 480.0
    assert wire(plan)["phase"] == "Rolling"
    assert condition(plan, "Progressing") == ("True", "RollingOut", "rolling out version 2")
    assert condition(plan, "Ready") == ("True", "Serving", "version 1 is serving and available")
    assert deployed(plan) == ("2", "s3://models/churn/2")


def test_an_overdue_rollout_rolls_back_to_the_previous_version() -> None:
    message = "version 2 was not Available within 10m; rolled back to version 1"

    plan = plan_modeldeployment(
        observe(
            make_spec(),
            ROLLING_V2,
            runs=[run(1), run(2)],
            deployment=serving_deployment("2", rolled_out=False),
            now=NOW + timedelta(minutes=9),
        )
    )

    assert version_states(plan) == {"1": "Serving", "2": "RolledBack"}
    status = wire(plan)
    assert "rollout" not in status
    assert (status["servingVersion"], status["lastRolledBack"]) == ("1", "2")
    assert deployed(plan) == ("1", "s3://models/churn/1")
    assert condition(plan, "Degraded") == ("True", "RolledBack", message)
    assert plan.events == [Event("Warning", "RolledBack", message)]
    assert plan.counts == [
        Count("rollouts", {"result": "RolledBack"}),
        Count("rollbacks", {"reason": "ProgressDeadlineExceeded"}),
    ]
    assert record(plan, "2")["rollback"] == {
        "time": "2026-11-26T12:09:00Z",
        "reason": "ProgressDeadlineExceeded",
        "message": message,
    }
    assert status["phase"] == "Degraded"
    assert plan.create == []  # nothing retrains because of it


def test_an_overdue_rollout_without_auto_rollback_is_stuck() -> None:
    plan = plan_modeldeployment(
        observe(
            make_spec(rollout={"autoRollback": False}),
            ROLLING_V2,
            runs=[run(1), run(2)],
            deployment=serving_deployment("2", rolled_out=False),
            now=NOW + timedelta(minutes=9),
        )
    )

    assert condition(plan, "Degraded") == ("True", "RolloutStuck", "version 2 is not Available after 10m")
    assert wire(plan)["rollout"]["version"] == "2"
    assert wire(plan)["phase"] == "Rolling"
    assert deployed(plan) == ("2", "s3://models/churn/2")


def test_an_overdue_first_rollout_has_nothing_to_roll_back_to() -> None:
    v1 = {**V1_SERVING, "state": "Candidate", "promotedAt": None}
    status = {"latestVersion": "1", "versions": [v1], "rollout": {"version": "1", "startedAt": "2026-11-26T11:40:00Z"}}

    plan = plan_modeldeployment(
        observe(
            make_spec(), status, runs=[run(1)], deployment=serving_deployment("1", rolled_out=False, available=False)
        )
    )

    assert condition(plan, "Degraded") == (
        "True",
        "RolloutStuck",
        "version 1 is not Available after 10m; there is no previous version to roll back to",
    )
    assert deployed(plan) == ("1", "s3://models/churn/1")


# ---------------------------------------------------------------- 4. history
def test_history_deletes_finished_training_jobs_beyond_the_limit_but_never_serving_or_pinned() -> None:
    # Serving 5; version 2 is pinned (it rolled back once, so the pin holds still); limit 1.
    versions = [
        {"version": "1", "trainingJob": "churn-v1", "state": "Retired", "modelUri": "s3://models/churn/1"},
        {"version": "2", "trainingJob": "churn-v2", "state": "RolledBack", "modelUri": "s3://models/churn/2"},
        {"version": "3", "trainingJob": "churn-v3", "state": "Failed"},
        {"version": "4", "trainingJob": "churn-v4", "state": "Retired", "modelUri": "s3://models/churn/4"},
        {"version": "5", "trainingJob": "churn-v5", "state": "Serving", "modelUri": "s3://models/churn/5"},
        {"version": "6", "trainingJob": "churn-v6", "state": "Training"},
    ]
    status = {
        "latestVersion": "6",
        "servingVersion": "5",
        "lastRolledBack": "2",
        "activeTrainingJob": "churn-v6",
        "versions": versions,
    }
    runs = [run(1), run(2), run(3, phase="Failed"), run(4), run(5), run(6, phase="Running")]
    spec = make_spec(pinnedVersion="2", retraining={"historyLimit": 1})

    plan = plan_modeldeployment(observe(spec, status, runs=runs, deployment=serving_deployment("5")))

    assert plan.delete == [ChildRef("trainingjobs", "churn-v3"), ChildRef("trainingjobs", "churn-v1")]
    assert version_states(plan) == {"2": "RolledBack", "4": "Retired", "5": "Serving", "6": "Training"}


def test_history_within_the_limit_deletes_nothing() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"))
    )

    assert plan.delete == []


# ---------------------------------------------------------------- 5. summary: phase
@pytest.mark.parametrize(
    ("status", "phase"),
    [
        pytest.param({}, "Training", id="nothing-yet"),
        pytest.param(
            {"activeTrainingJob": "churn-v1", "versions": [{"version": "1", "state": "Training"}]},
            "Training",
            id="first-training",
        ),
        pytest.param({"versions": [{"version": "1", "state": "Failed"}]}, "Failed", id="first-run-failed"),
        pytest.param({"versions": [{"version": "1", "state": "Rejected"}]}, "Failed", id="first-run-rejected"),
        pytest.param(
            {"activeTrainingJob": "churn-v2", "versions": [{"version": "1", "state": "Failed"}]},
            "Training",
            id="retrying-after-a-failure",
        ),
        pytest.param({"versions": [{"version": "1", "state": "Candidate"}]}, "Training", id="awaiting-promotion"),
        pytest.param({"servingVersion": "1"}, "Serving", id="serving"),
        pytest.param(
            {"servingVersion": "1", "versions": [{"version": "2", "state": "Failed"}]},
            "Serving",
            id="serving-after-fail",
        ),
        pytest.param({"rollout": {"version": "1"}}, "Rolling", id="first-rollout"),
        pytest.param(
            {"servingVersion": "1", "conditions": [{"type": "Degraded", "status": "True", "reason": "RolledBack"}]},
            "Degraded",
            id="degraded",
        ),
        pytest.param(
            {
                "rollout": {"version": "2"},
                "conditions": [{"type": "Degraded", "status": "True", "reason": "RolloutStuck"}],
            },
            "Rolling",
            id="rolling-wins-over-degraded",
        ),
    ],
)
def test_phase(status: dict[str, Any], phase: str) -> None:
    assert phase_of(status_of(status)) == phase


# ---------------------------------------------------------------- after execution: child outcomes
def test_a_name_conflict_degrades_the_model_until_the_children_apply() -> None:
    message = "Deployment churn exists and is not controlled by this ModelDeployment"
    first = observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"))
    plan = plan_modeldeployment(first)

    record_child_outcomes(plan, [("NameConflict", message)])

    assert condition(plan, "Degraded") == ("True", "NameConflict", message)
    assert wire(plan)["phase"] == "Degraded"
    assert plan.events[-1] == Event("Warning", "NameConflict", message)

    clean = plan_modeldeployment(later(first, plan))
    record_child_outcomes(clean, [])

    assert condition(clean, "Degraded") == ("False", "ChildrenApplied", "the Deployment and Service are applied")
    assert wire(clean)["phase"] == "Serving"


def test_child_problems_are_reported_together() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(), serving_status(), runs=[run(1)], deployment=serving_deployment("1"))
    )

    record_child_outcomes(
        plan,
        [
            ("ChildRefused", 'Deployment churn: spec.template.spec.containers[0].image: Invalid value: ""'),
            ("NameConflict", "Service churn exists and is not controlled by this ModelDeployment"),
        ],
    )

    assert condition(plan, "Degraded") == (
        "True",
        "ChildRefused",
        'Deployment churn: spec.template.spec.containers[0].image: Invalid value: ""'
        "; Service churn exists and is not controlled by this ModelDeployment",
    )


def test_clean_outcomes_leave_another_degraded_reason_alone() -> None:
    plan = plan_modeldeployment(
        observe(make_spec(pinnedVersion="7"), serving_status(), runs=[run(1)], deployment=serving_deployment("1"))
    )

    record_child_outcomes(plan, [])

    assert condition(plan, "Degraded")[:2] == ("True", "PinnedVersionUnknown")
    assert wire(plan)["phase"] == "Degraded"


def test_a_trimmed_finished_run_seen_again_is_never_recorded_or_promoted_again() -> None:
    # v1 serves and status knows version 3; a stale cache entry brings back churn-v2
    # (Succeeded, trimmed by history earlier): it is history, not a new candidate.
    status = serving_status(latestVersion="3")
    plan = plan_modeldeployment(observe(make_spec(), status, runs=[run(1), run(2)], deployment=serving_deployment("1")))

    assert version_states(plan) == {"1": "Serving"}
    assert plan.status.rollout is None
    assert plan.create == []
    assert [e.reason for e in plan.events] == []


def test_a_name_conflict_found_as_a_rollout_begins_is_degraded_at_once_and_looked_at_again() -> None:
    # The first version is promoted in this pass (a rollout begins) and its Deployment's name
    # is taken: the very status this pass writes says Degraded, not Rolling, and the model
    # looks again by itself (nothing it watches changes when the other object goes away).
    status = {
        "latestVersion": "1",
        "activeTrainingJob": "churn-v1",
        "trainingSpecHash": SPEC_HASH,
        "versions": [{"version": "1", "trainingJob": "churn-v1", "state": "Training"}],
    }
    plan = plan_modeldeployment(observe(make_spec(), status, runs=[run(1)]))
    assert plan.status.rollout is not None

    record_child_outcomes(plan, [("NameConflict", "a Deployment named churn exists")])

    assert wire(plan)["phase"] == "Degraded"
    assert plan.requeue_after == 10.0


# ---------------------------------------------------------------- issue 15, case 6: requests of any size
@pytest.mark.parametrize("length", [1, 1024, 1025, 200_000])
def test_a_retrain_request_of_any_length_starts_one_run_with_bounded_lineage(length: int) -> None:
    request = "ü" * length
    spec = make_spec()
    status = ModelDeploymentStatus.model_validate({"latestVersion": "1", "trainingSpecHash": md.training_hash(spec)})
    (trigger,) = md.pending_triggers(spec, {"perennial.dev/retrain-request": request}, status, NOW)
    record = trigger.record()  # validated against the API's bounds: it raised for long requests before
    assert len(record.source or "") <= 1024
    assert len(record.detail or "") <= 4096
    identity = md.request_identity(request)
    assert len(identity) <= 1024
    assert (identity == request) is (length <= 1024)
    status.handled_retrain_request = identity
    assert md.pending_triggers(spec, {"perennial.dev/retrain-request": request}, status, NOW) == []


# ---------------------------------------------------------------- issue 20: status.url (kubectl get -o wide)
def test_no_url_while_nothing_serves() -> None:
    first = plan_modeldeployment(observe())
    assert "url" not in wire(first)

    manual = observe(make_spec(promotion={"policy": "Manual"}))
    plan = plan_modeldeployment(manual)
    v1 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.93})
    candidate_only = plan_modeldeployment(later(manual, plan, runs=[v1], now=NOW + timedelta(minutes=10)))
    assert candidate_only.apply == []
    assert "url" not in wire(candidate_only)


def test_the_url_is_the_services_in_cluster_address_from_the_first_rollout_on() -> None:
    first = observe()
    plan = plan_modeldeployment(first)
    v1 = seen(plan.create[0], "Succeeded", metrics={"auc": 0.93})

    plan = plan_modeldeployment(later(first, plan, runs=[v1], now=NOW + timedelta(minutes=10)))

    assert wire(plan)["phase"] == "Rolling"
    assert wire(plan)["url"] == "http://churn.ml.svc:8080"
    (service,) = [child for child in plan.apply if child["kind"] == "Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("churn", "ml")
    assert service["spec"]["ports"][0]["port"] == 8080


def test_the_url_follows_spec_serving_port() -> None:
    spec = make_spec(serving={"image": SERVER, "port": 9000})
    steady = observe(spec, serving_status(), runs=[run(1)], deployment=serving_deployment("1", spec=spec))

    plan = plan_modeldeployment(steady)

    assert wire(plan)["phase"] == "Serving"
    assert wire(plan)["url"] == "http://churn.ml.svc:9000"
    # A stale URL (the port before an edit) is corrected on the next pass.
    moved = plan_modeldeployment(
        dataclasses.replace(steady, status=status_of({**serving_status(), "url": "http://churn.ml.svc:8080"}))
    )
    assert wire(moved)["url"] == "http://churn.ml.svc:9000"
