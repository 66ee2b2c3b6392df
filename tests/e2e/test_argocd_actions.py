"""The Argo CD actions on a live ModelDeployment, applied as Argo CD applies them.

Argo CD runs an action's Lua on the live object and sends the API server the JSON merge
patch from the live object to the action's output. ``cmd/argocd-lua`` in argocd/harness
does the same with the scripts of argocd/argocd-cm.yaml (restricted libraries, wall
clock); the test sends the patch with ``kubectl patch --type merge`` and watches the
operator act on it, and the health check and discovery follow.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes import client

from tests.support.argocd_harness import run_lua
from tests.support.cluster import ClusterInfo
from tests.support.resources import RETRAIN_REQUEST, apply, condition, get_custom, simulated_model, wait_for_status

pytestmark = [pytest.mark.usefixtures("operator_in_process"), pytest.mark.timeout(240)]


def live(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return get_custom(api, namespace, "modeldeployments", "churn")


def run_action(cluster: ClusterInfo, api: client.ApiClient, namespace: str, action: str) -> dict[str, Any]:
    """The action on the live object; its merge patch sent to the API server; the patch."""
    patch: dict[str, Any] = run_lua(live(api, namespace), "action", action)
    cluster.kubectl_run("patch", "modeldeployments", "churn", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    return patch


def offered(obj: dict[str, Any]) -> dict[str, bool]:
    """Action name -> enabled, as Argo CD's UI shows them."""
    return {action["name"]: not action.get("disabled", False) for action in run_lua(obj, "discovery")}


def test_pause_retrain_and_resume_from_argo_cd(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    cluster = perennial_crds
    apply(cluster, namespace, simulated_model("churn"))
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and condition(s, "Ready")["status"] == "True",
        what="version 1 serving",
    )
    model = live(api_client, namespace)
    assert run_lua(model, "health") == {"status": "Healthy", "message": "version 1 is serving and available"}
    assert offered(model) == {"retrain": True, "pause": True, "resume": False}

    # Pause: spec.suspend, nothing else; the operator stops automatic retrains.
    assert run_action(cluster, api_client, namespace, "pause") == {"spec": {"suspend": True}}
    generation = live(api_client, namespace)["metadata"]["generation"]
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("observedGeneration") == generation and s.get("automaticRetrains") == "Suspended",
        what="automatic retrains suspended",
    )
    model = live(api_client, namespace)
    assert run_lua(model, "health") == {
        "status": "Suspended",
        "message": "spec.suspend is true: automatic retrains are paused; version 1 is serving and available",
    }
    assert offered(model) == {"retrain": True, "pause": False, "resume": True}

    # Retrain, still paused: a new retrain-request value is a Manual trigger, which suspend allows.
    patch = run_action(cluster, api_client, namespace, "retrain")
    request = patch["metadata"]["annotations"][RETRAIN_REQUEST]
    assert patch == {"metadata": {"annotations": {RETRAIN_REQUEST: request}}}
    assert re.fullmatch(r"argocd-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", request), request
    status = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("latestVersion") == "2",
        what="version 2 started",
    )
    assert (status["lastRetrain"]["reason"], status["lastRetrain"]["source"]) == ("Manual", request)
    assert status["handledRetrainRequest"] == request

    # Resume: spec.suspend false; automatic retrains are active again.
    assert run_action(cluster, api_client, namespace, "resume") == {"spec": {"suspend": False}}
    generation = live(api_client, namespace)["metadata"]["generation"]
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("observedGeneration") == generation and s.get("automaticRetrains") == "Active",
        what="automatic retrains active",
    )
    assert offered(live(api_client, namespace)) == {"retrain": True, "pause": True, "resume": False}
