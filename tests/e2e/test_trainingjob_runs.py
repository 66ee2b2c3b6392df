"""Training runs end to end: the Job controller, the scheduler and kwok run the pods.

kwok plays the kubelet under the simulation contract: pod annotations set the trainer's
termination message, exit code and run time (CONTRIBUTING.md, "Simulation contract").
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import ClusterInfo
from tests.support.operator import RunningOperator
from tests.support.resources import apply, condition, events_for, get_custom, wait_for_status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("operator_in_process")


def run(name: str, *, sim: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "churn",
            "image": "registry.example/churn-trainer:2.3.0",
            "output": {"modelUri": "s3://models/{model}/{version}"},
            "validation": [{"metric": "auc", "min": 0.9}],
            "podAnnotations": sim,
            **spec,
        },
    }


def finished(status: dict[str, Any]) -> bool:
    return status.get("phase") in ("Succeeded", "Failed", "Rejected")


def _metric(operator: RunningOperator, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(operator.metrics_text())
    return float(match.group(1)) if match else 0.0


def test_successful_run_is_validated_with_its_metrics(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: RunningOperator
) -> None:
    finished_before = _metric(operator_in_process, "perennial_training_runs_finished_total", '{result="Succeeded"}')
    message = json.dumps({"metrics": {"auc": 0.934, "loss": 0.21}})
    apply(
        perennial_crds,
        namespace,
        run("churn-v1", version="1", sim={"sim.perennial.dev/result": message, "sim.perennial.dev/duration": "2s"}),
    )
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v1", finished, what="finished")

    assert status["phase"] == "Succeeded"
    assert status["metrics"] == {"auc": 0.934, "loss": 0.21}
    assert status["modelUri"] == "s3://models/churn/1"
    assert status["attempts"] == 1
    assert status["startTime"] <= status["completionTime"]
    assert re.fullmatch(r"\d+s", status["duration"])
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Validated") == {
        **condition(status, "Validated"),
        "status": "True",
        "reason": "AllGatesPassed",
    }
    assert condition(status, "Running")["status"] == "False"

    # Events and metrics follow the status write: wait for them, briefly.
    def reasons() -> list[str]:
        return [reason for _, reason, _ in events_for(api_client, namespace, "churn-v1")]

    wait_until(lambda: "Succeeded" in reasons(), timeout=30, what="the Succeeded Event")
    assert reasons()[0] == "JobCreated"
    wait_until(
        lambda: (
            _metric(operator_in_process, "perennial_training_runs_finished_total", '{result="Succeeded"}')
            == finished_before + 1
        ),
        timeout=30,
        what="perennial_training_runs_finished_total{result=Succeeded} + 1",
    )


def test_metric_below_min_rejects_the_run(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v2", sim={"sim.perennial.dev/result": '{"metrics": {"auc": 0.71}}'}))
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v2", finished, what="finished")

    assert status["phase"] == "Rejected"
    assert status["metrics"] == {"auc": 0.71}
    validated = condition(status, "Validated")
    assert (validated["status"], validated["reason"]) == ("False", "MetricBelowMin")
    assert validated["message"] == "auc=0.71 < min 0.9"
    assert condition(status, "Succeeded")["reason"] == "MetricBelowMin"
    wait_until(
        lambda: (
            ("Warning", "Rejected", "MetricBelowMin: auc=0.71 < min 0.9")
            in events_for(api_client, namespace, "churn-v2")
        ),
        timeout=30,
        what="the Rejected Event",
    )


def test_malformed_termination_message_is_a_clear_reason(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v3", sim={"sim.perennial.dev/result": "auc=0.93"}))
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v3", finished, what="finished")
    assert status["phase"] == "Rejected"
    assert condition(status, "Succeeded")["reason"] == "InvalidTerminationMessage"
    assert "not JSON" in condition(status, "Succeeded")["message"]


def test_failing_trainer_exhausts_its_retries(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v4", backoffLimit=1, sim={"sim.perennial.dev/exit-code": "3"}))
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v4", finished, what="finished")

    assert status["phase"] == "Failed"
    assert status["attempts"] == 2  # the first try and one retry
    assert condition(status, "Succeeded")["reason"] == "BackoffLimitExceeded"
    # How the last trainer ended, as its pod says: not only the Job's "reached the backoff limit".
    assert re.search(r"; the last trainer exited 3 \(Error\)$", condition(status, "Succeeded")["message"])
    assert "Validated" not in [c["type"] for c in status["conditions"]]


def test_run_past_its_deadline_fails_with_deadline_exceeded(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v5", activeDeadline="3s", sim={"sim.perennial.dev/duration": "10m"}))
    running = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "churn-v5",
        lambda s: s.get("phase") in ("Running", "Failed"),
        what="running",
    )
    if running["phase"] == "Running":
        assert condition(running, "Running")["status"] == "True"
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v5", finished, what="finished")
    assert status["phase"] == "Failed"
    assert condition(status, "Succeeded")["reason"] == "DeadlineExceeded"


def test_distributed_run_gets_a_headless_service_and_ranks(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(
        perennial_crds,
        namespace,
        run("churn-dist", workers=4, sim={"sim.perennial.dev/result": '{"metrics": {"auc": 0.95}}'}),
    )
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-dist", finished, what="finished")
    assert status["phase"] == "Succeeded"
    assert status["metrics"] == {"auc": 0.95}

    service = client.CoreV1Api(api_client).read_namespaced_service("churn-dist", namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True
    assert service.spec.selector["perennial.dev/training-job"] == "churn-dist"
    assert service.metadata.owner_references[0].kind == "TrainingJob"

    job = client.BatchV1Api(api_client).read_namespaced_job("churn-dist", namespace)
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == job.spec.parallelism == 4
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["WORLD_SIZE"].value == "4"
    assert env["MASTER_ADDR"].value == f"churn-dist-0.churn-dist.{namespace}.svc"
    assert env["MASTER_PORT"].value == "29500"
    assert env["RANK"].value_from.field_ref.field_path == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    pods = (
        client.CoreV1Api(api_client)
        .list_namespaced_pod(namespace, label_selector="perennial.dev/training-job=churn-dist")
        .items
    )
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert {p.spec.subdomain for p in pods} == {"churn-dist"}
    assert sorted(str(p.spec.hostname) for p in pods) == [f"churn-dist-{i}" for i in range(4)]


def test_pods_are_admitted_where_pod_security_is_restricted(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    perennial_crds.kubectl_run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply(perennial_crds, namespace, run("churn-v6", sim={"sim.perennial.dev/result": '{"metrics": {"auc": 0.92}}'}))
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v6", finished, what="finished")
    assert status["phase"] == "Succeeded"  # its pod was admitted, ran and reported


def test_job_deleted_mid_run_fails_the_run_instead_of_rerunning_it(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v7", sim={"sim.perennial.dev/duration": "10m"}))
    wait_for_status(
        api_client, namespace, "trainingjobs", "churn-v7", lambda s: s.get("phase") == "Running", what="running"
    )
    client.BatchV1Api(api_client).delete_namespaced_job("churn-v7", namespace, propagation_policy="Background")
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v7", finished, what="finished")
    assert status["phase"] == "Failed"
    assert condition(status, "Succeeded")["reason"] == "JobDeleted"

    def job_absent() -> bool:
        try:
            client.BatchV1Api(api_client).read_namespaced_job("churn-v7", namespace)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    assert wait_until(job_absent, timeout=30, what="the Job gone and not recreated")


def test_deleting_the_training_job_removes_its_job_and_pods(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    apply(perennial_crds, namespace, run("churn-v8", workers=2, sim={"sim.perennial.dev/duration": "10m"}))
    wait_for_status(
        api_client, namespace, "trainingjobs", "churn-v8", lambda s: s.get("phase") == "Running", what="running"
    )
    perennial_crds.kubectl_run("delete", "-n", namespace, "tjob/churn-v8", "--wait=true")
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)

    def children() -> tuple[int, int, int]:
        selector = "perennial.dev/training-job=churn-v8"
        return (
            len(batch.list_namespaced_job(namespace, label_selector=selector).items),
            len(core.list_namespaced_pod(namespace, label_selector=selector).items),
            len(core.list_namespaced_service(namespace, label_selector=selector).items),
        )

    wait_until(lambda: children() == (0, 0, 0), timeout=60, what="Job, pods and Service garbage-collected")
    with pytest.raises(ApiException):
        get_custom(api_client, namespace, "trainingjobs", "churn-v8")
