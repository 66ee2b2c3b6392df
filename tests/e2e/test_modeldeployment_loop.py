"""The continuous-training loop end to end: train, gate, promote, roll out, roll back, retrain.

The ModelDeployment controller runs against the full local cluster: the Job controller,
the scheduler and kwok run the training pods, the Deployment controller and kwok run the
serving pods. Training results come from pod annotations (CONTRIBUTING.md, "Simulation contract");
a runtime kwok Stage keeps one version's serving pods from ever becoming Ready. The
operator runs as its own process (`perennial run`), exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
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

NAME = "churn"
TRAINER = "registry.example/churn-trainer:2.3.0"
SERVER = "registry.example/churn-server:1.9.0"
URI_TEMPLATE = "s3://models/{namespace}/{model}/{version}"
RETRAIN_REQUEST = "perennial.dev/retrain-request"
VERSION_LABEL = "perennial.dev/version"


# ---------------------------------------------------------------- manifests
def sim(auc: float, duration: str) -> dict[str, str]:
    """Pod annotations: the trainer runs ``duration`` and reports ``auc``."""
    return {
        "sim.perennial.dev/result": json.dumps({"metrics": {"auc": auc}}),
        "sim.perennial.dev/duration": duration,
    }


def mdep(
    *,
    auc: float = 0.93,
    duration: str = "1s",
    dataset: str = "2026-11-20",
    replicas: int = 1,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """The ModelDeployment ``churn``: a validation gate auc >= 0.9, a 10s progress deadline."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "training": {
                "image": TRAINER,
                "dataset": {"uri": f"s3://data/churn/{dataset}/", "version": dataset},
                "output": {"modelUri": URI_TEMPLATE},
                "validation": [{"metric": "auc", "min": 0.9}],
                "podAnnotations": sim(auc, duration),
            },
            "serving": {"image": SERVER, "replicas": replicas},
            "rollout": {"progressDeadline": "10s"},
            **spec,
        },
    }
    if annotations:
        body["metadata"]["annotations"] = annotations
    return body


def model_uri(namespace: str, version: str) -> str:
    return f"s3://models/{namespace}/{NAME}/{version}"


# ---------------------------------------------------------------- reading state
def status_of(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = get_custom(api, namespace, "modeldeployments", NAME).get("status") or {}
    return status


def wait_mdep(
    api: client.ApiClient,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 90,
) -> dict[str, Any]:
    return wait_for_status(api, namespace, "modeldeployments", NAME, predicate, what=what, timeout=timeout)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """A condition, or {} (for predicates; ``condition`` asserts it exists)."""
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == type_), {})


def record(status: dict[str, Any], version: str) -> dict[str, Any]:
    """The versions[] entry of one version, or {}."""
    return next((dict(r) for r in status.get("versions") or [] if r.get("version") == version), {})


def state_of(version: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: record(s, version).get("state") == state


def served(version: str) -> Callable[[dict[str, Any]], bool]:
    """``version`` serves, the rollout is over and Ready is True."""

    def predicate(status: dict[str, Any]) -> bool:
        return (
            status.get("servingVersion") == version
            and status.get("phase") == "Serving"
            and not status.get("rollout")
            and cond(status, "Ready").get("status") == "True"
            and record(status, version).get("state") == "Serving"
        )

    return predicate


def deployment(api: client.ApiClient, namespace: str) -> client.V1Deployment:
    return client.AppsV1Api(api).read_namespaced_deployment(NAME, namespace)


def deployment_exists(api: client.ApiClient, namespace: str) -> bool:
    try:
        deployment(api, namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def template_version(api: client.ApiClient, namespace: str) -> str:
    return str(deployment(api, namespace).spec.template.metadata.labels.get(VERSION_LABEL))


def server_env(api: client.ApiClient, namespace: str) -> dict[str, str]:
    container = deployment(api, namespace).spec.template.spec.containers[0]
    return {e.name: str(e.value) for e in container.env or []}


def deployment_available(api: client.ApiClient, namespace: str) -> bool:
    status = client.AppsV1Api(api).read_namespaced_deployment_status(NAME, namespace).status
    return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])


