"""TrainingJob domain logic: the desired Job and Service, metrics, gates, and the plan of a reconcile.

Pure functions only: every test builds dicts shaped like what the API server returns
(batch/v1 Job, core/v1 Pod) and checks what the domain makes of them at a fixed ``NOW``.
Statuses are compared in their wire form (what ``kubectl get -o yaml`` shows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.trainingjob import TrainingJobSpec, TrainingJobStatus, ValidationRule
from perennial.controllers.execute import ChildOutcome
from perennial.domain.plan import ChildRef, Count, Event
from perennial.domain.training import (
    COMPLETION_INDEX_ANNOTATION,
    DEFAULT_START_DEADLINE,
    INVALID_TERMINATION_MESSAGE,
    JOB_DELETED,
    METRIC_ABOVE_MAX,
    METRIC_BELOW_MIN,
    METRICS_MISSING,
    START_DEADLINE_EXCEEDED,
    InvalidSpec,
    MetricsResult,
    ObservedRun,
    TrainingJobRef,
    TrainingPlan,
    check_gates,
    desired_job,
    desired_service,
    parse_termination_message,
    plan_trainingjob,
    pods_needed,
    pods_of_deleted_job,
    pods_of_job,
    read_spec,
    record_child_outcome,
    run_finished,
    trainer_started,
    ttl_seconds,
)

# ---------------------------------------------------------------- helpers
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
NOW_TEXT = "2026-01-01T12:00:00Z"
START = "2026-01-01T10:00:00Z"
END = "2026-01-01T10:12:30Z"  # 12m30s after START
NAME = "churn-v7"
NAMESPACE = "ml"
UID = "6f1c2a9e-0000-4000-8000-000000000001"
JOB_UID = "0b7d4c1e-0000-4000-8000-00000000000a"
REF = TrainingJobRef(NAME, NAMESPACE, UID, generation=1)
IMAGE = "registry.example/churn-trainer:2.3.0"
AUC_GATE = [{"metric": "auc", "min": 0.9}]
PERENNIAL_ENV_NAMES = [
    "PERENNIAL_MODEL",
    "PERENNIAL_VERSION",
    "PERENNIAL_MODEL_URI",
    "PERENNIAL_DATASET_URI",
    "PERENNIAL_DATASET_VERSION",
    "PERENNIAL_HYPERPARAMETERS",
    "PERENNIAL_TRIGGER",
]


def make_spec(**fields: Any) -> TrainingJobSpec:
    """A TrainingJob spec from camelCase fields, as a user would write it."""
    document: dict[str, Any] = {
        "model": "churn",
        "version": "7",
        "image": IMAGE,
        "output": {"modelUri": "s3://models/{model}/{version}"},
    }
    document.update(fields)
    return TrainingJobSpec.model_validate(document)


def container_of(job: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_spec_of(job: Mapping[str, Any]) -> dict[str, Any]:
    pod_spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod_spec


def env_of(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container_of(job)["env"]}


def env_values(job: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_of(job)["env"] if "value" in e}


def managed_labels_for(version: str = "7", model: str | None = "churn") -> dict[str, str]:
    labels = {"app.kubernetes.io/managed-by": "perennial", "perennial.dev/version": version}
    if model:
        labels["perennial.dev/model"] = model
    labels["perennial.dev/training-job"] = NAME
    return labels


def job_condition(type_: str, reason: str, message: str = "", at: str = END) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def job(
    *,
    active: int = 0,
    ready: int = 0,
    failed: int = 0,
    succeeded: int = 0,
    terminating: int = 0,
    conditions: Sequence[Mapping[str, Any]] = (),
    start_time: str | None = START,
    completion_time: str | None = None,
    created: str | None = None,
    workers: int = 1,
    ttl: int | None = None,
    completed_indexes: str | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job as the API server returns it (zero counters omitted, as the API does).

    ``created`` is its creationTimestamp (left out: no start deadline applies), ``ttl`` its
    ``ttlSecondsAfterFinished`` (left out: the operator has not handed it over yet).
    """
    status: dict[str, Any] = {"ready": ready, "terminating": terminating, "uncountedTerminatedPods": {}}
    if completed_indexes is not None:
        status["completedIndexes"] = completed_indexes
    if start_time:
        status["startTime"] = start_time
    if completion_time:
        status["completionTime"] = completion_time
    counters = {"active": active, "failed": failed, "succeeded": succeeded}
    status.update({key: value for key, value in counters.items() if value})
    if conditions:
        status["conditions"] = [dict(c) for c in conditions]
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": JOB_UID,
            "labels": managed_labels_for(),
            "ownerReferences": [REF.owner_reference()],
        },
        "spec": {"backoffLimit": 2, "completions": workers, "parallelism": workers},
        "status": status,
    }
    if created is not None:
        body["metadata"]["creationTimestamp"] = created
    if ttl is not None:
        body["spec"]["ttlSecondsAfterFinished"] = ttl
    return body


def complete_job(
    *, workers: int = 1, failed: int = 0, completion_time: str | None = END, ttl: int | None = None
) -> dict[str, Any]:
    message = "Reached expected number of succeeded pods"
    return job(
        succeeded=workers,
        failed=failed,
        completion_time=completion_time,
        ttl=ttl,
        conditions=[
            job_condition("SuccessCriteriaMet", "CompletionsReached", message),
            job_condition("Complete", "CompletionsReached", message),
        ],
    )


FAILURE_MESSAGES = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "DeadlineExceeded": "Job was active longer than specified deadline",
}


def failed_job(reason: str, *, failed: int = 3, ttl: int | None = None) -> dict[str, Any]:
    message = FAILURE_MESSAGES[reason]
    return job(
        failed=failed,
        ttl=ttl,
        conditions=[job_condition("FailureTarget", reason, message), job_condition("Failed", reason, message)],
    )


def metrics_message(**metrics: Any) -> str:
    return json.dumps({"metrics": metrics})


