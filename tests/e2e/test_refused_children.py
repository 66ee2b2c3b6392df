"""Issue 15, cases 3 and 5: children the API server refuses.

A spec can pass the CRD's schema and still describe a child the API server refuses
(requests above limits, a resource name it does not know). The refusal becomes a
condition with the API's own message on the owner, ``observedGeneration`` advances, the
rest of the pass still runs, nothing retrains in a loop, and correcting the spec recovers.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e.test_modeldeployment_loop import (
    NAME,
    cond,
    kubectl_patch_spec,
    mdep,
    served,
    status_of,
    training_jobs,
    wait_mdep,
)
from tests.support.cluster import ClusterInfo
from tests.support.operator import RunningOperator
from tests.support.resources import GROUP, VERSION, apply, events_for, get_custom, wait_for_status
from tests.support.waiting import holds_for

pytestmark = pytest.mark.timeout(180)

# The API server's own rule (core/v1 validation), not one of Perennial's CRD: a request
# may not exceed its limit.
REQUESTS_ABOVE_LIMITS = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}


def test_a_refused_serving_deployment_is_degraded_with_the_apis_message_and_a_fix_recovers(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_subprocess: RunningOperator
) -> None:
    body = mdep()
    body["spec"]["serving"]["resources"] = REQUESTS_ABOVE_LIMITS
    apply(perennial_crds, namespace, body)

    def refused(status: dict[str, Any]) -> bool:
        degraded = cond(status, "Degraded")
        return degraded.get("status") == "True" and degraded.get("reason") == "ChildRefused"

    status = wait_mdep(api_client, namespace, refused, what="Degraded/ChildRefused")
    message = cond(status, "Degraded")["message"]
    assert "must be less than or equal to cpu limit" in message, message
    generation = get_custom(api_client, namespace, "modeldeployments", NAME)["metadata"]["generation"]
    assert status["observedGeneration"] == generation
    # The rest of the pass ran: v1 was trained and recorded; it is not retrained in a loop.
    holds_for(
        lambda: (
            set(training_jobs(api_client, namespace)) == {f"{NAME}-v1"}
            and status_of(api_client, namespace).get("latestVersion") == "1"
        ),
        seconds=6,
        what="one TrainingJob while the Deployment is refused",
    )
    assert any(
        reason == "ChildRefused" for _, reason, _ in events_for(api_client, namespace, NAME, kind="ModelDeployment")
    )

    kubectl_patch_spec(perennial_crds, namespace, {"serving": {"resources": {"requests": {"cpu": "1"}}}})
    status = wait_mdep(api_client, namespace, served("1"), what="v1 served once the spec is fixed")
    assert cond(status, "Degraded").get("status") != "True"
    assert set(training_jobs(api_client, namespace)) == {f"{NAME}-v1"}


def test_a_refused_training_job_fails_with_the_apis_message_and_the_model_moves_on(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_subprocess: RunningOperator
) -> None:
    run = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "refused"},
        "spec": {
            "image": "registry.example/churn-trainer:2.3.0",
            "output": {"modelUri": "s3://models/refused"},
            "resources": REQUESTS_ABOVE_LIMITS,
        },
    }
    apply(perennial_crds, namespace, run)
    status = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "refused",
        lambda s: s.get("phase") == "Failed",
        what="the refused run Failed",
    )
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["reason"] == "JobRefused"
    assert "must be less than or equal to cpu limit" in succeeded["message"]
    assert status["observedGeneration"] == 1
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []
