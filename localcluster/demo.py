"""`make demo`: the continuous-training loop, live, on the local cluster.

Builds (once) and starts the full local cluster, installs the CRDs, starts the operator
and a small exporter of a drift metric, applies a demo model, and plays the loop:
initial training -> v1 served -> the drift metric crosses its bound -> the DriftPolicy
retrains -> v2 validated and rolled out -> the drift ends. It prints each change as it
happens, then a summary. The cluster and the objects stay; the operator and the
exporter stop with the demo (`make run` starts the operator again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from localcluster.cluster import OPERATOR_NAMESPACE, REPO_ROOT, LocalCluster
from localcluster.errors import ClusterError

NAMESPACE = "perennial-demo"
JOB = "perennial-demo-exporter"

DEMO_OBJECTS = """
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata: {name: churn}
spec:
  training:
    image: registry.example/churn-trainer:2.3.0
    # Fresh data per trigger: each run trains on the 24h before it was triggered.
    dataset: {uri: "s3://data/{model}/{triggerDate}/", version: "{triggerTime}", window: 24h}
    output: {modelUri: "s3://models/{model}/{version}"}
    validation: [{metric: auc, min: 0.90}]
    # The local cluster simulates pods (CONTRIBUTING.md, "Simulation contract"): the trainer
    # "runs" 3s and reports these metrics through its termination message; given a
    # champion to beat, it also scores the champion on its own holdout (champion_auc).
    podAnnotations:
      sim.perennial.dev/duration: 3s
      sim.perennial.dev/result: '{"metrics": {"auc": 0.934, "loss": 0.21}}'
      sim.perennial.dev/champion-result: '{"metrics": {"auc": 0.941, "loss": 0.2, "champion_auc": 0.917}}'
  serving:
    image: registry.example/churn-server:1.9.0
    replicas: 2
  promotion:
    requireImprovement: {metric: auc, minDelta: 0.0}
  retraining:
    cooldown: 10s   # short for the demo: the default 1h would hold back the drift retrain
---
apiVersion: perennial.dev/v1alpha1
kind: DriftPolicy
metadata: {name: churn-drift}
spec:
  targetRef: {name: churn}
  interval: 10s
  metrics:
    - name: feature_psi
      query: max(demo_churn_feature_psi{job="EXPORTER_JOB"})
      max: 0.2
      for: 10s
  trigger: {cooldown: 1h}
""".replace("EXPORTER_JOB", JOB)


class DriftExporter:
    """A Prometheus exporter of one gauge the demo controls: the model's input drift."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge
        from prometheus_client.exposition import MetricsHandler

        registry = CollectorRegistry()
        self.psi = Gauge("demo_churn_feature_psi", "PSI of the churn model's inputs (demo).", registry=registry)
        self.psi.set(0.04)
        self.server = HTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _say(text: str = "") -> None:
    print(text, flush=True)


def _set_targets(targets_file: Path, address: str | None) -> None:
    groups = [g for g in json.loads(targets_file.read_text() or "[]") if g.get("labels", {}).get("job") != JOB]
    if address:
        groups.append({"targets": [address], "labels": {"job": JOB}})
    tmp = targets_file.with_suffix(".demo-tmp")
    tmp.write_text(json.dumps(groups, indent=2))
    os.replace(tmp, targets_file)


@contextmanager
def _operator(cluster: LocalCluster, kubeconfig: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        # As the operator's ServiceAccount, with the RBAC a user installs: never the admin.
        "KUBECONFIG": str(kubeconfig),
        "PERENNIAL_NAMESPACES": NAMESPACE,
        "PERENNIAL_LEASE_NAMESPACE": OPERATOR_NAMESPACE,
        "PERENNIAL_PROMETHEUS_URL": cluster.prometheus_url(),
        "PERENNIAL_METRICS_ADDRESS": "127.0.0.1",
        "PERENNIAL_METRICS_PORT": str(_free_port()),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "perennial"), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(cluster: LocalCluster, resource: str) -> dict[str, Any]:
    output = cluster.kubectl("get", "-n", NAMESPACE, resource, "-o", "json")
    document: dict[str, Any] = json.loads(output)
    return document


def _snapshot(cluster: LocalCluster) -> str:
    model = _get(cluster, "mdep/churn").get("status") or {}
    policy = _get(cluster, "dpol/churn-drift").get("status") or {}
    drifting = next((c["status"] for c in policy.get("conditions") or [] if c["type"] == "Drifting"), "-")
    value = next((m.get("value") for m in policy.get("metrics") or []), None)
    versions = ", ".join(
        f"v{r['version']} {r.get('state', '?')} ({r.get('trigger', {}).get('reason', '?')})"
        for r in model.get("versions") or []
    )
    psi = f"{value:.2f}" if isinstance(value, float | int) else "-"
    return (
        f"phase={model.get('phase', '-'):<8} serving={model.get('servingVersion', '-'):<3} "
        f"ready={model.get('ready', '-'):<4} feature_psi={psi:<5} drifting={drifting:<5} | {versions}"
    )


