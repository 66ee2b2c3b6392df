"""`make demo`: the continuous-training loop, live, on the local cluster.

Builds (once) and starts the full local cluster, installs the CRDs, starts the operator
and a small exporter of the demo's metrics, applies a demo model, and plays a scenario:

- ``loop`` (the default, `make demo`): initial training -> v1 served -> the drift metric
  crosses its bound -> the DriftPolicy retrains -> v2 validated and rolled out -> the
  drift ends.
- ``canary`` (`make demo SCENARIO=canary`): a model with a Canary rollout whose analysis
  reads an online error ratio per version from the exporter: v1 serves -> a retrain
  request trains v2, healthy, which passes every step and serves -> v3, with a high error
  ratio, is aborted at step 1 and v2 keeps serving at full size.

It prints each change as it happens, then a summary. The cluster and the objects stay;
the operator and the exporter stop with the demo (`make run` starts the operator again).
One demo runs at a time per cluster (they share the namespace perennial-demo).

`make demo PROFILE=real` plays the loop with pods that really run instead (demo_real.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from localcluster.cluster import OPERATOR_NAMESPACE, REPO_ROOT, LocalCluster, state_dir
from localcluster.errors import ClusterError

NAMESPACE = "perennial-demo"
JOB = "perennial-demo-exporter"
SCENARIOS = ("loop", "canary")
# full: kwok simulates the pods (the default: seconds, nothing on this machine changes);
# real: the loop with pods that really run (demo_real.py).
PROFILES = ("full", "real")

# Both scenarios' ModelDeployment trains the same way. Fresh data per trigger: each run
# trains on the 24h before it was triggered. The local cluster simulates pods
# (CONTRIBUTING.md, "Simulation contract"): the trainer "runs" 3s and reports these metrics
# through its termination message; given a champion to beat, it also scores the champion
# on its own holdout (champion_auc), so every version beats the champion offline.
DEMO_TRAINING = """  training:
    image: registry.example/churn-trainer:2.3.0
    dataset: {uri: "s3://data/{model}/{triggerDate}/", version: "{triggerTime}", window: 24h}
    output: {modelUri: "s3://models/{model}/{version}"}
    validation: [{metric: auc, min: 0.90}]
    podAnnotations:
      sim.perennial.dev/duration: 3s
      sim.perennial.dev/result: '{"metrics": {"auc": 0.934, "loss": 0.21}}'
      sim.perennial.dev/champion-result: '{"metrics": {"auc": 0.941, "loss": 0.2, "champion_auc": 0.917}}'"""

DEMO_OBJECTS = """
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata: {name: churn}
spec:
TRAINING
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
""".replace("EXPORTER_JOB", JOB).replace("TRAINING", DEMO_TRAINING)


class DemoExporter:
    """A Prometheus exporter of the gauges the demo controls: the model's input drift (loop)
    and the model servers' online error ratio per version (canary)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge
        from prometheus_client.exposition import MetricsHandler

        registry = CollectorRegistry()
        self.psi = Gauge("demo_churn_feature_psi", "PSI of the churn model's inputs (demo).", registry=registry)
        self.psi.set(0.04)
        # No series until the canary scenario sets one per version.
        self.error_ratio = Gauge(
            "churn_online_error_ratio",
            "Share of the churn model's requests that failed, per served version (demo).",
            ["model", "version"],
            registry=registry,
        )
        self.server = HTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def _flock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; without ``wait``, yield False at once if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _set_targets(targets_file: Path, address: str | None) -> None:
    # Tests on the same cluster add their exporters to this file too: the same lock as
    # theirs (tests/support/cluster.py, ScrapeTargets) keeps every read-modify-write whole.
    with _flock(targets_file.parent / "targets.lock"):
        groups = [g for g in json.loads(targets_file.read_text() or "[]") if g.get("labels", {}).get("job") != JOB]
        if address:
            groups.append({"targets": [address], "labels": {"job": JOB}})
        tmp = targets_file.with_suffix(f".demo-tmp{os.getpid()}")
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
    metric: dict[str, Any] = next(iter(policy.get("metrics") or []), {})
    name, value = metric.get("name", "feature_psi"), metric.get("value")
    versions = ", ".join(
        f"v{r['version']} {r.get('state', '?')} ({r.get('trigger', {}).get('reason', '?')})"
        for r in model.get("versions") or []
    )
    psi = f"{value:.2f}" if isinstance(value, float | int) else "-"
    return (
        f"phase={model.get('phase', '-'):<8} serving={model.get('servingVersion', '-'):<3} "
        f"ready={model.get('ready', '-'):<4} {name}={psi:<5} drifting={drifting:<5} | {versions}"
    )