def job_owner(uid: str = JOB_UID) -> dict[str, Any]:
    """The ownerReference the Job controller puts on the pods it creates."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": NAME,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def trainer_pod(
    message: str | None,
    *,
    name: str = f"{NAME}-x7k2q",
    index: int | None = None,
    created: str = START,
    phase: str = "Succeeded",
    owners: Sequence[Mapping[str, Any]] = (job_owner(),),
) -> dict[str, Any]:
    """A core/v1 Pod of the Job (``owners``) whose trainer container terminated with ``message``."""
    exit_code = 0 if phase == "Succeeded" else 1
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": created,
        "finishedAt": END,
        "containerID": "containerd://abc",
    }
    if message is not None:
        terminated["message"] = message
    annotations = {COMPLETION_INDEX_ANNOTATION: str(index)} if index is not None else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": created,
            "labels": {**managed_labels_for(), "batch.kubernetes.io/job-name": NAME},
            "annotations": annotations,
            "ownerReferences": [dict(o) for o in owners],
        },
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": IMAGE,
                    "imageID": "registry.example/churn-trainer@sha256:0123",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        },
    }


@dataclass
class Planned:
    """A plan, with its status in wire form (camelCase, unset fields left out)."""

    plan: TrainingPlan

    @property
    def status(self) -> dict[str, Any]:
        return self.plan.status.to_api()

    @property
    def events(self) -> list[Event]:
        return self.plan.events

    @property
    def finished(self) -> bool:
        return run_finished(self.plan.status)


def derive(
    spec: TrainingJobSpec | InvalidSpec,
    current: Mapping[str, Any],
    observed_job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    now: datetime = NOW,
    ref: TrainingJobRef = REF,
    default_start_deadline: timedelta = DEFAULT_START_DEADLINE,
) -> Planned:
    """The plan for a run whose stored status is ``current`` (wire form) and whose Job is ``observed_job``."""
    stored = TrainingJobStatus.model_validate(current)
    observed = ObservedRun(ref, spec, stored, observed_job, pods, now, default_start_deadline)
    return Planned(plan_trainingjob(observed))


def condition_or_none(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    found = condition_or_none(status, type_)
    assert found is not None, f"no {type_} condition in {status.get('conditions')}"
    return found


def running_status() -> dict[str, Any]:
    """A stored status of a run whose pods were already running."""
    return derive(make_spec(), {}, job(active=1, ready=1), now=NOW - timedelta(hours=1)).status


# ---------------------------------------------------------------- desired_job: identity
def test_job_is_a_batch_v1_job_named_after_the_training_job_in_its_namespace() -> None:
    manifest = desired_job(REF, make_spec(), NOW)

    assert manifest["apiVersion"] == "batch/v1"
    assert manifest["kind"] == "Job"
    assert manifest["metadata"]["name"] == NAME
    assert manifest["metadata"]["namespace"] == NAMESPACE


def test_job_and_its_pods_carry_the_managed_labels() -> None:
    manifest = desired_job(REF, make_spec(), NOW)

    assert manifest["metadata"]["labels"] == managed_labels_for()
    assert manifest["spec"]["template"]["metadata"]["labels"] == managed_labels_for()


def test_job_of_a_run_without_model_has_no_model_label() -> None:
    manifest = desired_job(REF, make_spec(model=None), NOW)

    assert manifest["metadata"]["labels"] == managed_labels_for(model=None)
    assert env_values(manifest)["PERENNIAL_MODEL"] == ""


def test_job_is_controlled_by_the_training_job() -> None:
    manifest = desired_job(REF, make_spec(), NOW)

    assert manifest["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": NAME,
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


@pytest.mark.parametrize("version", [None, ""])
def test_version_defaults_to_the_training_job_name(version: str | None) -> None:
    manifest = desired_job(REF, make_spec(version=version), NOW)

    assert env_values(manifest)["PERENNIAL_VERSION"] == NAME
    assert env_values(manifest)["PERENNIAL_MODEL_URI"] == f"s3://models/churn/{NAME}"
    assert manifest["metadata"]["labels"]["perennial.dev/version"] == NAME
    assert manifest["spec"]["template"]["metadata"]["labels"]["perennial.dev/version"] == NAME


# ---------------------------------------------------------------- desired_job: environment
def test_perennial_env_comes_first_with_the_run_lineage() -> None:
    spec = make_spec(
        output={"modelUri": "s3://models/{namespace}/{model}/{version}/model.pkl"},
        dataset={"uri": "s3://data/churn/2026-11-20/", "version": "2026-11-20"},
        hyperparameters={"max_depth": "8", "learning_rate": "0.01"},
        trigger={"reason": "Drift", "source": "churn-drift", "detail": "feature_psi=0.31 > max 0.2"},
        env=[{"name": "LOG_LEVEL", "value": "info"}],
    )

    env = container_of(desired_job(REF, spec, NOW))["env"]

    assert [e["name"] for e in env[:7]] == PERENNIAL_ENV_NAMES
    values = {e["name"]: e["value"] for e in env[:7]}
    assert values["PERENNIAL_MODEL"] == "churn"
    assert values["PERENNIAL_VERSION"] == "7"
    assert values["PERENNIAL_MODEL_URI"] == "s3://models/ml/churn/7/model.pkl"
    assert values["PERENNIAL_DATASET_URI"] == "s3://data/churn/2026-11-20/"
    assert values["PERENNIAL_DATASET_VERSION"] == "2026-11-20"
    assert json.loads(values["PERENNIAL_HYPERPARAMETERS"]) == {"max_depth": "8", "learning_rate": "0.01"}
    assert json.loads(values["PERENNIAL_TRIGGER"]) == {
        "reason": "Drift",
        "source": "churn-drift",
        "detail": "feature_psi=0.31 > max 0.2",
    }


def test_perennial_env_without_lineage_is_empty_strings_and_empty_json_objects() -> None:
    values = env_values(desired_job(REF, make_spec(), NOW))

    assert values["PERENNIAL_DATASET_URI"] == ""
    assert values["PERENNIAL_DATASET_VERSION"] == ""
    assert json.loads(values["PERENNIAL_HYPERPARAMETERS"]) == {}
    assert json.loads(values["PERENNIAL_TRIGGER"]) == {}


def test_trigger_json_leaves_out_unset_fields() -> None:
    values = env_values(desired_job(REF, make_spec(trigger={"reason": "Initial"}), NOW))

    assert json.loads(values["PERENNIAL_TRIGGER"]) == {"reason": "Initial"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("s3://models/{model}/{version}", "s3://models/churn/7"),
        ("gs://{namespace}-models/{model}-{version}/{version}", "gs://ml-models/churn-7/7"),
        ("/mnt/models/fixed", "/mnt/models/fixed"),
    ],
)
def test_model_uri_placeholders_are_filled_in(template: str, expected: str) -> None:
    values = env_values(desired_job(REF, make_spec(output={"modelUri": template}), NOW))

    assert values["PERENNIAL_MODEL_URI"] == expected


def test_user_env_follows_the_perennial_env_in_wire_format() -> None:
    user_env = [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "trainer-secrets", "key": "api-key"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]

    env = container_of(desired_job(REF, make_spec(env=user_env), NOW))["env"]

    assert [e["name"] for e in env] == [*PERENNIAL_ENV_NAMES, "LOG_LEVEL", "API_KEY", "POD_NAME"]
    assert env[-3:] == user_env


# ---------------------------------------------------------------- desired_job: the user's pod surface
CONTAINER_PASS_THROUGH: dict[str, Any] = {
    "command": ["python", "-m", "train"],
    "args": ["--epochs", "20"],
    "envFrom": [
        {"configMapRef": {"name": "trainer-config"}},
        {"prefix": "AWS_", "secretRef": {"name": "s3-credentials", "optional": True}},
    ],
    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"nvidia.com/gpu": "1"}},
    "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "config", "mountPath": "/etc/trainer", "readOnly": True, "subPath": "conf"},
    ],
}
POD_PASS_THROUGH: dict[str, Any] = {
    "volumes": [
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "10Gi"}},
        {"name": "config", "configMap": {"name": "trainer-config", "defaultMode": 0o444}},
        {"name": "creds", "secret": {"secretName": "s3-credentials"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "churn-data", "readOnly": True}},
    ],
    "nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 300},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"perennial.dev/model": "churn"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
    },
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "priorityClassName": "training-low",
}


@pytest.mark.parametrize("field", sorted(CONTAINER_PASS_THROUGH))
def test_user_container_fields_pass_through_in_wire_format(field: str) -> None:
    manifest = desired_job(REF, make_spec(**CONTAINER_PASS_THROUGH, **POD_PASS_THROUGH), NOW)

    assert container_of(manifest)[field] == CONTAINER_PASS_THROUGH[field]


@pytest.mark.parametrize("field", sorted(POD_PASS_THROUGH))
def test_user_pod_fields_pass_through_in_wire_format(field: str) -> None:
    manifest = desired_job(REF, make_spec(**CONTAINER_PASS_THROUGH, **POD_PASS_THROUGH), NOW)

    assert pod_spec_of(manifest)[field] == POD_PASS_THROUGH[field]


def test_trainer_container_runs_the_users_image() -> None:
    container = container_of(desired_job(REF, make_spec(), NOW))

    assert container["name"] == "trainer"
    assert container["image"] == IMAGE


def test_unset_optional_fields_are_left_out_of_the_job() -> None:
    manifest = desired_job(REF, make_spec(), NOW)

    assert set(container_of(manifest)) == {
        "name",
        "image",
        "env",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "securityContext",
    }
    assert set(pod_spec_of(manifest)) == {
        "restartPolicy",
        "containers",
        "securityContext",
        "automountServiceAccountToken",
    }
    assert "activeDeadlineSeconds" not in manifest["spec"]
    assert "completionMode" not in manifest["spec"]


def test_empty_optional_fields_are_left_out_of_the_job() -> None:
    spec = make_spec(
        args=[],
        envFrom=[],
        nodeSelector={},
        tolerations=[],
        affinity={},
        volumes=[],
        volumeMounts=[],
        imagePullSecrets=[],
        priorityClassName="",
        resources={},
    )

    manifest = desired_job(REF, spec, NOW)

    assert not {"args", "envFrom", "volumeMounts", "resources"} & set(container_of(manifest))
    assert not {"nodeSelector", "tolerations", "affinity", "volumes", "imagePullSecrets", "priorityClassName"} & set(
        pod_spec_of(manifest)
    )


def test_pods_never_restart_in_place() -> None:
    assert pod_spec_of(desired_job(REF, make_spec(), NOW))["restartPolicy"] == "Never"


# ---------------------------------------------------------------- desired_job: Job knobs
@pytest.mark.parametrize(("backoff_limit", "expected"), [(None, 2), (0, 0), (5, 5)])
def test_backoff_limit_defaults_to_two(backoff_limit: int | None, expected: int) -> None:
    spec = make_spec() if backoff_limit is None else make_spec(backoffLimit=backoff_limit)

    assert desired_job(REF, spec, NOW)["spec"]["backoffLimit"] == expected


@pytest.mark.parametrize(("deadline", "seconds"), [("2h", 7200), ("90s", 90), ("1h30m", 5400), ("45m", 2700)])
def test_active_deadline_becomes_active_deadline_seconds(deadline: str, seconds: int) -> None:
    manifest = desired_job(REF, make_spec(activeDeadline=deadline), NOW)

    assert manifest["spec"]["activeDeadlineSeconds"] == seconds


def test_no_active_deadline_means_no_active_deadline_seconds() -> None:
    assert "activeDeadlineSeconds" not in desired_job(REF, make_spec(), NOW)["spec"]


@pytest.mark.parametrize(("ttl", "seconds"), [(None, 86400), ("1h", 3600), ("168h", 604800), ("0", 0)])
def test_ttl_after_finished_defaults_to_a_day(ttl: str | None, seconds: int) -> None:
    spec = make_spec() if ttl is None else make_spec(ttlAfterFinished=ttl)

    assert ttl_seconds(spec) == seconds


def test_the_job_is_created_without_a_ttl_so_it_outlives_its_unread_result() -> None:
    # The TTL controller would delete the Job and the pods holding the trainer's result before
    # the operator read it (ttlAfterFinished "0", or an operator down longer than the TTL).
    assert "ttlSecondsAfterFinished" not in desired_job(REF, make_spec(ttlAfterFinished="0"), NOW)["spec"]


# ---------------------------------------------------------------- desired_job: security
def test_pod_security_context_is_restricted_profile() -> None:
    pod_spec = pod_spec_of(desired_job(REF, make_spec(), NOW))

    assert pod_spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_container_security_context_is_restricted_profile() -> None:
    security = container_of(desired_job(REF, make_spec(), NOW))["securityContext"]

    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security.get("privileged") in (None, False)
    assert "add" not in security["capabilities"]


def test_without_service_account_the_pod_gets_no_api_token() -> None:
    pod_spec = pod_spec_of(desired_job(REF, make_spec(), NOW))

    assert pod_spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod_spec


def test_with_service_account_the_pod_runs_as_it_with_its_token() -> None:
    pod_spec = pod_spec_of(desired_job(REF, make_spec(serviceAccountName="trainer"), NOW))

    assert pod_spec["serviceAccountName"] == "trainer"
    assert "automountServiceAccountToken" not in pod_spec


def test_trainer_reports_metrics_through_the_termination_message_file() -> None:
    container = container_of(desired_job(REF, make_spec(), NOW))

    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"


# ---------------------------------------------------------------- desired_job: pod labels and annotations
def test_pod_labels_and_annotations_are_added_to_the_pod_template() -> None:
    spec = make_spec(
        podLabels={"team": "growth", "sidecar.istio.io/inject": "false"},
        podAnnotations={"prometheus.io/scrape": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    )

    metadata = desired_job(REF, spec, NOW)["spec"]["template"]["metadata"]

    assert metadata["labels"] == {"team": "growth", "sidecar.istio.io/inject": "false", **managed_labels_for()}
    assert metadata["annotations"] == {
        "prometheus.io/scrape": "true",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    }


def test_operator_labels_win_over_pod_labels() -> None:
    # The CRD's CEL rules reject these keys at admission; the builder must not depend on it.
    spec = make_spec(
        podLabels={
            "app.kubernetes.io/managed-by": "someone-else",
            "perennial.dev/training-job": "other",
            "perennial.dev/version": "99",
            "team": "growth",
        }
    )

    manifest = desired_job(REF, spec, NOW)

    assert manifest["spec"]["template"]["metadata"]["labels"] == {"team": "growth", **managed_labels_for()}
    assert manifest["metadata"]["labels"] == managed_labels_for()


def test_pod_labels_do_not_leak_onto_the_job() -> None:
    manifest = desired_job(REF, make_spec(podLabels={"team": "growth"}, podAnnotations={"a": "b"}), NOW)

    assert manifest["metadata"]["labels"] == managed_labels_for()
    assert "annotations" not in manifest["metadata"]


# ---------------------------------------------------------------- single worker vs distributed
def test_single_worker_job_is_a_plain_non_indexed_job() -> None:
    manifest = desired_job(REF, make_spec(), NOW)

    assert manifest["spec"]["completions"] == 1
    assert manifest["spec"]["parallelism"] == 1
    assert "completionMode" not in manifest["spec"]
    assert "subdomain" not in pod_spec_of(manifest)
    assert not {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"} & set(env_of(manifest))


def test_single_worker_run_needs_no_service() -> None:
    assert desired_service(REF, make_spec()) is None
    assert desired_service(REF, make_spec(workers=1)) is None


@pytest.mark.parametrize("workers", [2, 4, 256])
def test_distributed_job_is_indexed_with_one_completion_per_worker(workers: int) -> None:
    spec_ = desired_job(REF, make_spec(workers=workers), NOW)["spec"]

    assert spec_["completionMode"] == "Indexed"
    assert spec_["completions"] == workers
    assert spec_["parallelism"] == workers


def test_distributed_pods_live_in_the_headless_service_subdomain() -> None:
    spec = make_spec(workers=4)

    service = desired_service(REF, spec)

    assert service is not None
    assert pod_spec_of(desired_job(REF, spec, NOW))["subdomain"] == service["metadata"]["name"] == NAME


def test_distributed_env_is_what_torchrun_expects() -> None:
    env = env_of(desired_job(REF, make_spec(workers=4), NOW))

    assert env["WORLD_SIZE"] == {"name": "WORLD_SIZE", "value": "4"}
    assert env["RANK"] == {
        "name": "RANK",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
    }
    assert env["MASTER_ADDR"] == {"name": "MASTER_ADDR", "value": f"{NAME}-0.{NAME}.{NAMESPACE}.svc"}
    assert env["MASTER_PORT"] == {"name": "MASTER_PORT", "value": "29500"}


def test_distributed_env_precedes_the_users_env() -> None:
    spec = make_spec(workers=2, env=[{"name": "NCCL_DEBUG", "value": "INFO"}])
    env = container_of(desired_job(REF, spec, NOW))["env"]

    names = [e["name"] for e in env]
    assert names == [*PERENNIAL_ENV_NAMES, "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "NCCL_DEBUG"]


def test_distributed_run_gets_a_headless_service() -> None:
    service = desired_service(REF, make_spec(workers=3))

    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": managed_labels_for(),
            "ownerReferences": [REF.owner_reference()],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {"perennial.dev/training-job": NAME, "app.kubernetes.io/managed-by": "perennial"},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500}],
        },
    }


def test_headless_service_selects_the_runs_pods() -> None:
    spec = make_spec(workers=2, podLabels={"team": "growth"})

    service = desired_service(REF, spec)
    pod_labels = desired_job(REF, spec, NOW)["spec"]["template"]["metadata"]["labels"]

    assert service is not None
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_desired_job_is_deterministic() -> None:
    spec = make_spec(workers=2, hyperparameters={"b": "2", "a": "1"}, trigger={"reason": "Manual", "source": "me"})

    assert desired_job(REF, spec, NOW) == desired_job(REF, spec, NOW)


# ---------------------------------------------------------------- parse_termination_message
def test_valid_termination_message_yields_its_metrics() -> None:
    result = parse_termination_message('{"metrics": {"auc": 0.934, "loss": 0.21}}')

    assert result == MetricsResult({"auc": 0.934, "loss": 0.21})
    assert result.error_reason is None


def test_integer_metrics_are_accepted_as_floats() -> None:
    result = parse_termination_message('{"metrics": {"epochs": 20, "auc": 1}}')

    assert result.metrics == {"epochs": 20.0, "auc": 1.0}
    assert all(type(value) is float for value in result.metrics.values())


def test_empty_metrics_object_is_valid() -> None:
    assert parse_termination_message('{"metrics": {}}') == MetricsResult({})


def test_other_top_level_keys_are_ignored() -> None:
    result = parse_termination_message('{"metrics": {"auc": 0.95}, "note": "trained on 1M rows"}')

    assert result == MetricsResult({"auc": 0.95})


@pytest.mark.parametrize("message", [None, "", "   ", "\n"])
def test_no_termination_message_is_metrics_missing(message: str | None) -> None:
    result = parse_termination_message(message)

    assert result.error_reason == METRICS_MISSING
    assert result.metrics == {}
    assert "/dev/termination-log" in result.error_message


@pytest.mark.parametrize("message", ["auc=0.93", "{metrics: {auc: 0.93}}", '{"metrics": {"auc": 0.9', "Traceback ..."])
def test_non_json_termination_message_is_invalid(message: str) -> None:
    result = parse_termination_message(message)

    assert result.error_reason == INVALID_TERMINATION_MESSAGE
    assert result.metrics == {}
    assert "not JSON" in result.error_message


@pytest.mark.parametrize(
    "message",
    [
        '[{"metrics": {"auc": 0.9}}]',
        '"metrics"',
        "0.93",
        "null",
        "{}",
        '{"auc": 0.93}',
        '{"metrics": [0.93]}',
        '{"metrics": 0.93}',
        '{"metrics": null}',
        '{"metrics": "auc=0.93"}',
    ],
)
def test_json_of_the_wrong_shape_is_invalid(message: str) -> None:
    result = parse_termination_message(message)

    assert result.error_reason == INVALID_TERMINATION_MESSAGE
    assert result.metrics == {}
    assert '{"metrics": {"name": number}}' in result.error_message


@pytest.mark.parametrize(
    "value", ['"0.93"', "true", "false", "null", "NaN", "Infinity", "-Infinity", "1e400", "[0.93]", '{"v": 1}']
)
def test_metric_that_is_not_a_finite_number_is_invalid_and_named(value: str) -> None:
    result = parse_termination_message(f'{{"metrics": {{"auc": 0.93, "latency_p99_ms": {value}}}}}')

    assert result.error_reason == INVALID_TERMINATION_MESSAGE
    assert result.metrics == {}
    assert "'latency_p99_ms'" in result.error_message
    assert "not a finite number" in result.error_message


def test_integer_too_large_for_a_float_is_invalid_not_an_exception() -> None:
    result = parse_termination_message('{"metrics": {"auc": 1' + "0" * 400 + "}}")

    assert result.error_reason == INVALID_TERMINATION_MESSAGE
    assert "'auc'" in result.error_message


# ---------------------------------------------------------------- check_gates
def rules(*documents: Mapping[str, Any]) -> list[ValidationRule]:
    return [ValidationRule.model_validate(d) for d in documents]


@pytest.mark.parametrize("metrics", [{}, {"auc": 0.1}])
def test_no_rules_pass_with_no_validation_rules(metrics: dict[str, float]) -> None:
    result = check_gates([], metrics)

    assert result.passed
    assert result.reason == "NoValidationRules"


def test_all_gates_holding_pass() -> None:
    result = check_gates(
        rules(
            {"metric": "auc", "min": 0.9},
            {"metric": "latency_p99_ms", "max": 40},
            {"metric": "f1", "min": 0.5, "max": 1},
        ),
        {"auc": 0.93, "latency_p99_ms": 35, "f1": 0.7, "unrelated": -1},
    )

    assert result.passed
    assert result.reason == "AllGatesPassed"
    assert result.message == "auc >= 0.9, latency_p99_ms <= 40, f1 [0.5, 1] hold"


@pytest.mark.parametrize(
    ("rule", "value", "reason"),
    [
        ({"metric": "auc", "min": 0.9}, 0.89, METRIC_BELOW_MIN),
        ({"metric": "auc", "min": 0.9, "max": 0.99}, 0.5, METRIC_BELOW_MIN),
        ({"metric": "auc", "max": 0.99}, 0.999, METRIC_ABOVE_MAX),
        ({"metric": "auc", "min": 0.9, "max": 0.99}, 1.0, METRIC_ABOVE_MAX),
    ],
)
def test_metric_outside_its_bounds_fails_its_gate(rule: dict[str, Any], value: float, reason: str) -> None:
    result = check_gates(rules(rule), {"auc": value})

    assert not result.passed
    assert result.reason == reason


def test_below_min_message_names_value_and_bound() -> None:
    assert check_gates(rules({"metric": "auc", "min": 0.9}), {"auc": 0.85}).message == "auc=0.85 < min 0.9"


def test_above_max_message_names_value_and_bound() -> None:
    result = check_gates(rules({"metric": "latency_p99_ms", "max": 40}), {"latency_p99_ms": 52.5})

    assert result.message == "latency_p99_ms=52.5 > max 40"


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ({"metric": "auc", "min": 0.9}, 0.9),
        ({"metric": "auc", "max": 0.9}, 0.9),
        ({"metric": "auc", "min": 0.9, "max": 0.9}, 0.9),
        ({"metric": "auc", "min": 0.0, "max": 1.0}, 0.0),
        ({"metric": "auc", "min": 0.0, "max": 1.0}, 1.0),
    ],
)
def test_bounds_are_inclusive(rule: dict[str, Any], value: float) -> None:
    assert check_gates(rules(rule), {"auc": value}).passed


def test_missing_metric_fails_with_metrics_missing() -> None:
    result = check_gates(rules({"metric": "auc", "min": 0.9}), {"loss": 0.2})

    assert not result.passed
    assert result.reason == METRICS_MISSING
    assert result.message == "metric auc is missing (needed >= 0.9)"


def test_several_failures_give_the_first_reason_and_list_all() -> None:
    result = check_gates(
        rules(
            {"metric": "auc", "min": 0.9},
            {"metric": "latency_p99_ms", "max": 40},
            {"metric": "recall", "min": 0.5, "max": 1},
            {"metric": "f1", "min": 0.5},
        ),
        {"auc": 0.8, "latency_p99_ms": 50, "f1": 0.6},
    )

    assert not result.passed
    assert result.reason == METRIC_BELOW_MIN
    assert result.message == "auc=0.8 < min 0.9; latency_p99_ms=50 > max 40; metric recall is missing (needed [0.5, 1])"


# ---------------------------------------------------------------- plan_trainingjob: before the Job exists
def test_without_job_or_recorded_job_the_run_is_pending() -> None:
    result = derive(make_spec(), {}, None)

    assert result.status["phase"] == "Pending"
    assert condition(result.status, "Succeeded")["status"] == "Unknown"
    assert condition(result.status, "Running")["status"] == "False"
    assert result.events == []
    assert not result.finished


def test_status_always_names_version_model_uri_and_generation() -> None:
    result = derive(make_spec(version=None), {}, None)

    assert result.status["version"] == NAME
    assert result.status["modelUri"] == f"s3://models/churn/{NAME}"
    assert result.status["observedGeneration"] == 1
    # jobName records that a Job was created: only then may its absence mean "deleted".
    assert "jobName" not in result.status


def test_conditions_record_the_generation_and_now() -> None:
    result = derive(make_spec(), {}, None)

    for c in result.status["conditions"]:
        assert c["observedGeneration"] == 1
        assert c["lastTransitionTime"] == NOW_TEXT


def children(planned: Planned) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in planned.plan.create]


def test_without_a_recorded_job_the_plan_creates_the_job() -> None:
    result = derive(make_spec(), {}, None)

    assert children(result) == [("Job", NAME)]
    assert result.plan.create[0] == desired_job(REF, make_spec(), NOW)


def test_a_distributed_run_creates_its_headless_service_before_its_job() -> None:
    assert children(derive(make_spec(workers=3), {}, None)) == [("Service", NAME), ("Job", NAME)]


@pytest.mark.parametrize(
    "observed_job",
    [job(), job(active=1, ready=1), failed_job("BackoffLimitExceeded"), complete_job()],
    ids=["created", "running", "failed", "complete"],
)
def test_an_existing_job_is_never_created_again(observed_job: dict[str, Any]) -> None:
    assert derive(make_spec(), {}, observed_job, [trainer_pod(metrics_message(auc=0.95))]).plan.create == []


def test_creating_the_job_is_the_only_thing_the_plan_asks_of_the_api() -> None:
    plan = derive(make_spec(), {}, None).plan

    assert (plan.apply, plan.delete, plan.counts, plan.requeue_after) == ([], [], [], None)


# ---------------------------------------------------------------- plan_trainingjob: the Job disappears
def test_job_deleted_after_the_run_started_fails_with_job_deleted() -> None:
    result = derive(make_spec(), running_status(), None)

    assert result.status["phase"] == "Failed"
    succeeded = condition(result.status, "Succeeded")
    assert succeeded["status"] == "False"
    assert succeeded["reason"] == JOB_DELETED
    assert condition(result.status, "Running")["status"] == "False"
    assert result.status["completionTime"] == NOW_TEXT
    assert result.status["duration"] == "2h"
    assert result.finished
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "Failed")]
    assert JOB_DELETED in result.events[0].message


def test_job_deleted_keeps_the_start_time_and_attempts_it_had() -> None:
    current = running_status()

    result = derive(make_spec(), current, None)

    assert result.status.get("startTime") == START
    assert result.status.get("attempts") == 1


def test_a_deleted_job_is_never_recreated() -> None:
    result = derive(make_spec(workers=2), running_status(), None)

    assert result.plan.create == []


def test_job_deleted_before_it_reported_a_start_time_fails_with_job_deleted() -> None:
    current = derive(make_spec(), {}, job(active=1, start_time=None), now=NOW - timedelta(minutes=1)).status
    assert current["jobName"] == NAME
    assert "startTime" not in current or current["startTime"] is None

    result = derive(make_spec(), current, None)

    assert result.status["phase"] == "Failed"
    assert condition(result.status, "Succeeded")["reason"] == JOB_DELETED


# ---------------------------------------------------------------- plan_trainingjob: running
def test_active_job_without_ready_pods_is_pending() -> None:
    result = derive(make_spec(), {}, job(active=1, ready=0))

    assert result.status["phase"] == "Pending"
    assert condition(result.status, "Succeeded")["status"] == "Unknown"
    running = condition(result.status, "Running")
    assert running["status"] == "False"
    assert running["reason"] == "PodsStarting"
    assert result.status["startTime"] == START
    assert result.events == []
    assert not result.finished


def test_ready_pods_make_the_run_running_with_a_started_event() -> None:
    pending = derive(make_spec(), {}, job(active=1, ready=0), now=NOW - timedelta(minutes=1)).status

    result = derive(make_spec(), pending, job(active=1, ready=1))

    assert result.status["phase"] == "Running"
    assert condition(result.status, "Succeeded")["status"] == "Unknown"
    running = condition(result.status, "Running")
    assert running["status"] == "True"
    assert running["reason"] == "PodsRunning"
    assert running["message"] == "1 of 1 worker(s) running"
    assert running["lastTransitionTime"] == NOW_TEXT
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "Started")]
    assert IMAGE in result.events[0].message
    assert not result.finished


def test_first_sight_of_ready_pods_also_emits_started() -> None:
    result = derive(make_spec(), {}, job(active=1, ready=1))

    assert [e.reason for e in result.events] == ["Started"]


def test_already_running_emits_no_second_started_event() -> None:
    result = derive(make_spec(), running_status(), job(active=1, ready=1))

    assert result.status["phase"] == "Running"
    assert result.events == []


def test_running_message_counts_ready_workers() -> None:
    result = derive(make_spec(workers=4), {}, job(active=4, ready=3))

    assert condition(result.status, "Running")["message"] == "3 of 4 worker(s) running"


def test_start_time_is_kept_when_the_job_does_not_report_one() -> None:
    result = derive(make_spec(), running_status(), job(active=1, ready=1, start_time=None))

    assert result.status["startTime"] == START


@pytest.mark.parametrize(
    ("counts", "attempts"),
    [
        ({}, 0),
        ({"active": 1}, 1),
        ({"active": 1, "ready": 1}, 1),
        ({"active": 1, "failed": 1}, 2),
        ({"active": 1, "failed": 2}, 3),
        ({"failed": 1}, 1),
        ({"succeeded": 1}, 1),
        ({"succeeded": 1, "failed": 2}, 3),
    ],
)
def test_attempts_count_failed_pods_plus_the_current_one(counts: dict[str, int], attempts: int) -> None:
    assert derive(make_spec(), {}, job(**counts)).status["attempts"] == attempts


@pytest.mark.parametrize("failed", [1, 3])
def test_attempts_of_a_failed_job_are_its_failed_pods(failed: int) -> None:
    assert derive(make_spec(), {}, failed_job("BackoffLimitExceeded", failed=failed)).status["attempts"] == failed


def test_attempts_of_a_job_that_succeeded_after_a_retry() -> None:
    result = derive(make_spec(), {}, complete_job(failed=1), [trainer_pod(metrics_message(auc=0.95))])

    assert result.status["attempts"] == 2


def test_status_round_trips_through_a_merge_patch_unchanged() -> None:
    just_created = job(start_time=None)
    first = derive(make_spec(), {}, just_created).status
    stored = {key: value for key, value in first.items() if value is not None}  # what merge-patch keeps

    assert derive(make_spec(), stored, just_created, now=LATER).status == stored


def test_job_terminating_its_pods_after_failure_target_is_not_pending_again() -> None:
    terminating = job(
        failed=1,
        terminating=1,
        conditions=[job_condition("FailureTarget", "DeadlineExceeded", FAILURE_MESSAGES["DeadlineExceeded"])],
    )

    result = derive(make_spec(), running_status(), terminating)

    assert result.status["phase"] != "Pending"


# ---------------------------------------------------------------- plan_trainingjob: failed
@pytest.mark.parametrize("reason", ["BackoffLimitExceeded", "DeadlineExceeded"])
def test_failed_job_fails_the_run_with_the_jobs_reason(reason: str) -> None:
    result = derive(make_spec(validation=AUC_GATE), running_status(), failed_job(reason))

    status = result.status
    assert status["phase"] == "Failed"
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == (
        "False",
        reason,
        FAILURE_MESSAGES[reason],
    )
    assert condition(status, "Running")["status"] == "False"
    assert condition_or_none(status, "Validated") is None
    assert "metrics" not in status
    assert status["completionTime"] == END
    assert status["startTime"] == START
    assert status["duration"] == "12m30s"
    assert result.finished
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "Failed")]
    assert result.events[0].message == f"{reason}: {FAILURE_MESSAGES[reason]}"


def _failed_trainer(name: str, exit_code: int, reason: str, message: str | None, finished: str = END) -> dict[str, Any]:
    pod = trainer_pod(message, name=name, phase="Failed")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    terminated.update(exitCode=exit_code, reason=reason, finishedAt=finished)
    return pod


@pytest.mark.parametrize(
    ("pod", "detail"),
    [
        (
            _failed_trainer("run-a", 2, "Error", "bad input: unknown hyperparameter(s) nonesuch\n"),
            "the last trainer exited 2 (Error): bad input: unknown hyperparameter(s) nonesuch",
        ),
        (_failed_trainer("run-b", 137, "OOMKilled", None), "the last trainer exited 137 (OOMKilled)"),
    ],
    ids=["exit-with-message", "oom-killed"],
)
def test_a_failed_run_names_how_its_trainer_exited(pod: dict[str, Any], detail: str) -> None:
    result = derive(make_spec(), running_status(), failed_job("BackoffLimitExceeded"), pods=[pod])

    succeeded = condition(result.status, "Succeeded")
    assert succeeded["reason"] == "BackoffLimitExceeded"  # the Job's reason still names the condition
    assert succeeded["message"] == f"{FAILURE_MESSAGES['BackoffLimitExceeded']}; {detail}"
    assert detail in result.events[0].message


def test_the_last_trainer_to_fail_is_told_and_a_long_message_is_shortened() -> None:
    first = _failed_trainer("run-1", 1, "Error", "first failure", finished="2026-01-01T00:00:00Z")
    last = _failed_trainer("run-2", 1, "Error", "x" * 5000, finished="2026-01-01T00:05:00Z")
    foreign = _failed_trainer("not-ours", 9, "Error", "someone else's pod")
    foreign["metadata"]["ownerReferences"] = [job_owner(uid="another-job")]

    message = condition(
        derive(make_spec(), running_status(), failed_job("BackoffLimitExceeded"), pods=[first, last, foreign]).status,
        "Succeeded",
    )["message"]

    assert "the last trainer exited 1 (Error): xxx" in message
    assert message.endswith("...")
    assert len(message) < len(FAILURE_MESSAGES["BackoffLimitExceeded"]) + 400
    assert "someone else's pod" not in message
    assert "first failure" not in message


def test_failed_job_without_reason_or_message_still_fails_clearly() -> None:
    bare = job(failed=1, conditions=[{"type": "Failed", "status": "True", "lastTransitionTime": END}])

    result = derive(make_spec(), {}, bare)

    assert result.status["phase"] == "Failed"
    assert condition(result.status, "Succeeded")["reason"] == "JobFailed"
    assert condition(result.status, "Succeeded")["message"] == "the Job failed"


def test_false_job_conditions_are_not_outcomes() -> None:
    undecided = job(
        active=1,
        ready=1,
        conditions=[
            {**job_condition("Failed", "BackoffLimitExceeded"), "status": "False"},
            {**job_condition("Complete", "CompletionsReached"), "status": "False"},
        ],
    )

    assert derive(make_spec(), {}, undecided).status["phase"] == "Running"


# ---------------------------------------------------------------- plan_trainingjob: complete
def test_complete_job_with_good_metrics_succeeds_validated() -> None:
    spec = make_spec(validation=[{"metric": "auc", "min": 0.9}, {"metric": "latency_p99_ms", "max": 40}])
    pod = trainer_pod(metrics_message(auc=0.934, latency_p99_ms=31, loss=0.21))

    result = derive(spec, running_status(), complete_job(), [pod])

    status = result.status
    assert status["phase"] == "Succeeded"
    assert status["metrics"] == {"auc": 0.934, "latency_p99_ms": 31.0, "loss": 0.21}
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Succeeded")["reason"] == "AllGatesPassed"
    validated = condition(status, "Validated")
    assert (validated["status"], validated["reason"]) == ("True", "AllGatesPassed")
    assert condition(status, "Running")["status"] == "False"
    assert condition(status, "Running")["reason"] == "Finished"
    assert status["startTime"] == START
    assert status["completionTime"] == END
    assert status["duration"] == "12m30s"
    assert result.finished
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "Succeeded")]


def test_complete_job_without_completion_time_finishes_now() -> None:
    result = derive(make_spec(), {}, complete_job(completion_time=None), [trainer_pod(metrics_message(auc=1))])

    assert result.status["completionTime"] == NOW_TEXT
    assert result.status["duration"] == "2h"


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [({"auc": 0.85, "latency_p99_ms": 30}, METRIC_BELOW_MIN), ({"auc": 0.95, "latency_p99_ms": 41}, METRIC_ABOVE_MAX)],
)
def test_complete_job_with_a_metric_out_of_bounds_is_rejected(metrics: dict[str, float], reason: str) -> None:
    spec = make_spec(validation=[{"metric": "auc", "min": 0.9}, {"metric": "latency_p99_ms", "max": 40}])

    result = derive(spec, running_status(), complete_job(), [trainer_pod(metrics_message(**metrics))])

    status = result.status
    assert status["phase"] == "Rejected"
    assert status["metrics"] == {k: float(v) for k, v in metrics.items()}
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", reason)
    validated = condition(status, "Validated")
    assert (validated["status"], validated["reason"]) == ("False", reason)
    assert status["completionTime"] == END
    assert result.finished
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "Rejected")]
    assert result.events[0].message.startswith(f"{reason}: ")


@pytest.mark.parametrize(
    "pods",
    [
        pytest.param([trainer_pod(None)], id="no-message"),
        pytest.param([trainer_pod("")], id="empty-message"),
        pytest.param([], id="no-pods"),
    ],
)
def test_complete_without_metrics_is_rejected_when_gates_need_them(pods: list[dict[str, Any]]) -> None:
    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(), pods)

    assert result.status["phase"] == "Rejected"
    assert condition(result.status, "Succeeded")["reason"] == METRICS_MISSING
    assert condition(result.status, "Validated")["status"] == "False"
    assert result.status["metrics"] == {}


def test_complete_without_metrics_succeeds_when_there_are_no_gates() -> None:
    result = derive(make_spec(), {}, complete_job(), [trainer_pod(None)])

    assert result.status["phase"] == "Succeeded"
    assert condition(result.status, "Succeeded")["reason"] == "NoValidationRules"
    assert condition(result.status, "Validated")["status"] == "True"
    assert result.status["metrics"] == {}


def test_metric_missing_from_the_message_is_rejected() -> None:
    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(), [trainer_pod(metrics_message(loss=0.2))])

    assert result.status["phase"] == "Rejected"
    assert condition(result.status, "Succeeded")["reason"] == METRICS_MISSING
    assert result.status["metrics"] == {"loss": 0.2}


@pytest.mark.parametrize("validation", [None, AUC_GATE], ids=["without-rules", "with-rules"])
@pytest.mark.parametrize("message", ["not json", '{"auc": 0.95}', '{"metrics": {"auc": "high"}}'])
def test_complete_with_a_malformed_message_is_rejected(validation: list[dict[str, Any]] | None, message: str) -> None:
    result = derive(make_spec(validation=validation), {}, complete_job(), [trainer_pod(message)])

    assert result.status["phase"] == "Rejected"
    assert condition(result.status, "Succeeded")["reason"] == INVALID_TERMINATION_MESSAGE
    assert condition(result.status, "Validated")["status"] == "False"
    assert result.status["metrics"] == {}
    assert [e.reason for e in result.events] == ["Rejected"]


def test_distributed_run_takes_rank_zeros_metrics() -> None:
    pods = [
        trainer_pod(metrics_message(auc=0.5), name=f"{NAME}-1-aaaaa", index=1, created="2026-01-01T10:00:05Z"),
        trainer_pod(metrics_message(auc=0.95), name=f"{NAME}-0-bbbbb", index=0, created="2026-01-01T10:00:00Z"),
        trainer_pod(metrics_message(auc=0.6), name=f"{NAME}-2-ccccc", index=2, created="2026-01-01T10:00:09Z"),
    ]

    result = derive(make_spec(workers=3, validation=AUC_GATE), {}, complete_job(workers=3), pods)

    assert result.status["phase"] == "Succeeded"
    assert result.status["metrics"] == {"auc": 0.95}


def test_distributed_run_without_a_rank_zero_result_has_no_metrics() -> None:
    pods = [trainer_pod(metrics_message(auc=0.95), index=1)]

    result = derive(make_spec(workers=2, validation=AUC_GATE), {}, complete_job(workers=2), pods)

    assert result.status["phase"] == "Rejected"
    assert condition(result.status, "Succeeded")["reason"] == METRICS_MISSING


def test_retried_run_takes_the_newest_succeeded_pods_metrics() -> None:
    pods = [
        trainer_pod(metrics_message(auc=0.7), name=f"{NAME}-aaaaa", created="2026-01-01T10:00:00Z"),
        trainer_pod(metrics_message(auc=0.95), name=f"{NAME}-ccccc", created="2026-01-01T10:05:00Z"),
        trainer_pod(metrics_message(auc=0.8), name=f"{NAME}-bbbbb", created="2026-01-01T10:02:00Z"),
    ]

    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(), pods)

    assert result.status["metrics"] == {"auc": 0.95}


def test_failed_pods_termination_messages_do_not_count() -> None:
    pods = [
        trainer_pod(metrics_message(auc=0.95), name=f"{NAME}-ok", created="2026-01-01T10:00:00Z"),
        trainer_pod("CUDA out of memory", name=f"{NAME}-oom", created="2026-01-01T10:09:00Z", phase="Failed"),
    ]

    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(failed=1), pods)

    assert result.status["phase"] == "Succeeded"
    assert result.status["metrics"] == {"auc": 0.95}


def test_only_the_trainer_containers_message_counts() -> None:
    pod = trainer_pod(metrics_message(auc=0.95))
    sidecar = {"name": "log-shipper", "state": {"terminated": {"exitCode": 0, "message": '{"metrics": {"auc": 0.1}}'}}}
    pod["status"]["containerStatuses"].insert(0, sidecar)

    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(), [pod])

    assert result.status["metrics"] == {"auc": 0.95}


# ---------------------------------------------------------------- plan_trainingjob: finished runs are history
TERMINAL_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "version": "7",
    "modelUri": "s3://models/churn/7",
    "jobName": NAME,
    "startTime": START,
    "completionTime": END,
    "duration": "12m30s",
    "attempts": 1,
    "metrics": {"auc": 0.95},
    # As the operator writes conditions: every one has a message (possibly empty).
    "conditions": [
        {
            "type": "Succeeded",
            "status": "True",
            "reason": "AllGatesPassed",
            "message": "auc >= 0.9 hold",
            "lastTransitionTime": END,
        },
        {
            "type": "Running",
            "status": "False",
            "reason": "Finished",
            "message": "the run finished: Succeeded",
            "lastTransitionTime": END,
        },
        {
            "type": "Validated",
            "status": "True",
            "reason": "AllGatesPassed",
            "message": "auc >= 0.9 hold",
            "lastTransitionTime": END,
        },
    ],
}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Rejected"])
@pytest.mark.parametrize(
    "observed_job",
    [None, job(active=1, ready=1), failed_job("DeadlineExceeded"), complete_job()],
    ids=["ttl-deleted", "running", "failed", "complete"],
)
def test_terminal_status_is_returned_unchanged(phase: str, observed_job: dict[str, Any] | None) -> None:
    current = {**TERMINAL_STATUS, "phase": phase}

    result = derive(make_spec(), current, observed_job, [trainer_pod(metrics_message(auc=0.1))], now=LATER)

    assert result.status == current
    assert result.events == []
    assert result.plan.create == []
    assert result.finished


def test_terminal_status_takes_the_new_observed_generation() -> None:
    current = {**TERMINAL_STATUS, "phase": "Succeeded"}
    ref = TrainingJobRef(NAME, NAMESPACE, UID, generation=2)

    result = derive(make_spec(), current, None, now=LATER, ref=ref)

    assert result.status == {**current, "observedGeneration": 2}


# ---------------------------------------------------------------- plan_trainingjob: idempotence
IDEMPOTENCE_CASES = {
    "pending-no-job": (make_spec(), None, []),
    "pending-job": (make_spec(), job(active=1), []),
    "running": (make_spec(), job(active=1, ready=1), []),
    "distributed-running": (make_spec(workers=2), job(active=2, ready=2), []),
    "failed": (make_spec(), failed_job("BackoffLimitExceeded"), []),
    "succeeded": (make_spec(validation=AUC_GATE), complete_job(), [trainer_pod(metrics_message(auc=0.95))]),
    "rejected": (make_spec(validation=AUC_GATE), complete_job(), [trainer_pod(metrics_message(auc=0.5))]),
    "invalid-message": (make_spec(), complete_job(), [trainer_pod("oops")]),
}


@pytest.mark.parametrize("case", sorted(IDEMPOTENCE_CASES))
def test_deriving_again_from_the_same_inputs_changes_nothing(case: str) -> None:
    spec, observed_job, pods = IDEMPOTENCE_CASES[case]
    first = derive(spec, {}, observed_job, pods)

    second = derive(spec, first.status, observed_job, pods, now=LATER)

    assert second.status == first.status
    assert second.events == []


def test_condition_transition_times_survive_later_reconciles() -> None:
    first = derive(make_spec(), {}, job(active=1, ready=1))

    second = derive(make_spec(), first.status, job(active=1, ready=1), now=LATER)

    for c in second.status["conditions"]:
        assert c["lastTransitionTime"] == NOW_TEXT


def test_only_changed_conditions_get_a_new_transition_time() -> None:
    pending = derive(make_spec(), {}, job(active=1), now=NOW - timedelta(minutes=1)).status

    running = derive(make_spec(), pending, job(active=1, ready=1)).status

    assert condition(running, "Succeeded")["lastTransitionTime"] == "2026-01-01T11:59:00Z"
    assert condition(running, "Running")["lastTransitionTime"] == NOW_TEXT


# ---------------------------------------------------------------- plan_trainingjob: a Job that is not ours
CONFLICT_MESSAGE = (
    "a Job named churn-v7 exists but belongs to something else; it is left alone."
    " Delete it (or rename this TrainingJob) to run."
)


def foreign_job() -> dict[str, Any]:
    """A Job of the run's name that someone else made (it even carries Perennial's labels)."""
    body = job(active=1, ready=1)
    body["metadata"]["ownerReferences"] = []
    return body


def test_a_job_of_the_runs_name_that_is_not_ours_is_a_conflict() -> None:
    result = derive(make_spec(), {}, foreign_job())

    assert result.status["phase"] == "Pending"
    succeeded = condition(result.status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == (
        "Unknown",
        "JobConflict",
        CONFLICT_MESSAGE,
    )
    assert "jobName" not in result.status
    assert result.plan.create == []
    assert result.events == []
    assert result.plan.requeue_after == 15.0


def test_a_conflict_reported_once_is_not_reported_again() -> None:
    first = derive(make_spec(), {}, foreign_job())

    again = derive(make_spec(), first.status, foreign_job(), now=LATER)

    assert again.status == first.status


def test_a_job_controlled_by_another_training_job_is_a_conflict() -> None:
    body = job(active=1, ready=1)
    body["metadata"]["ownerReferences"] = [{**REF.owner_reference(), "uid": "someone-elses-uid"}]

    assert condition(derive(make_spec(), {}, body).status, "Succeeded")["reason"] == "JobConflict"


# ---------------------------------------------------------------- record_child_outcome: what creating came to
def created(outcome: ChildOutcome, spec: TrainingJobSpec | None = None) -> Planned:
    """The plan of a run with no Job yet, after the controller reported ``outcome``."""
    planned = derive(spec or make_spec(), {}, None)
    record_child_outcome(planned.plan, outcome)
    return planned


def test_a_created_job_is_recorded_with_an_event_and_a_count() -> None:
    result = created(ChildOutcome("Job", NAME, "created"))

    status = result.status
    assert status["jobName"] == NAME
    assert status["attempts"] == 0
    assert status["phase"] == "Pending"
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == (
        "Unknown",
        "Pending",
        "the run has not finished",
    )
    running = condition(status, "Running")
    assert (running["status"], running["reason"], running["message"]) == (
        "False",
        "PodsStarting",
        "waiting for the pods to start",
    )
    assert result.events == [Event("Normal", "JobCreated", "created Job churn-v7")]
    assert result.plan.counts == [Count("training_runs_started")]


def test_recording_a_created_job_leaves_nothing_for_the_jobs_first_event_to_change() -> None:
    recorded = created(ChildOutcome("Job", NAME, "created"))

    seen = derive(make_spec(), recorded.status, job(start_time=None), now=LATER)

    assert seen.status == recorded.status


def test_an_adopted_job_is_recorded_without_a_second_event_or_count() -> None:
    result = created(ChildOutcome("Job", NAME, "unchanged"))

    assert result.status["jobName"] == NAME
    assert result.status["phase"] == "Pending"
    assert result.events == []
    assert result.plan.counts == []


@pytest.mark.parametrize("result_", ["created", "unchanged"])
def test_the_headless_service_records_nothing(result_: Any) -> None:
    before = derive(make_spec(workers=2), {}, None).status

    result = created(ChildOutcome("Service", NAME, result_), make_spec(workers=2))

    assert result.status == before
    assert "jobName" not in result.status
    assert result.events == []
    assert result.plan.counts == []


def test_a_conflict_outcome_waits_as_job_conflict() -> None:
    outcome = ChildOutcome("Job", NAME, "conflict", "a Job named churn-v7 exists and Perennial did not create it")

    result = created(outcome)

    status = result.status
    assert status["phase"] == "Pending"
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == (
        "Unknown",
        "JobConflict",
        CONFLICT_MESSAGE,
    )
    assert "jobName" not in status
    assert result.events == []
    assert result.plan.counts == []
    assert result.plan.requeue_after == 15.0
    assert not result.finished


def test_a_conflict_on_the_headless_service_names_the_service() -> None:
    result = created(ChildOutcome("Service", NAME, "conflict"), make_spec(workers=2))

    succeeded = condition(result.status, "Succeeded")
    assert (succeeded["reason"], succeeded["message"]) == (
        "JobConflict",
        "a Service named churn-v7 exists but belongs to something else; it is left alone."
        " Delete it (or rename this TrainingJob) to run.",
    )


REFUSAL = (
    'the API server refused the Job churn-v7: Job.batch "churn-v7" is invalid:'
    ' spec.template.spec.containers[0].resources.requests: Invalid value: "8": must be less than or equal'
    " to cpu limit of 4"
)


def test_a_refused_job_ends_the_run_failed_with_the_apis_message() -> None:
    result = created(ChildOutcome("Job", NAME, "refused", REFUSAL))

    status = result.status
    assert status["phase"] == "Failed"
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == ("False", "JobRefused", REFUSAL)
    running = condition(status, "Running")
    assert (running["status"], running["reason"], running["message"]) == (
        "False",
        "Finished",
        "the run finished: Failed",
    )
    assert condition_or_none(status, "Validated") is None
    assert status["completionTime"] == NOW_TEXT
    assert "jobName" not in status
    assert "duration" not in status
    assert "metrics" not in status
    assert result.finished
    assert result.events == [Event("Warning", "Failed", f"JobRefused: {REFUSAL}")]
    assert result.plan.counts == []


def test_a_refused_headless_service_ends_the_run_failed_too() -> None:
    message = 'the API server refused the Service churn-v7: Service "churn-v7" is invalid: metadata.name'

    result = created(ChildOutcome("Service", NAME, "refused", message), make_spec(workers=2))

    assert result.status["phase"] == "Failed"
    assert condition(result.status, "Succeeded")["reason"] == "JobRefused"


def test_a_refused_run_is_history() -> None:
    refused = created(ChildOutcome("Job", NAME, "refused", REFUSAL))

    again = derive(make_spec(), refused.status, None, now=LATER)

    assert again.status == refused.status
    assert again.plan.create == []
    assert again.events == []


# ---------------------------------------------------------------- result pods: only the Job's own count
def test_pods_of_the_job_are_the_ones_it_controls() -> None:
    own = trainer_pod(None, name=f"{NAME}-own")
    labelled_by_a_user = trainer_pod(None, name="impostor", owners=())
    of_another_job = trainer_pod(None, name=f"{NAME}-old", owners=[job_owner("uid-of-an-earlier-job")])

    kept = pods_of_job([labelled_by_a_user, own, of_another_job], job())

    assert [p["metadata"]["name"] for p in kept] == [f"{NAME}-own"]


def test_a_job_without_a_uid_has_no_pods() -> None:
    body = job()
    del body["metadata"]["uid"]

    assert pods_of_job([trainer_pod(None)], body) == []


def test_a_pod_someone_labelled_cannot_decide_the_runs_metrics() -> None:
    pods = [
        trainer_pod(metrics_message(auc=0.5), name=f"{NAME}-own", created="2026-01-01T10:00:00Z"),
        trainer_pod(metrics_message(auc=0.99), name="impostor", created="2026-01-01T10:09:00Z", owners=()),
    ]

    result = derive(make_spec(validation=AUC_GATE), {}, complete_job(), pods)

    assert result.status["phase"] == "Rejected"
    assert result.status["metrics"] == {"auc": 0.5}


# ---------------------------------------------------------------- an invalid spec
def test_a_spec_the_model_refuses_fails_the_run_as_invalid_spec() -> None:
    spec = read_spec({"image": IMAGE})  # no output
    assert isinstance(spec, InvalidSpec)

    result = derive(spec, {}, None)

    assert result.status["phase"] == "Failed"
    succeeded = condition(result.status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "InvalidSpec")
    assert "output" in succeeded["message"]
    assert result.plan.create == []
    assert result.events == []


def test_a_valid_spec_reads_as_the_spec() -> None:
    spec = read_spec({"image": IMAGE, "output": {"modelUri": "s3://m/{version}"}})

    assert isinstance(spec, TrainingJobSpec)
    assert spec.workers == 1


# ---------------------------------------------------------------- typed status
def test_the_plans_status_is_typed_with_whole_second_times() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, 987654, tzinfo=UTC)

    status = derive(make_spec(), running_status(), failed_job("DeadlineExceeded"), now=now).plan.status

    assert status.phase == "Failed"
    assert status.start_time == datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert status.completion_time == datetime(2026, 1, 1, 10, 12, 30, tzinfo=UTC)
    assert [c.last_transition_time for c in status.conditions or []] == [
        datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC),
    ]


def test_a_run_that_ends_now_ends_on_a_whole_second() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, 987654, tzinfo=UTC)

    result = derive(make_spec(), running_status(), None, now=now)

    assert result.plan.status.completion_time == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert result.status["completionTime"] == NOW_TEXT
    assert result.status["duration"] == "2h"


def test_the_stored_status_is_not_changed_by_planning() -> None:
    stored = TrainingJobStatus.model_validate(running_status())
    before = stored.model_copy(deep=True)

    plan_trainingjob(ObservedRun(REF, make_spec(), stored, complete_job(), [trainer_pod(None)], NOW))

    assert stored == before


# ---------------------------------------------------------------- the start deadline (issue 15, case 7)
CREATED = "2026-01-01T11:59:00Z"  # the Job's creationTimestamp: 60 s before NOW
UNSCHEDULABLE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def waiting_pod(
    *,
    name: str = f"{NAME}-x7k2q",
    index: int | None = None,
    created: str = CREATED,
    waiting: Mapping[str, str] | None = None,
    scheduled: Mapping[str, str] | None = None,
    owners: Sequence[Mapping[str, Any]] = (job_owner(),),
) -> dict[str, Any]:
    """A Pending pod of the Job whose trainer never started: ``waiting`` is the kubelet's
    container state, ``scheduled`` the scheduler's PodScheduled=False condition."""
    pod = trainer_pod(None, name=name, index=index, created=created, owners=owners)
    status: dict[str, Any] = {"phase": "Pending"}
    if scheduled is not None:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", **scheduled}]
    if waiting is not None:
        status["containerStatuses"] = [
            {"name": "trainer", "image": IMAGE, "ready": False, "restartCount": 0, "state": {"waiting": dict(waiting)}}
        ]
    pod["status"] = status
    return pod


