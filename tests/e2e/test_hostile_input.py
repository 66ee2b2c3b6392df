"""Issue 15, case 6: annotations and strings of any length or content.

A retrain request is whatever a person or a script writes into an annotation: a ticket
URL, a sentence in any script, a pasted stack trace of 100 KiB. Each is acted on exactly
once, recorded, and shown in conditions, Events and the TrainingJob in a bounded form;
none may leave a pass stuck on a write the API server refuses.
"""

from __future__ import annotations

import hashlib

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.test_modeldeployment_loop import (
    NAME,
    RETRAIN_REQUEST,
    mdep,
    record,
    served,
    status_of,
    training_jobs,
    wait_mdep,
)
from tests.support.cluster import ClusterInfo
from tests.support.operator import RunningOperator
from tests.support.resources import apply, events_for, get_custom
from tests.support.waiting import holds_for

pytestmark = pytest.mark.timeout(240)

REQUESTS = {
    "unicode-and-newlines": "Nachtrainieren bitte — 再训练 ✓\n\"quoted\" 'single' <html> & ${shell} \\ \t end",
    "long": "stack trace line with ünïcode\n" * 3500,  # ~100 KiB: within the 256 KiB of all annotations
}


@pytest.mark.parametrize("request_value", list(REQUESTS.values()), ids=list(REQUESTS))
def test_a_retrain_request_of_any_content_is_acted_on_once(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: RunningOperator,
    request_value: str,
) -> None:
    apply(perennial_crds, namespace, mdep())
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "perennial.dev",
        "v1alpha1",
        namespace,
        "modeldeployments",
        NAME,
        {"metadata": {"annotations": {RETRAIN_REQUEST: request_value}}},
    )
    status = wait_mdep(api_client, namespace, served("2"), what="v2 trained for the request and served")
    holds_for(
        lambda: set(training_jobs(api_client, namespace)) == {f"{NAME}-v1", f"{NAME}-v2"},
        seconds=4,
        what="one TrainingJob for one request",
    )
    assert record(status, "2")["trigger"]["reason"] == "Manual"
    run = get_custom(api_client, namespace, "trainingjobs", f"{NAME}-v2")
    # The request is recorded as handled (a long one by its digest): the same value never retrains again.
    handled = status_of(api_client, namespace)["handledRetrainRequest"]
    if len(request_value) <= 1024:
        assert handled == request_value
    else:
        assert handled == "sha256:" + hashlib.sha256(request_value.encode()).hexdigest()
    assert run["metadata"]["annotations"]["perennial.dev/handled-retrain-request"] == handled
    assert run["spec"]["trigger"]["reason"] == "Manual"
    # What people read is bounded: the TrainingJob's trigger detail, Events, conditions.
    assert len(run["spec"]["trigger"].get("detail", "")) <= 4096
    assert len(run["spec"]["trigger"].get("source", "")) <= 1024
    for _, _, message in events_for(api_client, namespace, NAME, kind="ModelDeployment"):
        assert len(message.encode()) <= 1024, message[:200]
    for item in status_of(api_client, namespace).get("conditions") or []:
        assert len(item.get("message", "")) <= 32768


# ---------------------------------------------------------------- case 9: a forged owner
def test_a_training_job_with_a_forged_model_owner_is_refused_at_admission(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: RunningOperator,
) -> None:
    """Anyone who may create TrainingJobs can copy the model's uid into an ownerReference;
    the chart's ValidatingAdmissionPolicy lets only the operator's ServiceAccount do so."""
    apply(perennial_crds, namespace, mdep())
    wait_mdep(api_client, namespace, served("1"), what="v1 served")
    model = get_custom(api_client, namespace, "modeldeployments", NAME)
    owner = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": NAME,
        "uid": model["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    v1 = get_custom(api_client, namespace, "trainingjobs", f"{NAME}-v1")
    forged = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": f"{NAME}-v9",
            "labels": v1["metadata"]["labels"] | {"perennial.dev/version": "9"},
            "annotations": v1["metadata"].get("annotations") or {},
            "ownerReferences": [owner],
        },
        "spec": v1["spec"] | {"version": "9"},
    }
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object("perennial.dev", "v1alpha1", namespace, "trainingjobs", forged)
    assert refused.value.status == 403
    assert "only the Perennial operator may make a TrainingJob belong to a ModelDeployment" in str(refused.value.body)

    # A standalone run is anyone's to create; adding the model as its owner later is refused too.
    standalone = forged | {"metadata": {k: v for k, v in forged["metadata"].items() if k != "ownerReferences"}}
    custom.create_namespaced_custom_object("perennial.dev", "v1alpha1", namespace, "trainingjobs", standalone)
    with pytest.raises(ApiException) as adopted:
        custom.patch_namespaced_custom_object(
            "perennial.dev",
            "v1alpha1",
            namespace,
            "trainingjobs",
            f"{NAME}-v9",
            {"metadata": {"ownerReferences": [owner]}},
        )
    assert adopted.value.status == 403
    holds_for(
        lambda: [r["version"] for r in status_of(api_client, namespace)["versions"]] == ["1"],
        seconds=4,
        what="no version from a TrainingJob the model did not create",
    )
