"""ModelDeployment domain logic: triggers, arbitration, versions, promotion, serving, history.

Pure functions only: specs and statuses are built the way they are written on the wire
(camelCase, read into the typed models), children are dicts shaped like what the API
server returns, and time is a fixed ``NOW`` (2026-11-26, a Thursday, 12:00 UTC).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersionRecord,
    RolloutStatus,
)
from perennial.api.trainingjob import TrainingJobSpec
from perennial.domain.modeldeployment import (
    DeploymentHealth,
    DriftRequest,
    ModelRef,
    Run,
    Trigger,
    adopted_record,
    arbitrate,
    cooldown_ends,
    deployed_version,
    deployment_health,
    desired_deployment,
    desired_service,
    history_to_delete,
    next_schedule,
    next_version,
    own_runs,
    pending_triggers,
    promotion_decision,
    rollout_overdue,
    rollout_seconds_left,
    run_from,
    selector_labels,
    training_hash,
    training_job_for,
    version_record,
)

# ---------------------------------------------------------------- helpers
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MODEL = "churn"
NAMESPACE = "ml"
UID = "0b7c3d2e-0000-4000-8000-00000000c0de"
REF = ModelRef(MODEL, NAMESPACE, UID, generation=3)
TRAINER = "registry.example/churn-trainer:2.3.0"
SERVER = "registry.example/churn-server:1.9.0"
MODEL_URI_TEMPLATE = "s3://models/{model}/{version}"
SERVED_URI = "s3://models/churn/4"
RETRAIN_REQUEST = "perennial.dev/retrain-request"
MANAGED_BY = {"app.kubernetes.io/managed-by": "perennial"}
SELECTOR = {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/model": MODEL}
OWNER_REFERENCE = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "ModelDeployment",
    "name": MODEL,
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def iso(moment: datetime) -> str:
    """A timestamp as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_spec(
    *, training: Mapping[str, Any] | None = None, serving: Mapping[str, Any] | None = None, **fields: Any
) -> ModelDeploymentSpec:
    """A ModelDeployment spec from camelCase fields: the minimal one plus overrides."""
    document: dict[str, Any] = {
        "training": {"image": TRAINER, "output": {"modelUri": MODEL_URI_TEMPLATE}, **(training or {})},
        "serving": {"image": SERVER, **(serving or {})},
        **fields,
    }
    return ModelDeploymentSpec.model_validate(document)


def status_of(document: Mapping[str, Any]) -> ModelDeploymentStatus:
    """A status as the API server returns it (camelCase), read into the typed model."""
    return ModelDeploymentStatus.model_validate(document)


def record_of(document: Mapping[str, Any]) -> ModelVersionRecord:
    return ModelVersionRecord.model_validate(document)


def rollout_of(document: Mapping[str, Any]) -> RolloutStatus:
    return RolloutStatus.model_validate(document)


def reasons(triggers: list[Trigger]) -> list[str]:
    return [t.reason for t in triggers]


def pod_spec_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def container_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec_of(deployment)["containers"]
    assert len(containers) == 1
    return containers[0]


def deploy(spec: ModelDeploymentSpec | None = None, version: str = "4") -> dict[str, Any]:
    return desired_deployment(REF, spec or make_spec(), version, SERVED_URI)


BOOKKEEPING = {"perennial.dev/triggered-at": "2026-11-26T12:00:00Z"}


# ---------------------------------------------------------------- pending triggers
SERVING_STATUS: dict[str, Any] = {"latestVersion": "4", "servingVersion": "4"}


def test_initial_when_no_version_exists() -> None:
    assert reasons(pending_triggers(make_spec(), {}, status_of({}), NOW)) == ["Initial"]


def test_no_trigger_once_a_version_exists_and_nothing_changed() -> None:
    assert pending_triggers(make_spec(), {}, status_of(SERVING_STATUS), NOW) == []


def test_manual_when_retrain_request_is_new() -> None:
    triggers = pending_triggers(make_spec(), {RETRAIN_REQUEST: "2026-11-26-a"}, status_of(SERVING_STATUS), NOW)

    assert reasons(triggers) == ["Manual"]
    assert triggers[0].source == "2026-11-26-a"


def test_manual_when_retrain_request_differs_from_the_handled_one() -> None:
    status = status_of({**SERVING_STATUS, "handledRetrainRequest": "2026-11-25-a"})

    triggers = pending_triggers(make_spec(), {RETRAIN_REQUEST: "2026-11-26-a"}, status, NOW)

    assert reasons(triggers) == ["Manual"]
    assert triggers[0].source == "2026-11-26-a"


def test_no_manual_when_retrain_request_was_handled() -> None:
    status = status_of({**SERVING_STATUS, "handledRetrainRequest": "2026-11-26-a"})

    assert pending_triggers(make_spec(), {RETRAIN_REQUEST: "2026-11-26-a"}, status, NOW) == []


def test_no_manual_for_unrelated_annotations() -> None:
    assert pending_triggers(make_spec(), {"note": "hello"}, status_of(SERVING_STATUS), NOW) == []


def test_spec_change_when_training_hash_differs() -> None:
    before = make_spec(training={"dataset": {"version": "2026-11-19"}})
    after = make_spec(training={"dataset": {"version": "2026-11-26"}})
    status = status_of({**SERVING_STATUS, "trainingSpecHash": training_hash(before)})

    assert reasons(pending_triggers(after, {}, status, NOW)) == ["SpecChange"]


def test_no_spec_change_when_training_hash_matches() -> None:
    spec = make_spec()
    status = status_of({**SERVING_STATUS, "trainingSpecHash": training_hash(spec)})

    assert pending_triggers(spec, {}, status, NOW) == []


def test_no_spec_change_when_only_serving_changed() -> None:
    before = make_spec()
    after = make_spec(serving={"image": "registry.example/churn-server:2.0.0", "replicas": 5})
    status = status_of({**SERVING_STATUS, "trainingSpecHash": training_hash(before)})

    assert training_hash(after) == training_hash(before)
    assert pending_triggers(after, {}, status, NOW) == []


def test_no_spec_change_when_on_spec_change_is_false() -> None:
    before = make_spec()
    after = make_spec(training={"image": "registry.example/churn-trainer:3.0.0"}, retraining={"onSpecChange": False})
    status = status_of({**SERVING_STATUS, "trainingSpecHash": training_hash(before)})

    assert pending_triggers(after, {}, status, NOW) == []


def test_no_spec_change_when_no_hash_recorded() -> None:
    spec = make_spec(training={"image": "registry.example/churn-trainer:3.0.0"})

    assert pending_triggers(spec, {}, status_of(SERVING_STATUS), NOW) == []


@pytest.mark.parametrize("due", [pytest.param(NOW, id="due-now"), pytest.param(NOW - timedelta(hours=5), id="overdue")])
def test_schedule_when_due(due: datetime) -> None:
    spec = make_spec(retraining={"schedule": "0 3 * * *"})
    status = status_of({**SERVING_STATUS, "nextScheduledRetrain": iso(due)})

    assert reasons(pending_triggers(spec, {}, status, NOW)) == ["Schedule"]


def test_no_schedule_before_it_is_due() -> None:
    spec = make_spec(retraining={"schedule": "0 3 * * *"})
    status = status_of({**SERVING_STATUS, "nextScheduledRetrain": iso(NOW + timedelta(seconds=1))})

    assert pending_triggers(spec, {}, status, NOW) == []


def test_no_schedule_without_a_schedule_in_the_spec() -> None:
    status = status_of({**SERVING_STATUS, "nextScheduledRetrain": iso(NOW - timedelta(hours=1))})

    assert pending_triggers(make_spec(), {}, status, NOW) == []


def test_no_schedule_before_the_next_firing_is_recorded() -> None:
    spec = make_spec(retraining={"schedule": "0 3 * * *"})

    assert pending_triggers(spec, {}, status_of(SERVING_STATUS), NOW) == []


def test_triggers_are_ordered_most_important_first() -> None:
    before = make_spec(retraining={"schedule": "0 3 * * *"})
    after = make_spec(training={"image": "registry.example/churn-trainer:3.0.0"}, retraining={"schedule": "0 3 * * *"})
    status = status_of(
        {
            "trainingSpecHash": training_hash(before),
            "nextScheduledRetrain": iso(NOW - timedelta(minutes=1)),
            "handledRetrainRequest": "old",
        }
    )
    drift = [DriftRequest("churn-drift", "ep-3", "feature_psi=0.31 > max 0.2")]

    triggers = pending_triggers(after, {RETRAIN_REQUEST: "new"}, status, NOW, drift)

    assert reasons(triggers) == ["Initial", "Manual", "SpecChange", "Drift", "Schedule"]


def test_drift_when_a_policy_asks_and_the_request_is_unanswered() -> None:
    drift = [DriftRequest("churn-drift", "ep-3", "feature_psi=0.31 > max 0.2")]

    triggers = pending_triggers(make_spec(), {}, status_of(SERVING_STATUS), NOW, drift)

    assert triggers == [Trigger("Drift", "churn-drift", "feature_psi=0.31 > max 0.2", request="ep-3")]


def test_no_drift_once_the_request_is_answered() -> None:
    answer = {"policy": "churn-drift", "id": "ep-3", "result": "Suppressed", "reason": "Cooldown"}
    status = status_of({**SERVING_STATUS, "driftRequests": [answer]})

    assert pending_triggers(make_spec(), {}, status, NOW, [DriftRequest("churn-drift", "ep-3")]) == []


def test_drift_again_for_a_new_request_of_the_same_policy() -> None:
    answer = {"policy": "churn-drift", "id": "ep-3", "result": "Started", "trainingJob": "churn-v5"}
    status = status_of({**SERVING_STATUS, "driftRequests": [answer]})

    triggers = pending_triggers(make_spec(), {}, status, NOW, [DriftRequest("churn-drift", "ep-4")])

    assert [(t.reason, t.source, t.request) for t in triggers] == [("Drift", "churn-drift", "ep-4")]


def test_one_drift_trigger_per_policy_that_asks() -> None:
    drift = [DriftRequest("churn-drift", "ep-3"), DriftRequest("latency-drift", "ep-1")]

    triggers = pending_triggers(make_spec(), {}, status_of(SERVING_STATUS), NOW, drift)

    assert [(t.reason, t.source) for t in triggers] == [("Drift", "churn-drift"), ("Drift", "latency-drift")]


# ---------------------------------------------------------------- arbitration
MAX_FAILURES = 3
COOLDOWN = timedelta(hours=1)
LAST_AUTOMATIC_RETRAIN_IN_COOLDOWN = NOW - timedelta(minutes=30)  # cooldown ends at 12:30
COOLDOWN_ENDS_TEXT = "2026-11-26T12:30:00Z"


def arbitration_spec(*, suspend: bool = False) -> ModelDeploymentSpec:
    return make_spec(retraining={"cooldown": "1h", "maxConsecutiveFailures": MAX_FAILURES}, suspend=suspend)


def arbitration_status(*, circuit_open: bool = False, in_cooldown: bool = False) -> ModelDeploymentStatus:
    last = LAST_AUTOMATIC_RETRAIN_IN_COOLDOWN if in_cooldown else NOW - timedelta(hours=3)
    return status_of(
        {
            "latestVersion": "4",
            "servingVersion": "4",
            "consecutiveFailures": MAX_FAILURES if circuit_open else MAX_FAILURES - 1,
            "lastRetrain": {"time": iso(last), "reason": "Drift", "source": "churn-drift"},
            "lastAutomaticRetrain": iso(last),
        }
    )