def running_pod(*, name: str = f"{NAME}-r2d2x", index: int | None = None) -> dict[str, Any]:
    pod = trainer_pod(None, name=name, index=index, created=CREATED)
    pod["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "trainer",
                "image": IMAGE,
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": CREATED}},
            }
        ],
    }
    return pod


def unstarted_job(*, workers: int = 1, **fields: Any) -> dict[str, Any]:
    """A Job created at CREATED (60 s before NOW) whose ``workers`` pods are active, none ready."""
    return job(active=fields.pop("active", workers), created=CREATED, workers=workers, **fields)


def unschedulable(**fields: Any) -> dict[str, Any]:
    return waiting_pod(scheduled={"reason": "Unschedulable", "message": UNSCHEDULABLE}, **fields)


def image_pull_backoff(**fields: Any) -> dict[str, Any]:
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}
    return waiting_pod(waiting=waiting, **fields)


def observed_run(
    spec: TrainingJobSpec,
    observed_job: Mapping[str, Any] | None,
    *,
    current: Mapping[str, Any] | None = None,
    now: datetime = NOW,
) -> ObservedRun:
    stored = TrainingJobStatus.model_validate(current or {})
    return ObservedRun(REF, spec, stored, observed_job, (), now)


def test_a_run_not_started_is_looked_at_again_exactly_at_its_start_deadline() -> None:
    result = derive(make_spec(startDeadline="90s"), {}, unstarted_job(), now=NOW)

    assert result.status["phase"] == "Pending"
    assert result.plan.requeue_after == 30.0  # created 60 s ago, deadline 90 s
    assert result.plan.delete == []
    assert not result.finished


