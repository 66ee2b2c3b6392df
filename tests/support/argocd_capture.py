"""Real objects for the Argo CD health checks' testdata, captured from the local cluster.

Drives one scenario per health state with the operator running (``perennial run``,
watching a fresh namespace) and saves ``kubectl get -o json`` of each object when it
reaches the state, minus server noise (managedFields, uid, resourceVersion), with the
namespace renamed to ``ml``. Objects that wait for the operator are captured before it
starts (no status) or after it stopped (a spec edited since its last reconcile).

    python -m tests.support.argocd_capture          # refresh argocd/.../testdata (make argocd-testdata)

``tests/e2e/test_argocd_health.py`` runs the same capture into a temporary directory and
checks the health scripts against the fresh objects, so the testdata stays what the
operator really writes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support import operator as operator_support
from tests.support.cluster import REPO_ROOT, ClusterInfo, bring_up, install_crds
from tests.support.resources import request_retrain
from tests.support.waiting import wait_until

CUSTOMIZATIONS = REPO_ROOT / "argocd" / "resource_customizations" / "perennial.dev"
STABLE_NAMESPACE = "ml"
PLURALS = {"TrainingJob": "trainingjobs", "ModelDeployment": "modeldeployments", "DriftPolicy": "driftpolicies"}
NOISE = ("managedFields", "uid", "resourceVersion", "selfLink")

GOOD_RESULT = '{"metrics": {"auc": 0.934, "latency_p99_ms": 31, "loss": 0.21}}'
Status = dict[str, Any]


def _conditions(status: Status) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def _condition_is(status: Status, type_: str, value: str, reason: str | None = None) -> bool:
    found = _conditions(status).get(type_)
    return found is not None and found["status"] == value and (reason is None or found["reason"] == reason)


def _version_state(status: Status, version: str) -> str | None:
    found = [r for r in status.get("versions") or [] if r["version"] == version]
    return found[0].get("state") if found else None


def normalize(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object without per-run server noise, in namespace ``ml``."""
    metadata = obj["metadata"]
    for key in NOISE:
        metadata.pop(key, None)
    for owner in metadata.get("ownerReferences") or []:
        owner.pop("uid", None)
    text = json.dumps(obj).replace(namespace, STABLE_NAMESPACE)
    cleaned: dict[str, Any] = json.loads(text)
    return cleaned


class Capture:
    """One namespace of scenarios and the directory their objects are saved to."""

    def __init__(self, cluster: ClusterInfo, namespace: str, out: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.out = out
        self.saved: list[Path] = []

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl_run(
            "apply", "--server-side", "-n", self.namespace, "-f", "-", stdin=yaml.safe_dump(manifest)
        )

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.cluster.kubectl_run(
            "patch", PLURALS[kind], name, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        result = self.cluster.kubectl_run("get", PLURALS[kind], name, "-n", self.namespace, "-o", "json")
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def wait(self, kind: str, name: str, predicate: Callable[[Status], bool], what: str, timeout: float = 120) -> None:
        def probe() -> bool:
            body = self.get(kind, name)
            status: Status = body.get("status") or {}
            # Only a status of the current generation counts.
            return status.get("observedGeneration") == body["metadata"]["generation"] and predicate(status)

        wait_until(probe, timeout=timeout, what=f"{kind} {name}: {what}")

    def save(self, kind: str, name: str, filename: str, scenario: str) -> None:
        body = normalize(self.get(kind, name), self.namespace)
        path = self.out / kind / "testdata" / f"{filename}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# {scenario}\n"
            "# Captured from the local cluster by tests/support/argocd_capture.py (make argocd-testdata).\n"
        )
        path.write_text(header + yaml.safe_dump(body, sort_keys=False, width=1000))
        self.saved.append(path)

    @contextmanager
    def stage(self, name: str, labels: dict[str, str]) -> Iterator[None]:
        """A kwok Stage: pods with these labels in this namespace run but never become Ready."""
        stage = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": f"{name}-{self.namespace}"[:63]},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                "weight": 1_000_000_000,
                "selector": {
                    "matchLabels": labels,
                    "matchExpressions": [
                        {"key": ".metadata.namespace", "operator": "In", "values": [self.namespace]},
                        {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                    ],
                },
                "next": {"statusTemplate": 'phase: Running\nconditions:\n- {type: Ready, status: "False"}\n'},
            },
        }
        self.cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(stage))
        try:
            yield
        finally:
            self.cluster.kubectl_run("delete", "stage", stage["metadata"]["name"], "--wait=false")


