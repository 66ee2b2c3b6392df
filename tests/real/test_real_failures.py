"""Failures on real pods, through the operator running in its pod (issue 17, step 7).

- a trainer that exits non-zero (the churn trainer refuses an unknown hyperparameter: exit 2,
  ``bad input: ...`` as its termination message);
- a trainer killed for memory (a memory limit the kernel's memory cgroup enforces: OOMKilled);
- a new version whose servers never become ready (their real ``/ready`` answers 503: the model
  is not where the server looks), rolled back after ``progressDeadline`` while the old version
  keeps serving;
- the operator's pod deleted while a training Job runs: the Deployment's next pod takes over
  and the loop completes.

What the kubelet reports (exit code, reason, message) is on the TrainingJob's own pod, and
the operator carries it into the failed run's ``Succeeded`` condition and Warning Event
(``the last trainer exited 137 (OOMKilled)``, the trainer's own message after it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from localcluster import node, workload
from localcluster.cluster import LocalCluster

from tests.real.test_churn_workload import ROW, _images, _server_pod, _training, _volumes
from tests.real.test_operator_in_a_pod import _lease_holder, _operator_pod
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, condition, events_for, get_custom, wait_for_status
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.real

FINISHED = ("Succeeded", "Failed", "Rejected")
# A trainer that keeps allocating (and touching) memory in 16 MiB steps, far past its limit.
ALLOCATE = "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n"


def _training_job(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "churn",
            "version": "1",
            "image": image,
            "dataset": {"uri": "synthetic://churn", "version": "v1", "window": "168h"},
            "output": {"modelUri": "file:///tmp/model"},  # the container's own /tmp: nothing is kept
            # One attempt: the run fails on the first exit, with that exit on its one pod.
            "backoffLimit": 0,
            **spec,
        },
    }


def _failed_run(cluster: ClusterInfo, api_client: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> Any:
    """Apply a TrainingJob that must fail; its status once finished: Failed, BackoffLimitExceeded."""
    apply(cluster, namespace, manifest)
    status = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        manifest["metadata"]["name"],
        lambda s: s.get("phase") in FINISHED,
        what="finished",
        timeout=240,
    )
    assert status["phase"] == "Failed", status
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "BackoffLimitExceeded"), succeeded
    return status


def _trainer_termination(core: client.CoreV1Api, namespace: str, job: str) -> tuple[client.V1Pod, Any]:
    """The run's one pod (on the real node) and its trainer's terminated state, as the kubelet reported it."""
    (pod,) = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert pod.spec.node_name == node.NODE_NAME
    assert not any(key.startswith("sim.perennial.dev/") for key in pod.metadata.annotations or {})
    (container,) = pod.status.container_statuses or []
    assert container.state.terminated is not None, container.state
    return pod, container.state.terminated


def _bad_input_job(images: dict[str, str]) -> dict[str, Any]:
    return _training_job("churn-bad-input", images["trainer"], hyperparameters={"nonesuch": "1"})


def _oom_job(images: dict[str, str]) -> dict[str, Any]:
    return _training_job(
        "churn-oom",
        images["trainer"],
        command=["python", "-c", ALLOCATE],
        resources={"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"memory": "64Mi", "cpu": "100m"}},
    )


def test_a_trainer_that_exits_non_zero_fails_the_run_with_its_real_exit_code_and_message(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    status = _failed_run(cluster, api_client, namespace, _bad_input_job(_images()))
    assert "metrics" not in status
    # The Event follows the status (the operator emits it after writing status).
    wait_until(
        lambda: (
            ("Warning", "Failed")
            in [(kind, reason) for kind, reason, _ in events_for(api_client, namespace, "churn-bad-input")]
        ),
        timeout=30,
        what="a Warning Event Failed about the TrainingJob",
    )

    # The trainer really ran and exited 2, its own words as the termination message.
    core = client.CoreV1Api(api_client)
    pod, terminated = _trainer_termination(core, namespace, status["jobName"])
    print(f"{pod.metadata.name}: exit {terminated.exit_code} ({terminated.reason}): {terminated.message.strip()}")
    assert terminated.exit_code == 2
    assert terminated.reason == "Error"
    assert terminated.message.startswith("bad input: ")
    assert "nonesuch" in terminated.message
    assert "nonesuch" in core.read_namespaced_pod_log(pod.metadata.name, namespace)


def test_a_trainer_over_its_memory_limit_is_oom_killed_and_the_run_fails(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    status = _failed_run(cluster, api_client, namespace, _oom_job(_images()))

    # The kernel's memory cgroup (v1 here) killed it at its limit; the kubelet says so.
    pod, terminated = _trainer_termination(client.CoreV1Api(api_client), namespace, status["jobName"])
    print(f"{pod.metadata.name}: exit {terminated.exit_code} ({terminated.reason})")
    assert pod.spec.containers[0].resources.limits["memory"] == "64Mi"
    assert terminated.reason == "OOMKilled"
    assert terminated.exit_code == 137  # SIGKILL


@pytest.mark.parametrize(
    ("job", "expected"),
    [(_bad_input_job, ("bad input: ", "nonesuch")), (_oom_job, ("OOMKilled", "137"))],
    ids=["exit-2", "oom-killed"],
)
def test_a_failed_runs_status_names_the_trainers_exit(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
    job: Any,
    expected: tuple[str, str],
) -> None:
    manifest = job(_images())
    status = _failed_run(cluster, api_client, namespace, manifest)
    told = " ".join(
        [
            condition(status, "Succeeded")["message"],
            *(message for _, _, message in events_for(api_client, namespace, manifest["metadata"]["name"])),
        ]
    )
    for text in expected:
        assert text in told, told


def _request(namespace: str, name: str) -> dict[str, Any]:
    """A pod's request through the model's Service (its ClusterIP); the answer."""
    local = LocalCluster()
    service = workload.get_json(local, "service", "churn", "-n", namespace)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/predict"
    pod, answer = workload.busybox_request(local, namespace, name, url, json.dumps({"rows": [ROW]}))
    assert pod["status"]["phase"] == "Succeeded", answer
    result: dict[str, Any] = json.loads(answer)
    return result


def _model(images: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "training": _training(images["trainer"]),
            "serving": {
                "image": images["server"],
                "replicas": 1,
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
                **_volumes(read_only=True),
            },
            **spec,
        },
    }


def test_a_version_whose_servers_never_become_ready_is_rolled_back_while_the_old_one_serves(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
    claim: Path,
) -> None:
    images = _images()
    model = _model(images, rollout={"progressDeadline": "40s", "autoRollback": True})
    apply(cluster, namespace, model)
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and condition(s, "Ready")["status"] == "True",
        what="serving version 1, Ready",
        timeout=300,
    )

    # A spec change retrains (v2). Its trainer writes the model to a scratch volume of its own
    # pod, which goes with the pod: v2 is trained and validated, but its servers look for
    # /scratch/churn/2 and never find it, so their /ready answers 503.
    training = model["spec"]["training"]
    training["output"] = {"modelUri": "file:///scratch/{model}/{version}"}
    training["volumes"] = [*training["volumes"], {"name": "scratch", "emptyDir": {}}]
    training["volumeMounts"] = [*training["volumeMounts"], {"name": "scratch", "mountPath": "/scratch"}]
    apply(cluster, namespace, model)

    core = client.CoreV1Api(api_client)

    def unready_v2_server() -> client.V1Pod | None:
        pod = _server_pod(core, namespace, "2")
        (container,) = pod.status.container_statuses or [None]
        return pod if container is not None and container.state.running is not None and not container.ready else None

    v2_pod = wait_until(unready_v2_server, timeout=240, what="a v2 server pod running, not ready")
    # Meanwhile the Service still answers with version 1 (the rollout keeps the old pod).
    assert _request(namespace, "during-rollout")["version"] == "1"

    status = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: any(v["version"] == "2" and v.get("state") == "RolledBack" for v in s.get("versions") or []),
        what="version 2 RolledBack",
        timeout=180,
    )
    (v2,) = [v for v in status["versions"] if v["version"] == "2"]
    assert v2["modelUri"] == "file:///scratch/churn/2"
    assert v2["rollback"]["reason"] == "ProgressDeadlineExceeded", v2
    assert "rolled back to version 1" in v2["rollback"]["message"]
    assert status["servingVersion"] == "1"
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack"), degraded
    assert ("Warning", "RolledBack") in [
        (kind, reason) for kind, reason, _ in events_for(api_client, namespace, "churn", kind="ModelDeployment")
    ]

    # The readiness failures were real: the kubelet's probe got the server's 503.
    probe_events = [
        e.message
        for e in core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={v2_pod.metadata.name}"
        ).items
        if e.reason == "Unhealthy"
    ]
    assert any("Readiness probe failed" in m and "503" in m for m in probe_events), probe_events
    assert "no model at /scratch/churn/2" in core.read_namespaced_pod_log(v2_pod.metadata.name, namespace)

    # Version 1 serves on, on its own, through the Service; no retrain loop on the failed version.
    apps = client.AppsV1Api(api_client)
    wait_until(
        lambda: (
            (d := apps.read_namespaced_deployment("churn", namespace)).status.available_replicas == 1
            and d.spec.template.metadata.labels["perennial.dev/version"] == "1"
            and not [
                p
                for p in core.list_namespaced_pod(namespace, label_selector="perennial.dev/version=2").items
                if p.spec.containers[0].name == "server" and p.metadata.deletion_timestamp is None
            ]
        ),
        timeout=120,
        what="the Deployment back on version 1 alone",
    )
    assert _request(namespace, "after-rollback")["version"] == "1"
    holds_for(
        lambda: get_custom(api_client, namespace, "modeldeployments", "churn")["status"].get("latestVersion") == "2",
        seconds=10,
        what="no version 3 (no retrain of a version that failed its rollout)",
    )


def test_the_operator_pod_deleted_while_a_training_job_runs_is_replaced_and_the_loop_completes(
    operator_release: str,
    cluster: ClusterInfo,
    api_client: client.ApiClient,
    namespace: str,
    claim: Path,
) -> None:
    images = _images()
    model = _model(images, rollout={"progressDeadline": "5m"})
    # Rows enough for a training of several seconds: the operator pod goes while it runs.
    model["spec"]["training"]["hyperparameters"] = {"rows": "300000"}
    apply(cluster, namespace, model)
    core, coordination = client.CoreV1Api(api_client), client.CoordinationV1Api(api_client)

    def trainer_running() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(namespace, label_selector="perennial.dev/model=churn").items
        for pod in pods:
            for status in pod.status.container_statuses or []:
                if status.name != "server" and status.state.running is not None:
                    return pod
        return None

    trainer = wait_until(trainer_running, timeout=180, what="the v1 trainer's container running")
    old = _operator_pod(core).metadata.name
    core.delete_namespaced_pod(old, workload.RELEASE_NAMESPACE)
    # It was deleted mid-run: the trainer had not finished.
    (still,) = core.read_namespaced_pod(trainer.metadata.name, namespace).status.container_statuses or []
    assert still.state.running is not None, still.state

    def new_leader() -> str | None:
        try:
            pod = _operator_pod(core)
        except ValueError:
            return None
        name = str(pod.metadata.name)
        return name if name != old and _lease_holder(coordination).startswith(name) else None

    new = wait_until(new_leader, timeout=120, what=f"a new operator pod (not {old}) holding the Lease")
    status = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and condition(s, "Ready")["status"] == "True",
        what="serving version 1, Ready",
        timeout=420,
    )
    # One run, not two: the new operator adopted the Job its predecessor created.
    runs = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "perennial.dev", "v1alpha1", namespace, "trainingjobs"
    )["items"]
    assert [r["metadata"]["name"] for r in runs] == ["churn-v1"]
    assert [v["version"] for v in status["versions"]] == ["1"]
    (job_pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=churn-v1").items
    assert job_pod.metadata.name == trainer.metadata.name  # the same trainer pod ran to its end
    assert job_pod.status.container_statuses[0].state.terminated.exit_code == 0
    log = core.read_namespaced_pod_log(new, workload.RELEASE_NAMESPACE, container="operator")
    assert any("training run finished" in line and namespace in line for line in log.splitlines())
    assert _request(namespace, "served")["version"] == "1"
