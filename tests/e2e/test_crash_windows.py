"""Issue 15, cases 3 and 4: a crash (or a lasting API error) between creating a TrainingJob
and recording it in the ModelDeployment's status, for every trigger.

The window is made real, not simulated: a ValidatingAdmissionPolicy makes the API server
refuse every write of this model's status, so the operator creates the trigger's
TrainingJob and then cannot record it. It keeps failing (no second TrainingJob may come
of the retries: case 3), and is then killed (SIGKILL, or SIGTERM mid-pass). The policy is
removed and a fresh operator starts: it must find exactly one TrainingJob for the
trigger, and restore what the trigger consumed (the handled request, the spec
fingerprint, the time of the last automatic retrain, the drift answer) from the
annotations the TrainingJob carries since its creation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from perennial.domain.timeutil import format_time
from tests.e2e.test_modeldeployment_loop import (
    NAME,
    RETRAIN_REQUEST,
    kubectl_patch_spec,
    mdep,
    record,
    served,
    status_of,
    training_jobs,
    wait_mdep,
)
from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import GROUP, VERSION, apply, get_custom
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.timeout(240)

TRIGGER_ANNOTATION_PREFIX = "perennial.dev/"


@contextmanager
def status_writes_refused(cluster: ClusterInfo, api: client.ApiClient, namespace: str) -> Iterator[None]:
    """The API server refuses every write of ModelDeployment status in ``namespace`` (422)."""
    name = f"refuse-mdep-status-{uuid.uuid4().hex[:8]}"
    admission = client.AdmissionregistrationV1Api(api)
    admission.create_validating_admission_policy(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": [VERSION],
                            "operations": ["UPDATE"],
                            "resources": ["modeldeployments/status"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "status writes are refused by the test"}],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        }
    )

    def refused() -> bool:
        # A server-side dry run goes through admission like a real write and changes nothing.
        result = cluster.kubectl_run(
            "patch",
            "-n",
            namespace,
            f"mdep/{NAME}",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"ready": "probe"}}',
            "--dry-run=server",
            check=False,
        )
        return result.returncode != 0 and "refused by the test" in result.stderr

    try:
        wait_until(refused, timeout=30, what="the admission policy refusing status writes")
        yield
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)

    wait_until(lambda: not refused(), timeout=30, what="status writes accepted again")


def annotations_of(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    return dict(get_custom(api, namespace, "trainingjobs", name)["metadata"].get("annotations") or {})


def crash_after_creating(
    cluster: ClusterInfo,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    trigger: Any,
    new_job: str,
    how: signal.Signals,
    prometheus_url: str = "",
) -> None:
    """With status writes refused: start the operator, fire ``trigger``, wait for
    ``new_job``, see no other TrainingJob come of the retries, then stop it with ``how``."""
    before = set(training_jobs(api, namespace))
    with (
        status_writes_refused(cluster, api, namespace),
        operator_support.subprocess_operator(
            cluster, [namespace], tmp_path / f"crash-{new_job}.log", prometheus_url
        ) as running,
    ):
        assert running.pid is not None
        trigger()
        wait_until(lambda: new_job in training_jobs(api, namespace), timeout=90, what=f"TrainingJob {new_job}")
        # The status write keeps failing and the work queue keeps retrying the pass: no
        # retry may create a second TrainingJob for the same trigger (case 3).
        holds_for(
            lambda: set(training_jobs(api, namespace)) == before | {new_job},
            seconds=6,
            what=f"only {new_job} while the status cannot be written",
        )
        os.kill(running.pid, how)
        if how == signal.SIGTERM:
            wait_until(lambda: _exited(running.pid), timeout=30, what="the operator stopped on SIGTERM")
    assert status_of(api, namespace).get("latestVersion") != new_job.rsplit("-v", 1)[1], "the status was written"


def _exited(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie until the fixture reaps it: it has stopped running.
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return state.startswith("Z") or not state


def recover(
    cluster: ClusterInfo, api: client.ApiClient, namespace: str, tmp_path: Path, version: str, prometheus_url: str = ""
) -> dict[str, Any]:
    """A fresh operator, status writable: the unrecorded run is adopted, served, and no other starts."""
    expected = {f"{NAME}-v{n}" for n in range(1, int(version) + 1)}
    with operator_support.subprocess_operator(
        cluster, [namespace], tmp_path / f"recover-{version}.log", prometheus_url
    ):
        wait_mdep(api, namespace, served(version), what=f"v{version} adopted and served", timeout=90)
        holds_for(
            lambda: set(training_jobs(api, namespace)) == expected,
            seconds=4,
            what=f"exactly the TrainingJobs {sorted(expected)}",
        )
        return status_of(api, namespace)


def serve_v1(cluster: ClusterInfo, api: client.ApiClient, namespace: str, tmp_path: Path, **spec: Any) -> None:
    with operator_support.subprocess_operator(cluster, [namespace], tmp_path / "v1.log"):
        apply(cluster, namespace, mdep(**spec))
        wait_mdep(api, namespace, served("1"), what="v1 served")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_initial_run_created_before_a_crash_is_adopted_once(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path, how: signal.Signals
) -> None:
    apply(perennial_crds, namespace, mdep())  # exists before the operator does: the policy can match it
    crash_after_creating(perennial_crds, api_client, namespace, tmp_path, lambda: None, f"{NAME}-v1", how)

    final = recover(perennial_crds, api_client, namespace, tmp_path, "1")
    assert record(final, "1")["trigger"]["reason"] == "Initial"
    assert (
        final["trainingSpecHash"]
        == annotations_of(api_client, namespace, f"{NAME}-v1")[f"{TRIGGER_ANNOTATION_PREFIX}training-spec-hash"]
    )


def test_manual_request_is_handled_once_across_a_crash(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    serve_v1(perennial_crds, api_client, namespace, tmp_path)
    request = f"ticket-{uuid.uuid4().hex[:6]} ünïcode ✓"

    def ask() -> None:
        perennial_crds.kubectl_run("annotate", "-n", namespace, f"mdep/{NAME}", f"{RETRAIN_REQUEST}={request}")

    crash_after_creating(perennial_crds, api_client, namespace, tmp_path, ask, f"{NAME}-v2", signal.SIGKILL)

    final = recover(perennial_crds, api_client, namespace, tmp_path, "2")
    assert record(final, "2")["trigger"]["reason"] == "Manual"
    assert final["handledRetrainRequest"] == request


def test_spec_change_is_consumed_once_across_a_crash(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    serve_v1(perennial_crds, api_client, namespace, tmp_path)
    first_hash = status_of(api_client, namespace)["trainingSpecHash"]

    def change() -> None:
        kubectl_patch_spec(perennial_crds, namespace, {"training": {"dataset": {"version": "2026-11-29"}}})

    crash_after_creating(perennial_crds, api_client, namespace, tmp_path, change, f"{NAME}-v2", signal.SIGKILL)

    final = recover(perennial_crds, api_client, namespace, tmp_path, "2")
    assert record(final, "2")["trigger"]["reason"] == "SpecChange"
    assert final["trainingSpecHash"] != first_hash
    assert (
        final["trainingSpecHash"]
        == annotations_of(api_client, namespace, f"{NAME}-v2")[f"{TRIGGER_ANNOTATION_PREFIX}training-spec-hash"]
    )


def test_drift_request_is_answered_once_across_a_crash(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    serve_v1(perennial_crds, api_client, namespace, tmp_path, retraining={"cooldown": "1s"})
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": "churn-drift"},
        "spec": {
            "targetRef": {"name": NAME},
            "interval": "10s",
            "metrics": [{"name": "constant", "query": "vector(1)", "max": 0.5}],
        },
    }

    def drift() -> None:
        apply(perennial_crds, namespace, policy)

    url = perennial_crds.prometheus_url
    crash_after_creating(perennial_crds, api_client, namespace, tmp_path, drift, f"{NAME}-v2", signal.SIGKILL, url)
    final = recover(perennial_crds, api_client, namespace, tmp_path, "2", url)

    assert record(final, "2")["trigger"]["reason"] == "Drift"
    assert final["lastAutomaticRetrain"]
    (answer,) = final["driftRequests"]
    assert (answer["policy"], answer["result"], answer["trainingJob"]) == ("churn-drift", "Started", f"{NAME}-v2")
    policy_status = get_custom(api_client, namespace, "driftpolicies", "churn-drift")["status"]
    assert policy_status["triggerCount"] == 1


def test_scheduled_run_is_consumed_once_across_a_crash(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    # The schedule's next firing must be in status before status writes are refused, so
    # it fires once, at a minute at least 20s away: time to put the policy in place.
    fires_at = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
    schedule = f"{fires_at.minute} {fires_at.hour} * * *"
    serve_v1(perennial_crds, api_client, namespace, tmp_path, retraining={"cooldown": "1s", "schedule": schedule})
    wait_mdep(api_client, namespace, lambda s: bool(s.get("nextScheduledRetrain")), what="the next firing recorded")

    crash_after_creating(perennial_crds, api_client, namespace, tmp_path, lambda: None, f"{NAME}-v2", signal.SIGKILL)

    final = recover(perennial_crds, api_client, namespace, tmp_path, "2")
    assert record(final, "2")["trigger"]["reason"] == "Schedule"
    assert final["lastAutomaticRetrain"]
    assert final["nextScheduledRetrain"] > format_time(fires_at)  # tomorrow's, not the one consumed
