"""`make demo`: bring up (or reuse) the full local cluster and show that it works.

It runs a serving Deployment and a simulated training Job the way Perennial will, and
shows what kwok, the controllers and Prometheus did with them. The cluster stays up
afterwards; `make cluster-down` removes it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request

from localcluster.cluster import LocalCluster
from localcluster.errors import ClusterError

NAMESPACE = "perennial-demo"

DEMO_OBJECTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: churn-server, namespace: {NAMESPACE}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: churn-server}}}}
  template:
    metadata: {{labels: {{app: churn-server}}}}
    spec:
      containers: [{{name: server, image: registry.example/churn-server:1.9.0}}]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: churn-train, namespace: {NAMESPACE}}}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        sim.perennial.dev/duration: 3s
        sim.perennial.dev/result: '{{"metrics": {{"auc": 0.934, "loss": 0.21}}}}'
    spec:
      restartPolicy: Never
      containers: [{{name: trainer, image: registry.example/churn-trainer:2.3.0}}]
"""


def _say(text: str) -> None:
    print(text, flush=True)


def _wait_for(cluster: LocalCluster, what: str, jsonpath: str, resource: str, expected: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = cluster.kubectl("get", "-n", NAMESPACE, resource, "-o", f"jsonpath={jsonpath}").strip()
        if value == expected:
            _say(f"  ✓ {what}")
            return
        time.sleep(0.5)
    raise ClusterError(f"{what}: not seen within 120s")


def run() -> int:
    _say("== 1. the local control plane (built once per machine, then reused)")
    cluster = LocalCluster()
    env_file = cluster.up("full")
    _say(cluster.status())
    _say("\n== 2. nodes (kwok plays the kubelet)")
    _say(cluster.kubectl("get", "nodes", "-o", "wide"))

    _say("== 3. a serving Deployment and a simulated training Job")
    cluster.kubectl("apply", "-f", "-", stdin=DEMO_OBJECTS)
    _wait_for(
        cluster,
        "Deployment churn-server is Available",
        "{.status.conditions[?(@.type=='Available')].status}",
        "deployment/churn-server",
        "True",
    )
    _wait_for(
        cluster,
        "Job churn-train is Complete",
        "{.status.conditions[?(@.type=='Complete')].status}",
        "job/churn-train",
        "True",
    )
    message = cluster.kubectl(
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        "job-name=churn-train",
        "-o",
        "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}",
    )
    _say(f"  ✓ the trainer's termination message: {message}")
    _say(cluster.kubectl("get", "deployments,jobs,pods", "-n", NAMESPACE))

    _say("== 4. Prometheus")
    query = urllib.parse.urlencode({"query": "up"})
    with urllib.request.urlopen(f"{cluster.prometheus_url()}/api/v1/query?{query}", timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    for series in result:
        _say(f"  up{{job={series['metric']['job']!r}}} = {series['value'][1]}")

    _say(
        "\nThe cluster stays up. Look around:\n"
        f"  . {env_file} && export KUBECONFIG\n"
        f"  $KUBECTL get nodes,pods -A          # kubectl {cluster.binaries['kubectl'].parent}\n"
        f"  Prometheus: {cluster.prometheus_url()}   (scrape targets: {cluster.targets_file})\n"
        "  make run            # the operator against this cluster\n"
        "  make cluster-down   # stop it and delete its state"
    )
    return 0


def main() -> int:
    try:
        return run()
    except ClusterError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
