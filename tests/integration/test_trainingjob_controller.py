"""TrainingJob controller against a real API server (no Job controller runs here: Jobs stay unstarted).

What a user relies on: the Job is exactly what the TrainingJob says, it is created once
whatever happens to the operator, and a Job that is not ours is never touched.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, condition, events_for, get_custom, wait_for_status
from tests.support.waiting import wait_until

RUN: dict[str, Any] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn-v7", "labels": {"team": "ml"}},
    "spec": {
        "model": "churn",
        "version": "7",
        "trigger": {"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"},
        "image": "registry.example/churn-trainer:2.3.0",
        "command": ["python", "-m", "train"],
        "args": ["--epochs", "20"],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "envFrom": [{"configMapRef": {"name": "trainer-settings"}}],
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"nvidia.com/gpu": "1"}},
        "dataset": {"uri": "s3://data/churn/2026-11-20/", "version": "2026-11-20"},
        "hyperparameters": {"learning_rate": "0.01", "max_depth": "8"},
        "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
        "validation": [{"metric": "auc", "min": 0.9}],
        "backoffLimit": 1,
        "activeDeadline": "2h",
        "ttlAfterFinished": "1h",
        "nodeSelector": {"pool": "training"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "10Gi"}}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "podLabels": {"cost-center": "ml-research"},
        "podAnnotations": {"example.com/owner": "ml-team"},
    },
}


def _job(api: client.ApiClient, namespace: str, name: str) -> Any:
    return client.BatchV1Api(api).read_namespaced_job(name, namespace)


def _jobs(api: client.ApiClient, namespace: str) -> list[Any]:
    return client.BatchV1Api(api).list_namespaced_job(namespace).items


def test_job_is_built_field_by_field_from_the_training_job(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    apply(perennial_crds, namespace, RUN)
    job = wait_until(lambda: _job(api_client, namespace, "churn-v7"), timeout=30, what="Job churn-v7")
    tjob = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "perennial.dev", "v1alpha1", namespace, "trainingjobs", "churn-v7"
    )

    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "TrainingJob",
        "churn-v7",
        tjob["metadata"]["uid"],
        True,
    )
    assert job.metadata.labels == {
        "app.kubernetes.io/managed-by": "perennial",
        "perennial.dev/model": "churn",
        "perennial.dev/version": "7",
        "perennial.dev/training-job": "churn-v7",
    }  # the parent's own labels (team: ml) are not copied
    assert job.spec.backoff_limit == 1
    assert job.spec.active_deadline_seconds == 7200
    # ttlAfterFinished 1h is set once the result is read: until then the TTL controller may not
    # delete the Job and the pods holding the result.
    assert job.spec.ttl_seconds_after_finished is None
    assert job.spec.completions == job.spec.parallelism == 1
    assert job.spec.completion_mode == "NonIndexed"

    template = job.spec.template
    assert template.metadata.labels["cost-center"] == "ml-research"
    assert template.metadata.labels["perennial.dev/training-job"] == "churn-v7"
    assert template.metadata.annotations == {"example.com/owner": "ml-team"}
    pod = template.spec
    assert pod.restart_policy == "Never"
    assert pod.automount_service_account_token is False
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.node_selector == {"pool": "training"}
    assert pod.tolerations[0].key == "nvidia.com/gpu"
    assert pod.volumes[0].empty_dir.size_limit == "10Gi"

    (container,) = pod.containers
    assert container.name == "trainer"
    assert container.image == "registry.example/churn-trainer:2.3.0"
    assert container.command == ["python", "-m", "train"]
    assert container.args == ["--epochs", "20"]
    assert container.env_from[0].config_map_ref.name == "trainer-settings"
    assert container.resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert container.volume_mounts[0].mount_path == "/scratch"
    assert container.termination_message_path == "/dev/termination-log"
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    env = {e.name: e.value for e in container.env}
    assert env["PERENNIAL_MODEL"] == "churn"
    assert env["PERENNIAL_VERSION"] == "7"
    assert env["PERENNIAL_MODEL_URI"] == f"s3://models/{namespace}/churn/7"
    assert env["PERENNIAL_DATASET_URI"] == "s3://data/churn/2026-11-20/"
    assert env["PERENNIAL_DATASET_VERSION"] == "2026-11-20"
    assert env["PERENNIAL_HYPERPARAMETERS"] == '{"learning_rate": "0.01", "max_depth": "8"}'
    assert '"reason": "Drift"' in env["PERENNIAL_TRIGGER"]
    assert env["LOG_LEVEL"] == "info"
    assert [e.name for e in container.env][-1] == "LOG_LEVEL"  # the user's env comes after ours

    status = wait_for_status(
        api_client, namespace, "trainingjobs", "churn-v7", lambda s: s.get("jobName") is not None, what="status written"
    )
    assert status["phase"] == "Pending"
    assert status["version"] == "7"
    assert status["modelUri"] == f"s3://models/{namespace}/churn/7"
    assert status["observedGeneration"] == tjob["metadata"]["generation"]
    assert condition(status, "Succeeded")["status"] == "Unknown"
    assert ("Normal", "JobCreated", "created Job churn-v7") in events_for(api_client, namespace, "churn-v7")


def test_a_named_service_account_replaces_the_no_token_default(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    run = copy.deepcopy(RUN)
    run["spec"]["serviceAccountName"] = "trainer"
    apply(perennial_crds, namespace, run)
    job = wait_until(lambda: _job(api_client, namespace, "churn-v7"), timeout=30, what="Job churn-v7")
    assert job.spec.template.spec.service_account_name == "trainer"
    assert job.spec.template.spec.automount_service_account_token is None


def _settled_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The status once it records the Job and has caught up with it: unchanged over 3 s.

    3 s is longer than the operator batches a Job's events (CHILD_EVENT_BATCH_SECONDS),
    so a Job that started running meanwhile is in the status that is returned.
    """
    previous: dict[str, Any] | None = None

    def probe() -> dict[str, Any] | None:
        nonlocal previous
        current: dict[str, Any] = get_custom(api, namespace, "trainingjobs", name).get("status") or {}
        settled = current if current == previous and current.get("jobName") == name else None
        previous = current
        return settled

    return wait_until(probe, interval=3.0, timeout=60, what=f"trainingjobs/{name}: a settled status")