# The rule book of docs/concepts.md ("The loop", step 2), one row per cell: each column holds alone,
# everything else clear. "runs", or the suppression reason the cell names ("waits" and
# "suppressed" under "a training running" are both TrainingInProgress).
RUNNING, SUSPEND, CIRCUIT, IN_COOLDOWN = "a training running", "suspend", "circuit open", "within cooldown"
RUNS = "runs"
RULE_BOOK = [
    # | Manual | waits (`TrainingInProgress`) | runs | runs | runs |
    pytest.param("Manual", RUNNING, "TrainingInProgress", id="Manual-training-running"),
    pytest.param("Manual", SUSPEND, RUNS, id="Manual-suspend"),
    pytest.param("Manual", CIRCUIT, RUNS, id="Manual-circuit-open"),
    pytest.param("Manual", IN_COOLDOWN, RUNS, id="Manual-in-cooldown"),
    # | SpecChange, Initial | waits | suppressed | runs | runs |
    pytest.param("SpecChange", RUNNING, "TrainingInProgress", id="SpecChange-training-running"),
    pytest.param("SpecChange", SUSPEND, "Suspended", id="SpecChange-suspend"),
    pytest.param("SpecChange", CIRCUIT, RUNS, id="SpecChange-circuit-open"),
    pytest.param("SpecChange", IN_COOLDOWN, RUNS, id="SpecChange-in-cooldown"),
    pytest.param("Initial", RUNNING, "TrainingInProgress", id="Initial-training-running"),
    pytest.param("Initial", SUSPEND, "Suspended", id="Initial-suspend"),
    pytest.param("Initial", CIRCUIT, RUNS, id="Initial-circuit-open"),
    pytest.param("Initial", IN_COOLDOWN, RUNS, id="Initial-in-cooldown"),
    # | Drift, Schedule | suppressed | suppressed | suppressed (`CircuitOpen`) | suppressed (`Cooldown`) |
    pytest.param("Drift", RUNNING, "TrainingInProgress", id="Drift-training-running"),
    pytest.param("Drift", SUSPEND, "Suspended", id="Drift-suspend"),
    pytest.param("Drift", CIRCUIT, "CircuitOpen", id="Drift-circuit-open"),
    pytest.param("Drift", IN_COOLDOWN, "Cooldown", id="Drift-in-cooldown"),
    pytest.param("Schedule", RUNNING, "TrainingInProgress", id="Schedule-training-running"),
    pytest.param("Schedule", SUSPEND, "Suspended", id="Schedule-suspend"),
    pytest.param("Schedule", CIRCUIT, "CircuitOpen", id="Schedule-circuit-open"),
    pytest.param("Schedule", IN_COOLDOWN, "Cooldown", id="Schedule-in-cooldown"),
]


@pytest.mark.parametrize(("reason", "column", "outcome"), RULE_BOOK)
def test_arbitration_rule_book(reason: str, column: str, outcome: str) -> None:
    decision = arbitrate(
        Trigger(reason, "somebody", "some detail"),
        arbitration_spec(suspend=column == SUSPEND),
        arbitration_status(circuit_open=column == CIRCUIT, in_cooldown=column == IN_COOLDOWN),
        NOW,
        training_active=column == RUNNING,
    )

    if outcome == RUNS:
        assert (decision.run, decision.suppression) == (True, None)
    else:
        assert (decision.run, decision.suppression) == (False, outcome)
        assert reason in decision.message


@pytest.mark.parametrize("reason", ["Manual", "SpecChange", "Initial", "Drift", "Schedule"])
def test_every_trigger_runs_when_nothing_holds_it_back(reason: str) -> None:
    decision = arbitrate(Trigger(reason), arbitration_spec(), arbitration_status(), NOW, training_active=False)

    assert (decision.run, decision.suppression) == (True, None)


@pytest.mark.parametrize("reason", ["Manual", "SpecChange", "Initial", "Drift", "Schedule"])
def test_a_running_training_holds_every_trigger_whatever_else_holds(reason: str) -> None:
    decision = arbitrate(
        Trigger(reason),
        arbitration_spec(suspend=True),
        arbitration_status(circuit_open=True, in_cooldown=True),
        NOW,
        training_active=True,
    )

    assert decision.suppression == "TrainingInProgress"


@pytest.mark.parametrize("reason", ["Drift", "Schedule"])
def test_cooldown_message_names_when_the_cooldown_ends(reason: str) -> None:
    decision = arbitrate(
        Trigger(reason), arbitration_spec(), arbitration_status(in_cooldown=True), NOW, training_active=False
    )

    assert decision.suppression == "Cooldown"
    assert COOLDOWN_ENDS_TEXT in decision.message


def test_manual_runs_even_when_everything_else_would_stop_it() -> None:
    decision = arbitrate(
        Trigger("Manual", "2026-11-26-a"),
        arbitration_spec(suspend=True),
        arbitration_status(circuit_open=True, in_cooldown=True),
        NOW,
        training_active=False,
    )

    assert decision.run
    assert decision.suppression is None


def test_cooldown_is_over_once_exactly_the_cooldown_has_passed() -> None:
    status = status_of({"latestVersion": "4", "lastAutomaticRetrain": iso(NOW - COOLDOWN)})

    assert arbitrate(Trigger("Drift"), arbitration_spec(), status, NOW, training_active=False).run


def test_cooldown_holds_one_second_before_it_ends() -> None:
    status = status_of({"latestVersion": "4", "lastAutomaticRetrain": iso(NOW - COOLDOWN + timedelta(seconds=1))})

    decision = arbitrate(Trigger("Drift"), arbitration_spec(), status, NOW, training_active=False)

    assert decision.suppression == "Cooldown"


def test_no_cooldown_without_a_previous_retrain() -> None:
    status = status_of({"latestVersion": "4"})

    assert arbitrate(Trigger("Schedule"), arbitration_spec(), status, NOW, training_active=False).run


@pytest.mark.parametrize("last_reason", ["Initial", "Manual", "SpecChange"])
def test_a_retrain_that_is_not_automatic_does_not_start_the_cooldown(last_reason: str) -> None:
    # api.md: the cooldown is the least time between two automatic retrains; the Initial
    # training (and a person's Manual request or spec change) does not start it.
    status = status_of(
        {"latestVersion": "4", "lastRetrain": {"time": iso(NOW - timedelta(minutes=5)), "reason": last_reason}}
    )

    assert arbitrate(Trigger("Drift", "churn-drift"), arbitration_spec(), status, NOW, training_active=False).run


def test_circuit_opens_at_exactly_max_consecutive_failures() -> None:
    status = status_of({"latestVersion": "4", "consecutiveFailures": MAX_FAILURES})

    decision = arbitrate(Trigger("Drift"), arbitration_spec(), status, NOW, training_active=False)

    assert decision.suppression == "CircuitOpen"


def test_circuit_closed_without_recorded_failures() -> None:
    status = status_of({"latestVersion": "4"})

    assert arbitrate(Trigger("Drift"), arbitration_spec(), status, NOW, training_active=False).run