def test_without_spec_start_deadline_the_operators_default_applies() -> None:
    assert derive(make_spec(), {}, unstarted_job()).plan.requeue_after == 540.0  # 10m - 60s
    five_minutes = derive(make_spec(), {}, unstarted_job(), default_start_deadline=timedelta(minutes=5))
    assert five_minutes.plan.requeue_after == 240.0


def test_the_requeue_counts_from_the_exact_moment_not_the_whole_second() -> None:
    now = NOW + timedelta(milliseconds=250)

    assert derive(make_spec(startDeadline="90s"), {}, unstarted_job(), now=now).plan.requeue_after == 29.75


@pytest.mark.parametrize(
    ("pod", "words"),
    [
        (unschedulable(), ["Unschedulable", UNSCHEDULABLE]),
        (image_pull_backoff(), ["ImagePullBackOff", f'Back-off pulling image "{IMAGE}"']),
        (waiting_pod(waiting={"reason": "ErrImagePull", "message": "pull access denied"}), ["ErrImagePull"]),
        (waiting_pod(waiting={"reason": "CreateContainerConfigError", "message": 'secret "s3" not found'}), ["s3"]),
        (waiting_pod(), ["Pending"]),
    ],
    ids=["unschedulable", "image-pull-backoff", "err-image-pull", "config-error", "no-reason-yet"],
)
def test_a_run_not_started_by_its_deadline_fails_with_the_pods_reason(pod: dict[str, Any], words: list[str]) -> None:
    result = derive(make_spec(startDeadline="60s"), running_status(), unstarted_job(), [pod], now=NOW)

    assert result.status["phase"] == "Failed"
    assert result.finished
    succeeded = condition(result.status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", START_DEADLINE_EXCEEDED)
    message = succeeded["message"]
    assert message.startswith("the trainer did not start within 1m of the Job's creation (spec.startDeadline 60s): ")
    assert f"pod {pod['metadata']['name']}" in message
    for word in words:
        assert word in message
    assert condition(result.status, "Running")["status"] == "False"
    assert result.status["completionTime"] == NOW_TEXT
    assert "metrics" not in result.status
    assert condition_or_none(result.status, "Validated") is None
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "Failed")]
    assert result.events[0].message == f"{START_DEADLINE_EXCEEDED}: {message}"
    # Its Job goes, so the pod stops waiting (and retrying); nothing is created again.
    assert result.plan.delete == [ChildRef("jobs", NAME)]
    assert result.plan.create == []
    assert result.plan.requeue_after is None


