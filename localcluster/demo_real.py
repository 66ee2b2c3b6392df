"""`make demo PROFILE=real`: the continuous-training loop with pods that really run.

On the `real` profile (a kubelet, containerd and runc on this machine; images built here,
no registry) the loop plays for real:

1. the cluster (started if it is not up; idempotent);
2. the operator, installed by its Helm chart from the image `up` built, in its pod;
   a static local PersistentVolume and the claim ``models`` for the models;
3. a ModelDeployment: v1 trained by the churn trainer image (a TrainingJob's pod writes the
   model to the claim and its metrics as its termination message), served by churn server
   pods (ready through their real ``/ready``); then a traffic generator pod posts customers
   through the model's Service (its ClusterIP: there is no cluster DNS here);
4. the traffic's inputs shift (its Deployment gets ``TRAFFIC_SHIFT``, a new pod replaces
   the old): a DriftPolicy's PSI, a distribution test over the servers' input-feature
   histograms that Prometheus scrapes from the pods, breaches for ``for``; the policy asks
   for a retrain; v2 trains on the newer data window (the dataset URI's world drifts
   within minutes), beats v1 on v2's holdout, is validated and rolled out;
5. the new baseline (v2's promotion) accepts the shifted inputs: the drift episode ends.

Then the lineage, the time to recover (the shifted traffic's first moment to v2 serving) and
the issue's "done when" checks, each printed with its evidence: every pod of the demo is on
the real node and none has a ``sim.perennial.dev/*`` annotation, the chart's operator pod
runs, the trainer wrote its termination message, and a pod's request through the model's
Service gets predictions. A failed check fails the demo.

**Prometheus from a pod.** On the `real` profile the local Prometheus listens on the node's
bridge address (this machine's own, reachable from pods): the chart's ``prometheusUrl`` is
the cluster's Prometheus URL as it is.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcluster import node, workload
from localcluster.cluster import LocalCluster
from localcluster.demo import NAMESPACE, fresh_namespace, print_lineage, print_recovery, read_status, say, watch_until
from localcluster.errors import ClusterError

CLAIM = "models"
REPLICAS = 2
TRAFFIC = "traffic"
# Every feature but contract_months moved 1.5 spreads up: a PSI of 2-5 (examples/churn/README.md).
SHIFT = "1.5"
FEATURE = "monthly_charges"
# The PSI's windows: the last WINDOW of requests against the WINDOW after the serving version's promotion.
WINDOW = "30s"
PSI_MAX = 0.2
# The trainer's world drifts within minutes (horizon) and each run trains on the TRAIN_WINDOW
# before its trigger: v1 (at the start) and v2 (minutes later) see really different data.
HORIZON, TRAIN_WINDOW = "2m", "2m"
ROW = {"tenure_months": 2, "monthly_charges": 110, "support_calls": 5, "contract_months": 1, "data_usage_gb": 20}


def objects(images: dict[str, str], origin: str) -> list[dict[str, Any]]:
    """The ModelDeployment and the DriftPolicy; ``origin``: when the demo's world starts drifting."""
    volume = {"name": "models", "persistentVolumeClaim": {"claimName": CLAIM}}
    mount = {"name": "models", "mountPath": "/models"}
    model = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "training": {
                "image": images["trainer"],
                "dataset": {
                    "uri": f"synthetic://churn?origin={origin}&horizon={HORIZON}",
                    "version": "{triggerTime}",
                    "window": TRAIN_WINDOW,
                },
                "hyperparameters": {"rows": "3000"},
                "output": {"modelUri": "file:///models/{model}/{version}"},
                "validation": [{"metric": "auc", "min": 0.6}],
                "volumes": [volume],
                "volumeMounts": [mount],
            },
            "serving": {
                "image": images["server"],
                "replicas": REPLICAS,
                "port": 8080,
                "modelUriEnv": "MODEL_URI",
                # The server's real readiness: 200 once it has loaded the model from the claim.
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
                "volumes": [{**volume, "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}],
                "volumeMounts": [{**mount, "readOnly": True}],
            },
            # v2 serves only if it beats v1 scored on v2's own holdout (the trainer's champion_auc).
            "promotion": {"requireImprovement": {"metric": "auc", "minDelta": 0.0}},
            "rollout": {"progressDeadline": "3m"},
            "retraining": {"cooldown": "10s"},
        },
    }
    selector = f'namespace="{NAMESPACE}", model="churn", feature="{FEATURE}"'
    policy = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "DriftPolicy",
        "metadata": {"name": "churn-drift"},
        "spec": {
            "targetRef": {"name": "churn"},
            "interval": "10s",
            "metrics": [
                {
                    "name": f"{FEATURE}_psi",
                    "distribution": {
                        "test": "psi",
                        "current": f"sum by (le) (increase(churn_input_feature_bucket{{{selector}}}[{WINDOW}]))",
                        "baseline": {"sincePromotion": WINDOW},
                        "minSamples": 200,
                    },
                    "max": PSI_MAX,
                    "for": "20s",
                }
            ],
            "trigger": {"cooldown": "1h"},
        },
    }
    return [model, policy]