# ---------------------------------------------------------------- versions
@pytest.mark.parametrize(
    ("status", "known", "expected"),
    [
        pytest.param({}, [], 1, id="nothing-yet"),
        pytest.param({"latestVersion": "4"}, [], 5, id="latest-version"),
        pytest.param({"versions": [{"version": "2"}, {"version": "7"}]}, [], 8, id="version-records"),
        pytest.param({}, ["3", "9"], 10, id="known-training-jobs"),
        pytest.param({"latestVersion": "4", "versions": [{"version": "4"}]}, ["6"], 7, id="job-ahead-of-status"),
        pytest.param({"latestVersion": "12", "versions": [{"version": "3"}]}, ["11"], 13, id="latest-ahead"),
        pytest.param({"latestVersion": "9"}, ["10"], 11, id="numeric-not-lexicographic"),
        pytest.param({}, ["manual-run", "experiment"], 1, id="non-digit-job-versions-ignored"),
        pytest.param({"versions": [{"version": "x"}, {"version": "2"}]}, ["v3"], 3, id="non-digit-records-ignored"),
    ],
)
def test_next_version(status: dict[str, Any], known: list[str], expected: int) -> None:
    assert next_version(status_of(status), known) == expected


def test_next_version_ignores_a_non_digit_latest_version() -> None:
    assert next_version(status_of({"latestVersion": "abc"}), ["2"]) == 3


def test_training_job_identity() -> None:
    job = training_job_for(REF, make_spec(), 5, Trigger("Initial"), BOOKKEEPING)

    assert job["apiVersion"] == "perennial.dev/v1alpha1"
    assert job["kind"] == "TrainingJob"
    assert job["metadata"]["name"] == "churn-v5"
    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["metadata"]["labels"] == {**SELECTOR, "perennial.dev/version": "5"}


def test_training_job_is_controlled_by_the_model_deployment() -> None:
    job = training_job_for(REF, make_spec(), 5, Trigger("Initial"), BOOKKEEPING)

    assert job["metadata"]["ownerReferences"] == [OWNER_REFERENCE]


def test_training_job_carries_the_bookkeeping_its_trigger_consumed() -> None:
    bookkeeping = {
        "perennial.dev/triggered-at": "2026-11-26T12:00:00Z",
        "perennial.dev/training-spec-hash": "0123456789abcdef",
        "perennial.dev/handled-retrain-request": "2026-11-26-a",
        "perennial.dev/drift-requests": '{"churn-drift": "ep-3"}',
    }

    job = training_job_for(REF, make_spec(), 5, Trigger("Manual", "2026-11-26-a"), bookkeeping)

    assert job["metadata"]["annotations"] == bookkeeping
    assert job["metadata"]["annotations"] is not bookkeeping