def test_a_run_past_the_operators_default_names_the_setting_that_set_it() -> None:
    result = derive(make_spec(), {}, unstarted_job(), [unschedulable()], default_start_deadline=timedelta(seconds=5))

    message = condition(result.status, "Succeeded")["message"]
    assert "within 5s of the Job's creation" in message
    assert "PERENNIAL_TRAINING_START_DEADLINE" in message
    assert "spec.startDeadline overrides it" in message


def test_the_deadline_is_inclusive_and_a_second_is_a_second() -> None:
    created = NOW - timedelta(seconds=1)
    body = job(active=1, created=created.strftime("%Y-%m-%dT%H:%M:%SZ"))
    spec = make_spec(startDeadline="1s")

    assert derive(spec, {}, body, [unschedulable()], now=NOW - timedelta(milliseconds=1)).status["phase"] == "Pending"
    assert derive(spec, {}, body, [unschedulable()], now=NOW).status["phase"] == "Failed"


def test_a_job_that_created_no_pods_fails_with_where_to_look() -> None:
    result = derive(make_spec(startDeadline="30s"), {}, unstarted_job(), [])

    message = condition(result.status, "Succeeded")["message"]
    assert condition(result.status, "Succeeded")["reason"] == START_DEADLINE_EXCEEDED
    assert f"kubectl describe job {NAME}" in message