def test_restarts_never_duplicate_or_recreate_the_job(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    with operator_support.in_process(perennial_crds, [namespace]):
        apply(perennial_crds, namespace, RUN)
        first = wait_until(lambda: _job(api_client, namespace, "churn-v7"), timeout=30, what="Job churn-v7")
        status = _settled_status(api_client, namespace, "churn-v7")
    # A restarted operator finds the Job and the status and changes neither.
    with operator_support.in_process(perennial_crds, [namespace]) as second_run:
        wait_until(lambda: "perennial_reconciles_total" in second_run.metrics_text(), what="metrics served")
        jobs = _jobs(api_client, namespace)
        assert [j.metadata.uid for j in jobs] == [first.metadata.uid]
        again = wait_for_status(api_client, namespace, "trainingjobs", "churn-v7", lambda s: True, what="status")
        assert again == status


def test_a_job_created_before_a_crash_is_adopted_not_duplicated(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    """The operator created the Job and died before it could write status: the next one adopts it."""
    from perennial.api.trainingjob import TrainingJobSpec
    from perennial.domain.training import TrainingJobRef, desired_job

    apply(perennial_crds, namespace, RUN)
    tjob = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "perennial.dev", "v1alpha1", namespace, "trainingjobs", "churn-v7"
    )
    ref = TrainingJobRef("churn-v7", namespace, tjob["metadata"]["uid"], tjob["metadata"]["generation"])
    earlier = client.BatchV1Api(api_client).create_namespaced_job(
        namespace, desired_job(ref, TrainingJobSpec.model_validate(tjob["spec"]), datetime.now(UTC))
    )
    with operator_support.in_process(perennial_crds, [namespace]):
        status = wait_for_status(
            api_client,
            namespace,
            "trainingjobs",
            "churn-v7",
            lambda s: s.get("jobName") == "churn-v7",
            what="the Job adopted",
        )
    assert status["phase"] == "Pending"
    assert [j.metadata.uid for j in _jobs(api_client, namespace)] == [earlier.metadata.uid]
    assert "JobCreated" not in [reason for _, reason, _ in events_for(api_client, namespace, "churn-v7")]


def test_a_job_that_is_not_ours_is_left_alone_and_reported(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    foreign = client.BatchV1Api(api_client).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "churn-v7", "labels": {"app.kubernetes.io/managed-by": "someone-else"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}}},
        },
    )
    apply(perennial_crds, namespace, RUN)
    status = wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "churn-v7",
        lambda s: condition(s, "Succeeded")["reason"] == "JobConflict" if s else False,
        what="JobConflict reported",
    )
    assert "belongs to something else" in condition(status, "Succeeded")["message"]
    (job,) = _jobs(api_client, namespace)
    assert job.metadata.uid == foreign.metadata.uid
    assert job.metadata.owner_references is None


def test_a_run_whose_pods_never_start_fails_at_its_start_deadline_and_its_job_goes(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    """No node has pool=training (and this tier may run no Job controller at all): nothing starts."""
    run = copy.deepcopy(RUN)
    run["spec"]["startDeadline"] = "3s"
    apply(perennial_crds, namespace, run)
    job = wait_until(lambda: _job(api_client, namespace, "churn-v7"), timeout=30, what="Job churn-v7")

    status = wait_for_status(
        api_client, namespace, "trainingjobs", "churn-v7", lambda s: s.get("phase") == "Failed", what="failed"
    )
    succeeded = condition(status, "Succeeded")
    assert succeeded["reason"] == "StartDeadlineExceeded"
    assert succeeded["message"].startswith(
        "the trainer did not start within 3s of the Job's creation (spec.startDeadline 3s): "
    )
    # Not before the deadline: the run failed no earlier than 3 s after its Job was created.
    failed_at = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    assert (failed_at - job.metadata.creation_timestamp).total_seconds() >= 3
    wait_until(lambda: not _jobs(api_client, namespace), timeout=30, what="the Job deleted")
    assert ("Warning", "Failed", f"StartDeadlineExceeded: {succeeded['message']}") in events_for(
        api_client, namespace, "churn-v7"
    )