# ---------------------------------------------------------------- the objects
def _example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO_ROOT / "examples" / name).read_text()) if d]


def trainingjob(name: str, annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    """examples/trainingjob.yaml under another name; the pod annotations tell kwok what the trainer does."""
    (body,) = _example("trainingjob.yaml")
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    body["spec"]["podAnnotations"] = annotations
    return body


def modeldeployment(name: str, annotations: dict[str, str], **changes: Any) -> dict[str, Any]:
    """The ModelDeployment of examples/churn.yaml under another name, with sim results for its trainer."""
    body = _example("churn.yaml")[0]
    body["metadata"]["name"] = name
    body["spec"]["training"]["podAnnotations"] = annotations
    for key, value in changes.items():
        body["spec"][key] = {**body["spec"].get(key, {}), **value}
    return body


def driftpolicy(name: str, target: str, **spec: Any) -> dict[str, Any]:
    body = _example("churn.yaml")[1]
    body["metadata"]["name"] = name
    body["spec"]["targetRef"] = {"name": target}
    body["spec"].update(spec)
    return body


def one_metric(query: str) -> list[dict[str, Any]]:
    return [{"name": "feature_psi", "query": query, "max": 0.2}]


def canary(pause: str, query: str | None = None) -> dict[str, Any]:
    """spec.rollout with strategy Canary: one step at 50% held for ``pause``, and an
    analysis of error_ratio (max 0.05) read from ``query`` if given."""
    rollout: dict[str, Any] = {"strategy": "Canary", "steps": [{"weight": 50, "pause": pause}]}
    if query is not None:
        rollout["analysis"] = {"interval": "5s", "metrics": [{"name": "error_ratio", "query": query, "max": 0.05}]}
    return rollout


# ---------------------------------------------------------------- the scenarios
def capture_without_operator(c: Capture) -> None:
    """Created, never reconciled: what Argo CD sees right after a sync, before the operator runs."""
    c.apply(trainingjob("tj-new", {"sim.perennial.dev/result": GOOD_RESULT}))
    c.apply(modeldeployment("md-new", {"sim.perennial.dev/result": GOOD_RESULT}))
    c.apply(driftpolicy("dp-new", "md-new"))
    scenario = "Just applied; the operator has not reconciled it yet (no status)."
    c.save("TrainingJob", "tj-new", "progressing-no-status", scenario)
    c.save("ModelDeployment", "md-new", "progressing-no-status", scenario)
    c.save("DriftPolicy", "dp-new", "progressing-no-status", scenario)
    for kind, name in (("TrainingJob", "tj-new"), ("ModelDeployment", "md-new"), ("DriftPolicy", "dp-new")):
        c.cluster.kubectl_run("delete", PLURALS[kind], name, "-n", c.namespace)


def capture_trainingjobs(c: Capture) -> None:
    c.apply(trainingjob("tj-pending", {}, nodeSelector={"perennial.dev/no-such-node": "true"}))
    c.apply(trainingjob("tj-running", {"sim.perennial.dev/duration": "10m"}))
    c.apply(trainingjob("tj-succeeded", {"sim.perennial.dev/result": GOOD_RESULT}))
    c.apply(trainingjob("tj-rejected", {"sim.perennial.dev/result": '{"metrics": {"auc": 0.81}}'}))
    c.apply(trainingjob("tj-failed", {"sim.perennial.dev/exit-code": "1"}, backoffLimit=0))
    # A Job of the TrainingJob's name that something else owns: left alone, reported.
    c.cluster.kubectl_run(
        "create", "job", "tj-conflict", "-n", c.namespace, "--image=registry.example/other:1", "--", "true"
    )
    c.apply(trainingjob("tj-conflict", {"sim.perennial.dev/result": GOOD_RESULT}))

    c.wait(
        "TrainingJob",
        "tj-pending",
        lambda s: s.get("phase") == "Pending" and bool(s.get("jobName")),
        "Pending with its Job created",
    )
    c.save("TrainingJob", "tj-pending", "progressing-pending", "The Job exists; its pod cannot be scheduled yet.")
    c.wait("TrainingJob", "tj-running", lambda s: s.get("phase") == "Running", "Running")
    c.save("TrainingJob", "tj-running", "progressing-running", "The trainer pod runs (for 10 minutes).")
    c.wait("TrainingJob", "tj-succeeded", lambda s: s.get("phase") == "Succeeded", "Succeeded")
    c.save("TrainingJob", "tj-succeeded", "healthy-succeeded", "Trained; auc 0.934 passes the gate auc >= 0.9.")
    c.wait("TrainingJob", "tj-rejected", lambda s: s.get("phase") == "Rejected", "Rejected")
    c.save("TrainingJob", "tj-rejected", "degraded-rejected", "Trained, but auc 0.81 fails the gate auc >= 0.9.")
    c.wait("TrainingJob", "tj-failed", lambda s: s.get("phase") == "Failed", "Failed")
    c.save("TrainingJob", "tj-failed", "degraded-failed", "The trainer exits 1; backoffLimit 0.")
    c.wait(
        "TrainingJob",
        "tj-conflict",
        lambda s: _condition_is(s, "Succeeded", "Unknown", "JobConflict"),
        "JobConflict",
    )
    c.save("TrainingJob", "tj-conflict", "degraded-job-conflict", "A Job of its name exists that it does not own.")


# One serving replica, labelled so a Stage can select serving pods and leave trainer pods alone.
SERVER: dict[str, Any] = {"replicas": 1, "podLabels": {"component": "server"}}


def capture_modeldeployments(c: Capture) -> None:
    quick = {"sim.perennial.dev/duration": "2s", "sim.perennial.dev/result": GOOD_RESULT}
    c.apply(modeldeployment("churn", {"sim.perennial.dev/duration": "6s", "sim.perennial.dev/result": GOOD_RESULT}))
    c.apply(modeldeployment("md-rollback", quick, rollout={"progressDeadline": "15s"}, serving=SERVER))
    c.apply(modeldeployment("md-unavailable", quick, serving=SERVER))
    c.apply(modeldeployment("md-failed", {"sim.perennial.dev/exit-code": "1"}, training={"backoffLimit": 0}))
    (manual,) = _example("modeldeployment-manual.yaml")
    manual["spec"]["training"]["podAnnotations"] = {
        "sim.perennial.dev/result": '{"metrics": {"precision_at_1pct": 0.8}}'
    }
    c.apply(manual)

    c.wait("ModelDeployment", "churn", lambda s: s.get("phase") == "Training", "training v1")
    c.save("ModelDeployment", "churn", "progressing-training", "examples/churn.yaml: version 1 trains; nothing serves.")
    c.wait("ModelDeployment", "churn", lambda s: s.get("phase") == "Serving", "serving v1")
    c.save("ModelDeployment", "churn", "healthy-serving", "examples/churn.yaml: version 1 serves on 3 Ready pods.")

    c.patch("ModelDeployment", "churn", {"spec": {"pinnedVersion": "9"}})
    c.wait(
        "ModelDeployment",
        "churn",
        lambda s: _condition_is(s, "Degraded", "True", "PinnedVersionUnknown"),
        "PinnedVersionUnknown",
    )
    c.save("ModelDeployment", "churn", "degraded-pinned-unknown", "spec.pinnedVersion names no trained version.")
    c.patch("ModelDeployment", "churn", {"spec": {"pinnedVersion": None}})
    c.wait("ModelDeployment", "churn", lambda s: s.get("phase") == "Serving", "serving again")

    c.wait("ModelDeployment", "md-failed", lambda s: s.get("phase") == "Failed", "Failed")
    c.save("ModelDeployment", "md-failed", "degraded-failed", "Version 1's trainer exits 1: nothing can serve.")
    c.wait("ModelDeployment", "fraud", lambda s: (s.get("versions") or [{}])[-1].get("state") == "Candidate", "v1")
    c.save(
        "ModelDeployment",
        "fraud",
        "suspended-candidate",
        "examples/modeldeployment-manual.yaml: version 1 validated, waits for spec.pinnedVersion.",
    )

    # A rollout that never becomes Available: Rolling, then rolled back.
    c.wait("ModelDeployment", "md-rollback", lambda s: s.get("phase") == "Serving", "serving v1")
    with c.stage(
        "unready-v2", {**SERVER["podLabels"], "perennial.dev/model": "md-rollback", "perennial.dev/version": "2"}
    ):
        request_retrain(c.cluster, c.namespace, "md-rollback", "second")
        c.wait("ModelDeployment", "md-rollback", lambda s: s.get("phase") == "Rolling", "rolling out v2")
        c.save("ModelDeployment", "md-rollback", "progressing-rolling", "Version 2 rolls out; version 1 still serves.")
        c.wait(
            "ModelDeployment",
            "md-rollback",
            lambda s: _condition_is(s, "Degraded", "True", "RolledBack"),
            "rolled back",
            timeout=90,
        )
        c.save(
            "ModelDeployment",
            "md-rollback",
            "degraded-rolled-back",
            "Version 2 was not Available within progressDeadline 15s: rolled back to version 1.",
        )

    # The serving version's pods stop being Ready.
    c.wait("ModelDeployment", "md-unavailable", lambda s: s.get("phase") == "Serving", "serving v1")
    with c.stage(
        "unready-v1", {**SERVER["podLabels"], "perennial.dev/model": "md-unavailable", "perennial.dev/version": "1"}
    ):
        c.cluster.kubectl_run(
            "delete", "pods", "-n", c.namespace, "-l", "component=server,perennial.dev/model=md-unavailable"
        )
        c.wait(
            "ModelDeployment",
            "md-unavailable",
            lambda s: _condition_is(s, "Ready", "False", "Unavailable"),
            "unavailable",
        )
        c.save(
            "ModelDeployment",
            "md-unavailable",
            "progressing-unavailable",
            "Version 1 serves, but its replacement pod is not Ready yet.",
        )


# Two serving replicas: a canary step at 50% gives the new version one of them.
CANARY_SERVER: dict[str, Any] = {"replicas": 2}


def capture_canaries(c: Capture) -> None:
    """strategy Canary: a step in its pause, a canary its analysis aborts, and the next
    version, whose canary passes. The analysis queries are PromQL constants (vector())."""
    quick = {"sim.perennial.dev/duration": "2s", "sim.perennial.dev/result": GOOD_RESULT}
    c.apply(modeldeployment("md-canary", quick, serving=CANARY_SERVER, rollout=canary("10m")))
    c.apply(modeldeployment("md-canary-abort", quick, serving=CANARY_SERVER, rollout=canary("10m", "vector(0.2)")))

    c.wait("ModelDeployment", "md-canary", lambda s: s.get("phase") == "Serving", "serving v1")
    request_retrain(c.cluster, c.namespace, "md-canary", "second")
    c.wait(
        "ModelDeployment",
        "md-canary",
        lambda s: (s.get("rollout") or {}).get("stage") == "Step" and bool(s["rollout"].get("pauseStartedAt")),
        "version 2's canary step paused",
    )
    c.save(
        "ModelDeployment",
        "md-canary",
        "progressing-canary-step",
        "Version 2's canary holds step 1/1 (50%: 1 of 2 replicas) for its 10m pause; version 1 serves the other.",
    )

    c.wait("ModelDeployment", "md-canary-abort", lambda s: s.get("phase") == "Serving", "serving v1")
    request_retrain(c.cluster, c.namespace, "md-canary-abort", "second")
    c.wait(
        "ModelDeployment",
        "md-canary-abort",
        lambda s: _version_state(s, "2") == "RolledBack" and _condition_is(s, "Degraded", "True", "AnalysisFailed"),
        "version 2's canary aborted",
    )
    c.save(
        "ModelDeployment",
        "md-canary-abort",
        "degraded-canary-analysis-failed",
        "Version 2's canary: error_ratio 0.2 > max 0.05 in its first step; rolled back to version 1.",
    )

    # Degraded until the next version serves: version 3's canary passes.
    c.patch("ModelDeployment", "md-canary-abort", {"spec": {"rollout": canary("1s", "vector(0.01)")}})
    request_retrain(c.cluster, c.namespace, "md-canary-abort", "third")
    c.wait(
        "ModelDeployment",
        "md-canary-abort",
        lambda s: (
            s.get("servingVersion") == "3"
            and s.get("phase") == "Serving"
            and _condition_is(s, "Ready", "True")
            and _condition_is(s, "Degraded", "False", "RolloutSucceeded")
        ),
        "version 3 serves after its canary",
    )
    c.save(
        "ModelDeployment",
        "md-canary-abort",
        "healthy-canary-passed-after-rollback",
        "After version 2's aborted canary, version 3's passes (error_ratio 0.01, pause 1s) and serves.",
    )


def capture_suspended_modeldeployments(c: Capture) -> None:
    """spec.suspend: true, serving and before any version (automatic retrains paused)."""
    quick = {"sim.perennial.dev/duration": "2s", "sim.perennial.dev/result": GOOD_RESULT}
    c.apply(modeldeployment("md-paused", quick, serving=SERVER))
    never_trained = modeldeployment("md-suspended", quick)
    never_trained["spec"]["suspend"] = True
    c.apply(never_trained)

    c.wait(
        "ModelDeployment",
        "md-suspended",
        lambda s: _condition_is(s, "RetrainSuppressed", "True", "Suspended"),
        "the Initial training suppressed",
    )
    c.save(
        "ModelDeployment",
        "md-suspended",
        "suspended-no-version",
        "Created with spec.suspend: true: the Initial training waits; nothing serves.",
    )
    c.wait("ModelDeployment", "md-paused", lambda s: s.get("phase") == "Serving", "serving v1")
    c.patch("ModelDeployment", "md-paused", {"spec": {"suspend": True}})
    c.wait(
        "ModelDeployment",
        "md-paused",
        lambda s: _condition_is(s, "Ready", "True") and s.get("automaticRetrains") == "Suspended",
        "serving, suspended",
    )
    c.save("ModelDeployment", "md-paused", "suspended-serving", "Version 1 serves; then spec.suspend: true.")


def capture_driftpolicies(c: Capture) -> None:
    c.apply(_example("churn.yaml")[1])
    c.apply(driftpolicy("dp-drifting", "churn", metrics=one_metric("vector(0.31)"), trigger={"action": "Observe"}))
    c.apply(driftpolicy("dp-no-target", "no-such-model"))
    c.apply(driftpolicy("dp-bad-query", "churn", metrics=one_metric("max(")))
    c.apply(driftpolicy("dp-suspended", "churn", suspend=True))

    c.wait("DriftPolicy", "churn-drift", lambda s: _condition_is(s, "Ready", "True"), "evaluated")
    c.save("DriftPolicy", "churn-drift", "healthy", "examples/churn.yaml: evaluated; no metric has data.")
    c.wait("DriftPolicy", "dp-drifting", lambda s: _condition_is(s, "Drifting", "True"), "drifting")
    c.save("DriftPolicy", "dp-drifting", "healthy-drifting", "feature_psi 0.31 > max 0.2 (action Observe).")
    c.wait("DriftPolicy", "dp-no-target", lambda s: _condition_is(s, "Ready", "False", "TargetNotFound"), "no target")
    c.save("DriftPolicy", "dp-no-target", "degraded-target-not-found", "targetRef names no ModelDeployment.")
    c.wait("DriftPolicy", "dp-bad-query", lambda s: _condition_is(s, "Ready", "False", "QueryError"), "query error")
    c.save("DriftPolicy", "dp-bad-query", "degraded-query-error", "Prometheus rejects the query max(.")

    # Suspended policies: the operator records the suspension on the Drifting condition
    # only (status.observedGeneration stays behind), so wait on that condition.
    def suspended(name: str) -> None:
        def probe() -> bool:
            body = c.get("DriftPolicy", name)
            drifting = _conditions(body.get("status") or {}).get("Drifting") or {}
            return drifting.get("reason") == "Suspended" and (
                drifting.get("observedGeneration") == body["metadata"]["generation"]
            )

        wait_until(probe, timeout=60, what=f"DriftPolicy {name}: suspended")

    suspended("dp-suspended")
    c.save("DriftPolicy", "dp-suspended", "suspended", "Created with spec.suspend: true.")
    c.patch("DriftPolicy", "dp-drifting", {"spec": {"suspend": True}})
    suspended("dp-drifting")
    c.save("DriftPolicy", "dp-drifting", "suspended-after-evaluations", "Evaluated for a while, then suspended.")


def capture_stale_generations(c: Capture) -> None:
    """With the operator stopped: the user's edit is not reconciled yet."""
    c.patch("ModelDeployment", "churn", {"spec": {"serving": {"replicas": 2}}})
    c.patch("DriftPolicy", "churn-drift", {"spec": {"interval": "30s"}})
    scenario = "Edited while the operator was down: metadata.generation 2, status of generation 1."
    c.save("ModelDeployment", "churn", "progressing-generation-not-observed", scenario)
    c.save("DriftPolicy", "churn-drift", "progressing-generation-not-observed", scenario)


def capture(cluster: ClusterInfo, out: Path, log_path: Path) -> list[Path]:
    """Run every scenario in a fresh namespace; save the objects under ``out/<Kind>/testdata``."""
    install_crds(cluster)
    namespace = f"argocd-capture-{uuid.uuid4().hex[:6]}"
    cluster.kubectl_run("create", "namespace", namespace)
    cluster.kubectl_run("label", "namespace", namespace, "perennial.dev/test=true")
    c = Capture(cluster, namespace, out)
    try:
        wait_until(
            lambda: (
                cluster.kubectl_run("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0
            ),
            timeout=60,
            what="the default ServiceAccount",
        )
        capture_without_operator(c)
        with operator_support.subprocess_operator(cluster, [namespace], log_path, cluster.prometheus_url) as running:
            assert running.pid is not None
            capture_trainingjobs(c)
            capture_modeldeployments(c)
            capture_canaries(c)
            capture_suspended_modeldeployments(c)
            capture_driftpolicies(c)
        capture_stale_generations(c)
    finally:
        cluster.kubectl_run("delete", "namespace", namespace, "--wait=false", check=False)
    return c.saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CUSTOMIZATIONS, help="where <Kind>/testdata/ go")
    args = parser.parse_args(argv)
    cluster = bring_up("full")
    log_path = Path(tempfile.gettempdir()) / "perennial-argocd-capture-operator.log"
    for kind in PLURALS:
        shutil.rmtree(args.out / kind / "testdata", ignore_errors=True)
    try:
        saved = capture(cluster, args.out, log_path)
    except Exception:
        print(f"capture failed; the operator's log: {log_path}", file=sys.stderr)
        raise
    log_path.unlink(missing_ok=True)
    for path in saved:
        print(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