def test_the_newest_waiting_pod_tells_why_and_the_others_are_counted() -> None:
    older = unschedulable(name=f"{NAME}-old", created="2026-01-01T11:59:00Z")
    newer = image_pull_backoff(name=f"{NAME}-new", created="2026-01-01T11:59:30Z")

    message = condition(
        derive(make_spec(startDeadline="30s"), {}, unstarted_job(), [older, newer]).status, "Succeeded"
    )["message"]

    assert f"pod {NAME}-new: ImagePullBackOff" in message
    assert "(and 1 more pod(s))" in message


def test_a_trainer_that_started_although_the_job_does_not_say_so_yet_is_not_failed() -> None:
    # The Job controller reports `ready` a moment after the kubelet started the container.
    result = derive(make_spec(startDeadline="30s"), {}, unstarted_job(), [running_pod()])

    assert result.status["phase"] == "Pending"
    assert not result.finished
    assert (result.plan.delete, result.plan.requeue_after) == ([], None)


def test_a_trainer_that_ran_and_failed_counts_as_started_while_its_retry_waits() -> None:
    ran = trainer_pod("boom", name=f"{NAME}-first", phase="Failed", created=CREATED)
    retry = unschedulable(name=f"{NAME}-retry")

    result = derive(make_spec(startDeadline="30s"), {}, unstarted_job(failed=1), [ran, retry])

    # Retries are the backoff limit's and activeDeadline's business, not the start deadline's.
    assert not result.finished
    assert result.plan.delete == []