def test_training_job_spec_carries_model_version_and_trigger() -> None:
    trigger = Trigger("Drift", "churn-drift", "feature_psi=0.31 > max 0.2")

    spec = training_job_for(REF, make_spec(), 5, trigger, BOOKKEEPING)["spec"]

    assert spec["model"] == MODEL
    assert spec["version"] == "5"
    assert spec["trigger"] == {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"}


def test_training_job_trigger_leaves_out_empty_source_and_detail() -> None:
    spec = training_job_for(REF, make_spec(), 1, Trigger("Initial"), BOOKKEEPING)["spec"]

    assert spec["trigger"] == {"reason": "Initial"}


def test_training_job_spec_is_the_training_template_in_wire_form() -> None:
    model_spec = make_spec(
        training={
            "dataset": {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"},
            "hyperparameters": {"learning_rate": "0.01"},
            "validation": [{"metric": "auc", "min": 0.9}],
            "activeDeadline": "2h",
        }
    )

    spec = training_job_for(REF, model_spec, 5, Trigger("Initial"), BOOKKEEPING)["spec"]

    assert spec["image"] == TRAINER
    assert spec["output"] == {"modelUri": MODEL_URI_TEMPLATE}
    assert spec["dataset"] == {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"}
    assert spec["hyperparameters"] == {"learning_rate": "0.01"}
    assert spec["validation"] == [{"metric": "auc", "min": 0.9}]
    assert spec["activeDeadline"] == "2h"
    assert (spec["workers"], spec["backoffLimit"], spec["ttlAfterFinished"]) == (1, 2, "24h")
    assert None not in spec.values()
    assert "backoff_limit" not in spec


def test_training_job_spec_is_a_valid_training_job_spec() -> None:
    spec = training_job_for(REF, make_spec(), 5, Trigger("Manual", "2026-11-26-a"), BOOKKEEPING)["spec"]

    parsed = TrainingJobSpec.model_validate(spec)

    assert (parsed.model, parsed.version, parsed.image) == (MODEL, "5", TRAINER)
    assert parsed.trigger is not None
    assert (parsed.trigger.reason, parsed.trigger.source) == ("Manual", "2026-11-26-a")


def test_version_record_of_a_minimal_spec() -> None:
    record = version_record(training_job_for(REF, make_spec(), 5, Trigger("Schedule", "0 3 * * 0"), BOOKKEEPING))

    assert record.to_api() == {
        "version": "5",
        "trainingJob": "churn-v5",
        "state": "Training",
        "image": TRAINER,
        "trigger": {"reason": "Schedule", "source": "0 3 * * 0"},
        "createdAt": "2026-11-26T12:00:00Z",
    }


def test_version_record_keeps_dataset_and_hyperparameters() -> None:
    spec = make_spec(
        training={
            "dataset": {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"},
            "hyperparameters": {"learning_rate": "0.01", "max_depth": "8"},
        }
    )

    record = version_record(training_job_for(REF, spec, 5, Trigger("Initial"), BOOKKEEPING))

    assert record.to_api()["dataset"] == {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"}
    assert record.to_api()["hyperparameters"] == {"learning_rate": "0.01", "max_depth": "8"}
    ModelVersionRecord.model_validate(record.to_api())


def test_version_record_does_not_share_the_specs_dataset() -> None:
    spec = make_spec(training={"dataset": {"version": "2026-11-26"}})

    record = version_record(training_job_for(REF, spec, 5, Trigger("Initial"), BOOKKEEPING))
    assert record.dataset is not None
    record.dataset.version = "changed"

    assert spec.training.dataset is not None
    assert spec.training.dataset.version == "2026-11-26"


def test_adopted_record_takes_its_lineage_from_the_training_job() -> None:
    body = {
        "metadata": {
            "name": "churn-v5",
            "creationTimestamp": "2026-11-26T12:00:07Z",
            "annotations": {"perennial.dev/triggered-at": "2026-11-26T12:00:00Z"},
        },
        "spec": {
            "version": "5",
            "image": TRAINER,
            "dataset": {"version": "2026-11-26"},
            "hyperparameters": {"learning_rate": "0.01"},
            "trigger": {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"},
        },
    }

    assert adopted_record(run_from(body)).to_api() == {
        "version": "5",
        "trainingJob": "churn-v5",
        "state": "Training",
        "image": TRAINER,
        "dataset": {"version": "2026-11-26"},
        "hyperparameters": {"learning_rate": "0.01"},
        "trigger": {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"},
        "createdAt": "2026-11-26T12:00:00Z",
    }


def test_adopted_record_without_annotations_dates_from_the_creation_and_defaults_to_initial() -> None:
    body = {"metadata": {"name": "churn-v1", "creationTimestamp": "2026-11-26T12:00:07Z"}, "spec": {"version": "1"}}

    assert adopted_record(run_from(body)).to_api() == {
        "version": "1",
        "trainingJob": "churn-v1",
        "state": "Training",
        "trigger": {"reason": "Initial"},
        "createdAt": "2026-11-26T12:00:07Z",
    }


# ---------------------------------------------------------------- promotion
CHAMPION = record_of({"version": "4", "state": "Serving", "metrics": {"auc": 0.93, "loss": 0.2}})
REQUIRE_AUC = {"requireImprovement": {"metric": "auc", "minDelta": 0.01}}  # challenger needs auc >= 0.94


def promotion_spec(*, policy: str = "Automatic", require: bool = False) -> ModelDeploymentSpec:
    promotion: dict[str, Any] = {"policy": policy, **(REQUIRE_AUC if require else {})}
    return make_spec(promotion=promotion)


@pytest.mark.parametrize(
    ("policy", "require", "challenger", "champion", "result"),
    [
        pytest.param("Automatic", False, {"auc": 0.5}, CHAMPION, "Promoted", id="no-requirement-automatic"),
        pytest.param("Manual", False, {"auc": 0.99}, CHAMPION, "Candidate", id="no-requirement-manual"),
        pytest.param("Automatic", False, {}, None, "Promoted", id="no-requirement-first-version"),
        pytest.param("Automatic", True, {"loss": 0.1}, CHAMPION, "NotPromoted", id="challenger-lacks-metric"),
        pytest.param("Automatic", True, {"auc": 0.935}, CHAMPION, "NotPromoted", id="improvement-too-small"),
        pytest.param("Automatic", True, {"auc": 0.90}, CHAMPION, "NotPromoted", id="worse"),
        pytest.param("Automatic", True, {"auc": 0.95}, CHAMPION, "Promoted", id="improved-enough"),
        pytest.param("Manual", True, {"auc": 0.95}, CHAMPION, "Candidate", id="improved-enough-manual"),
        pytest.param("Manual", True, {"auc": 0.90}, CHAMPION, "NotPromoted", id="worse-manual"),
        pytest.param(
            "Automatic",
            True,
            {"auc": 0.95},
            record_of({"version": "4", "metrics": {"loss": 0.2}}),
            "Promoted",
            id="champ-no-auc",
        ),
        pytest.param(
            "Automatic", True, {"auc": 0.95}, record_of({"version": "4"}), "Promoted", id="champion-without-metrics"
        ),
        pytest.param("Automatic", True, {"auc": 0.5}, None, "Promoted", id="no-champion"),
        pytest.param("Manual", True, {"auc": 0.5}, None, "Candidate", id="no-champion-manual"),
    ],
)
def test_promotion_result(
    policy: str, require: bool, challenger: dict[str, float], champion: ModelVersionRecord | None, result: str
) -> None:
    decision = promotion_decision(promotion_spec(policy=policy, require=require), challenger, champion)

    assert decision.result == result
    assert decision.reason


def test_improvement_of_exactly_min_delta_is_enough() -> None:
    spec = make_spec(promotion={"requireImprovement": {"metric": "auc", "minDelta": 0.25}})  # exact in binary

    decision = promotion_decision(spec, {"auc": 0.75}, record_of({"version": "4", "metrics": {"auc": 0.5}}))

    assert decision.result == "Promoted"


def test_improvement_of_exactly_a_decimal_min_delta_is_enough() -> None:
    spec = make_spec(promotion={"requireImprovement": {"metric": "auc", "minDelta": 0.02}})

    decision = promotion_decision(spec, {"auc": 0.95}, record_of({"version": "4", "metrics": {"auc": 0.93}}))

    assert decision.result == "Promoted"


def test_not_promoted_evidence_names_both_numbers() -> None:
    decision = promotion_decision(promotion_spec(require=True), {"auc": 0.935}, CHAMPION)

    assert decision.result == "NotPromoted"
    assert "auc" in decision.reason
    assert "0.935" in decision.reason
    assert re.search(r"\b0\.93\b", decision.reason)  # the champion's value, not a prefix of 0.935
    assert "0.01" in decision.reason


def test_promoted_evidence_names_both_numbers() -> None:
    decision = promotion_decision(promotion_spec(require=True), {"auc": 0.95}, CHAMPION)

    assert decision.result == "Promoted"
    assert "0.95" in decision.reason
    assert "0.93" in decision.reason


def test_missing_metric_reason_names_the_metric() -> None:
    decision = promotion_decision(promotion_spec(require=True), {"loss": 0.1}, CHAMPION)

    assert "auc" in decision.reason


def test_champion_without_the_metric_is_promoted_on_validation() -> None:
    champion = record_of({"version": "4", "metrics": {}})

    decision = promotion_decision(promotion_spec(require=True), {"auc": 0.5}, champion)

    assert decision.result == "Promoted"
    assert "validation" in decision.reason


def test_decision_is_compared_to_the_champions_version() -> None:
    decision = promotion_decision(promotion_spec(require=True), {"auc": 0.95}, CHAMPION)

    assert decision.compared_to == "4"
    assert decision.record().to_api() == {"result": "Promoted", "reason": decision.reason, "comparedTo": "4"}


def test_first_version_is_compared_to_nothing() -> None:
    decision = promotion_decision(promotion_spec(require=True), {"auc": 0.95}, None)

    assert decision.compared_to is None
    assert "comparedTo" not in decision.record().to_api()


# ---------------------------------------------------------------- serving: Deployment
def test_selector_labels_name_the_model_but_not_the_version() -> None:
    assert selector_labels(REF) == SELECTOR


def test_deployment_is_named_after_the_model_deployment_and_owned_by_it() -> None:
    deployment = deploy()

    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert deployment["metadata"]["name"] == MODEL
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["metadata"]["ownerReferences"] == [OWNER_REFERENCE]


def test_serving_volumes_reach_the_pod_and_the_server_container() -> None:
    """A model the trainer wrote to a claim is served from that claim (a path modelUri)."""
    serving = {
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "churn-models", "readOnly": True}}],
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
    }
    pod = deploy(make_spec(serving=serving))["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "models", "persistentVolumeClaim": {"claimName": "churn-models", "readOnly": True}}
    ]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "models", "mountPath": "/models", "readOnly": True}]
    assert "volumes" not in deploy()["spec"]["template"]["spec"]
    assert "volumeMounts" not in deploy()["spec"]["template"]["spec"]["containers"][0]


def test_deployment_selector_has_no_version_because_selectors_are_immutable() -> None:
    assert deploy(version="4")["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert deploy(version="5")["spec"]["selector"] == {"matchLabels": SELECTOR}


def test_pod_template_labels_carry_the_version_and_match_the_selector() -> None:
    labels = deploy(make_spec(serving={"podLabels": {"team": "risk"}}), version="4")["spec"]["template"]["metadata"][
        "labels"
    ]

    assert labels["perennial.dev/version"] == "4"
    assert labels["team"] == "risk"
    assert SELECTOR.items() <= labels.items()


def test_pod_annotations_pass_through() -> None:
    deployment = deploy(make_spec(serving={"podAnnotations": {"prometheus.io/scrape": "true"}}))

    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_model_uri_is_the_first_env_var() -> None:
    spec = make_spec(serving={"env": [{"name": "LOG_LEVEL", "value": "info"}]})

    env = container_of(deploy(spec))["env"]

    assert env == [{"name": "MODEL_URI", "value": SERVED_URI}, {"name": "LOG_LEVEL", "value": "info"}]


def test_model_uri_env_var_name_is_configurable() -> None:
    env = container_of(deploy(make_spec(serving={"modelUriEnv": "MODEL_PATH"})))["env"]

    assert env[0] == {"name": "MODEL_PATH", "value": SERVED_URI}


def test_container_serves_the_image_on_a_port_named_http() -> None:
    container = container_of(deploy(make_spec(serving={"port": 9000})))

    assert container["image"] == SERVER
    assert container["ports"] == [{"name": "http", "containerPort": 9000}]


def test_default_port_is_8080() -> None:
    assert container_of(deploy())["ports"] == [{"name": "http", "containerPort": 8080}]


def test_pods_are_restricted() -> None:
    deployment = deploy()

    assert container_of(deployment)["securityContext"] == RESTRICTED_CONTAINER_SECURITY
    assert pod_spec_of(deployment)["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_no_api_token_without_a_service_account() -> None:
    pod = pod_spec_of(deploy())

    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


def test_service_account_is_used_when_named() -> None:
    pod = pod_spec_of(deploy(make_spec(serving={"serviceAccountName": "churn-server"})))

    assert pod["serviceAccountName"] == "churn-server"
    assert pod.get("automountServiceAccountToken") is not False


@pytest.mark.parametrize(("replicas", "expected"), [(None, 1), (3, 3), (0, 0)])
def test_replicas(replicas: int | None, expected: int) -> None:
    serving = {} if replicas is None else {"replicas": replicas}

    assert deploy(make_spec(serving=serving))["spec"]["replicas"] == expected


def test_with_external_scaling_the_replicas_are_left_to_their_owner() -> None:
    deployment = deploy(make_spec(serving={"replicas": 3, "externalScaling": True}))

    assert "replicas" not in deployment["spec"]


def test_children_carry_no_spec_hash_annotation() -> None:
    # Children are server-side applied: what differs is found by comparing fields.
    service = desired_service(REF, make_spec())

    assert "annotations" not in deploy()["metadata"]
    assert "annotations" not in service["metadata"]


def test_probes_pass_through_in_wire_format() -> None:
    readiness = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    liveness = {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 10}

    container = container_of(deploy(make_spec(serving={"readinessProbe": readiness, "livenessProbe": liveness})))

    assert container["readinessProbe"] == readiness
    assert container["livenessProbe"] == liveness


def test_no_probes_unless_asked_for() -> None:
    container = container_of(deploy())

    assert "readinessProbe" not in container
    assert "livenessProbe" not in container


def test_resources_pass_through() -> None:
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}

    assert container_of(deploy(make_spec(serving={"resources": resources})))["resources"] == resources


@pytest.mark.parametrize(
    ("progress_deadline", "seconds"), [(None, 600), ("2m30s", 150), ("1h", 3600)], ids=["default", "2m30s", "1h"]
)
def test_progress_deadline_seconds(progress_deadline: str | None, seconds: int) -> None:
    rollout = {} if progress_deadline is None else {"progressDeadline": progress_deadline}

    assert deploy(make_spec(rollout=rollout))["spec"]["progressDeadlineSeconds"] == seconds


def test_rolling_update_never_removes_a_serving_pod_first() -> None:
    strategy = deploy()["spec"]["strategy"]

    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


# ---------------------------------------------------------------- serving: Service and deployed version
def test_service_is_cluster_ip_on_port_http() -> None:
    service = desired_service(REF, make_spec(serving={"port": 9000}))

    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    assert service["metadata"]["name"] == MODEL
    assert service["metadata"]["namespace"] == NAMESPACE
    assert service["metadata"]["ownerReferences"] == [OWNER_REFERENCE]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]


def test_service_selects_what_the_deployment_selects() -> None:
    spec = make_spec()

    assert desired_service(REF, spec)["spec"]["selector"] == SELECTOR
    assert desired_service(REF, spec)["spec"]["selector"] == deploy(spec)["spec"]["selector"]["matchLabels"]


def test_deployed_version_reads_the_pod_template_label() -> None:
    assert deployed_version(deploy(version="7")) == "7"


def test_deployed_version_of_no_deployment_is_none() -> None:
    assert deployed_version(None) is None


def test_deployed_version_of_a_template_without_the_label_is_none() -> None:
    assert deployed_version({"spec": {"template": {"metadata": {"labels": SELECTOR}}}}) is None


# ---------------------------------------------------------------- deployment health
def observed_deployment(
    *,
    replicas: int = 3,
    generation: int = 2,
    observed_generation: int = 2,
    updated: int = 3,
    available_replicas: int = 3,
    total: int = 3,
    ready: int = 3,
    available: str = "True",
) -> dict[str, Any]:
    """A Deployment as the API server returns it: a finished rollout unless told otherwise."""
    return {
        "metadata": {"name": MODEL, "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed_generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available_replicas,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable"},
            ],
        },
    }