def training_jobs(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """This namespace's TrainingJobs by name."""
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")
    return {item["metadata"]["name"]: item for item in listed["items"]}


def training_job_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_custom(api, namespace, "trainingjobs", name).get("status") or {}
    return status


def mdep_events(api: client.ApiClient, namespace: str) -> list[tuple[str, str, str]]:
    return events_for(api, namespace, NAME, kind="ModelDeployment")


def metric(operator: operator_support.RunningOperator, name: str, labels: str = "") -> float:
    """One sample of the operator's /metrics (0 when absent)."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(operator.metrics_text())
    return float(match.group(1)) if match else 0.0


def kubectl_patch_spec(cluster: ClusterInfo, namespace: str, spec: dict[str, Any]) -> None:
    cluster.kubectl_run("patch", "-n", namespace, f"mdep/{NAME}", "--type=merge", "-p", json.dumps({"spec": spec}))


# ---------------------------------------------------------------- a version whose serving pods never get Ready
@pytest.fixture
def unready_serving_v2(cluster: ClusterInfo, namespace: str) -> Iterator[str]:
    """A runtime kwok Stage: version "2" serving pods in this namespace run but never become Ready."""
    name = f"unready-v2-{namespace}"[:63].rstrip("-")
    stage = kwok.unready_serving(name, "2", namespace)
    cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(stage))
    yield name
    cluster.kubectl_run("delete", "stage", name, "--wait=false", "--ignore-not-found")


# ---------------------------------------------------------------- 1. initial training
def test_initial_training_serves_version_1_and_nothing_before(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep(replicas=2, duration="3s"))

    # While v1 trains, nothing is served: no Deployment runs a model that does not exist.
    training = wait_mdep(api_client, namespace, state_of("1", "Training"), what="v1 training", timeout=30)
    assert training["latestVersion"] == "1"
    no_deployment = not deployment_exists(api_client, namespace)
    still_training = status_of(api_client, namespace)
    assert record(still_training, "1")["state"] == "Training", "v1 finished before the check; lengthen its run"
    assert no_deployment, "a Deployment exists before any version passed its gates"
    assert "servingVersion" not in still_training
    assert condition(still_training, "Ready")["status"] == "False"

    status = wait_mdep(api_client, namespace, served("1"), what="v1 served")
    assert status["servingVersion"] == "1"
    assert status["latestVersion"] == "1"
    assert status["phase"] == "Serving"
    assert condition(status, "Ready")["status"] == "True"
    assert status["servingModelUri"] == model_uri(namespace, "1")
    assert len(status["versions"]) == 1
    v1 = status["versions"][0]
    assert v1["version"] == "1"
    assert v1["state"] == "Serving"
    assert v1["metrics"] == {"auc": 0.93}
    assert v1["modelUri"] == model_uri(namespace, "1")
    assert v1["trainingJob"] == "churn-v1"
    assert v1["trigger"]["reason"] == "Initial"
    assert v1["decision"]["result"] == "Promoted"
    assert v1["promotedAt"]
    assert v1["dataset"] == {"uri": "s3://data/churn/2026-11-20/", "version": "2026-11-20"}
    assert status["lastRetrain"]["reason"] == "Initial"

    wait_until(lambda: deployment_available(api_client, namespace), timeout=60, what="Deployment churn Available")
    served_by = deployment(api_client, namespace)
    assert served_by.spec.replicas == 2
    assert served_by.spec.template.metadata.labels[VERSION_LABEL] == "1"
    assert served_by.metadata.owner_references[0].kind == "ModelDeployment"
    assert server_env(api_client, namespace)["MODEL_URI"] == model_uri(namespace, "1")
    service = client.CoreV1Api(api_client).read_namespaced_service(NAME, namespace)
    assert [(p.name, p.port) for p in service.spec.ports] == [("http", 8080)]

    def printed() -> dict[str, str] | None:
        lines = perennial_crds.kubectl_run("get", "mdep", NAME, "-n", namespace).stdout.splitlines()
        row = dict(zip(re.split(r"\s{2,}", lines[0].strip()), re.split(r"\s{2,}", lines[1].strip()), strict=False))
        return row if row.get("READY") == "2/2" else None

    row = wait_until(printed, timeout=30, what="kubectl get mdep showing READY 2/2")
    assert (row["NAME"], row["SERVING"], row["LATEST"], row["PHASE"], row["READY"]) == (
        NAME,
        "1",
        "1",
        "Serving",
        "2/2",
    )


# ---------------------------------------------------------------- 2. spec change
def test_spec_change_trains_and_rolls_out_a_better_version(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    promotion = {"requireImprovement": {"metric": "auc"}}
    apply(perennial_crds, namespace, mdep(auc=0.93, promotion=promotion))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    apply(perennial_crds, namespace, mdep(auc=0.95, dataset="2026-11-27", promotion=promotion))
    status = wait_mdep(api_client, namespace, served("2"), what="v2 served")

    assert status["latestVersion"] == "2"
    assert record(status, "1")["state"] == "Retired"
    v2 = record(status, "2")
    assert v2["trainingJob"] == "churn-v2"
    assert v2["trigger"]["reason"] == "SpecChange"
    assert v2["dataset"]["version"] == "2026-11-27"
    assert v2["metrics"] == {"auc": 0.95}
    assert v2["modelUri"] == model_uri(namespace, "2")
    assert v2["promotedAt"]
    decision = v2["decision"]
    assert decision["result"] == "Promoted"
    assert decision.get("comparedTo") == "1"
    # The evidence: the metric, the challenger's and the champion's values.
    assert "auc" in decision["reason"]
    assert "0.95" in decision["reason"]
    assert "0.93" in decision["reason"]
    assert status["servingModelUri"] == model_uri(namespace, "2")
    assert status["lastRetrain"]["reason"] == "SpecChange"

    wait_until(lambda: template_version(api_client, namespace) == "2", timeout=30, what="Deployment on v2")
    assert server_env(api_client, namespace)["MODEL_URI"] == model_uri(namespace, "2")
    wait_until(lambda: deployment_available(api_client, namespace), timeout=60, what="Deployment churn Available")
    assert training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v2"}


# ---------------------------------------------------------------- 3. rejection and history
def test_rejected_candidate_leaves_serving_untouched_and_history_is_trimmed(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    retraining = {"historyLimit": 1}
    apply(perennial_crds, namespace, mdep(auc=0.93, retraining=retraining))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    apply(perennial_crds, namespace, mdep(auc=0.5, dataset="2026-11-27", retraining=retraining))
    status = wait_mdep(api_client, namespace, state_of("2", "Rejected"), what="v2 rejected")
    assert status["servingVersion"] == "1"
    assert record(status, "1")["state"] == "Serving"
    assert record(status, "2")["decision"]["result"] == "NotPromoted"
    assert record(status, "2")["metrics"] == {"auc": 0.5}
    assert template_version(api_client, namespace) == "1"
    assert server_env(api_client, namespace)["MODEL_URI"] == model_uri(namespace, "1")
    assert condition(status, "Ready")["status"] == "True"
    # One finished run besides the serving one: nothing to trim yet.
    assert training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v2"}

    apply(perennial_crds, namespace, mdep(auc=0.6, dataset="2026-11-28", retraining=retraining))
    status = wait_mdep(api_client, namespace, state_of("3", "Rejected"), what="v3 rejected")
    assert status["servingVersion"] == "1"
    assert template_version(api_client, namespace) == "1"

    # historyLimit 1: the newest finished run (v3) is kept, the older one (v2) goes; the
    # serving version's run (v1) is kept besides.
    wait_until(
        lambda: training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v3"},
        timeout=30,
        what="churn-v2 deleted, churn-v1 and churn-v3 kept",
    )
    final = status_of(api_client, namespace)
    assert final["servingVersion"] == "1"
    assert record(final, "1")["state"] == "Serving"
    assert template_version(api_client, namespace) == "1"


# ---------------------------------------------------------------- 4. rollback
def test_version_that_never_becomes_available_is_rolled_back_without_a_retrain_loop(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
    unready_serving_v2: str,
) -> None:
    rolled_back = 'perennial_rollouts_total{result="RolledBack"}'
    rollbacks_before = metric(operator_subprocess, rolled_back)
    apply(perennial_crds, namespace, mdep(auc=0.93))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    apply(perennial_crds, namespace, mdep(auc=0.95, dataset="2026-11-27"))
    rolling = wait_mdep(api_client, namespace, lambda s: bool(s.get("rollout")), what="v2 rolling out", timeout=60)
    if rolling.get("phase") == "Rolling":  # still under way when read: v1 serves meanwhile
        assert rolling["servingVersion"] == "1"
        assert condition(rolling, "Ready")["status"] == "True"
        assert condition(rolling, "Progressing")["status"] == "True"

    status = wait_mdep(api_client, namespace, state_of("2", "RolledBack"), what="v2 rolled back", timeout=60)
    assert status["servingVersion"] == "1"
    assert status["latestVersion"] == "2"
    assert record(status, "1")["state"] == "Serving"
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
    assert status["phase"] == "Degraded"
    assert condition(status, "Ready")["status"] == "True"  # v1 still serves and is available
    assert condition(status, "Progressing")["status"] == "False"
    assert template_version(api_client, namespace) == "1"
    assert server_env(api_client, namespace)["MODEL_URI"] == model_uri(namespace, "1")
    wait_until(
        lambda: any(t == "Warning" and r == "RolledBack" for t, r, _ in mdep_events(api_client, namespace)),
        timeout=30,
        what="a Warning Event RolledBack",
    )
    assert metric(operator_subprocess, rolled_back) == rollbacks_before + 1

    # No retrain loop on a version that failed its rollout.
    def quiet() -> bool:
        return status_of(api_client, namespace).get("latestVersion") == "2" and training_jobs(
            api_client, namespace
        ).keys() == {"churn-v1", "churn-v2"}

    holds_for(quiet, seconds=10, what="latestVersion 2 and TrainingJobs churn-v1, churn-v2 only")
    final = status_of(api_client, namespace)
    assert final["servingVersion"] == "1"
    assert record(final, "2")["state"] == "RolledBack"


# ---------------------------------------------------------------- 5. manual promotion and pins
def test_manual_promotion_waits_for_a_pin_and_an_unknown_pin_keeps_serving(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep(auc=0.93, promotion={"policy": "Manual"}))
    status = wait_mdep(
        api_client,
        namespace,
        lambda s: state_of("1", "Candidate")(s) and not s.get("activeTrainingJob"),
        what="v1 a Candidate",
    )
    assert record(status, "1")["decision"]["result"] == "Candidate"
    assert "servingVersion" not in status
    assert condition(status, "Ready")["status"] == "False"
    assert not deployment_exists(api_client, namespace), "Manual policy, no pin: nothing may be deployed"

    kubectl_patch_spec(perennial_crds, namespace, {"pinnedVersion": "1"})
    status = wait_mdep(api_client, namespace, served("1"), what="pinned v1 served")
    assert status["servingModelUri"] == model_uri(namespace, "1")
    assert template_version(api_client, namespace) == "1"
    assert server_env(api_client, namespace)["MODEL_URI"] == model_uri(namespace, "1")

    kubectl_patch_spec(perennial_crds, namespace, {"pinnedVersion": "9"})
    status = wait_mdep(
        api_client,
        namespace,
        lambda s: cond(s, "Degraded").get("reason") == "PinnedVersionUnknown",
        what="Degraded PinnedVersionUnknown",
        timeout=30,
    )
    degraded = condition(status, "Degraded")
    assert degraded["status"] == "True"
    assert "9" in degraded["message"]
    assert status["servingVersion"] == "1"
    assert record(status, "1")["state"] == "Serving"
    assert template_version(api_client, namespace) == "1"
    assert deployment_available(api_client, namespace)


def test_unknown_pin_is_reported_with_an_event(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep(auc=0.93))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    kubectl_patch_spec(perennial_crds, namespace, {"pinnedVersion": "9"})
    wait_mdep(
        api_client,
        namespace,
        lambda s: cond(s, "Degraded").get("reason") == "PinnedVersionUnknown",
        what="Degraded PinnedVersionUnknown",
        timeout=30,
    )

    def about_the_pin() -> list[tuple[str, str, str]]:
        return [
            (t, r, m)
            for t, r, m in mdep_events(api_client, namespace)
            if r == "PinnedVersionUnknown" or re.search(r"\b9\b", m)
        ]

    wait_until(about_the_pin, timeout=15, what="an Event about the unknown pinnedVersion 9")


# ---------------------------------------------------------------- 6. cooldown: automatic retrains only
@pytest.mark.timeout(300)
def test_the_initial_training_starts_no_cooldown_and_a_manual_request_runs_during_one(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    # api.md: retraining.cooldown is the least time between two automatic (Drift, Schedule)
    # retrains; the Initial training does not start it. So the schedule's first firing after
    # v1 retrains at once, its next firing falls in that retrain's cooldown, and a manual
    # request still runs.
    # Start early in a minute, so v1 has finished when the schedule first fires.
    wait_until(lambda: datetime.now(UTC).second < 45, timeout=20, what="the first 45s of a minute")
    retraining = {"schedule": "* * * * *", "cooldown": "1h"}
    suppressed_metric = 'perennial_retrains_suppressed_total{reason="Schedule",suppression="Cooldown"}'
    suppressed_before = metric(operator_subprocess, suppressed_metric)
    apply(perennial_crds, namespace, mdep(auc=0.93, retraining=retraining))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")

    status = wait_mdep(api_client, namespace, lambda s: bool(record(s, "2")), what="v2 on schedule", timeout=80)
    assert record(status, "2")["trigger"]["reason"] == "Schedule"
    assert status["lastRetrain"]["reason"] == "Schedule"
    second_due = status["nextScheduledRetrain"]

    status = wait_mdep(
        api_client,
        namespace,
        lambda s: cond(s, "RetrainSuppressed").get("status") == "True",
        what="the next firing suppressed",
        timeout=80,
    )
    suppressed = condition(status, "RetrainSuppressed")
    assert suppressed["reason"] == "Cooldown", suppressed
    assert status["nextScheduledRetrain"] > second_due
    assert status["latestVersion"] == "2"
    assert training_jobs(api_client, namespace).keys() == {"churn-v1", "churn-v2"}
    wait_until(  # Events follow the status write
        lambda: any(r == "RetrainSuppressed" for _, r, _ in mdep_events(api_client, namespace)),
        timeout=30,
        what="the RetrainSuppressed Event",
    )
    assert metric(operator_subprocess, suppressed_metric) == suppressed_before + 1

    perennial_crds.kubectl_run("annotate", "-n", namespace, f"mdep/{NAME}", f"{RETRAIN_REQUEST}=r1")
    status = wait_mdep(api_client, namespace, lambda s: bool(record(s, "3")), what="v3 started", timeout=30)
    assert record(status, "3")["trigger"]["reason"] == "Manual"
    assert record(status, "3")["trainingJob"] == "churn-v3"
    assert status["handledRetrainRequest"] == "r1"
    assert status["lastRetrain"]["reason"] == "Manual"
    status = wait_mdep(api_client, namespace, served("3"), what="v3 served")
    assert status["handledRetrainRequest"] == "r1"


# ---------------------------------------------------------------- 7. racing triggers
def test_racing_triggers_give_consecutive_versions_and_one_training_at_a_time(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep(auc=0.93, duration="6s"))
    wait_for_status(
        api_client,
        namespace,
        "trainingjobs",
        "churn-v1",
        lambda s: s.get("phase") == "Running",
        what="v1 running",
        timeout=30,
    )
    # A spec change and a manual request at once, while v1 trains.
    apply(
        perennial_crds,
        namespace,
        mdep(auc=0.95, duration="2s", dataset="2026-11-27", annotations={RETRAIN_REQUEST: "r1"}),
    )
    status = wait_mdep(
        api_client,
        namespace,
        lambda s: cond(s, "RetrainSuppressed").get("status") == "True" or bool(record(s, "2")),
        what="the triggers suppressed while v1 trains",
        timeout=30,
    )
    suppressed = condition(status, "RetrainSuppressed")
    assert (suppressed["status"], suppressed["reason"]) == ("True", "TrainingInProgress"), suppressed
    assert record(status, "1")["state"] == "Training"
    assert training_jobs(api_client, namespace).keys() == {"churn-v1"}
    wait_until(
        lambda: any(r == "RetrainSuppressed" for _, r, _ in mdep_events(api_client, namespace)),
        timeout=30,
        what="an Event RetrainSuppressed",
    )

    status = wait_mdep(api_client, namespace, served("2"), what="v2 served")
    v2 = record(status, "2")
    assert v2["trigger"]["reason"] == "Manual"
    assert v2["dataset"]["version"] == "2026-11-27"  # the Manual run also answers the spec change
    assert status["handledRetrainRequest"] == "r1"

    def settled() -> bool:
        current = status_of(api_client, namespace)
        return current.get("latestVersion") == "2" and training_jobs(api_client, namespace).keys() == {
            "churn-v1",
            "churn-v2",
        }

    holds_for(settled, seconds=10, what="no v3 after v2")
    final = status_of(api_client, namespace)
    assert [r["version"] for r in final["versions"]] == ["1", "2"]

    v1_run = training_job_status(api_client, namespace, "churn-v1")
    v2_run = training_job_status(api_client, namespace, "churn-v2")
    assert v1_run["startTime"] <= v1_run["completionTime"] <= v2_run["startTime"] <= v2_run["completionTime"]


# ---------------------------------------------------------------- 8. restart
def test_operator_killed_mid_training_resumes_without_duplicates(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    with operator_support.subprocess_operator(perennial_crds, [namespace], tmp_path / "first.log") as first:
        assert first.pid is not None
        apply(perennial_crds, namespace, mdep(auc=0.93, duration="4s"))
        wait_until(lambda: "churn-v1" in training_jobs(api_client, namespace), timeout=30, what="TrainingJob churn-v1")
        # The run is under way: its Job exists (the trainer runs 4s).
        batch = client.BatchV1Api(api_client)
        wait_until(lambda: batch.read_namespaced_job("churn-v1", namespace), timeout=30, what="Job churn-v1")
        os.kill(first.pid, signal.SIGKILL)
    assert training_job_status(api_client, namespace, "churn-v1").get("phase") not in ("Succeeded", "Rejected")

    with operator_support.subprocess_operator(perennial_crds, [namespace], tmp_path / "second.log"):
        status = wait_mdep(api_client, namespace, served("1"), what="v1 served after the restart")
        holds_for(
            lambda: training_jobs(api_client, namespace).keys() == {"churn-v1"},
            seconds=3,
            what="one TrainingJob",
        )
        final = status_of(api_client, namespace)

    assert status["latestVersion"] == "1"
    assert [r["version"] for r in final["versions"]] == ["1"]
    assert final["servingVersion"] == "1"
    assert record(final, "1")["trigger"]["reason"] == "Initial"
    assert list(training_jobs(api_client, namespace)) == ["churn-v1"]
    jobs = batch.list_namespaced_job(namespace).items
    assert [j.metadata.name for j in jobs] == ["churn-v1"]
    deployments = client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items
    assert [d.metadata.name for d in deployments] == [NAME]
    assert deployments[0].spec.template.metadata.labels[VERSION_LABEL] == "1"


def test_a_training_job_created_just_before_a_crash_is_adopted_not_duplicated(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    # The window between creating a TrainingJob and recording it in status: the first
    # operator creates churn-v1 and is killed; the status it recorded is then removed, so
    # the ModelDeployment looks exactly as if the crash came before the status patch.
    custom = client.CustomObjectsApi(api_client)
    with operator_support.subprocess_operator(perennial_crds, [namespace], tmp_path / "first.log") as first:
        assert first.pid is not None
        apply(perennial_crds, namespace, mdep(auc=0.93, duration="4s"))
        wait_until(lambda: "churn-v1" in training_jobs(api_client, namespace), timeout=30, what="TrainingJob churn-v1")
        os.kill(first.pid, signal.SIGKILL)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "modeldeployments", NAME, {"status": None})
    assert status_of(api_client, namespace) == {}

    with operator_support.subprocess_operator(perennial_crds, [namespace], tmp_path / "second.log"):
        wait_mdep(api_client, namespace, served("1"), what="the unrecorded v1 adopted and served")
        holds_for(
            lambda: training_jobs(api_client, namespace).keys() == {"churn-v1"},
            seconds=3,
            what="one TrainingJob",
        )
        final = status_of(api_client, namespace)

    assert final["latestVersion"] == "1"
    assert [r["version"] for r in final["versions"]] == ["1"]
    assert record(final, "1")["trainingJob"] == "churn-v1"
    assert record(final, "1")["trigger"]["reason"] == "Initial"
    assert [j.metadata.name for j in client.BatchV1Api(api_client).list_namespaced_job(namespace).items] == ["churn-v1"]


def test_a_serving_change_updates_the_service_and_deployment_without_retraining(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, mdep(replicas=1, duration="1s"))
    wait_mdep(api_client, namespace, served("1"), what="v1 served")
    core = client.CoreV1Api(api_client)
    cluster_ip = core.read_namespaced_service("churn", namespace).spec.cluster_ip

    perennial_crds.kubectl_run(
        "patch", "-n", namespace, "mdep/churn", "--type=merge", "-p", '{"spec": {"serving": {"port": 9090}}}'
    )

    def moved() -> bool:
        service = core.read_namespaced_service("churn", namespace)
        container = deployment(api_client, namespace).spec.template.spec.containers[0]
        return bool(service.spec.ports[0].port == 9090 and container.ports[0].container_port == 9090)

    wait_until(moved, timeout=60, what="Service and Deployment on port 9090")
    assert core.read_namespaced_service("churn", namespace).spec.cluster_ip == cluster_ip
    assert list(training_jobs(api_client, namespace)) == ["churn-v1"]  # serving is not training: no retrain
    assert status_of(api_client, namespace)["servingVersion"] == "1"