def test_a_pod_that_failed_before_its_trainer_ran_did_not_start() -> None:
    rejected = waiting_pod(name=f"{NAME}-rejected")
    rejected["status"] = {"phase": "Failed", "reason": "OutOfcpu", "message": "Node didn't have enough resource: cpu"}

    assert not trainer_started(rejected)
    result = derive(make_spec(startDeadline="30s"), {}, unstarted_job(failed=1), [rejected])
    assert condition(result.status, "Succeeded")["reason"] == START_DEADLINE_EXCEEDED
    assert "OutOfcpu: Node didn't have enough resource: cpu" in condition(result.status, "Succeeded")["message"]


def test_a_start_error_without_a_start_time_did_not_start() -> None:
    pod = waiting_pod()
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {"name": "trainer", "state": {"terminated": {"exitCode": 128, "reason": "StartError"}}},
        ],
    }

    assert not trainer_started(pod)


def test_a_running_pod_of_another_job_does_not_start_this_run() -> None:
    foreign = running_pod()
    foreign["metadata"]["ownerReferences"] = [job_owner("uid-of-an-earlier-job")]

    result = derive(make_spec(startDeadline="30s"), {}, unstarted_job(), [foreign, unschedulable()])

    assert condition(result.status, "Succeeded")["reason"] == START_DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    "counts",
    [{"ready": 1}, {"succeeded": 1, "active": 0}],
    ids=["ready", "succeeded"],
)
def test_a_job_reporting_its_worker_started_needs_no_pods_and_no_deadline(counts: dict[str, int]) -> None:
    body = unstarted_job(**counts)
    observed = observed_run(make_spec(startDeadline="30s"), body)

    assert not pods_needed(observed)
    result = derive(make_spec(startDeadline="30s"), {}, body)
    assert not result.finished
    assert result.plan.requeue_after is None


def test_an_outcome_already_decided_is_not_a_start_failure() -> None:
    finishing = job(
        failed=1,
        created=CREATED,
        conditions=[job_condition("FailureTarget", "BackoffLimitExceeded", FAILURE_MESSAGES["BackoffLimitExceeded"])],
    )

    result = derive(make_spec(startDeadline="30s"), {}, finishing, [unschedulable()])

    assert not result.finished
    assert result.plan.delete == []