@pytest.mark.parametrize(
    ("deployment", "rolled_out"),
    [
        pytest.param(observed_deployment(), True, id="finished"),
        pytest.param(observed_deployment(observed_generation=1), False, id="new-generation-not-observed"),
        pytest.param(observed_deployment(updated=2, total=3), False, id="not-all-updated"),
        pytest.param(observed_deployment(available_replicas=2), False, id="not-all-available"),
        pytest.param(observed_deployment(total=4), False, id="old-pods-still-there"),
        pytest.param(observed_deployment(observed_generation=3), True, id="observed-ahead"),
        pytest.param(
            observed_deployment(replicas=0, updated=0, available_replicas=0, total=0, ready=0), True, id="scaled-to-0"
        ),
        pytest.param({"metadata": {"generation": 1}, "spec": {"replicas": 3}}, False, id="no-status-yet"),
    ],
)
def test_rolled_out(deployment: dict[str, Any], rolled_out: bool) -> None:
    assert deployment_health(deployment).rolled_out is rolled_out


@pytest.mark.parametrize(("condition", "available"), [("True", True), ("False", False), ("Unknown", False)])
def test_available_follows_the_available_condition(condition: str, available: bool) -> None:
    assert deployment_health(observed_deployment(available=condition)).available is available


def test_no_available_condition_is_not_available() -> None:
    deployment = observed_deployment()
    deployment["status"]["conditions"] = []

    assert deployment_health(deployment).available is False


