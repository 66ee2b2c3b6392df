"""The churn reference workload in real pods (issue 17, steps 4 and 7).

`up` on the `real` profile builds the three images of examples/churn (buildah, on the
Debian-built Python base, no registry) and imports them into the node's containerd. The
operator runs in its pod, installed by the chart (``operator_release`` of
test_operator_in_a_pod.py). Here:

- a TrainingJob runs the churn trainer, which writes its model to a PersistentVolumeClaim
  and its own metrics as the termination message;
- a ModelDeployment trains and serves the model from such a claim with the churn server,
  becomes Ready through the server's real ``/ready`` probe, and a pod's request through the
  model's Service gets predictions.

**Storage.** The local cluster has no storage provisioner. Each test, as the cluster's
admin (PersistentVolumes are cluster objects an admin creates, never a ModelDeployment),
makes a directory on this machine (the node), owned by the images' user 65532, and a static
PersistentVolume of type ``local`` on it (node affinity to the one real node), pre-bound to
the test's claim. The TrainingJob and the ModelDeployment only reference the claim, as they
would on a cluster with a provisioner (Perennial's volumes allow no hostPath).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from localcluster import node, workload
from localcluster.cluster import LocalCluster

from tests.real.conftest import CLAIM
from tests.support.cluster import ClusterInfo
from tests.support.exporter import query_prometheus
from tests.support.resources import apply, condition, wait_for_status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

IMAGE_USER = workload.IMAGE_USER
ROW = {"tenure_months": 2, "monthly_charges": 110, "support_calls": 5, "contract_months": 1, "data_usage_gb": 20}


def _images() -> dict[str, str]:
    images = LocalCluster().state.churn_images
    assert set(images) >= {"trainer", "server"}, (
        "the `real` profile imported no churn images (start it with this code's `up`)"
    )
    return images


def _volumes(read_only: bool = False) -> dict[str, Any]:
    return {
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": read_only}}],
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": read_only}],
    }


def _training(image: str) -> dict[str, Any]:
    return {
        "image": image,
        "dataset": {"uri": "synthetic://churn", "version": "v1", "window": "168h"},
        "hyperparameters": {"rows": "2000"},
        "output": {"modelUri": "file:///models/{model}/{version}"},
        "validation": [{"metric": "auc", "min": 0.6}],
        **_volumes(),
    }


def _server_pod(core: client.CoreV1Api, namespace: str, version: str) -> client.V1Pod:
    """The serving pod of ``version`` (its trainer's pod has the same model and version labels)."""
    selector = f"perennial.dev/model=churn,perennial.dev/version={version}"
    (pod,) = [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
        if [c.name for c in pod.spec.containers] == ["server"]
    ]
    return pod


def test_the_churn_trainer_writes_its_model_to_a_claim_and_its_metrics_as_the_termination_message(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
    claim: Path,
) -> None:
    images = _images()
    job = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "churn-v1"},
        "spec": {"model": "churn", "version": "1", **_training(images["trainer"])},
    }
    apply(cluster, namespace, job)
    status = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "churn-v1",
        lambda s: s.get("phase") in ("Succeeded", "Failed", "Rejected"),
        what="finished",
        timeout=300,
    )
    assert status["phase"] == "Succeeded", status
    assert condition(status, "Validated")["status"] == "True"

    core = client.CoreV1Api(api_client)
    (pod,) = core.list_namespaced_pod(namespace).items
    assert pod.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in pod.metadata.annotations or {})
    (container,) = pod.status.container_statuses or []
    assert container.image == images["trainer"]
    terminated = container.state.terminated
    assert terminated.exit_code == 0, terminated
    # The trainer's own metrics (a real evaluation: numbers no test chose), read by the operator.
    message = json.loads(terminated.message)
    print(f"termination message of {pod.metadata.name}: {terminated.message.strip()}")
    assert set(message) == {"metrics"}
    assert {"auc", "accuracy", "log_loss", "latency_p99_ms", "rows_train", "rows_holdout"} <= set(message["metrics"])
    assert 0.6 <= message["metrics"]["auc"] <= 1
    assert message["metrics"]["rows_train"] + message["metrics"]["rows_holdout"] == 2000
    assert status["metrics"] == message["metrics"]

    # The model is on the claim's volume, written by the image's user.
    model = claim / "churn" / "1"
    assert (model / "model.pkl").stat().st_uid == IMAGE_USER
    metadata = json.loads((model / "metadata.json").read_text())
    assert metadata["metrics"] == message["metrics"]