def traffic_deployment(image: str, url: str, shift: str = "0") -> dict[str, Any]:
    """The traffic generator as a Deployment (Recreate: changing its env replaces its one pod)."""
    pod = workload.restricted_pod(
        TRAFFIC,
        image,
        restart="Always",
        env={"TRAFFIC_URL": url, "TRAFFIC_RATE": "5", "TRAFFIC_BATCH": "10", "TRAFFIC_SHIFT": shift},
    )
    labels = {"app.kubernetes.io/name": TRAFFIC}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": TRAFFIC},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod["spec"]},
        },
    }


# ---------------------------------------------------------------- reading the cluster
def _pods(cluster: LocalCluster, selector: str = "") -> list[dict[str, Any]]:
    args = ["pods", "-n", NAMESPACE] + (["-l", selector] if selector else [])
    return list(workload.get_json(cluster, *args).get("items") or [])


def _running_traffic_pod(cluster: LocalCluster, shift: str) -> dict[str, Any] | None:
    for pod in _pods(cluster, f"app.kubernetes.io/name={TRAFFIC}"):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
        running = (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
        if running and env.get("TRAFFIC_SHIFT") == shift:
            return pod
    return None


def _policy_metric(cluster: LocalCluster) -> dict[str, Any]:
    return next(iter(read_status(cluster, "dpol/churn-drift").get("metrics") or []), {})


def _serves(cluster: LocalCluster, version: str) -> bool:
    """``version`` serves; a ClusterError at once if it never will (rejected, failed, not promoted, rolled back)."""
    model = read_status(cluster, "mdep/churn")
    record: dict[str, Any] = next((r for r in model.get("versions") or [] if r["version"] == version), {})
    decision = record.get("decision") or {}
    if record.get("state") in ("Rejected", "Failed", "RolledBack") or decision.get("result") == "NotPromoted":
        why = decision.get("reason") or (record.get("rollback") or {}).get("message", "")
        raise ClusterError(f"v{version} will not serve ({record['state']}, {decision.get('result')}): {why}")
    return bool(model.get("servingVersion") == version)


def _settled(cluster: LocalCluster) -> bool:
    """The episode is over and a PSI against the serving version's baseline is back within bounds
    (not merely NoData while that baseline's window fills)."""
    status = read_status(cluster, "dpol/churn-drift")
    metric: dict[str, Any] = next(iter(status.get("metrics") or []), {})
    value = metric.get("value")
    drifting = any(c["type"] == "Drifting" and c["status"] == "True" for c in status.get("conditions") or [])
    return not drifting and isinstance(value, float | int) and value <= PSI_MAX


def _trainer_pod(cluster: LocalCluster, job: dict[str, Any]) -> dict[str, Any]:
    job_name = (job.get("status") or {}).get("jobName") or job["metadata"]["name"]
    pods = _pods(cluster, f"job-name={job_name}")
    if not pods:
        raise ClusterError(f"no pod of Job {job_name} (TrainingJob {job['metadata']['name']})")
    return pods[-1]


# ---------------------------------------------------------------- the "done when" checks
def checks(cluster: LocalCluster, images: dict[str, str], volume: Path) -> list[tuple[bool, str]]:
    """The issue's "done when", each with its evidence, measured now."""
    results: list[tuple[bool, str]] = []

    pods = _pods(cluster)
    off_node = [p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") != node.NODE_NAME]
    simulated = [
        p["metadata"]["name"]
        for p in pods
        if any(key.startswith("sim.perennial.dev/") for key in p["metadata"].get("annotations") or {})
    ]
    results.append(
        (
            bool(pods) and not off_node and not simulated,
            f"all {len(pods)} pods of namespace {NAMESPACE} are on {node.NODE_NAME} (off it: {off_node or 'none'}),"
            f" none has a sim.perennial.dev/* annotation (with one: {simulated or 'none'})",
        )
    )

    operators = workload.operator_pods(cluster)
    running = [
        p
        for p in operators
        if p["status"].get("phase") == "Running"
        and p["spec"].get("nodeName") == node.NODE_NAME
        and all(c.get("ready") for c in p["status"].get("containerStatuses") or [])
    ]
    images_of = sorted({c["image"] for p in running for c in p["status"].get("containerStatuses") or []})
    results.append(
        (
            len(running) == len(operators) == 1,
            f"the chart's operator pod runs and is ready on {node.NODE_NAME}:"
            f" {[p['metadata']['name'] for p in running]} image {images_of}",
        )
    )

    model = read_status(cluster, "mdep/churn")
    serving = model.get("servingVersion")
    record: dict[str, Any] = next((r for r in model.get("versions") or [] if r["version"] == serving), {})
    job = workload.get_json(cluster, "trainingjob", record.get("trainingJob", "-"), "-n", NAMESPACE)
    trainer = _trainer_pod(cluster, job)
    (container,) = trainer["status"].get("containerStatuses") or [{}]
    terminated = (container.get("state") or {}).get("terminated") or {}
    message = terminated.get("message", "")
    try:
        reported = json.loads(message).get("metrics")
    except (json.JSONDecodeError, AttributeError):
        reported = None
    metadata_file = volume / "churn" / str(serving) / "metadata.json"
    written = json.loads(metadata_file.read_text()).get("metrics") if metadata_file.exists() else None
    results.append(
        (
            container.get("image") == images["trainer"]
            and terminated.get("exitCode") == 0
            and reported is not None
            and reported == (job.get("status") or {}).get("metrics") == written,
            f"v{serving}'s trainer pod {trainer['metadata']['name']} ({container.get('image')}) exited"
            f" {terminated.get('exitCode')} with the termination message {message.strip()!r}; the TrainingJob's"
            f" status.metrics and the metadata.json the trainer wrote to the claim ({metadata_file}) hold the same"
            " metrics",
        )
    )

    service = workload.get_json(cluster, "service", "churn", "-n", NAMESPACE)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/predict"
    body = json.dumps({"rows": [ROW]})
    name = f"request-{time.strftime('%H%M%S')}"
    pod, answer_text = workload.busybox_request(cluster, NAMESPACE, name, url, body)
    try:
        answer = json.loads(answer_text)
    except json.JSONDecodeError:
        answer = {}
    scores = answer.get("scores") or []
    results.append(
        (
            pod["status"].get("phase") == "Succeeded"
            and answer.get("version") == serving
            and len(scores) == 1
            and 0 <= scores[0] <= 1,
            f"pod {name} (on {pod['spec'].get('nodeName')}): POST {url} (the Service's ClusterIP; no cluster DNS"
            f" here) {body} -> {answer_text.strip()}",
        )
    )
    return results


# ---------------------------------------------------------------- the demo
def run() -> int:
    started = time.monotonic()
    say("== 1/6  the local cluster, `real` profile: a kubelet, containerd and runc on this machine (built once)")
    cluster = LocalCluster()
    env_file = cluster.up("real")
    cluster = LocalCluster()  # what `up` recorded: the images it imported
    images = cluster.state.churn_images
    if not {"trainer", "server", "traffic"} <= set(images):
        raise ClusterError(f"the `real` profile imported no churn images ({images}); `make cluster-down` and retry")
    say(cluster.kubectl("get", "nodes", "-o", "wide"))

    say(f"== 2/6  the operator from its Helm chart (image {cluster.state.operator_image}), a claim for models")
    say(f"  Prometheus for the operator's pod: {cluster.prometheus_url()} (the node's bridge address)")
    workload.install_operator(cluster, prometheus_url=cluster.prometheus_url())
    for pod in workload.operator_pods(cluster):
        say(f"  operator pod {pod['metadata']['name']}: {pod['status'].get('phase')}")
    fresh_namespace(cluster)
    for old in workload.local_volumes_of(cluster, NAMESPACE):
        workload.delete_local_volume(cluster, old)
    pv_name, volume = workload.create_local_claim(cluster, NAMESPACE, CLAIM)
    say(f"  claim {NAMESPACE}/{CLAIM} bound to the local PersistentVolume {pv_name} ({volume})")
    return _loop(cluster, images, volume, started, env_file)


def _loop(cluster: LocalCluster, images: dict[str, str], volume: Path, started: float, env_file: Path) -> int:
    # The generated world starts drifting now: v1 trains on the minutes before, v2 on later ones.
    origin = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl(
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        "-",
        stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects(images, origin)}),
    )
    say(
        f"\n== 3/6  ModelDeployment churn: v1 trained by {images['trainer']} (world origin {origin}, horizon"
        f" {HORIZON}, window {TRAIN_WINDOW}), served by {REPLICAS} pods of {images['server']}"
    )
    watch_until(
        cluster,
        lambda: bool(
            read_status(cluster, "mdep/churn").get("servingVersion") == "1"
            and read_status(cluster, "mdep/churn").get("phase") == "Serving"
        ),
        "v1 serving",
        timeout=420,
    )
    service = workload.get_json(cluster, "service", "churn", "-n", NAMESPACE)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(traffic_deployment(images["traffic"], url)))
    say(
        f"  traffic: {images['traffic']} posts 5 requests/s of 10 customers to {url}/predict; the DriftPolicy's"
        f" {FEATURE}_psi compares the last {WINDOW} of the servers' {FEATURE} histogram with the {WINDOW} after"
        " v1's promotion (sincePromotion)"
    )
    watch_until(
        cluster,
        lambda: isinstance(_policy_metric(cluster).get("value"), float | int),
        "a PSI value (the baseline window after v1's promotion filled)",
        timeout=180,
    )

    say(f"\n== 4/6  the traffic's inputs shift: TRAFFIC_SHIFT={SHIFT} (every feature but contract_months up)")
    cluster.kubectl("set", "env", "-n", NAMESPACE, f"deployment/{TRAFFIC}", f"TRAFFIC_SHIFT={SHIFT}")
    shifted = workload.wait_for(lambda: _running_traffic_pod(cluster, SHIFT), "the shifted traffic pod running", 120)
    onset = time.monotonic()
    say(f"  {time.strftime('%H:%M:%S')}  pod {shifted['metadata']['name']} posts shifted customers")
    watch_until(
        cluster, lambda: read_status(cluster, "dpol/churn-drift").get("triggerCount", 0) >= 1, "the drift trigger"
    )
    detected = time.monotonic()
    watch_until(cluster, lambda: _serves(cluster, "2"), "v2 serving", timeout=420)
    recovered = time.monotonic()

    say("\n== 5/6  v2 serves; its promotion is the new baseline, which the shifted inputs match: the episode ends")
    watch_until(cluster, lambda: _settled(cluster), f"a PSI below {PSI_MAX} against v2's baseline", timeout=180)

    print_lineage(read_status(cluster, "mdep/churn"))
    print_recovery(onset, detected, recovered, started)

    say("\n== 6/6  checks")
    results = checks(cluster, images, volume)
    for ok, text in results:
        say(f"  {'ok  ' if ok else 'FAIL'}  {text}")
    say(f"\nWhole demo: {time.monotonic() - started:.0f}s.")
    say(
        "\nThe cluster stays up with the demo objects and the operator's release. Look around:\n"
        f"  set -a; . {env_file}; set +a\n"
        f"  $KUBECTL get perennial,deploy,svc,pods -n {NAMESPACE} -o wide\n"
        f"  $KUBECTL logs -n {NAMESPACE} deploy/{TRAFFIC}      # the traffic generator\n"
        f"  $KUBECTL logs -n {workload.RELEASE_NAMESPACE} deploy/perennial   # the operator, in its pod\n"
        "  make cluster-down   # stop the cluster, remove the node's bridge, restore this machine's networking"
    )
    return 0 if all(ok for ok, _ in results) else 1