def test_health_reports_desired_and_ready_replicas() -> None:
    health = deployment_health(observed_deployment(replicas=3, ready=2, available_replicas=2))

    assert (health.replicas, health.ready_replicas) == (3, 2)


def test_health_of_no_deployment() -> None:
    assert deployment_health(None) == DeploymentHealth(0, 0, False, False)


# ---------------------------------------------------------------- rollout deadline
def rollout_started(ago: timedelta) -> RolloutStatus:
    return rollout_of({"version": "5", "previousVersion": "4", "startedAt": iso(NOW - ago)})


@pytest.mark.parametrize(
    ("ago", "overdue", "seconds_left"),
    [
        pytest.param(timedelta(0), False, 600.0, id="just-started"),
        pytest.param(timedelta(minutes=5), False, 300.0, id="half-way"),
        pytest.param(timedelta(minutes=10), False, 0.0, id="at-the-deadline"),
        pytest.param(timedelta(minutes=10, seconds=1), True, 0.0, id="one-second-late"),
        pytest.param(timedelta(hours=2), True, 0.0, id="long-overdue"),
    ],
)
def test_rollout_against_the_default_deadline(ago: timedelta, overdue: bool, seconds_left: float) -> None:
    rollout, spec = rollout_started(ago), make_spec()

    assert rollout_overdue(rollout, spec, NOW) is overdue
    assert rollout_seconds_left(rollout, spec, NOW) == seconds_left


def test_rollout_uses_the_spec_deadline() -> None:
    spec = make_spec(rollout={"progressDeadline": "2m"})
    rollout = rollout_started(timedelta(minutes=1, seconds=30))

    assert rollout_overdue(rollout, spec, NOW) is False
    assert rollout_seconds_left(rollout, spec, NOW) == 30.0
    assert rollout_overdue(rollout_started(timedelta(minutes=3)), spec, NOW) is True


def test_no_rollout_started_is_never_overdue() -> None:
    rollout = rollout_of({"version": "5", "previousVersion": "4"})

    assert rollout_overdue(rollout, make_spec(), NOW) is False
    assert rollout_seconds_left(rollout, make_spec(), NOW) is None


# ---------------------------------------------------------------- history
def run(version: int | str, phase: str | None = "Succeeded") -> Run:
    return Run(name=f"churn-v{version}", version=str(version), phase=phase, metrics={}, model_uri=None)


def finished_runs(*versions: int) -> list[Run]:
    return [run(v) for v in versions]


def test_history_keeps_the_newest_limit_finished_runs() -> None:
    runs = finished_runs(1, 2, 3, 4, 5, 6, 7)

    assert sorted(history_to_delete(runs, 5, set())) == ["churn-v1", "churn-v2"]


def test_history_orders_versions_as_numbers() -> None:
    runs = finished_runs(2, 9, 10, 11)

    assert sorted(history_to_delete(runs, 2, set())) == ["churn-v2", "churn-v9"]


def test_history_within_the_limit_deletes_nothing() -> None:
    assert history_to_delete(finished_runs(1, 2, 3), 5, set()) == []


def test_history_limit_zero_deletes_every_finished_run() -> None:
    assert sorted(history_to_delete(finished_runs(1, 2, 3), 0, set())) == ["churn-v1", "churn-v2", "churn-v3"]


def test_failed_and_rejected_runs_are_history_too() -> None:
    runs = [run(1, "Failed"), run(2, "Rejected"), run(3, "Succeeded")]

    assert sorted(history_to_delete(runs, 1, set())) == ["churn-v1", "churn-v2"]


