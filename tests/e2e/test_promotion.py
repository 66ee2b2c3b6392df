"""Promotion decisions end to end: a goal's direction and the champion scored on the same holdout.

The simulated trainer reports what its pod annotation says (the simulation contract), so each
version's numbers are set by the spec it was trained from: a change of that annotation is a
spec change, and trains the next version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, request_retrain, simulated_model, wait_for_status

pytestmark = [pytest.mark.usefixtures("operator_in_process"), pytest.mark.timeout(180)]

MODEL = "forecast"
RESULT_ANNOTATION = "sim.perennial.dev/result"


def forecaster(**metrics: float) -> dict[str, Any]:
    """Trains in 1s to ``metrics``; promoted only if its rmse is lower than the champion's."""
    model = simulated_model(MODEL, cooldown="1s")
    training = model["spec"]["training"]
    training["validation"] = [{"metric": "rmse", "max": 10}]
    training["podAnnotations"][RESULT_ANNOTATION] = json.dumps({"metrics": metrics})
    model["spec"]["promotion"] = {"requireImprovement": {"metric": "rmse", "goal": "Minimize", "minDelta": 0.05}}
    return model


def decided(version: str) -> Callable[[dict[str, Any]], bool]:
    def predicate(status: dict[str, Any]) -> bool:
        record: dict[str, Any] = next((r for r in status.get("versions") or [] if r["version"] == version), {})
        return bool(record.get("decision")) and not status.get("rollout")

    return predicate


def record_of(status: dict[str, Any], version: str) -> dict[str, Any]:
    (record,) = [r for r in status["versions"] if r["version"] == version]
    return dict(record)


def wait_decided(api: client.ApiClient, namespace: str, version: str) -> dict[str, Any]:
    return wait_for_status(api, namespace, "modeldeployments", MODEL, decided(version), what=f"v{version} decided")


def test_minimize_promotes_the_lower_value_and_a_champion_score_on_the_same_holdout_decides(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, forecaster(rmse=3.0))
    assert wait_decided(api_client, namespace, "1")["servingVersion"] == "1"

    # Lower is better: 2.5 beats the champion's own 3.0 by more than minDelta.
    apply(perennial_crds, namespace, forecaster(rmse=2.5))
    status = wait_decided(api_client, namespace, "2")
    v2 = record_of(status, "2")
    assert v2["decision"] == {
        "result": "Promoted",
        "reason": "rmse 2.5 <= champion 3 - minDelta 0.05"
        " (Minimize; champion's number from its own run: no champion_rmse reported)",
        "comparedTo": "1",
    }
    assert status["servingVersion"] == "2"

    # 2.2 would beat the champion's recorded 2.5, but on this run's holdout the champion
    # scored 2.0: like for like, the challenger is worse and is not promoted.
    apply(perennial_crds, namespace, forecaster(rmse=2.2, champion_rmse=2.0))
    status = wait_decided(api_client, namespace, "3")
    assert record_of(status, "3")["decision"] == {
        "result": "NotPromoted",
        "reason": "rmse 2.2 > champion 2 - minDelta 0.05 (Minimize; both on this run's holdout: champion_rmse)",
        "comparedTo": "2",
    }
    assert status["servingVersion"] == "2"

    # And the other way round: 2.6 is worse than the champion's recorded 2.5, but the champion
    # did worse still on this run's data (2.9): the challenger serves.
    apply(perennial_crds, namespace, forecaster(rmse=2.6, champion_rmse=2.9))
    status = wait_decided(api_client, namespace, "4")
    assert record_of(status, "4")["decision"] == {
        "result": "Promoted",
        "reason": "rmse 2.6 <= champion 2.9 - minDelta 0.05 (Minimize; both on this run's holdout: champion_rmse)",
        "comparedTo": "2",
    }
    assert status["servingVersion"] == "4"
    assert record_of(status, "4")["metrics"] == {"rmse": 2.6, "champion_rmse": 2.9}


def test_the_trainer_scores_the_champion_it_is_given_and_the_decision_uses_that_score(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    """The simulated trainer reports champion_auc only when it was given a champion
    (PERENNIAL_CHAMPION_MODEL_URI, the simulation contract's champion-result)."""
    model = simulated_model(MODEL, auc=0.93, cooldown="1s")
    annotations = model["spec"]["training"]["podAnnotations"]
    annotations["sim.perennial.dev/champion-result"] = json.dumps({"metrics": {"auc": 0.95, "champion_auc": 0.96}})
    model["spec"]["promotion"] = {"requireImprovement": {"metric": "auc"}}
    apply(perennial_crds, namespace, model)
    status = wait_decided(api_client, namespace, "1")
    assert record_of(status, "1")["metrics"] == {"auc": 0.93}  # nothing served: no champion to score
    assert "champion" not in record_of(status, "1")

    request_retrain(perennial_crds, namespace, MODEL, "with-a-champion")
    status = wait_decided(api_client, namespace, "2")
    v2 = record_of(status, "2")
    assert v2["champion"] == {"version": "1", "modelUri": record_of(status, "1")["modelUri"]}
    assert v2["metrics"] == {"auc": 0.95, "champion_auc": 0.96}
    # Better than v1's own 0.93, but v1 did better still on v2's holdout.
    assert v2["decision"] == {
        "result": "NotPromoted",
        "reason": "auc 0.95 < champion 0.96 + minDelta 0 (both on this run's holdout: champion_auc)",
        "comparedTo": "1",
    }
    assert status["servingVersion"] == "1"
