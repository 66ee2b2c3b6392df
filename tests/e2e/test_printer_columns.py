"""`kubectl get` answers "is it fine?" and `kubectl get -o wide` says why, from the real API server.

The default columns are the API contract's; `-o wide` adds (priority 1): the failure reason
of a TrainingJob, the Service URL and the Ready message of a ModelDeployment, the Ready
status and reason of a DriftPolicy. Here the operator writes real status and kubectl
prints it with the CRDs' printer columns, as a user sees it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, condition, simulated_model, wait_for_status

pytestmark = [pytest.mark.usefixtures("operator_in_process"), pytest.mark.timeout(180)]


def table(
    cluster: ClusterInfo, namespace: str, resource: str, *flags: str
) -> tuple[list[str], dict[str, dict[str, str]]]:
    """``kubectl get`` as (headers, {name: {header: cell}}). kubectl aligns each column under
    its header, and headers ("LAST RETRAIN") hold single spaces only, so cells are sliced at
    the headers' offsets (a cell may hold spaces: a message)."""
    output = cluster.kubectl_run("get", resource, "-n", namespace, *flags).stdout
    header, *rows = [line for line in output.splitlines() if line.strip()]
    spans = [(match.start(), match.group()) for match in re.finditer(r"\S+(?: \S+)*", header)]
    headers = [name for _, name in spans]
    cells: dict[str, dict[str, str]] = {}
    for row in rows:
        values = {
            name: row[start : spans[i + 1][0] if i + 1 < len(spans) else None].strip()
            for i, (start, name) in enumerate(spans)
        }
        cells[values["NAME"]] = values
    return headers, cells


def failing_run(name: str) -> dict[str, Any]:
    """A TrainingJob whose trainer exits 1, with no retry."""
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "experiment",
            "image": "registry.example/churn-trainer:2.3.0",
            "output": {"modelUri": "s3://models/{model}/{version}"},
            "backoffLimit": 0,
            "podAnnotations": {"sim.perennial.dev/exit-code": "1"},
        },
    }


def orphan_policy(name: str) -> dict[str, Any]:
    """A DriftPolicy whose target does not exist."""
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "DriftPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": "no-such-model"},
            "metrics": [{"name": "feature_psi", "query": "vector(0.1)", "max": 0.2}],
        },
    }


def test_kubectl_get_wide_says_what_serves_where_and_why_something_is_not_fine(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    cluster = perennial_crds
    apply(cluster, namespace, simulated_model("churn"))
    apply(cluster, namespace, failing_run("broken"))
    apply(cluster, namespace, orphan_policy("orphan"))
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and condition(s, "Ready")["status"] == "True",
        what="version 1 serving and Ready",
    )
    wait_for_status(
        api_client, namespace, "trainingjobs", "broken", lambda s: s.get("phase") == "Failed", what="Failed"
    )
    wait_for_status(
        api_client,
        namespace,
        "driftpolicies",
        "orphan",
        lambda s: any(c["type"] == "Ready" and c["reason"] == "TargetNotFound" for c in s.get("conditions") or []),
        what="TargetNotFound",
    )

    # ModelDeployment: the contract's columns by default; the Service URL and the Ready message wide.
    headers, _ = table(cluster, namespace, "modeldeployments")
    assert headers == ["NAME", "SERVING", "LATEST", "PHASE", "READY", "LAST RETRAIN", "AGE"]
    headers, rows = table(cluster, namespace, "modeldeployments", "-o", "wide")
    assert headers == [
        "NAME", "SERVING", "LATEST", "PHASE", "READY", "LAST RETRAIN", "AUTO RETRAIN", "STEP", "CANARY", "AGE",
        "URL", "MESSAGE",
    ]  # fmt: skip
    churn = rows["churn"]
    assert (churn["SERVING"], churn["PHASE"], churn["READY"], churn["AUTO RETRAIN"]) == (
        "1",
        "Serving",
        "1/1",
        "Active",
    )
    assert churn["URL"] == f"http://churn.{namespace}.svc:8080"
    assert churn["MESSAGE"] == "version 1 is serving and available"
    # The URL is the Service's: its name, namespace and port.
    service = client.CoreV1Api(api_client).read_namespaced_service("churn", namespace)
    assert (
        churn["URL"] == f"http://{service.metadata.name}.{service.metadata.namespace}.svc:{service.spec.ports[0].port}"
    )

    # TrainingJob: why the run failed.
    headers, _ = table(cluster, namespace, "trainingjobs")
    assert headers == ["NAME", "MODEL", "VERSION", "PHASE", "DURATION", "AGE"]
    headers, rows = table(cluster, namespace, "trainingjobs", "-o", "wide")
    assert headers == ["NAME", "MODEL", "VERSION", "PHASE", "DURATION", "AGE", "REASON"]
    assert (rows["broken"]["PHASE"], rows["broken"]["REASON"]) == ("Failed", "BackoffLimitExceeded")
    assert rows["churn-v1"]["PHASE"] == "Succeeded"  # the model's own run, named <model>-v<N>

    # DriftPolicy: whether it can evaluate, and why not.
    headers, _ = table(cluster, namespace, "driftpolicies")
    assert headers == ["NAME", "TARGET", "DRIFTING", "LAST TRIGGER", "TRIGGERS", "AGE"]
    headers, rows = table(cluster, namespace, "driftpolicies", "-o", "wide")
    assert headers == ["NAME", "TARGET", "DRIFTING", "LAST TRIGGER", "TRIGGERS", "AGE", "READY", "REASON"]
    assert (rows["orphan"]["TARGET"], rows["orphan"]["READY"], rows["orphan"]["REASON"]) == (
        "no-such-model",
        "False",
        "TargetNotFound",
    )
