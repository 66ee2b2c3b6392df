"""Two replicas, one leader: the chart's HA setup with real processes on the real API server.

Each replica is ``perennial run`` as the operator's ServiceAccount, with the leader
election settings of the chart's Deployment (``manifests/deployment.yaml``) and one Lease
name shared by both, as the chart's two pods share theirs. The local cluster's pods are
simulated, so the replicas run as processes here; what they do through the API server is
exactly what the pods would do. Takeover times are measured by ``benchmarks/failover.py``;
here the deadlines are only how long a test waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.operator import RunningOperator, api_requests, leader_gauge, subprocess_operator
from tests.support.resources import (
    GROUP,
    VERSION,
    apply,
    get_custom,
    request_retrain,
    simulated_model,
    wait_for_status,
)
from tests.support.waiting import StopWaitingError, wait_until

MODEL = "churn"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
pytestmark = pytest.mark.timeout(300)


@contextmanager
def replicas(cluster: ClusterInfo, namespace: str, tmp_path: Path, count: int = 2) -> Iterator[list[RunningOperator]]:
    """``count`` replicas started together, campaigning for one Lease; yields once one leads."""
    env = {**delivery.leader_election_env(), "PERENNIAL_LEASE_NAME": f"ha-{uuid.uuid4().hex[:10]}"}
    with ExitStack() as stack:
        running = [
            stack.enter_context(
                subprocess_operator(cluster, [namespace], tmp_path / f"replica-{i}.log", extra_env=env, standby=True)
            )
            for i in range(count)
        ]
        wait_until(lambda: leaders(running) == 1, timeout=60, what="one replica to lead")
        yield running


def leaders(running: list[RunningOperator]) -> int:
    count = 0
    for replica in running:
        with contextlib.suppress(OSError):  # a killed replica answers nothing
            count += leader_gauge(replica.metrics_text()) == 1
    return count


def writes(replica: RunningOperator) -> float:
    return sum(n for (method, _), n in api_requests(replica.metrics_text()).items() if method in WRITES)


def trainingjobs(api: client.ApiClient, namespace: str) -> list[str]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")
    return sorted(item["metadata"]["name"] for item in listed["items"])


def serving(version: str) -> Any:
    def predicate(status: dict[str, Any]) -> bool:
        return status.get("servingVersion") == version and status.get("phase") == "Serving"

    return predicate


def test_two_replicas_started_together_make_exactly_one_trainingjob_per_trigger(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    with replicas(perennial_crds, namespace, tmp_path) as running:
        (leader,) = [r for r in running if r.leading()]
        (standby,) = [r for r in running if r is not leader]
        apply(perennial_crds, namespace, simulated_model(MODEL, cooldown="1s"))
        wait_for_status(api_client, namespace, "modeldeployments", MODEL, serving("1"), what="v1", timeout=90)
        for version in ("2", "3"):
            request_retrain(perennial_crds, namespace, MODEL, f"ask-{version}")
            wait_for_status(api_client, namespace, "modeldeployments", MODEL, serving(version), what=f"v{version}")
            # One trigger, one TrainingJob, whichever replica saw the request.
            assert trainingjobs(api_client, namespace) == [f"{MODEL}-v{v}" for v in range(1, int(version) + 1)]
            assert leaders(running) == 1
        # The standby kept its caches warm and wrote nothing at all.
        assert writes(standby) == 0
        assert writes(leader) > 0
        assert leader.leading()
        assert not standby.leading()


def test_a_killed_leader_is_replaced_mid_training_and_the_loop_completes_without_duplicates(
    perennial_crds: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    with replicas(perennial_crds, namespace, tmp_path) as running:
        (leader,) = [r for r in running if r.leading()]
        (standby,) = [r for r in running if r is not leader]
        # Training takes 20 s: the leader dies while v1's Job runs.
        apply(perennial_crds, namespace, simulated_model(MODEL, duration="20s", cooldown="1s"))

        def training() -> bool:
            status = get_custom(api_client, namespace, "modeldeployments", MODEL).get("status") or {}
            return any(v.get("state") == "Training" for v in status.get("versions") or [])

        wait_until(training, timeout=60, what="v1 training")
        assert leader.pid is not None
        os.kill(leader.pid, signal.SIGKILL)
        killed = time.monotonic()

        def took_over() -> bool:
            if writes(standby) > 0 and not standby.leading():
                raise StopWaitingError("the standby wrote before it led")
            return standby.leading()

        wait_until(took_over, timeout=60, what="the standby to take over")
        print(f"standby leads {time.monotonic() - killed:.1f}s after the leader was killed")
        wait_for_status(api_client, namespace, "modeldeployments", MODEL, serving("1"), what="v1 after the takeover")
        request_retrain(perennial_crds, namespace, MODEL, "after-takeover")
        wait_for_status(api_client, namespace, "modeldeployments", MODEL, serving("2"), what="v2 by the new leader")
        assert trainingjobs(api_client, namespace) == [f"{MODEL}-v1", f"{MODEL}-v2"]
        status = get_custom(api_client, namespace, "modeldeployments", MODEL)["status"]
        assert [v["version"] for v in status["versions"]] == ["1", "2"]
