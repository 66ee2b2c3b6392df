"""Issue 15, case 15: the whole loop while the operator is killed at random, and more.

One model plays initial training, rollout, a drift retrain and its promotion, then a
version that never becomes Available and its rollback, while a chaos thread:

- SIGKILLs the operator at random moments (at least ``MIN_KILLS`` times) and starts a
  new one each time, as a crash-looping pod would;
- restarts kube-apiserver once under a running operator;
- stops the real Prometheus under a running operator and starts it again later.

The faults hit a private cluster (its own etcd, API server, controllers, kwok and
Prometheus in a temporary directory) so the tests sharing the session's cluster never
see them. Afterwards: no duplicate TrainingJob, every version in ``status.versions``,
the model Ready, the loop finished. The counts are printed as a measurement.

The pauses between faults are random on purpose (the seed is printed; set
``PERENNIAL_CHAOS_SEED`` to replay one); every wait for an outcome has a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from localcluster.cluster import LocalCluster

from tests.e2e.test_modeldeployment_loop import NAME, RETRAIN_REQUEST, cond, mdep, record, served
from tests.support import kwok
from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo, install_crds
from tests.support.resources import GROUP, VERSION, apply, get_custom, wait_for_status
from tests.support.waiting import StopWaitingError, holds_for, wait_until

pytestmark = pytest.mark.timeout(900)

NAMESPACE = "chaos"
MIN_KILLS = 20
STEP_TIMEOUT = 300.0


@pytest.fixture
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, ClusterInfo]]:
    """A full local cluster of this test's own, stopped at the end."""
    local = LocalCluster(tmp_path_factory.mktemp("chaos-cluster"))
    try:
        info = ClusterInfo.from_env_file(local.up("full"))
        install_crds(info)
        info.kubectl_run("create", "namespace", NAMESPACE)
        wait_until(
            lambda: info.kubectl_run("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode == 0,
            timeout=60,
            what="the default ServiceAccount",
        )
        yield local, info
    finally:
        local.down()


@dataclass
class Chaos:
    """Runs, kills and restarts the operator in a thread; injects the cluster faults once each."""

    local: LocalCluster
    cluster: ClusterInfo
    logs: Path
    rng: random.Random
    finished: threading.Event = field(default_factory=threading.Event)
    kills: int = 0
    starts: int = 0
    apiserver_restarts: int = 0
    prometheus_restarts: int = 0
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.finished.set()
        assert self._thread is not None
        self._thread.join(timeout=180)
        assert not self._thread.is_alive(), "the chaos thread did not stop"

    def _run(self) -> None:
        try:
            while not (self.finished.is_set() and self.kills >= MIN_KILLS):
                self._one_life()
        except Exception as error:  # reported by the test, which fails on it
            self.errors.append(f"{error.__class__.__name__}: {error}")

    def _one_life(self) -> None:
        """One operator process: start it, maybe inject a cluster fault, kill it at a random moment."""
        self.starts += 1
        restart_apiserver = self.kills == 6 and not self.apiserver_restarts
        log = self.logs / f"operator-{self.starts:03d}.log"
        with operator_support.subprocess_operator(
            self.cluster,
            [NAMESPACE],
            log,
            self.cluster.prometheus_url,
            # A starting kube-apiserver serves requests before its RBAC caches are synced,
            # and refuses some with 403 meanwhile; the operator retries them.
            forbidden_expected="kube-apiserver restarts under this operator" if restart_apiserver else "",
        ) as running:
            assert running.pid is not None
            if restart_apiserver:
                self.local.restart_component("kube-apiserver")
                self.apiserver_restarts += 1
            elif self.kills == 10 and not self.prometheus_restarts:
                self.local.stop_component("prometheus")
            elif self.kills == 13 and "prometheus" not in self.local.running():
                self.local.start_component("prometheus")
                self.prometheus_restarts += 1
            # A random moment in this life: right after start, mid-pass, or after a while.
            self.finished.wait(self.rng.uniform(0.2, 5.0))
            os.kill(running.pid, signal.SIGKILL)
            self.kills += 1


def rolled_back_to_2(status: dict[str, Any]) -> bool:
    """v3 rolled back, v2 serves and is Ready (the phase stays Degraded: the rollback is news)."""
    return (
        status.get("servingVersion") == "2"
        and not status.get("rollout")
        and cond(status, "Ready").get("status") == "True"
        and record(status, "2").get("state") == "Serving"
        and record(status, "3").get("state") == "RolledBack"
    )


def drift_policy() -> dict[str, Any]:
    """Always out of bounds: one retrain, then the policy's own trigger cooldown (6h) holds."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": "churn-drift"},
        "spec": {
            "targetRef": {"name": NAME},
            "interval": "10s",
            "metrics": [{"name": "constant", "query": "vector(1)", "max": 0.5}],
        },
    }


def test_the_loop_finishes_while_the_operator_is_killed_at_random(
    private_cluster: tuple[LocalCluster, ClusterInfo],
    tmp_path: Path,
    report_measurement: Callable[[str], None],
) -> None:
    local, cluster = private_cluster
    seed = int(os.environ.get("PERENNIAL_CHAOS_SEED", str(time.time_ns() % 1_000_000)))
    report_measurement(f"chaos seed {seed} (PERENNIAL_CHAOS_SEED replays it)")
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    chaos = Chaos(local, cluster, tmp_path, random.Random(seed))

    def status() -> dict[str, Any]:
        return dict(get_custom(api, NAMESPACE, "modeldeployments", NAME).get("status") or {})

    def wait(predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def check(current: dict[str, Any]) -> bool:
            if chaos.errors:
                raise StopWaitingError(f"the chaos thread failed: {chaos.errors}")
            return predicate(current)

        return wait_for_status(api, NAMESPACE, "modeldeployments", NAME, check, what=what, timeout=STEP_TIMEOUT)

    chaos.start()
    try:
        # Initial training and the first rollout.
        apply(cluster, NAMESPACE, mdep(duration="2s", retraining={"cooldown": "1s"}))
        wait(served("1"), "v1 served")
        # Drift: a retrain, validated and promoted, rolled out.
        apply(cluster, NAMESPACE, drift_policy())
        wait(served("2"), "v2 (drift retrain) served")
        # A version that never becomes Available: rolled back after progressDeadline (10s).
        cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(kwok.unready_serving("chaos-unready-v3", "3")))
        cluster.kubectl_run("annotate", "-n", NAMESPACE, f"mdep/{NAME}", f"{RETRAIN_REQUEST}=chaos-1")
        wait(rolled_back_to_2, "v3 rolled back, v2 serving")
    finally:
        chaos.stop()
    assert not chaos.errors, chaos.errors

    # One last operator that is left alone: the end state is stable and complete.
    with operator_support.subprocess_operator(cluster, [NAMESPACE], tmp_path / "final.log", cluster.prometheus_url):
        final = wait(rolled_back_to_2, "the loop settled")
        custom = client.CustomObjectsApi(api)

        def training_jobs() -> list[str]:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "trainingjobs")
            return sorted(item["metadata"]["name"] for item in listed["items"])

        expected = [f"{NAME}-v1", f"{NAME}-v2", f"{NAME}-v3"]
        holds_for(lambda: training_jobs() == expected, seconds=5, what="exactly one TrainingJob per trigger")
        final = status()

    jobs = sorted(str(j.metadata.name) for j in client.BatchV1Api(api).list_namespaced_job(NAMESPACE).items)
    versions = [r["version"] for r in final["versions"]]
    report_measurement(
        f"chaos: {chaos.kills} SIGKILLs, {chaos.starts} operator starts, "
        f"{chaos.apiserver_restarts} kube-apiserver restart, {chaos.prometheus_restarts} Prometheus stop/start, "
        f"{len(training_jobs())} TrainingJobs, {len(jobs)} Jobs, versions {versions}"
    )
    assert chaos.kills >= MIN_KILLS
    assert chaos.apiserver_restarts == 1
    assert chaos.prometheus_restarts == 1
    assert jobs == expected
    assert versions == ["1", "2", "3"]
    assert [record(final, v)["trigger"]["reason"] for v in versions] == ["Initial", "Drift", "Manual"]
    assert [record(final, v)["state"] for v in versions] == ["Retired", "Serving", "RolledBack"]
    assert final["servingVersion"] == "2"
    assert final["handledRetrainRequest"] == "chaos-1"
    policy = get_custom(api, NAMESPACE, "driftpolicies", "churn-drift")["status"]
    assert policy["triggerCount"] == 1
    api.close()