def watch_until(cluster: LocalCluster, until: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            line = _snapshot(cluster)
        except (ClusterError, json.JSONDecodeError):
            line = "(waiting for the objects)"
        if line != last:
            say(f"  {time.strftime('%H:%M:%S')}  {line}")
            last = line
        if until():
            return
        time.sleep(1)
    raise ClusterError(f"demo: {what} did not happen within {timeout:.0f}s")


def read_status(cluster: LocalCluster, resource: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = _get(cluster, resource).get("status") or {}
        return status
    except ClusterError:
        return {}


def _install(stages: int, exporter: str) -> tuple[LocalCluster, Path, Path]:
    """Stages 1 and 2 of every scenario: the cluster, the CRDs, the operator's identity and a
    fresh namespace. Returns the cluster, its cluster.env and the operator's kubeconfig."""
    say(f"== 1/{stages}  the local control plane (built once per machine, then reused)")
    cluster = LocalCluster()
    env_file = cluster.up("full")
    say(cluster.kubectl("get", "nodes"))

    say(f"== 2/{stages}  install Perennial (CRDs, ServiceAccount, RBAC), start the operator and {exporter}")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    cluster.wait_established(
        "crd/modeldeployments.perennial.dev", "crd/driftpolicies.perennial.dev", "crd/trainingjobs.perennial.dev"
    )
    kubeconfig = cluster.operator_kubeconfig()
    fresh_namespace(cluster)
    return cluster, env_file, kubeconfig


def fresh_namespace(cluster: LocalCluster) -> None:
    """The demo's namespace, empty: a previous run's goes first."""
    if f"namespace/{NAMESPACE}" in cluster.kubectl("get", "namespaces", "-o", "name").split():
        say(f"  removing the previous run's namespace {NAMESPACE}")
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    cluster.kubectl("create", "namespace", NAMESPACE)


def run() -> int:
    """The loop scenario (the default)."""
    started = time.monotonic()
    cluster, env_file, kubeconfig = _install(5, "a drift exporter")
    exporter = DemoExporter()
    _set_targets(cluster.targets_file, exporter.address)
    log_path = cluster.logs / "operator-demo.log"
    try:
        with _operator(cluster, kubeconfig, log_path):
            say(f"  operator log: {log_path}")
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=DEMO_OBJECTS)
            say(f"\n== 3/5  ModelDeployment churn: initial training, gates, first rollout (namespace {NAMESPACE})")
            watch_until(
                cluster,
                lambda: (
                    read_status(cluster, "mdep/churn").get("servingVersion") == "1"
                    and read_status(cluster, "mdep/churn").get("phase") == "Serving"
                ),
                "v1 serving",
            )

            say("\n== 4/5  the inputs drift: feature_psi 0.04 -> 0.31 (bound: max 0.2 for 10s)")
            exporter.psi.set(0.31)
            onset = time.monotonic()
            watch_until(
                cluster,
                lambda: read_status(cluster, "dpol/churn-drift").get("triggerCount", 0) >= 1,
                "the drift trigger",
            )
            detected = time.monotonic()
            watch_until(cluster, lambda: read_status(cluster, "mdep/churn").get("servingVersion") == "2", "v2 serving")
            recovered = time.monotonic()

            say("\n== 5/5  the retrained model serves; the drift episode ends")
            exporter.psi.set(0.05)
            watch_until(
                cluster,
                lambda: any(
                    c["type"] == "Drifting" and c["status"] == "False"
                    for c in read_status(cluster, "dpol/churn-drift").get("conditions") or []
                ),
                "the end of the drift episode",
            )
    finally:
        _set_targets(cluster.targets_file, None)
        exporter.stop()

    print_lineage(read_status(cluster, "mdep/churn"))
    print_recovery(onset, detected, recovered, started)
    say(
        "\nThe cluster stays up with the demo objects. Look around:\n"
        f"  set -a; . {env_file}; set +a\n"
        f"  $KUBECTL get perennial,deploy,svc,pods -n {NAMESPACE}\n"
        f"  $KUBECTL describe mdep churn -n {NAMESPACE}      # conditions and Events\n"
        f"  curl -s '{cluster.prometheus_url()}/api/v1/query?query=up'\n"
        "  make run            # the operator again (it stopped with the demo)\n"
        "  make cluster-down   # stop the cluster and delete its state"
    )
    return 0


def print_lineage(model: dict[str, Any]) -> None:
    """The loop's summary: each version's trigger, data, metrics (the champion's on its holdout) and decision."""
    say("\nLineage (status.versions):")
    for record in model.get("versions") or []:
        trigger, dataset, metrics = record.get("trigger", {}), record.get("dataset", {}), record.get("metrics", {})
        champion = {name: value for name, value in metrics.items() if name.startswith("champion_")}
        say(
            f"  v{record['version']}  {record.get('state', ''):<8} trigger={trigger.get('reason', '')}"
            f"{(' ' + trigger.get('detail', '')) if trigger.get('reason') == 'Drift' else ''}"
            f"  auc={metrics.get('auc')}"
            + (f"  champion: {', '.join(f'{k}={v}' for k, v in sorted(champion.items()))}" if champion else "")
            + f"\n      data={dataset.get('uri')} window {dataset.get('windowStart')} .. {dataset.get('windowEnd')}\n"
            f"      decision={record.get('decision', {}).get('reason', '')}"
        )


def print_recovery(onset: float, detected: float, recovered: float, started: float) -> None:
    say(
        f"\nTime to recover: {recovered - onset:.0f}s from drift onset to v2 serving "
        f"(detection {detected - onset:.0f}s = interval + for; training and rollout {recovered - detected:.0f}s)."
        f" Whole demo: {time.monotonic() - started:.0f}s."
    )


# ---------------------------------------------------------------- the canary scenario
CANARY = "churn-canary"
REPLICAS = 4
ERROR_RATIO_MAX, WORSE_THAN_STABLE_MAX = 0.05, 0.01
# The servers' online error ratio per version (what the exporter plays): v2 as good as v1, v3 bad.
ERROR_RATIOS = {"1": 0.011, "2": 0.009, "3": 0.12}

CANARY_OBJECTS = (
    """
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata: {name: churn}
spec:
TRAINING
  serving:
    image: registry.example/churn-server:1.9.0
    replicas: REPLICAS
  promotion:
    requireImprovement: {metric: auc, minDelta: 0.0}
  rollout:
    strategy: Canary
    progressDeadline: 60s
    steps:                       # short for the demo: minutes in real life
      - {weight: 25, pause: 20s}   # 1 of the 4 replicas runs the new version
      - {weight: 50, pause: 20s}   # 2 of 4
    analysis:
      interval: 5s
      metrics:
        - name: error_ratio
          query: max(churn_online_error_ratio{job="EXPORTER_JOB",model="{model}",version="{version}"})
          max: ERROR_RATIO_MAX
          for: 10s
        - name: worse_than_stable  # the canary's error ratio less the stable version's
          query: >-
            max(churn_online_error_ratio{job="EXPORTER_JOB",model="{model}",version="{version}"})
            - max(churn_online_error_ratio{job="EXPORTER_JOB",model="{model}",version="{stableVersion}"})
          max: WORSE_THAN_STABLE_MAX
          for: 10s
""".replace("EXPORTER_JOB", JOB)
    .replace("REPLICAS", str(REPLICAS))
    .replace("TRAINING", DEMO_TRAINING)
)
CANARY_OBJECTS = CANARY_OBJECTS.replace("WORSE_THAN_STABLE_MAX", str(WORSE_THAN_STABLE_MAX)).replace(
    "ERROR_RATIO_MAX", str(ERROR_RATIO_MAX)
)
_PASSED = re.compile(r"version (\d+): canary step (\d+)/\d+ passed(?: \(([^)]*)\))?")


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) and value else None


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%H:%M:%S") if moment else "--:--:--"


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float | int) else "-"


