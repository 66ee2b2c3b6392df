"""Training runs that go wrong outside the trainer: pods that never start, Jobs deleted early.

The Job controller, the TTL-after-finished controller, the scheduler and kwok run the
pods. A pod that never starts is real behaviour here: the scheduler leaves a pod whose
nodeSelector no node has Pending (Unschedulable); a runtime kwok Stage shows an image
the kubelet cannot pull (ImagePullBackOff) for pods annotated
``sim.perennial.dev/image-pull: fail`` in the test's namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support import kwok
from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import GROUP, VERSION, apply, condition, events_for, get_custom, wait_for_status
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.timeout(180)

TRAINER = "registry.example/churn-trainer:2.3.0"
NO_SUCH_POOL = {"perennial.dev/test-pool": "no-such-pool"}
IMAGE_PULL_FAILS = {"sim.perennial.dev/image-pull": "fail"}


def run(name: str, *, sim: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "churn",
            "image": TRAINER,
            "output": {"modelUri": "s3://models/{model}/{version}"},
            "validation": [{"metric": "auc", "min": 0.9}],
            "podAnnotations": sim,
            **spec,
        },
    }


def result(auc: float, duration: str = "1s") -> dict[str, str]:
    return {"sim.perennial.dev/result": json.dumps({"metrics": {"auc": auc}}), "sim.perennial.dev/duration": duration}


def finished(status: dict[str, Any]) -> bool:
    return status.get("phase") in ("Succeeded", "Failed", "Rejected")


def read_job(api: client.ApiClient, namespace: str, name: str) -> client.V1Job | None:
    try:
        return client.BatchV1Api(api).read_namespaced_job(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def pods_of(api: client.ApiClient, namespace: str, run_name: str) -> list[client.V1Pod]:
    selector = f"perennial.dev/training-job={run_name}"
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def job_complete(job: client.V1Job | None) -> bool:
    return job is not None and any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])


@pytest.fixture
def image_pull_fails(cluster: ClusterInfo, namespace: str) -> Iterator[str]:
    """A runtime kwok Stage: annotated pods in this namespace wait in ImagePullBackOff for ever."""
    name = f"image-pull-fails-{namespace}"[:63].rstrip("-")
    status_template = (
        "containerStatuses:\n"
        "{{ range .spec.containers }}\n"
        "- image: {{ .image | Quote }}\n"
        "  name: {{ .name | Quote }}\n"
        "  ready: false\n"
        "  started: false\n"
        "  restartCount: 0\n"
        "  state:\n"
        "    waiting:\n"
        "      reason: ImagePullBackOff\n"
        '      message: {{ printf "Back-off pulling image %s" .image | Quote }}\n'
        "{{ end }}\n"
        "phase: Pending\n"
    )
    stage = kwok.pod_stage(
        name,
        status_template,
        expressions=[
            kwok.in_namespace(namespace),
            {"key": '.metadata.annotations["sim.perennial.dev/image-pull"]', "operator": "In", "values": ["fail"]},
        ],
    )
    cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(stage))
    yield name
    cluster.kubectl_run("delete", "stage", name, "--wait=false", "--ignore-not-found")


# ---------------------------------------------------------------- case 7: pods that never start
def test_an_unschedulable_run_fails_at_the_operators_start_deadline(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    """No startDeadline in the spec: the operator's default (PERENNIAL_TRAINING_START_DEADLINE) bounds it."""
    with operator_support.in_process(
        perennial_crds, [namespace], extra_env={"PERENNIAL_TRAINING_START_DEADLINE": "5s"}
    ):
        apply(perennial_crds, namespace, run("churn-v1", sim=result(0.95), nodeSelector=NO_SUCH_POOL))
        status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v1", finished, what="finished")

        assert status["phase"] == "Failed"
        succeeded = condition(status, "Succeeded")
        assert (succeeded["status"], succeeded["reason"]) == ("False", "StartDeadlineExceeded")
        assert "within 5s" in succeeded["message"]
        assert "Unschedulable" in succeeded["message"], succeeded["message"]
        assert "PERENNIAL_TRAINING_START_DEADLINE" in succeeded["message"]
        assert status["jobName"] == "churn-v1"
        assert "metrics" not in status
        # The Job goes, so its pod stops waiting for a node; the run is not rerun.
        wait_until(lambda: read_job(api_client, namespace, "churn-v1") is None, timeout=30, what="the Job deleted")
        wait_until(lambda: not pods_of(api_client, namespace, "churn-v1"), timeout=30, what="its pod deleted")
        wait_until(
            lambda: ("Warning", "Failed") in [(t, r) for t, r, _ in events_for(api_client, namespace, "churn-v1")],
            timeout=30,
            what="the Failed Event",
        )
        holds_for(
            lambda: (
                read_job(api_client, namespace, "churn-v1") is None
                and get_custom(api_client, namespace, "trainingjobs", "churn-v1")["status"] == status
            ),
            seconds=3,
            what="the failed run stays failed, its Job not recreated",
        )


@pytest.mark.usefixtures("operator_in_process")
def test_an_unpullable_image_fails_at_the_runs_start_deadline_with_the_kubelets_reason(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, image_pull_fails: str
) -> None:
    apply(perennial_crds, namespace, run("churn-v2", sim=IMAGE_PULL_FAILS, startDeadline="4s"))
    waiting = wait_until(
        lambda: [p for p in pods_of(api_client, namespace, "churn-v2") if p.status.container_statuses],
        timeout=30,
        what="the pod waiting for its image",
    )
    assert waiting[0].status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"

    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v2", finished, what="finished")
    assert status["phase"] == "Failed"
    succeeded = condition(status, "Succeeded")
    assert succeeded["reason"] == "StartDeadlineExceeded"
    assert "ImagePullBackOff" in succeeded["message"]
    assert TRAINER in succeeded["message"]
    assert "spec.startDeadline 4s" in succeeded["message"]
    wait_until(lambda: read_job(api_client, namespace, "churn-v2") is None, timeout=30, what="the Job deleted")


