"""GitOps stability: what a GitOps tool applied stays exactly as it applied it.

Every file of examples/ is applied the way Argo CD syncs (server-side apply, field
manager ``argocd-controller``, with Argo CD's tracking label and annotation on each
object), the operator runs a whole loop (train -> validate -> promote -> roll out; the
DriftPolicies evaluate), and then:

- a server-side dry-run apply of the same files changes nothing (same generation, spec,
  labels, annotations and field ownership), and a real re-apply writes nothing;
- ``kubectl diff --server-side`` reports no difference (exit 0);
- managedFields show that no manager but ``argocd-controller`` owns any field of the
  user's objects outside ``status``: the operator owns no field of any user-written spec;
- an edit in "Git" applies without ``--force-conflicts`` (no one else co-owns a field);
- no child (Deployment, ReplicaSet, pods, Service, TrainingJob, Job) carries Argo CD's
  tracking label or annotations, although every parent has them.

The example trainers are given simulated results: the test writes its own copy of
examples/ (examples/ itself stays untouched) with ``podAnnotations`` for kwok added to
the churn ModelDeployment's training template, plus the metadata Argo CD adds on sync.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.cluster import REPO_ROOT, ClusterInfo
from tests.support.operator import RunningOperator
from tests.support.resources import GROUP, VERSION, condition, get_custom, wait_for_status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

MANAGER = "argocd-controller"
APP = "churn-app"
INSTANCE_LABEL = "app.kubernetes.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
PLURALS = {"TrainingJob": "trainingjobs", "ModelDeployment": "modeldeployments", "DriftPolicy": "driftpolicies"}
# What the churn trainer reports under kwok: passes both gates of examples/churn.yaml.
CHURN_SIM = {
    "sim.perennial.dev/duration": "2s",
    "sim.perennial.dev/result": '{"metrics": {"auc": 0.934, "latency_p99_ms": 31, "loss": 0.21}}',
}


def gitops_copy(namespace: str, directory: Path) -> list[tuple[str, str]]:
    """examples/ as Argo CD would apply it, into ``directory``; returns (kind, name) of every object."""
    directory.mkdir()
    objects = []
    for source in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(source.read_text()) if d]
        for document in documents:
            kind, name = document["kind"], document["metadata"]["name"]
            metadata = document["metadata"]
            metadata.setdefault("labels", {})[INSTANCE_LABEL] = APP
            metadata.setdefault("annotations", {})[TRACKING_ANNOTATION] = f"{APP}:{GROUP}/{kind}:{namespace}/{name}"
            if (source.name, kind) == ("churn.yaml", "ModelDeployment"):
                document["spec"]["training"]["podAnnotations"] = CHURN_SIM
            objects.append((kind, name))
        (directory / source.name).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return objects


def kubectl(cluster: ClusterInfo, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl_run(*args, check=check)


def get(cluster: ClusterInfo, namespace: str, kind: str, name: str) -> dict[str, Any]:
    # kubectl hides managedFields unless asked.
    result = kubectl(cluster, "get", PLURALS[kind], name, "-n", namespace, "-o", "json", "--show-managed-fields")
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def managers(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """managedFields by manager."""
    by_manager: dict[str, list[dict[str, Any]]] = {}
    for entry in body["metadata"].get("managedFields") or []:
        by_manager.setdefault(entry["manager"], []).append(entry)
    return by_manager


def applied_view(body: dict[str, Any]) -> dict[str, Any]:
    """What a GitOps apply decides about: generation, spec, labels, annotations and its own field set."""
    metadata = body["metadata"]
    owned = [e["fieldsV1"] for e in managers(body).get(MANAGER, []) if e.get("operation") == "Apply"]
    return {
        "generation": metadata["generation"],
        "spec": body["spec"],
        "labels": metadata.get("labels"),
        "annotations": metadata.get("annotations"),
        "finalizers": metadata.get("finalizers"),
        "owned by argocd-controller": owned,
    }


def apply_times(body: dict[str, Any]) -> list[str]:
    return [e["time"] for e in managers(body).get(MANAGER, []) if e.get("operation") == "Apply"]


def assert_no_diff(cluster: ClusterInfo, namespace: str, files: Path) -> None:
    """``kubectl diff --server-side`` exits 0 with no output.

    kubectl reads each live object and then dry-runs the apply; a status write by the
    operator between the two shows as a difference in status, so a run that differs is
    tried again: a real difference persists, a race does not.
    """
    diff = "..."
    for _ in range(3):
        result = kubectl(
            cluster,
            "diff",
            "--server-side",
            f"--field-manager={MANAGER}",
            "-n",
            namespace,
            "-f",
            str(files),
            check=False,
        )
        if (result.returncode, result.stdout) == (0, ""):
            return
        assert result.returncode == 1, result.stderr  # 1: a difference; above 1: kubectl failed
        diff = result.stdout
    raise AssertionError(f"kubectl diff reports a difference:\n{diff}")


def tracking_metadata(body: dict[str, Any]) -> list[str]:
    metadata = body.get("metadata") or {}
    keys = [*(metadata.get("labels") or {}), *(metadata.get("annotations") or {})]
    return [k for k in keys if k == INSTANCE_LABEL or k.startswith("argocd.argoproj.io/")]


def test_a_gitops_apply_stays_in_sync_through_a_whole_loop(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: RunningOperator,
    tmp_path: Path,
) -> None:
    cluster = perennial_crds
    files = tmp_path / "gitops"
    objects = gitops_copy(namespace, files)
    assert {kind for kind, _ in objects} == set(PLURALS)
    apply = ("apply", "--server-side", f"--field-manager={MANAGER}", "-n", namespace, "-f", str(files))
    kubectl(cluster, *apply)
    initial = {(kind, name): applied_view(get(cluster, namespace, kind, name)) for kind, name in objects}

    # The loop: churn trains v1, it passes its gates, is promoted and rolled out.
    served = wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: s.get("servingVersion") == "1" and s.get("phase") == "Serving",
        what="v1 trained, promoted and serving",
        timeout=120,
    )
    assert condition(served, "Ready")["status"] == "True"
    assert [(v["version"], v["state"], v["decision"]["result"]) for v in served["versions"]] == [
        ("1", "Serving", "Promoted")
    ]
    # Every object was reconciled: its status is of the generation that was applied, and
    # the other examples' runs are over (their trainers report nothing: Rejected).
    for kind, name in objects:

        def reconciled(kind: str = kind, name: str = name) -> bool:
            body = get(cluster, namespace, kind, name)
            status = body.get("status") or {}
            if status.get("observedGeneration") != body["metadata"]["generation"]:
                return False
            return kind != "TrainingJob" or status.get("phase") in ("Succeeded", "Failed", "Rejected")

        wait_until(reconciled, timeout=120, what=f"{kind} {name} reconciled")
    wait_until(
        lambda: get(cluster, namespace, "ModelDeployment", "fraud")["status"].get("phase") == "Failed",
        timeout=60,
        what="fraud's first run over",
    )

    # 1. A server-side dry-run apply of the same files changes nothing.
    dry_run = json.loads(kubectl(cluster, *apply, "--dry-run=server", "-o", "json", "--show-managed-fields").stdout)
    returned = {(o["kind"], o["metadata"]["name"]): o for o in dry_run.get("items", [dry_run])}
    assert set(returned) == set(objects)
    for key, body in returned.items():
        live = get(cluster, namespace, *key)
        assert applied_view(body) == applied_view(live), key
        assert applied_view(live) == initial[key], f"{key} changed since it was applied"

    # ... and a real re-apply (what a sync or self-heal does) writes nothing: generation,
    # what was applied and argocd-controller's timestamp stay; the finished TrainingJobs,
    # which nothing writes any more, keep their resourceVersion.
    before = {key: get(cluster, namespace, *key) for key in objects}
    reapplied = json.loads(kubectl(cluster, *apply, "-o", "json", "--show-managed-fields").stdout)
    for body in reapplied.get("items", [reapplied]):
        key = (body["kind"], body["metadata"]["name"])
        assert applied_view(body) == initial[key], key
        assert apply_times(body) == apply_times(before[key]), key
        if key[0] == "TrainingJob":
            assert body["metadata"]["resourceVersion"] == before[key]["metadata"]["resourceVersion"], key

    # 2. kubectl diff sees no difference.
    assert_no_diff(cluster, namespace, files)

    # 3. Field ownership: argocd-controller owns what it applied (metadata and spec); every
    # other manager (the operator, as perennial-operator) owns status only, through the
    # status subresource.
    for kind, name in objects:
        by_manager = managers(get(cluster, namespace, kind, name))
        (applied,) = by_manager.pop(MANAGER)
        assert (applied["operation"], set(applied["fieldsV1"])) == ("Apply", {"f:metadata", "f:spec"}), (kind, name)
        assert by_manager, f"{kind} {name}: no status writer in managedFields"
        for manager, entries in by_manager.items():
            for entry in entries:
                where = (kind, name, manager, entry.get("operation"), entry.get("subresource"), list(entry["fieldsV1"]))
                assert entry.get("subresource") == "status", where
                assert set(entry["fieldsV1"]) == {"f:status"}, where

    # 4. An edit in Git applies without --force-conflicts: no one co-owns a spec field.
    churn_file = files / "churn.yaml"
    documents = list(yaml.safe_load_all(churn_file.read_text()))
    documents[0]["spec"]["serving"]["replicas"] = 2
    churn_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    kubectl(cluster, *apply)
    wait_for_status(
        api_client,
        namespace,
        "modeldeployments",
        "churn",
        lambda s: (
            s.get("observedGeneration") == initial[("ModelDeployment", "churn")]["generation"] + 1
            and s.get("ready") == "2/2"
        ),
        what="the edit rolled out: 2/2 ready",
    )
    assert_no_diff(cluster, namespace, files)

    # 5. Children carry no GitOps tracking metadata, although every parent does.
    for kind, name in objects:
        assert tracking_metadata(get(cluster, namespace, kind, name)), (kind, name)
    apps, batch, core = client.AppsV1Api(api_client), client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    serialize = api_client.sanitize_for_serialization
    children: list[tuple[str, dict[str, Any]]] = []
    children += [("Deployment", serialize(d)) for d in apps.list_namespaced_deployment(namespace).items]
    children += [("ReplicaSet", serialize(r)) for r in apps.list_namespaced_replica_set(namespace).items]
    children += [("Service", serialize(s)) for s in core.list_namespaced_service(namespace).items]
    children += [("Job", serialize(j)) for j in batch.list_namespaced_job(namespace).items]
    children += [("Pod", serialize(p)) for p in core.list_namespaced_pod(namespace).items]
    owned_runs = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", label_selector="app.kubernetes.io/managed-by=perennial"
    )["items"]
    children += [("TrainingJob", t) for t in owned_runs]
    kinds = {kind for kind, _ in children}
    assert kinds >= {"Deployment", "ReplicaSet", "Service", "Job", "Pod", "TrainingJob"}, kinds
    for kind, body in children:
        assert body["metadata"].get("ownerReferences"), (kind, body["metadata"]["name"])
        assert tracking_metadata(body) == [], (kind, body["metadata"]["name"], tracking_metadata(body))
        if kind in ("Deployment", "Service", "Job", "TrainingJob"):
            assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "perennial", (kind, body)
    # The TrainingJob the ModelDeployment created is not one of the user's objects.
    assert "churn-v1" in {t["metadata"]["name"] for t in owned_runs}
    assert get_custom(api_client, namespace, "trainingjobs", "churn-v1")["metadata"]["ownerReferences"][0]["kind"] == (
        "ModelDeployment"
    )