def test_a_model_deployment_serves_the_trained_model_from_the_claim_through_its_service(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
    claim: Path,
) -> None:
    images = _images()
    deployment = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "training": _training(images["trainer"]),
            "serving": {
                "image": images["server"],
                "replicas": 1,
                "port": 8080,
                "modelUriEnv": "MODEL_URI",
                # The server's real readiness: 200 once the model is loaded from the claim.
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
                **_volumes(read_only=True),
            },
            "rollout": {"progressDeadline": "5m"},
        },
    }
    apply(cluster, namespace, deployment)
    status = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and condition(s, "Ready")["status"] == "True",
        what="serving version 1, Ready",
        timeout=420,
    )
    assert (claim / "churn" / "1" / "model.pkl").exists()
    (record,) = [v for v in status["versions"] if v["version"] == "1"]
    assert record["modelUri"] == "file:///models/churn/1"

    core = client.CoreV1Api(api_client)
    server = _server_pod(core, namespace, "1")
    assert server.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in server.metadata.annotations or {})
    (container,) = server.status.container_statuses or []
    assert container.image == images["server"]
    assert container.ready
    assert container.restart_count == 0
    assert {e.name: e.value for e in server.spec.containers[0].env}["MODEL_URI"] == "file:///models/churn/1"
    log = core.read_namespaced_pod_log(server.metadata.name, namespace)

    # A request from a pod, through the model's Service (its ClusterIP: kube-proxy's rules).
    service = core.read_namespaced_service("churn", namespace)
    url = f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}/predict"
    body = json.dumps({"rows": [ROW]})
    curl, answer_text = workload.busybox_request(LocalCluster(), namespace, "curl", url, body)
    assert curl["status"]["phase"] == "Succeeded", (answer_text, log)
    answer = json.loads(answer_text)
    print(f"POST {url} {body} -> {answer_text.strip()}")
    assert answer["model"] == "churn"
    assert answer["version"] == "1"
    (score,) = answer["scores"]
    assert 0 <= score <= 1

    # The traffic generator's image, from a pod, through the Service: 20 requests of 10 rows.
    traffic, summary_text = workload.run_pod(
        LocalCluster(),
        namespace,
        "traffic",
        images["traffic"],
        args=["--url", url.removesuffix("/predict"), "--requests", "20", "--rate", "20", "--batch", "10"],
    )
    assert traffic["status"]["phase"] == "Succeeded", summary_text
    print(f"traffic: {summary_text.strip().splitlines()[-1]}")
    summary = json.loads(summary_text.strip().splitlines()[-1])
    assert summary["by_code"] == {"200": 20}
    assert summary["rows"] == 200

    # Prometheus scrapes the server pod (its histograms, labelled by model and version) and
    # the operator pod, on the bridge (file_sd kept in sync by localcluster/podtargets.py).
    served = (
        f'sum(churn_requests_total{{job="pods", namespace="{namespace}", pod="{server.metadata.name}", '
        'model="churn", version="1", code="200"})'
    )
    wait_until(
        lambda: [r for r in query_prometheus(cluster, served)["data"]["result"] if float(r["value"][1]) >= 21],
        timeout=60,
        what=f"Prometheus: {served} >= 21 (the curl and the traffic pod)",
    )
    rows = f'sum(churn_input_feature_count{{namespace="{namespace}", feature="tenure_months"}})'
    assert float(query_prometheus(cluster, rows)["data"]["result"][0]["value"][1]) >= 201
    operator = 'up{job="pods", namespace="perennial-system"}'
    wait_until(
        lambda: [r for r in query_prometheus(cluster, operator)["data"]["result"] if r["value"][1] == "1"],
        timeout=60,
        what=f"Prometheus: {operator} == 1",
    )