def test_a_distributed_run_needs_every_worker_started() -> None:
    spec = make_spec(workers=2, startDeadline="30s")
    rank_0 = running_pod(name=f"{NAME}-0-abcde", index=0)
    rank_1 = unschedulable(name=f"{NAME}-1-fghij", index=1)

    result = derive(spec, {}, unstarted_job(workers=2, active=2, ready=1), [rank_0, rank_1])

    assert result.status["phase"] == "Failed"
    message = condition(result.status, "Succeeded")["message"]
    assert message.startswith("1 of 2 workers started within 30s of the Job's creation (spec.startDeadline 30s): ")
    assert f"pod {NAME}-1-fghij: Unschedulable" in message
    assert result.plan.delete == [ChildRef("jobs", NAME)]


def test_a_distributed_run_counts_completed_indexes_as_started() -> None:
    spec = make_spec(workers=2, startDeadline="30s")
    body = unstarted_job(workers=2, active=1, ready=0, succeeded=1, completed_indexes="0")

    result = derive(spec, {}, body, [running_pod(name=f"{NAME}-1-fghij", index=1)])

    assert not result.finished


def test_a_distributed_run_with_every_worker_ready_is_settled() -> None:
    body = unstarted_job(workers=3, active=3, ready=3)

    assert not pods_needed(observed_run(make_spec(workers=3, startDeadline="30s"), body))
    assert derive(make_spec(workers=3, startDeadline="30s"), {}, body).plan.requeue_after is None


def test_pods_are_listed_for_the_start_deadline_only_once_it_passed() -> None:
    spec = make_spec(startDeadline="90s")

    assert not pods_needed(observed_run(spec, unstarted_job(), now=NOW))
    assert pods_needed(observed_run(spec, unstarted_job(), now=NOW + timedelta(seconds=30)))


@pytest.mark.parametrize(
    ("observed_job", "current", "needed"),
    [
        (None, {}, False),  # nothing created yet
        (None, {"jobName": NAME, "phase": "Running"}, True),  # gone before the run finished
        (complete_job(), {}, True),  # the result
        (failed_job("BackoffLimitExceeded"), {}, True),
        (job(active=1, ready=1), {}, False),
        (job(active=1), {}, False),  # no creationTimestamp: no deadline to check
        (complete_job(), {"phase": "Succeeded"}, False),  # history
    ],
    ids=["no-job", "job-gone", "complete", "failed", "running", "pending-no-created", "finished"],
)
def test_pods_are_listed_only_when_they_decide(
    observed_job: dict[str, Any] | None, current: dict[str, Any], needed: bool
) -> None:
    assert pods_needed(observed_run(make_spec(), observed_job, current=current)) is needed


def test_pods_of_a_job_that_is_not_ours_are_not_listed() -> None:
    foreign = complete_job()
    foreign["metadata"]["ownerReferences"] = []

    assert not pods_needed(observed_run(make_spec(), foreign))


def test_a_job_without_a_creation_time_has_no_start_deadline() -> None:
    result = derive(make_spec(startDeadline="1s"), {}, job(active=1), [unschedulable()])

    assert not result.finished
    assert result.plan.requeue_after is None


def test_a_run_failed_at_its_start_deadline_is_history_that_still_deletes_its_job() -> None:
    failed = derive(make_spec(startDeadline="30s"), {}, unstarted_job(), [unschedulable()])

    # The status was written, the operator died before deleting the Job: the next pass deletes it.
    again = derive(make_spec(startDeadline="30s"), failed.status, unstarted_job(), now=LATER)

    assert again.status == failed.status
    assert again.events == []
    assert again.plan.delete == [ChildRef("jobs", NAME)]
    # Once gone (or going), nothing more.
    gone = derive(make_spec(startDeadline="30s"), failed.status, None, now=LATER)
    assert (gone.plan.delete, gone.events, gone.status) == ([], [], failed.status)
    going = unstarted_job()
    going["metadata"]["deletionTimestamp"] = NOW_TEXT
    assert derive(make_spec(startDeadline="30s"), failed.status, going, now=LATER).plan.delete == []


# ---------------------------------------------------------------- the Job kept until its result is read (case 8)
@pytest.mark.parametrize(
    ("observed_job", "pods", "phase"),
    [
        (complete_job(), [trainer_pod(metrics_message(auc=0.95))], "Succeeded"),
        (complete_job(), [trainer_pod(metrics_message(auc=0.5))], "Rejected"),
        (failed_job("BackoffLimitExceeded"), [], "Failed"),
    ],
    ids=["succeeded", "rejected", "failed"],
)
def test_a_finished_job_gets_the_runs_ttl_once_its_result_is_in_the_status(
    observed_job: dict[str, Any], pods: list[dict[str, Any]], phase: str
) -> None:
    result = derive(make_spec(validation=AUC_GATE, ttlAfterFinished="0"), running_status(), observed_job, pods)

    assert result.status["phase"] == phase
    assert result.plan.job_ttl_seconds == 0
    assert result.plan.delete == []


def test_a_finished_run_whose_job_was_not_handed_over_hands_it_over_on_the_next_pass() -> None:
    spec = make_spec(validation=AUC_GATE, ttlAfterFinished="1h")
    done = derive(spec, running_status(), complete_job(), [trainer_pod(metrics_message(auc=0.95))])

    # The operator died between the status write and the Job's TTL: the next pass sets it, from the cache.
    again = derive(spec, done.status, complete_job(), now=LATER)

    assert again.status == done.status
    assert again.events == []
    assert again.plan.job_ttl_seconds == 3600


@pytest.mark.parametrize(
    "observed_job",
    [complete_job(ttl=86400), None],
    ids=["ttl-already-set", "job-gone"],
)
def test_a_handed_over_or_gone_job_is_left_alone(observed_job: dict[str, Any] | None) -> None:
    current = {**TERMINAL_STATUS, "phase": "Succeeded"}

    result = derive(make_spec(), current, observed_job, now=LATER)

    assert (result.plan.job_ttl_seconds, result.plan.delete) == (None, [])


def test_a_finished_job_of_someone_else_is_left_alone() -> None:
    foreign = complete_job()
    foreign["metadata"]["ownerReferences"] = []

    result = derive(make_spec(), {**TERMINAL_STATUS, "phase": "Succeeded"}, foreign, now=LATER)

    assert (result.plan.job_ttl_seconds, result.plan.delete) == (None, [])


def test_a_running_job_needs_no_ttl_yet() -> None:
    assert derive(make_spec(), {}, job(active=1, ready=1)).plan.job_ttl_seconds is None


def test_a_succeeded_run_keeps_its_metrics_when_its_job_is_deleted_afterwards() -> None:
    spec = make_spec(validation=AUC_GATE)
    done = derive(spec, running_status(), complete_job(), [trainer_pod(metrics_message(auc=0.95))])

    after = derive(spec, done.status, None, now=LATER)

    assert after.status == done.status
    assert after.status["metrics"] == {"auc": 0.95}
    assert after.events == []


def test_a_job_deleted_before_its_result_was_read_gives_its_pods_result() -> None:
    pod = trainer_pod(metrics_message(auc=0.95))  # the garbage collector has not deleted it yet

    result = derive(make_spec(validation=AUC_GATE), running_status(), None, [pod])

    assert result.status["phase"] == "Succeeded"
    assert result.status["metrics"] == {"auc": 0.95}
    assert result.status["completionTime"] == END  # when the trainer finished
    assert condition(result.status, "Validated")["status"] == "True"
    assert result.plan.create == []


def test_a_deleted_distributed_job_gives_a_result_only_if_every_worker_succeeded() -> None:
    spec = make_spec(workers=2, validation=AUC_GATE)
    rank_0 = trainer_pod(metrics_message(auc=0.95), name=f"{NAME}-0-a", index=0)
    rank_1 = trainer_pod(None, name=f"{NAME}-1-b", index=1)
    rank_1_running = running_pod(name=f"{NAME}-1-b", index=1)

    assert derive(spec, running_status(), None, [rank_0, rank_1]).status["phase"] == "Succeeded"
    half = derive(spec, running_status(), None, [rank_0, rank_1_running])
    assert condition(half.status, "Succeeded")["reason"] == JOB_DELETED


def test_a_job_deleted_with_its_pods_before_its_result_was_read_fails_saying_so() -> None:
    result = derive(make_spec(), running_status(), None, [])

    succeeded = condition(result.status, "Succeeded")
    assert succeeded["reason"] == JOB_DELETED
    assert "before the operator read the run's result" in succeeded["message"]
    assert "create a new TrainingJob" in succeeded["message"]


def test_only_pods_the_deleted_job_controlled_can_give_its_result() -> None:
    ours = trainer_pod(metrics_message(auc=0.95), name="ours")
    other = trainer_pod(metrics_message(auc=0.99), name="other", owners=[{**job_owner(), "name": "another-job"}])
    labelled = trainer_pod(metrics_message(auc=0.99), name="labelled", owners=())

    assert [p["metadata"]["name"] for p in pods_of_deleted_job([other, ours, labelled], NAME)] == ["ours"]
    result = derive(make_spec(validation=AUC_GATE), running_status(), None, [other, labelled])
    assert condition(result.status, "Succeeded")["reason"] == JOB_DELETED


def test_a_suspended_job_is_queued_not_stuck() -> None:
    # A queue (Kueue) suspends the Job until it admits it: no deadline runs meanwhile.
    body = unstarted_job(active=0)
    body["spec"]["suspend"] = True
    body["status"]["conditions"] = [job_condition("Suspended", "JobSuspended", "Job suspended", at=CREATED)]

    result = derive(make_spec(startDeadline="30s"), {}, body, [])

    assert not result.finished
    assert result.plan.requeue_after is None
    assert not pods_needed(observed_run(make_spec(startDeadline="30s"), body))


def test_a_resumed_job_gets_its_deadline_from_its_resumption() -> None:
    resumed_at = "2026-01-01T11:59:50Z"  # 10 s before NOW; created 60 s before
    body = unstarted_job(start_time=resumed_at)
    body["status"]["conditions"] = [
        {**job_condition("Suspended", "JobResumed", "Job resumed", at=resumed_at), "status": "False"}
    ]

    waiting = derive(make_spec(startDeadline="30s"), {}, body)
    assert waiting.plan.requeue_after == 20.0

    failed = derive(make_spec(startDeadline="30s"), {}, body, [unschedulable()], now=NOW + timedelta(seconds=20))
    message = condition(failed.status, "Succeeded")["message"]
    assert message.startswith("the trainer did not start within 30s of the Job's resumption (spec.startDeadline 30s)")