@pytest.mark.usefixtures("operator_in_process")
def test_a_distributed_run_with_one_worker_that_cannot_start_fails_at_its_deadline(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    """One rank runs, the other never gets a node: the gang cannot train, so the deadline ends it."""
    # Required anti-affinity between the run's own pods across one topology domain (every
    # node is linux): whichever pod the scheduler places first, the other stays Unschedulable.
    one_per_cluster = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"perennial.dev/training-job": "churn-dist"}},
                    "topologyKey": "kubernetes.io/os",
                }
            ]
        }
    }
    body = run("churn-dist", sim=result(0.95, duration="10m"), workers=2, startDeadline="6s", affinity=one_per_cluster)
    apply(perennial_crds, namespace, body)
    wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "churn-dist",
        lambda s: s.get("phase") == "Running",
        what="one rank running",
    )

    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-dist", finished, what="finished")
    assert status["phase"] == "Failed"
    succeeded = condition(status, "Succeeded")
    assert succeeded["reason"] == "StartDeadlineExceeded"
    assert "1 of 2 workers" in succeeded["message"], succeeded["message"]
    assert "Unschedulable" in succeeded["message"]
    # The Job goes with both pods: the rank that ran waits for its peer no longer.
    wait_until(lambda: read_job(api_client, namespace, "churn-dist") is None, timeout=30, what="the Job deleted")
    wait_until(lambda: not pods_of(api_client, namespace, "churn-dist"), timeout=30, what="its pods deleted")


# ---------------------------------------------------------------- case 7: the model is not blocked
def test_a_model_trains_again_after_a_run_that_never_started(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    model = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "training": {
                "image": TRAINER,
                "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
                "validation": [{"metric": "auc", "min": 0.9}],
                "podAnnotations": result(0.93),
                "nodeSelector": NO_SUCH_POOL,
                "startDeadline": "4s",
            },
            "serving": {"image": "registry.example/churn-server:1.9.0"},
        },
    }
    apply(perennial_crds, namespace, model)

    def version(status: dict[str, Any], number: str) -> dict[str, Any]:
        return next((dict(r) for r in status.get("versions") or [] if r.get("version") == number), {})

    failed = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: version(s, "1").get("state") == "Failed" and not s.get("activeTrainingJob"),
        what="version 1 failed, no training active",
    )
    assert "StartDeadlineExceeded" in version(failed, "1")["decision"]["reason"]

    # The user fixes the spec: a spec change retrains at once and the new version serves.
    perennial_crds.kubectl_run(
        "patch",
        "-n",
        namespace,
        "mdep/churn",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"training": {"nodeSelector": None}}}),
    )
    serving = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "2",
        what="version 2 serving",
    )
    assert version(serving, "2")["state"] == "Serving"
    assert version(serving, "1")["state"] == "Failed"


# ---------------------------------------------------------------- case 8: Jobs deleted early
def test_a_result_is_kept_when_the_job_is_deleted_as_soon_as_it_finishes(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, operator_in_process: object
) -> None:
    apply(perennial_crds, namespace, run("churn-v3", sim=result(0.95), ttlAfterFinished="0"))
    status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v3", finished, what="finished")

    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    assert status["metrics"] == {"auc": 0.95}
    # Once read, the Job is the TTL controller's again: ttlAfterFinished 0 deletes it at once.
    wait_until(lambda: read_job(api_client, namespace, "churn-v3") is None, timeout=30, what="the Job deleted")
    wait_until(lambda: not pods_of(api_client, namespace, "churn-v3"), timeout=30, what="its pod deleted")
    holds_for(
        lambda: get_custom(api_client, namespace, "trainingjobs", "churn-v3")["status"] == status,
        seconds=3,
        what="the Succeeded status with its metrics",
    )


def test_a_result_survives_the_operator_being_down_longer_than_the_ttl(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient
) -> None:
    with operator_support.in_process(perennial_crds, [namespace]):
        apply(perennial_crds, namespace, run("churn-v4", sim=result(0.96, duration="3s"), ttlAfterFinished="1s"))
        wait_for_status(
            api_client,
            namespace,
            "trainingjobs",
            "churn-v4",
            lambda s: s.get("jobName") == "churn-v4" and not finished(s),
            what="the Job created",
        )
    # The operator is down: the run finishes, and its TTL (1s) passes while nobody reads the result.
    wait_until(lambda: job_complete(read_job(api_client, namespace, "churn-v4")), timeout=60, what="the Job complete")
    assert not finished(get_custom(api_client, namespace, "trainingjobs", "churn-v4")["status"])
    holds_for(
        lambda: (
            job_complete(read_job(api_client, namespace, "churn-v4"))
            and bool(pods_of(api_client, namespace, "churn-v4"))
        ),
        seconds=3,
        what="the finished Job (and the pod holding its result) kept while the result is unread",
    )

    with operator_support.in_process(perennial_crds, [namespace]):
        status = wait_for_status(api_client, namespace, "trainingjobs", "churn-v4", finished, what="finished")
        assert status["phase"] == "Succeeded", condition(status, "Succeeded")
        assert status["metrics"] == {"auc": 0.96}
        wait_until(lambda: read_job(api_client, namespace, "churn-v4") is None, timeout=30, what="the Job deleted")