def test_unfinished_runs_are_never_deleted() -> None:
    runs = [run(1, None), run(2, "Pending"), run(3, "Running"), run(4)]

    assert history_to_delete(runs, 0, set()) == ["churn-v4"]


def test_protected_versions_are_never_deleted_and_do_not_count() -> None:
    runs = finished_runs(1, 2, 3, 4)

    deleted = history_to_delete(runs, 1, {"2"})

    assert sorted(deleted) == ["churn-v1", "churn-v3"]


def test_protected_versions_survive_limit_zero() -> None:
    assert history_to_delete(finished_runs(1, 2), 0, {"1", "2"}) == []


# ---------------------------------------------------------------- runs
def training_job_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "churn-v7", "labels": {**SELECTOR, "perennial.dev/version": "7"}},
        "spec": {"model": MODEL, "version": "7", "image": TRAINER},
        "status": status,
    }


def test_run_from_a_succeeded_training_job() -> None:
    body = training_job_body(
        phase="Succeeded",
        metrics={"auc": 0.934, "loss": 0.21},
        modelUri="s3://models/churn/7",
        conditions=[
            {"type": "Running", "status": "False", "reason": "Completed"},
            {"type": "Succeeded", "status": "True", "reason": "Validated"},
        ],
    )

    assert run_from(body) == Run(
        name="churn-v7",
        version="7",
        phase="Succeeded",
        metrics={"auc": 0.934, "loss": 0.21},
        model_uri="s3://models/churn/7",
        reason="Validated",
        image=TRAINER,
        annotations={},
    )


def test_run_from_a_failed_training_job_keeps_the_reason() -> None:
    body = training_job_body(
        phase="Failed", conditions=[{"type": "Succeeded", "status": "False", "reason": "BackoffLimitExceeded"}]
    )

    result = run_from(body)

    assert (result.phase, result.reason, result.finished) == ("Failed", "BackoffLimitExceeded", True)


def test_run_from_a_new_training_job() -> None:
    body = training_job_body()
    del body["status"]

    result = run_from(body)

    assert result == Run(
        name="churn-v7", version="7", phase=None, metrics={}, model_uri=None, reason="", image=TRAINER, annotations={}
    )
    assert result.finished is False


def test_run_version_falls_back_to_the_label() -> None:
    body = training_job_body(phase="Running")
    del body["spec"]["version"]

    assert run_from(body).version == "7"


def test_run_version_prefers_the_spec() -> None:
    body = training_job_body(phase="Running")
    body["spec"]["version"] = "8"

    assert run_from(body).version == "8"


@pytest.mark.parametrize(
    ("phase", "finished"),
    [("Succeeded", True), ("Failed", True), ("Rejected", True), ("Running", False), ("Pending", False), (None, False)],
)
def test_run_is_finished_in_a_terminal_phase(phase: str | None, finished: bool) -> None:
    assert run(1, phase).finished is finished


def test_run_keeps_the_lineage_and_bookkeeping_of_its_training_job() -> None:
    body = training_job_body(phase="Running")
    body["metadata"]["creationTimestamp"] = "2026-11-26T12:00:07Z"
    body["metadata"]["annotations"] = {"perennial.dev/drift-requests": json.dumps({"churn-drift": "ep-3"})}
    body["spec"]["trigger"] = {"reason": "Drift", "source": "churn-drift"}
    body["spec"]["dataset"] = {"version": "2026-11-26"}
    body["spec"]["hyperparameters"] = {"learning_rate": "0.01"}

    result = run_from(body)

    assert result.trigger == {"reason": "Drift", "source": "churn-drift"}
    assert result.dataset == {"version": "2026-11-26"}
    assert result.hyperparameters == {"learning_rate": "0.01"}
    assert result.created_at == datetime(2026, 11, 26, 12, 0, 7, tzinfo=UTC)
    assert result.annotations == {"perennial.dev/drift-requests": '{"churn-drift": "ep-3"}'}


def owned_body(
    name: str, version: str, *, uid: str = UID, namespace: str = NAMESPACE, controller: bool = True
) -> dict[str, Any]:
    owner = {**OWNER_REFERENCE, "uid": uid, "controller": controller}
    return {
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
        "spec": {"version": version},
    }


def test_own_runs_are_the_controlled_training_jobs_by_version() -> None:
    bodies = [owned_body("churn-v1", "1"), owned_body("churn-v2", "2")]

    assert sorted(own_runs(bodies, REF)) == ["1", "2"]
    assert own_runs(bodies, REF)["2"].name == "churn-v2"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(owned_body("churn-v3", "3", uid="another-uid"), id="another-owner"),
        pytest.param(owned_body("churn-v3", "3", controller=False), id="not-the-controller"),
        pytest.param(owned_body("churn-v3", "3", namespace="elsewhere"), id="another-namespace"),
        pytest.param(owned_body("churn-experiment", "experiment"), id="version-not-a-number"),
    ],
)
def test_own_runs_ignore_what_is_not_a_version_of_this_model(body: dict[str, Any]) -> None:
    assert own_runs([body], REF) == {}


# ---------------------------------------------------------------- schedule and cooldown helpers
def test_next_schedule_without_a_schedule_is_none() -> None:
    assert next_schedule(make_spec(), NOW) is None


def test_next_schedule_is_the_next_cron_firing() -> None:
    spec = make_spec(retraining={"schedule": "0 3 * * 0"})

    assert next_schedule(spec, NOW) == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # the Sunday after


def test_cooldown_ends_one_cooldown_after_the_last_automatic_retrain() -> None:
    status = status_of({"lastAutomaticRetrain": iso(LAST_AUTOMATIC_RETRAIN_IN_COOLDOWN)})

    assert cooldown_ends(arbitration_spec(), status) == LAST_AUTOMATIC_RETRAIN_IN_COOLDOWN + COOLDOWN
    assert cooldown_ends(arbitration_spec(), status_of({})) is None


def test_cooldown_does_not_count_from_a_retrain_that_was_not_automatic() -> None:
    status = status_of({"lastRetrain": {"time": iso(LAST_AUTOMATIC_RETRAIN_IN_COOLDOWN), "reason": "Initial"}})

    assert cooldown_ends(arbitration_spec(), status) is None