def _watch(cluster: LocalCluster, until: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            line = _snapshot(cluster)
        except (ClusterError, json.JSONDecodeError):
            line = "(waiting for the objects)"
        if line != last:
            _say(f"  {time.strftime('%H:%M:%S')}  {line}")
            last = line
        if until():
            return
        time.sleep(1)
    raise ClusterError(f"demo: {what} did not happen within {timeout:.0f}s")


def _status(cluster: LocalCluster, resource: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = _get(cluster, resource).get("status") or {}
        return status
    except ClusterError:
        return {}


def run() -> int:
    started = time.monotonic()
    _say("== 1/5  the local control plane (built once per machine, then reused)")
    cluster = LocalCluster()
    env_file = cluster.up("full")
    _say(cluster.kubectl("get", "nodes"))

    _say("== 2/5  install Perennial (CRDs, ServiceAccount, RBAC), start the operator and a drift exporter")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    cluster.wait_established(
        "crd/modeldeployments.perennial.dev", "crd/driftpolicies.perennial.dev", "crd/trainingjobs.perennial.dev"
    )
    kubeconfig = cluster.operator_kubeconfig()
    if NAMESPACE in cluster.kubectl("get", "namespaces", "-o", "name"):
        _say(f"  removing the previous run's namespace {NAMESPACE}")
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    cluster.kubectl("create", "namespace", NAMESPACE)
    exporter = DriftExporter()
    _set_targets(cluster.targets_file, exporter.address)
    log_path = cluster.logs / "operator-demo.log"
    try:
        with _operator(cluster, kubeconfig, log_path):
            _say(f"  operator log: {log_path}")
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=DEMO_OBJECTS)
            _say(f"\n== 3/5  ModelDeployment churn: initial training, gates, first rollout (namespace {NAMESPACE})")
            _watch(
                cluster,
                lambda: (
                    _status(cluster, "mdep/churn").get("servingVersion") == "1"
                    and _status(cluster, "mdep/churn").get("phase") == "Serving"
                ),
                "v1 serving",
            )

            _say("\n== 4/5  the inputs drift: feature_psi 0.04 -> 0.31 (bound: max 0.2 for 10s)")
            exporter.psi.set(0.31)
            onset = time.monotonic()
            _watch(
                cluster, lambda: _status(cluster, "dpol/churn-drift").get("triggerCount", 0) >= 1, "the drift trigger"
            )
            detected = time.monotonic()
            _watch(cluster, lambda: _status(cluster, "mdep/churn").get("servingVersion") == "2", "v2 serving")
            recovered = time.monotonic()

            _say("\n== 5/5  the retrained model serves; the drift episode ends")
            exporter.psi.set(0.05)
            _watch(
                cluster,
                lambda: any(
                    c["type"] == "Drifting" and c["status"] == "False"
                    for c in _status(cluster, "dpol/churn-drift").get("conditions") or []
                ),
                "the end of the drift episode",
            )
    finally:
        _set_targets(cluster.targets_file, None)
        exporter.stop()

    model = _status(cluster, "mdep/churn")
    _say("\nLineage (status.versions):")
    for record in model.get("versions") or []:
        trigger = record.get("trigger", {})
        dataset = record.get("dataset", {})
        _say(
            f"  v{record['version']}  {record.get('state', ''):<8} trigger={trigger.get('reason', '')}"
            f"{(' ' + trigger.get('detail', '')) if trigger.get('reason') == 'Drift' else ''}"
            f"  auc={record.get('metrics', {}).get('auc')}\n"
            f"      data={dataset.get('uri')} window {dataset.get('windowStart')} .. {dataset.get('windowEnd')}\n"
            f"      decision={record.get('decision', {}).get('reason', '')}"
        )
    _say(
        f"\nTime to recover: {recovered - onset:.0f}s from drift onset to v2 serving "
        f"(detection {detected - onset:.0f}s = interval + for; training and rollout {recovered - detected:.0f}s)."
        f" Whole demo: {time.monotonic() - started:.0f}s."
    )
    _say(
        "\nThe cluster stays up with the demo objects. Look around:\n"
        f"  set -a; . {env_file}; set +a\n"
        f"  $KUBECTL get perennial,deploy,svc,pods -n {NAMESPACE}\n"
        f"  $KUBECTL describe mdep churn -n {NAMESPACE}      # conditions and Events\n"
        f"  curl -s '{cluster.prometheus_url()}/api/v1/query?query=up'\n"
        "  make run            # the operator again (it stopped with the demo)\n"
        "  make cluster-down   # stop the cluster and delete its state"
    )
    return 0


def main() -> int:
    try:
        return run()
    except ClusterError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
