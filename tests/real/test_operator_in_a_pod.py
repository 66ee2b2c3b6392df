"""The operator in a pod (issue 17, step 5): installed by its Helm chart from the image built here.

`up` on the `real` profile builds the operator image from the repository's Dockerfile on
the Debian-built Python base (buildah, no registry) and imports it into the node's
containerd. Here the chart installs it as a user would, with the local tag and
``imagePullPolicy: Never``: the operator runs in-cluster (its ServiceAccount token, the
``kubernetes`` Service, which kube-proxy turns into the API server's bridge address), holds
its Lease, and reconciles a TrainingJob whose trainer the kubelet really runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, config
from localcluster import build, node, workload

from tests.real.conftest import real_cluster
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, condition, wait_for_status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

RELEASE, RELEASE_NAMESPACE = workload.RELEASE, workload.RELEASE_NAMESPACE
SELECTOR = workload.OPERATOR_SELECTOR


def _operator_pod(core: client.CoreV1Api) -> client.V1Pod:
    (pod,) = [
        pod
        for pod in core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector=SELECTOR).items
        if pod.metadata.deletion_timestamp is None
    ]
    return pod


def _lease_holder(coordination: client.CoordinationV1Api) -> str:
    return str(coordination.read_namespaced_lease("perennial", RELEASE_NAMESPACE).spec.holder_identity or "")


def test_the_operator_pod_runs_in_cluster_from_the_local_image(operator_release: str) -> None:
    cluster = real_cluster()
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, coordination = client.CoreV1Api(api), client.CoordinationV1Api(api)
    pod = _operator_pod(core)

    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert pod.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in pod.metadata.annotations or {})
    (status,) = pod.status.container_statuses or []
    assert status.image == operator_release
    assert status.container_id.startswith("containerd://")
    assert status.ready
    assert status.restart_count == 0
    # In-cluster credentials: its own ServiceAccount, nothing from this machine.
    assert pod.spec.service_account_name == "perennial"
    env = {e.name for e in pod.spec.containers[0].env or []}
    assert "KUBECONFIG" not in env
    assert pod.spec.security_context.run_as_non_root

    # It holds its Lease (leader election through the API server, from inside the pod).
    def holder() -> str | None:
        identity = _lease_holder(coordination)
        return identity if identity.startswith(pod.metadata.name) else None

    wait_until(holder, timeout=60, what=f"Lease {RELEASE_NAMESPACE}/perennial held by {pod.metadata.name}")
    log = core.read_namespaced_pod_log(pod.metadata.name, RELEASE_NAMESPACE, container="operator")
    # Its credentials came from inside the pod, for the `kubernetes` Service's address.
    assert "credentials for https://10.96.0.1:443 from in-cluster" in log
    assert f"leading as {pod.metadata.name}" in log
    api.close()


def _trainer(name: str, metrics: dict[str, float], version: str = "1") -> dict[str, Any]:
    message = json.dumps({"metrics": metrics})
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "churn",
            # The operator's trainer pods run as non-root: busybox as user 65532.
            "image": build.BUSYBOX_NONROOT_IMAGE,
            "command": ["/bin/busybox", "sh", "-c", f"echo '{message}' > /dev/termination-log"],
            "output": {"modelUri": "file:///models/{model}/{version}"},
            "validation": [{"metric": "auc", "min": 0.9}],
            "version": version,
        },
    }


def test_the_operator_in_a_pod_reconciles_a_training_job_the_kubelet_runs(
    operator_release: str, cluster: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    apply(cluster, namespace, _trainer("churn-v1", {"auc": 0.93, "loss": 0.2}))
    status = _wait_succeeded(api_client, namespace, "churn-v1")
    assert status["metrics"] == {"auc": 0.93, "loss": 0.2}
    assert condition(status, "Validated")["status"] == "True"

    core = client.CoreV1Api(api_client)
    (pod,) = core.list_namespaced_pod(namespace).items
    # The trainer ran on the real node and wrote the termination message itself.
    assert pod.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in pod.metadata.annotations or {})
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == {"metrics": {"auc": 0.93, "loss": 0.2}}

    # The only operator is the one in the pod: its log records finishing this run.
    operator_pod = _operator_pod(core).metadata.name
    log = core.read_namespaced_pod_log(operator_pod, RELEASE_NAMESPACE, container="operator")
    finished = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "training run finished" in line and namespace in line
    ]
    assert [entry["object"] for entry in finished] == [
        {"kind": "TrainingJob", "namespace": namespace, "name": "churn-v1"}
    ]


def _wait_succeeded(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    status = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        name,
        lambda s: s.get("phase") in ("Succeeded", "Failed", "Rejected"),
        what="finished",
        timeout=180,
    )
    assert status["phase"] == "Succeeded", status
    return status


def test_a_replacement_operator_pod_takes_the_lease_and_reconciles(
    operator_release: str, cluster: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    """The operator pod deleted: the Deployment's next pod (same image, no registry) leads and works."""
    core, coordination = client.CoreV1Api(api_client), client.CoordinationV1Api(api_client)
    old = _operator_pod(core).metadata.name
    core.delete_namespaced_pod(old, RELEASE_NAMESPACE)

    def new_leader() -> str | None:
        try:
            pod = _operator_pod(core)
        except ValueError:  # none yet, or the old one not yet marked for deletion
            return None
        ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready") == "True"
        name = str(pod.metadata.name)
        return name if name != old and ready and _lease_holder(coordination).startswith(name) else None

    new = wait_until(new_leader, timeout=120, what=f"a new operator pod (not {old}) Ready and holding the Lease")
    apply(cluster, namespace, _trainer("churn-v2", {"auc": 0.95}, version="2"))
    assert _wait_succeeded(api_client, namespace, "churn-v2")["metrics"] == {"auc": 0.95}
    log = core.read_namespaced_pod_log(new, RELEASE_NAMESPACE, container="operator")
    assert any("training run finished" in line and namespace in line for line in log.splitlines())