@dataclass
class _Step:
    weight: int | None = None
    started: datetime | None = None
    paused: datetime | None = None
    canary: int | None = None
    stable: int | None = None
    passed: datetime | None = None
    evidence: str = ""


@dataclass
class _Canary:
    """What one version's canary went through, from status.rollout and the model's Events."""

    version: str
    previous: str = ""
    started: datetime | None = None
    steps: dict[int, _Step] = field(default_factory=dict)
    promoted: datetime | None = None
    """When the steps were over and the serving Deployment began rolling to it."""
    ended: datetime | None = None
    outcome: str = ""
    """Serving, or the rollback's reason."""
    message: str = ""


@dataclass
class _CanaryWatch:
    """Polls the namespace once a second, prints every change (status line, Events), and
    keeps each canary's timeline for the summary."""

    cluster: LocalCluster
    canaries: dict[str, _Canary] = field(default_factory=dict)
    seen_events: set[str] = field(default_factory=set)
    model: dict[str, Any] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: str = ""

    def poll(self) -> None:
        listed = json.loads(
            self.cluster.kubectl("get", "-n", NAMESPACE, "modeldeployments,deployments,events", "-o", "json")
        )
        items = listed.get("items") or []
        models = [i for i in items if i["kind"] == "ModelDeployment" and i["metadata"]["name"] == "churn"]
        self.model = (models[0].get("status") or {}) if models else {}
        self.deployments = {i["metadata"]["name"]: i for i in items if i["kind"] == "Deployment"}
        self._follow(self.model)
        events = [
            i
            for i in items
            if i["kind"] == "Event"
            and i["involvedObject"].get("kind") == "ModelDeployment"
            and i["metadata"]["uid"] not in self.seen_events
        ]
        # In the order the API server stored them; each before the status line it explains.
        events.sort(key=lambda e: (e.get("firstTimestamp") or "", int(e["metadata"]["resourceVersion"])))
        for event in events:
            self.seen_events.add(event["metadata"]["uid"])
            self._event(event)
        line = self._line()
        if line != self.last:
            say(f"  {time.strftime('%H:%M:%S')}  {line}")
            self.last = line

    def _deployment(self, name: str) -> str:
        body = self.deployments.get(name)
        if body is None:
            return f"{name}=-"
        version = (body["spec"]["template"]["metadata"].get("labels") or {}).get("perennial.dev/version", "?")
        available = (body.get("status") or {}).get("availableReplicas") or 0
        return f"{name}=v{version} {available}/{body['spec'].get('replicas', 0)}"

    def _line(self) -> str:
        status = self.model
        if not status:
            return "(waiting for the objects)"
        rollout = status.get("rollout") or {}
        if rollout.get("stage") == "Step":
            where = f"v{rollout['version']} step {rollout.get('step')}/{rollout.get('steps')} {rollout.get('weight')}%"
            where += " paused" if rollout.get("pauseStartedAt") else " starting"
        elif rollout.get("stage") == "Promote":
            where = f"v{rollout['version']} promote 100%"
        elif rollout:
            where = f"v{rollout['version']} rolling"
        else:
            where = "-"
        analysis = " ".join(f"{m['name']}={_number(m.get('value'))}" for m in rollout.get("analysis") or [])
        versions = ", ".join(f"v{r['version']} {r.get('state', '?')}" for r in status.get("versions") or [])
        return (
            f"serving={status.get('servingVersion', '-'):<2} ready={status.get('ready', '-'):<4} "
            f"rollout={where:<24} {self._deployment('churn'):<17} {self._deployment(CANARY):<24} "
            f"{analysis or 'analysis=-':<43} | {versions}"
        )

    def _event(self, event: dict[str, Any]) -> None:
        reason, message = event.get("reason", ""), event.get("message", "")
        moment = _time(event.get("firstTimestamp") or event.get("eventTime"))
        say(f"  {_clock(moment)}  > {event.get('type', '')} {reason}: {message}")
        passed = _PASSED.match(message)
        if reason in ("CanaryStep", "CanaryPassed") and passed:
            canary = self.canaries.setdefault(passed.group(1), _Canary(passed.group(1)))
            step = canary.steps.setdefault(int(passed.group(2)), _Step())
            step.evidence = passed.group(3) or ""
            step.passed = step.passed or moment

    def _follow(self, status: dict[str, Any]) -> None:
        rollout = status.get("rollout") or {}
        if rollout.get("strategy") == "Canary":
            version = rollout["version"]
            canary = self.canaries.setdefault(version, _Canary(version))
            canary.previous = rollout.get("previousVersion") or canary.previous
            canary.started = canary.started or _time(rollout.get("startedAt"))
            if rollout.get("stage") == "Step" and rollout.get("step"):
                step = canary.steps.setdefault(int(rollout["step"]), _Step())
                step.weight, step.started = rollout.get("weight"), _time(rollout.get("stepStartedAt"))
                for earlier, before in canary.steps.items():  # a later step started: the earlier passed then
                    if earlier < rollout["step"] and before.passed is None:
                        before.passed = step.started
                if rollout.get("pauseStartedAt") and step.paused is None:
                    step.paused = _time(rollout["pauseStartedAt"])
                    step.canary, step.stable = rollout.get("canaryReplicas"), rollout.get("stableReplicas")
            elif rollout.get("stage") == "Promote":
                canary.promoted = canary.promoted or _time(rollout.get("stepStartedAt"))
        for record in status.get("versions") or []:
            ended = self.canaries.get(record["version"])
            if ended is None or ended.ended is not None:
                continue
            rollback = record.get("rollback") or {}
            if record.get("state") == "RolledBack" and rollback:
                ended.ended, ended.outcome = _time(rollback.get("time")), rollback.get("reason", "RolledBack")
                ended.message = rollback.get("message", "")
            elif record.get("state") == "Serving":
                ended.ended, ended.outcome = _time(record.get("promotedAt")), "Serving"

    def until(self, done: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.poll()
            except (ClusterError, json.JSONDecodeError):
                pass
            else:
                if done():
                    return
            time.sleep(1)
        raise ClusterError(f"{what} did not happen within {timeout:.0f}s")

    # ------------------------------------------------------------ what the checks ask
    def version(self, name: str) -> dict[str, Any]:
        return next((r for r in self.model.get("versions") or [] if r["version"] == name), {})

    def serves_alone(self, version: str) -> bool:
        """``version`` serves on every replica of the serving Deployment, no canary runs, and the
        status says so (ready counts the available replicas)."""
        body = self.deployments.get("churn") or {}
        labels = (body.get("spec") or {}).get("template", {}).get("metadata", {}).get("labels") or {}
        return (
            self.model.get("servingVersion") == version
            and not self.model.get("rollout")
            and self.model.get("ready") == f"{REPLICAS}/{REPLICAS}"
            and CANARY not in self.deployments
            and labels.get("perennial.dev/version") == version
            and body["spec"].get("replicas") == REPLICAS
            and (body.get("status") or {}).get("availableReplicas") == REPLICAS
        )


def _timeline(canary: _Canary) -> list[str]:
    """One canary, step by step, in seconds from its start (the status's own clock)."""
    start = canary.started
    rows: list[tuple[datetime | None, str]] = []
    for number, step in sorted(canary.steps.items()):
        rows.append((step.started, f"step {number} at {step.weight}%: the canary's replicas start"))
        if step.paused:
            shares = f"{step.canary} canary + {step.stable} stable replica(s) available"
            rows.append((step.paused, f"step {number}'s pause starts ({shares})"))
        if step.passed:
            rows.append((step.passed, f"step {number} passed" + (f": {step.evidence}" if step.evidence else "")))
    if canary.promoted:
        rows.append((canary.promoted, f"promote: the serving Deployment rolls to v{canary.version}"))
    if canary.outcome == "Serving":
        rows.append((canary.ended, f"v{canary.version} serves on every replica; the canary Deployment goes"))
    elif canary.outcome:
        rows.append((canary.ended, f"aborted ({canary.outcome}): {canary.message}"))
    lines = []
    for moment, text in rows:
        offset = f"+{(moment - start).total_seconds():.0f}s" if moment and start else "?"
        lines.append(f"    {_clock(moment)}  {offset:>5}  {text}")
    return lines


def run_canary() -> int:
    """The canary scenario: a healthy canary passes every step, a bad one is aborted at step 1."""
    started = time.monotonic()
    cluster, env_file, kubeconfig = _install(5, "an exporter of each version's online error ratio")
    exporter = DemoExporter()
    _set_targets(cluster.targets_file, exporter.address)
    for version in ("1", "2"):
        exporter.error_ratio.labels(model="churn", version=version).set(ERROR_RATIOS[version])
    log_path = cluster.logs / "operator-demo.log"
    watch = _CanaryWatch(cluster)
    try:
        with _operator(cluster, kubeconfig, log_path):
            say(f"  operator log: {log_path}")
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=CANARY_OBJECTS)
            say(
                f"\n== 3/5  ModelDeployment churn: {REPLICAS} replicas, rollout Canary 25% 20s -> 50% 20s, analysis"
                f" every 5s; v1 trains and rolls out at once (namespace {NAMESPACE})"
            )
            say(
                "  a line: status (servingVersion, ready, rollout), the Deployments (version available/replicas),"
                " status.rollout.analysis, status.versions;\n  '>': the model's Events"
            )
            watch.until(lambda: watch.serves_alone("1"), "v1 serving on every replica")

            say(
                f"\n== 4/5  a retrain request trains v2; its online error ratio is healthy ({ERROR_RATIOS['2']}; v1"
                f" {ERROR_RATIOS['1']}; bounds: error_ratio max {ERROR_RATIO_MAX}, worse_than_stable max"
                f" {WORSE_THAN_STABLE_MAX}, for 10s)"
            )
            _request_retrain(cluster, "demo-canary-v2")
            watch.until(lambda: watch.serves_alone("2"), "v2 serving on every replica after its canary")

            say(
                f"\n== 5/5  another retrain trains v3, whose servers fail: its error ratio is {ERROR_RATIOS['3']}"
                f" (max {ERROR_RATIO_MAX} for 10s)"
            )
            exporter.error_ratio.labels(model="churn", version="3").set(ERROR_RATIOS["3"])
            _request_retrain(cluster, "demo-canary-v3")
            watch.until(
                lambda: watch.version("3").get("state") == "RolledBack" and watch.serves_alone("2"),
                "v3's canary aborted and v2 back on every replica",
            )
    finally:
        _set_targets(cluster.targets_file, None)
        exporter.stop()

    say("\nLineage (status.versions):")
    for record in watch.model.get("versions") or []:
        rollback = record.get("rollback") or {}
        trigger, decision = record.get("trigger", {}).get("reason", ""), record.get("decision", {}).get("reason", "")
        say(
            f"  v{record['version']}  {record.get('state', ''):<10} trigger={trigger:<7}"
            f" auc={record.get('metrics', {}).get('auc')}  decision={decision}"
            + (f"\n      rollback={rollback.get('reason')}: {rollback.get('message')}" if rollback else "")
        )
    for version, canary in sorted(watch.canaries.items()):
        say(f"\nTimeline of v{version}'s canary (v{canary.previous} stable, {REPLICAS} replicas):")
        for line in _timeline(canary):
            say(line)
    say(f"\nWhole demo: {time.monotonic() - started:.0f}s.")
    say(
        "\nThe cluster stays up with the demo objects. Look around:\n"
        f"  set -a; . {env_file}; set +a\n"
        f"  $KUBECTL get mdep churn -o wide -n {NAMESPACE}   # Step and Canary columns during a canary\n"
        f"  $KUBECTL describe mdep churn -n {NAMESPACE}      # conditions and Events\n"
        f"  $KUBECTL get mdep churn -n {NAMESPACE} -o jsonpath='{{.status.versions[?(@.version==\"3\")].rollback}}'\n"
        "  make run            # the operator again (it stopped with the demo)\n"
        "  make cluster-down   # stop the cluster and delete its state"
    )
    return 0


def _request_retrain(cluster: LocalCluster, request: str) -> None:
    """A person's retrain request: a new value of the annotation (bypasses the cooldown)."""
    annotation = f"perennial.dev/retrain-request={request}"
    cluster.kubectl("annotate", "--overwrite", "-n", NAMESPACE, "mdep/churn", annotation)
    say(f"  $ kubectl annotate mdep/churn {annotation}")


def main(scenario: str = "loop", profile: str = "full") -> int:
    # Scenarios share the namespace (and the operator's Lease): one demo at a time per cluster.
    try:
        if profile not in PROFILES:
            raise ClusterError(f"the demo runs on the profiles {', '.join(PROFILES)}, not {profile!r}")
        if profile == "real" and scenario != "loop":
            raise ClusterError(f"the `real` profile plays the loop scenario only, not {scenario!r}")
        with _flock(state_dir() / "demo.lock", wait=False) as alone:
            if not alone:
                raise ClusterError(f"another demo is running on this cluster (it holds {state_dir() / 'demo.lock'})")
            if profile == "real":
                from localcluster import demo_real  # it builds on this module's helpers

                return demo_real.run()
            return run_canary() if scenario == "canary" else run()
    except ClusterError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
