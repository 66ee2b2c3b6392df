"""Proof that the `full` profile behaves like a cluster, under the simulation contract.

Pods never execute here: kwok plays the kubelet, driven by `sim.perennial.dev/*`
annotations (CONTRIBUTING.md, "Simulation contract").
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from localcluster.cluster import LocalCluster
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import MetricsHandler

from tests.support.cluster import ClusterInfo, ScrapeTargets
from tests.support.operator import OPERATOR_USER, free_port, whoami
from tests.support.waiting import wait_until


def _job(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "trainer:1"}]},
            },
        },
    }


def _job_condition(batch: client.BatchV1Api, name: str, namespace: str, kind: str) -> bool:
    job = batch.read_namespaced_job_status(name, namespace)
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def _job_pod(core: client.CoreV1Api, job: str, namespace: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def test_fake_node_is_ready(api_client: client.ApiClient) -> None:
    nodes = client.CoreV1Api(api_client).list_node().items
    ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
    assert ready, "no Ready node"


def test_deployment_becomes_available_behind_its_service(api_client: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                },
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]},
        },
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.available_replicas == 2 and any(
            c.type == "Available" and c.status == "True" for c in status.conditions or []
        )

    wait_until(available, timeout=60, what="Deployment web Available with 2 replicas")
    discovery = client.DiscoveryV1Api(api_client)

    def ready_endpoints() -> int:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        return len([e for s in slices for e in s.endpoints or [] if e.conditions.ready])

    wait_until(lambda: ready_endpoints() == 2, timeout=60, what="2 ready endpoints behind Service web")


def test_job_completes_with_the_simulated_termination_message(
    cluster: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    message = json.dumps({"metrics": {"auc": 0.934, "loss": 0.21}})
    job = _job("train", {"sim.perennial.dev/result": message, "sim.perennial.dev/duration": "2s"})
    cluster.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job))
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    wait_until(lambda: _job_condition(batch, "train", namespace, "Complete"), timeout=60, what="Job train Complete")

    terminated = _job_pod(core, "train", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == {"metrics": {"auc": 0.934, "loss": 0.21}}
    pod = _job_pod(core, "train", namespace)
    # The run lasted (at least) the simulated duration, as the pod status records it.
    assert terminated.finished_at - pod.status.start_time >= timedelta(seconds=2)


def test_job_fails_with_the_simulated_exit_code(
    cluster: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    job = _job("broken", {"sim.perennial.dev/exit-code": "3", "sim.perennial.dev/result": "not json"})
    cluster.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job))
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    wait_until(lambda: _job_condition(batch, "broken", namespace, "Failed"), timeout=60, what="Job broken Failed")

    job_status = batch.read_namespaced_job_status("broken", namespace).status
    failed = next(c for c in job_status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    terminated = _job_pod(core, "broken", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.message == "not json"


def _pod(name: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"containers": [{"name": "server", "image": "server:1"}]},
    }


def _phase_and_ready(core: client.CoreV1Api, name: str, namespace: str) -> tuple[str, str]:
    status = core.read_namespaced_pod_status(name, namespace).status
    ready = next((c.status for c in status.conditions or [] if c.type == "Ready"), "")
    return status.phase, ready


def test_annotated_pod_runs_but_never_becomes_ready(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _pod("unready", {"sim.perennial.dev/ready": "false"}))
    core.create_namespaced_pod(namespace, _pod("control"))
    wait_until(
        lambda: _phase_and_ready(core, "control", namespace) == ("Running", "True"),
        timeout=60,
        what="control pod Ready",
    )
    wait_until(
        lambda: _phase_and_ready(core, "unready", namespace)[0] == "Running",
        timeout=60,
        what="unready pod Running",
    )
    # kwok handled both; the annotated one is Running with Ready=False and stays so.
    assert _phase_and_ready(core, "unready", namespace) == ("Running", "False")


@pytest.fixture
def unready_version_stage(cluster: ClusterInfo, namespace: str) -> Iterator[str]:
    """A runtime Stage: version "2" pods in this namespace run but never become Ready."""
    name = f"unready-v2-{namespace}"[:63]
    stage = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            # Outweighs the built-in Stages (weight 1) for the pods it selects.
            "weight": 1_000_000_000,
            "selector": {
                "matchLabels": {"perennial.dev/version": "2"},
                "matchExpressions": [
                    {"key": ".metadata.namespace", "operator": "In", "values": [namespace]},
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                ],
            },
            "next": {"statusTemplate": 'phase: Running\nconditions:\n- {type: Ready, status: "False"}\n'},
        },
    }
    cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(stage))
    yield name
    cluster.kubectl_run("delete", "stage", name, "--wait=false")


def test_runtime_stage_gives_selected_pods_their_own_behaviour(
    api_client: client.ApiClient, namespace: str, unready_version_stage: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _pod("model-v1", labels={"perennial.dev/version": "1"}))
    core.create_namespaced_pod(namespace, _pod("model-v2", labels={"perennial.dev/version": "2"}))
    wait_until(
        lambda: _phase_and_ready(core, "model-v1", namespace) == ("Running", "True"),
        timeout=60,
        what="v1 pod Ready",
    )
    wait_until(
        lambda: _phase_and_ready(core, "model-v2", namespace)[0] == "Running",
        timeout=60,
        what="v2 pod Running",
    )
    assert _phase_and_ready(core, "model-v2", namespace) == ("Running", "False")


@pytest.fixture
def exporter() -> Iterator[str]:
    """A real Prometheus exporter on loopback with one gauge, `perennial_test_probe`."""
    registry = CollectorRegistry()
    Gauge("perennial_test_probe", "A sample for the scrape test.", registry=registry).set(42)
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def _prometheus_query(base_url: str, query: str) -> list[dict[str, Any]]:
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_an_exporter_added_to_the_targets_file(
    cluster: ClusterInfo, scrape_targets: ScrapeTargets, exporter: str, namespace: str
) -> None:
    job = f"probe-{namespace}"
    scrape_targets.add(job, exporter)
    try:
        series = wait_until(
            lambda: _prometheus_query(cluster.prometheus_url, f'perennial_test_probe{{job="{job}"}}'),
            timeout=60,
            what=f"Prometheus to scrape {exporter}",
        )
        assert series[0]["metric"]["instance"] == exporter
        assert float(series[0]["value"][1]) == 42.0
    finally:
        scrape_targets.remove(job)


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets `pid` listens on, from /proc (no ss/netstat needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                addresses.add(local.split(":")[0])
    return addresses


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


def test_every_component_listens_on_loopback_only(cluster: ClusterInfo) -> None:
    local = LocalCluster()
    assert set(local.running()) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
    }
    for name, record in local.state.processes.items():
        addresses = _listening_addresses(int(str(record["pid"])))
        assert addresses, f"{name} listens on nothing?"
        assert addresses <= LOOPBACK_HEX, f"{name} listens beyond loopback: {addresses}"


def test_the_operator_make_run_and_make_demo_start_is_the_service_account(cluster: ClusterInfo, namespace: str) -> None:
    """`make run` and `make demo` run the operator as its ServiceAccount with the RBAC and the
    ownership policy from manifests/ (as the admin, the policy refused the TrainingJobs it
    creates for a ModelDeployment once a test had installed it: `make demo` after `make test`)."""
    kubeconfig = LocalCluster(cluster.kubeconfig.parent).operator_kubeconfig()
    assert whoami(cluster, kubeconfig).stdout.strip() == OPERATOR_USER
    checks = (("create", "trainingjobs.perennial.dev", ""), ("patch", "modeldeployments.perennial.dev", "status"))
    for verb, resource, subresource in checks:
        command = [str(cluster.kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, resource]
        command += ["-n", namespace, f"--subresource={subresource}"]
        allowed = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert allowed.stdout.strip() == "yes", (verb, resource, allowed.stdout, allowed.stderr)
    # The ownership policy is installed: what it guards is there for the operator to pass.
    cluster.kubectl_run("get", "validatingadmissionpolicybinding", "perennial-trainingjob-owners")
    # Idempotent: a second call (a second `make run`) gives a working kubeconfig again.
    again = LocalCluster(cluster.kubeconfig.parent).operator_kubeconfig()
    assert whoami(cluster, again).stdout.strip() == OPERATOR_USER
