"""Upgrading from the first release (0.1.0) to this tree: nothing a user has is lost or restarted.

The first release is the tree of tag ``v0.1.0`` (read with ``git archive``, no network;
a clone without the tag uses the same commit, recorded below). Each test brings up a
private full cluster in a temporary directory: the 0.1.0 CRDs are older than this tree's,
and CRDs are cluster-wide, so they must never reach the session's shared cluster.

In that cluster, as a user would:

1. install 0.1.0 as its README said (``kubectl apply -k manifests/``, or ``helm install``
   of its chart, whose CRDs Helm installed from the chart's ``crds/``);
2. run the 0.1.0 operator (its own code, from the archive, on today's libraries) as the
   ServiceAccount that install created, and let two models reach Serving (one of them
   retrained to version 2) under a DriftPolicy;
3. stop it and upgrade: ``kubectl apply -k manifests/`` of this tree, or ``helm upgrade``
   to this chart (its CRDs are now templates, adopted once with ``--take-ownership``);
4. run this tree's operator, and check: every object kept (same uids), no retrain (no
   new TrainingJob), no serving Deployment restarted (same generation, pod template,
   ReplicaSets and pods), no version lost, and each object's status converged in its
   first write (observedGeneration == generation, Ready, the new fields such as
   ``automaticRetrains`` filled). How long that pass took is printed as a measurement.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from localcluster.cluster import LocalCluster

from tests.e2e.test_modeldeployment_loop import cond, served
from tests.support import delivery
from tests.support import operator as operator_support
from tests.support.cluster import REPO_ROOT, ClusterInfo
from tests.support.resources import GROUP, VERSION, apply, request_retrain, simulated_model, wait_for_status
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.timeout(600)

RELEASE_TAG = "v0.1.0"
# The commit the tag points to: the last of the first round (2026-11-26), landed with CI
# passing, before the second round began. A clone without tags still has this commit.
RELEASE_COMMIT = "04a1ca5cfe7c7497a00ccf59cbe4e994d6db12dc"

NAMESPACE = "ml"
CRDS = ("trainingjobs.perennial.dev", "modeldeployments.perennial.dev", "driftpolicies.perennial.dev")
PLURALS = ("modeldeployments", "driftpolicies", "trainingjobs")
MODELS = ("churn", "fraud")
POLICY = "churn-drift"
# How long "nothing else happens" is watched after the upgrade converged: several
# reconcile passes, the DriftPolicy evaluates twice (interval 10s) and stays in bounds.
QUIET_SECONDS = 20.0


# ---------------------------------------------------------------- the 0.1.0 tree
def release_ref() -> str:
    """The tag, when this clone has it (it must point at RELEASE_COMMIT); else the commit itself."""
    tag = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", f"{RELEASE_TAG}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if tag.returncode == 0:
        assert tag.stdout.strip() == RELEASE_COMMIT, f"{RELEASE_TAG} moved: it points at {tag.stdout.strip()}"
        return RELEASE_TAG
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{RELEASE_COMMIT}^{{commit}}"], capture_output=True
    )
    assert commit.returncode == 0, (
        f"neither the tag {RELEASE_TAG} nor its commit {RELEASE_COMMIT} is in this clone (a shallow clone?): "
        "the upgrade test needs the first release's tree"
    )
    return RELEASE_COMMIT


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.1.0 tree (``git archive``): its manifests/, chart and operator code."""
    into = tmp_path_factory.mktemp("perennial-0.1.0")
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", release_ref()], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    assert "version: 0.1.0" in (into / "charts" / "perennial" / "Chart.yaml").read_text()
    return into


# ---------------------------------------------------------------- a cluster of the test's own
@dataclass
class Private:
    local: LocalCluster
    cluster: ClusterInfo
    api: client.ApiClient
    directory: Path

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return delivery.helm(*args, "--kubeconfig", str(self.cluster.kubeconfig), check=check)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Private]:
    """A full local cluster of this test's own (no CRDs yet), stopped at the end."""
    local = LocalCluster(tmp_path / "cluster")
    try:
        cluster = ClusterInfo.from_env_file(local.up("full"))
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        try:
            yield Private(local, cluster, api, tmp_path)
        finally:
            api.close()
    finally:
        local.down()


def wait_for_crds(private: Private) -> None:
    """Established, and served (a CRD just created or changed answers 429 for a moment)."""
    private.local.wait_established(*(f"crd/{name}" for name in CRDS))

    def served_now(name: str) -> bool:
        listed = private.cluster.kubectl_run("get", name, "-A", "-o", "name", "--request-timeout=5s", check=False)
        return listed.returncode == 0

    wait_until(lambda: all(served_now(name) for name in CRDS), timeout=60, what="the CRDs served")


def crd(private: Private, name: str) -> dict[str, Any]:
    body = client.ApiextensionsV1Api(private.api).read_custom_resource_definition(name)
    return dict(private.api.sanitize_for_serialization(body))


def crd_properties(definition: dict[str, Any], kind_part: str) -> set[str]:
    (version,) = definition["spec"]["versions"]
    return set(version["schema"]["openAPIV3Schema"]["properties"][kind_part].get("properties", {}))


# ---------------------------------------------------------------- what a user has
def drift_policy() -> dict[str, Any]:
    """Evaluated every 10 s against the real Prometheus, always within bounds: never retrains."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "targetRef": {"name": "churn"},
            "interval": "10s",
            "metrics": [{"name": "constant", "query": "vector(0.1)", "max": 0.5}],
        },
    }


def custom(private: Private, plural: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(private.api).list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
    return {item["metadata"]["name"]: item for item in listed["items"]}


def converged(item: dict[str, Any]) -> bool:
    """This tree's status of a ModelDeployment or DriftPolicy, for the object's current spec."""
    status = item.get("status") or {}
    done = status.get("observedGeneration") == item["metadata"]["generation"]
    done = done and cond(status, "Ready").get("status") == "True"
    if item["kind"] == "ModelDeployment":
        done = done and status.get("automaticRetrains") == "Active" and served(status.get("servingVersion"))(status)
    return bool(done)


@dataclass(frozen=True)
class Snapshot:
    """Everything in the namespace a user relies on, as it stands."""

    uids: dict[tuple[str, str], str]
    training_jobs: frozenset[str]
    models: dict[str, dict[str, Any]]
    deployments: dict[str, tuple[int, dict[str, Any]]]
    replica_sets: dict[str, tuple[str, str]]
    serving_pods: dict[str, str]

    @classmethod
    def take(cls, private: Private) -> Snapshot:
        core, apps, batch = (
            client.CoreV1Api(private.api),
            client.AppsV1Api(private.api),
            client.BatchV1Api(private.api),
        )
        uids: dict[tuple[str, str], str] = {}
        for plural in PLURALS:
            for name, item in custom(private, plural).items():
                uids[(item["kind"], name)] = item["metadata"]["uid"]
        listings: dict[str, list[Any]] = {
            "Deployment": apps.list_namespaced_deployment(NAMESPACE).items,
            "ReplicaSet": apps.list_namespaced_replica_set(NAMESPACE).items,
            "Service": core.list_namespaced_service(NAMESPACE).items,
            "Job": batch.list_namespaced_job(NAMESPACE).items,
            "Pod": core.list_namespaced_pod(NAMESPACE).items,
        }
        for kind, items in listings.items():
            for item in items:
                uids[(kind, item.metadata.name)] = item.metadata.uid
        deployments = {
            d.metadata.name: (d.metadata.generation, private.api.sanitize_for_serialization(d.spec.template))
            for d in listings["Deployment"]
        }
        replica_sets = {
            rs.metadata.name: (rs.metadata.uid, rs.metadata.labels.get("pod-template-hash", ""))
            for rs in listings["ReplicaSet"]
        }
        serving_pods = {
            p.metadata.name: p.metadata.uid
            for p in listings["Pod"]
            if any(o.kind == "ReplicaSet" for o in p.metadata.owner_references or [])
        }
        models = {name: item.get("status") or {} for name, item in custom(private, "modeldeployments").items()}
        return cls(uids, frozenset(custom(private, "trainingjobs")), models, deployments, replica_sets, serving_pods)


def lineage(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(version, state, modelUri) of every version the model records."""
    return sorted((r["version"], r["state"], r.get("modelUri", "")) for r in status.get("versions") or [])


# ---------------------------------------------------------------- watching the upgrade pass
@dataclass
class StatusWrites:
    """Every status change of the Perennial objects after ``start``, with when it was seen."""

    private: Private
    before: dict[tuple[str, str], dict[str, Any]]
    resource_versions: dict[str, str]
    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, private: Private) -> StatusWrites:
        api = client.CustomObjectsApi(private.api)
        before: dict[tuple[str, str], dict[str, Any]] = {}
        versions: dict[str, str] = {}
        for plural in PLURALS:
            listed = api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
            versions[plural] = listed["metadata"]["resourceVersion"]
            for item in listed["items"]:
                before[(item["kind"], item["metadata"]["name"])] = item.get("status") or {}
        writes = cls(private, before, versions)
        for plural in PLURALS:
            thread = threading.Thread(target=writes._follow, args=(plural,), daemon=True, name=f"watch-{plural}")
            writes._threads.append(thread)
            thread.start()
        return writes

    def _follow(self, plural: str) -> None:
        api = client.CustomObjectsApi(self.private.api)
        resource_version = self.resource_versions[plural]
        try:
            while not self._stop.is_set():
                stream = watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    plural,
                    resource_version=resource_version,
                    timeout_seconds=2,
                )
                for event in stream:
                    item = event["object"]
                    resource_version = item["metadata"]["resourceVersion"]
                    self.seen.append((time.monotonic(), item))
        except Exception as error:  # reported by the test, which fails on it
            self.errors.append(f"watching {plural}: {error.__class__.__name__}: {error}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not self.errors, self.errors

    def changes(self) -> dict[tuple[str, str], int]:
        """How many times each object's status changed after the upgrade."""
        counts: dict[tuple[str, str], int] = {}
        previous = dict(self.before)
        for _, item in self.seen:
            key = (item["kind"], item["metadata"]["name"])
            status = item.get("status") or {}
            if status != previous.get(key):
                counts[key] = counts.get(key, 0) + 1
                previous[key] = status
        return counts

    def first_changes(self) -> dict[tuple[str, str], tuple[float, dict[str, Any]]]:
        """Each object's first status that differs from the one it had before the upgrade."""
        first: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        for seen_at, item in self.seen:
            key = (item["kind"], item["metadata"]["name"])
            if key not in first and (item.get("status") or {}) != self.before.get(key):
                first[key] = (seen_at, item)
        return first


# ---------------------------------------------------------------- the scenario
def operator_0_1_0(private: Private, release: Path, kubeconfig: Path) -> Any:
    """0.1.0's own operator code, on this tree's libraries (its dependencies are a subset),
    started by the same console script with 0.1.0's package first on the path."""
    return operator_support.subprocess_operator(
        private.cluster,
        [NAMESPACE],
        private.directory / "operator-0.1.0.log",
        private.cluster.prometheus_url,
        kubeconfig=kubeconfig,
        # 0.1.0 had no leader election: it serves /healthz and works, holding no Lease.
        standby=True,
        command=["env", f"PYTHONPATH={release / 'operator'}"],
    )


def run_0_1_0(private: Private, release: Path) -> Path:
    """The 0.1.0 operator as its ServiceAccount brings two models to Serving, churn at v2."""
    private.cluster.kubectl_run("create", "namespace", NAMESPACE)
    wait_until(
        lambda: private.cluster.kubectl_run("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
        timeout=60,
        what="the default ServiceAccount",
    )
    kubeconfig = operator_support.service_account_kubeconfig(private.cluster, private.directory / "sa.kubeconfig")
    version = subprocess.run(
        ["env", f"PYTHONPATH={release / 'operator'}", str(Path(sys.executable).parent / "perennial"), "version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith("perennial 0.1.0\n"), version
    with operator_0_1_0(private, release, kubeconfig):
        apply(private.cluster, NAMESPACE, simulated_model("churn"))
        apply(private.cluster, NAMESPACE, simulated_model("fraud", schedule="0 3 * * 0"))
        apply(private.cluster, NAMESPACE, drift_policy())
        for name in MODELS:
            wait_for_status(private.api, NAMESPACE, "modeldeployments", name, served("1"), what="v1 serves (0.1.0)")
        request_retrain(private.cluster, NAMESPACE, "churn", "before-the-upgrade")
        wait_for_status(private.api, NAMESPACE, "modeldeployments", "churn", served("2"), what="v2 serves (0.1.0)")
        wait_for_status(
            private.api,
            NAMESPACE,
            "driftpolicies",
            POLICY,
            lambda s: s.get("lastEvaluationTime") and cond(s, "Ready").get("status") == "True",
            what="evaluated and Ready (0.1.0)",
        )
        # Every serving Deployment rolled out: what the upgrade must not restart.
        apps = client.AppsV1Api(private.api)

        def rolled_out() -> bool:
            items = apps.list_namespaced_deployment(NAMESPACE).items
            return len(items) == len(MODELS) and all(
                d.status.observed_generation == d.metadata.generation
                and d.status.updated_replicas == d.status.ready_replicas == d.spec.replicas
                and not (d.status.replicas or 0) > d.spec.replicas
                for d in items
            )

        wait_until(rolled_out, timeout=90, what="the serving Deployments rolled out (0.1.0)")
    return kubeconfig


def finished_runs(private: Private) -> bool:
    """Every TrainingJob Succeeded, its status describing its current spec."""
    items = custom(private, "trainingjobs").values()
    return all(
        (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
        and (item.get("status") or {}).get("phase") == "Succeeded"
        for item in items
    )


def upgrade(
    private: Private, kubeconfig: Path, report: Callable[[str], None], how: str, install: Callable[[], None]
) -> None:
    """``install`` this tree over what 0.1.0 left, start this tree's operator; check its first
    pass and everything it kept."""
    before = Snapshot.take(private)
    assert set(before.models) == set(MODELS)
    assert len(before.training_jobs) == 3, before.training_jobs  # churn v1, v2; fraud v1
    upgrade_started = time.monotonic()
    install()
    wait_for_crds(private)
    crds_served = time.monotonic()
    assert "automaticRetrains" in crd_properties(crd(private, "modeldeployments.perennial.dev"), "status")
    writes = StatusWrites.start(private)
    started = time.monotonic()
    with operator_support.subprocess_operator(
        private.cluster,
        [NAMESPACE],
        private.directory / "operator-head.log",
        private.cluster.prometheus_url,
        kubeconfig=kubeconfig,
    ):
        leading = time.monotonic()

        def all_converged() -> bool:
            items = [*custom(private, "modeldeployments").values(), *custom(private, "driftpolicies").values()]
            return len(items) == len(MODELS) + 1 and all(converged(item) for item in items) and finished_runs(private)

        wait_until(all_converged, timeout=60, what="every object's status converged after the upgrade")
        after = Snapshot.take(private)

        # Nothing else happens: no retrain, no rollout, no pod replaced, no version lost.
        def unchanged() -> bool:
            now = Snapshot.take(private)
            return (
                now.training_jobs == before.training_jobs
                and now.deployments == before.deployments
                and now.replica_sets == before.replica_sets
                and now.serving_pods == before.serving_pods
            )

        holds_for(unchanged, seconds=QUIET_SECONDS, what="no retrain, rollout or restart after the upgrade")
    writes.stop()

    # Every object kept: the same uids (the operator's children included).
    assert after.uids == before.uids
    assert after.training_jobs == before.training_jobs, "a retrain started"
    # No serving Deployment restarted: same generation and pod template, same pods.
    assert after.deployments == before.deployments
    assert after.replica_sets == before.replica_sets
    assert after.serving_pods
    assert after.serving_pods == before.serving_pods
    for name in MODELS:
        old, new = before.models[name], after.models[name]
        assert lineage(new) == lineage(old), f"{name}: versions changed"
        for key in ("servingVersion", "latestVersion", "servingModelUri", "handledRetrainRequest"):
            assert new.get(key) == old.get(key), f"{name}: {key} {old.get(key)!r} -> {new.get(key)!r}"
    assert after.models["churn"]["servingVersion"] == "2"
    assert [r["state"] for r in sorted(after.models["churn"]["versions"], key=lambda r: r["version"])] == [
        "Retired",
        "Serving",
    ]
    assert after.models["fraud"]["nextScheduledRetrain"] == before.models["fraud"]["nextScheduledRetrain"]

    # Converged within one pass: each object's first status written after the upgrade is final.
    first = writes.first_changes()
    for kind, name in (("ModelDeployment", m) for m in MODELS):
        assert (kind, name) in first, f"{kind} {name}: no status written after the upgrade"
        _, item = first[(kind, name)]
        assert converged(item), f"{kind} {name}: the first status after the upgrade is not final: {item.get('status')}"
    # A DriftPolicy's status is written only when something a reader cares about changes (or
    # as a heartbeat): 0.1.0's converged status may stand as it is; if written, it is final.
    if ("DriftPolicy", POLICY) in first:
        _, item = first[("DriftPolicy", POLICY)]
        assert converged(item), f"DriftPolicy {POLICY}: the first status after the upgrade is not final: {item}"
    # ...and stays final: a ModelDeployment's status is written once.
    changes = writes.changes()
    assert [changes[("ModelDeployment", name)] for name in MODELS] == [1] * len(MODELS), changes
    models_final = max(seen_at for (kind, _), (seen_at, _) in first.items() if kind == "ModelDeployment")
    policy_written = first.get(("DriftPolicy", POLICY))
    report(
        f"upgrade 0.1.0 -> HEAD ({how}): CRDs upgraded and served in {crds_served - upgrade_started:.1f} s; "
        f"operator up and holding its Lease within {leading - started:.1f} s of its start (polled); "
        f"every ModelDeployment's status final {models_final - started:.1f} s after the start "
        f"(whole upgrade: {models_final - upgrade_started:.1f} s), the DriftPolicy's "
        + (f"at its first evaluation, {policy_written[0] - started:.1f} s" if policy_written else "unchanged")
        + "; status writes: "
        + ", ".join(f"{name} {count}" for (_, name), count in sorted(changes.items()))
        + "; 0 retrains, 0 pods replaced"
    )


# ---------------------------------------------------------------- the two ways users install
def test_kubectl_apply_k_upgrade_from_0_1_0_keeps_every_model_serving(
    private: Private, release_tree: Path, report_measurement: Callable[[str], None]
) -> None:
    """0.1.0's README: ``kubectl apply -k manifests/``; this tree's: the same command."""
    old = private.cluster.kubectl_run("apply", "-k", str(release_tree / "manifests"))
    assert "customresourcedefinition.apiextensions.k8s.io/modeldeployments.perennial.dev created" in old.stdout
    wait_for_crds(private)
    old_status_fields = crd_properties(crd(private, "modeldeployments.perennial.dev"), "status")
    assert "automaticRetrains" not in old_status_fields, "the 0.1.0 CRDs are installed, not this tree's"
    kubeconfig = run_0_1_0(private, release_tree)

    def install() -> None:
        upgraded = private.cluster.kubectl_run("apply", "-k", str(delivery.MANIFESTS_DIR))
        crd_configured = "customresourcedefinition.apiextensions.k8s.io/modeldeployments.perennial.dev configured"
        assert crd_configured in upgraded.stdout, upgraded.stdout

    upgrade(private, kubeconfig, report_measurement, "kubectl apply -k manifests/", install)


def test_helm_upgrade_from_0_1_0_upgrades_the_crds_and_keeps_every_model_serving(
    private: Private, release_tree: Path, report_measurement: Callable[[str], None]
) -> None:
    """0.1.0's README: ``helm install`` (CRDs from the chart's crds/); now ``helm upgrade``."""
    release, system = delivery.RELEASE, delivery.NAMESPACE
    private.cluster.kubectl_run("create", "namespace", system)
    private.cluster.kubectl_run("label", "namespace", system, "pod-security.kubernetes.io/enforce=restricted")
    private.helm("install", release, str(release_tree / "charts" / "perennial"), "-n", system)
    wait_for_crds(private)
    unowned = crd(private, "modeldeployments.perennial.dev")
    assert "meta.helm.sh/release-name" not in (unowned["metadata"].get("annotations") or {})
    kubeconfig = run_0_1_0(private, release_tree)

    # The CRDs Helm installed from 0.1.0's crds/ belong to no release: Helm refuses to adopt
    # them silently, and says what the upgrade notes say to do.
    refused = private.helm("upgrade", release, str(delivery.CHART_DIR), "-n", system, check=False)
    assert refused.returncode != 0
    assert 'CustomResourceDefinition "' in refused.stderr, refused.stderr
    assert "invalid ownership metadata" in refused.stderr, refused.stderr
    assert crd(private, "modeldeployments.perennial.dev") == unowned, "the refused upgrade changed nothing"

    def install() -> None:
        upgraded = private.helm("upgrade", release, str(delivery.CHART_DIR), "-n", system, "--take-ownership")
        assert "STATUS: deployed" in upgraded.stdout, upgraded.stdout

    upgrade(private, kubeconfig, report_measurement, "helm upgrade --take-ownership", install)
    for name in CRDS:
        annotations = crd(private, name)["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep", name
        assert annotations["meta.helm.sh/release-name"] == release, name

    # A later `helm uninstall` leaves the CRDs, and so every model, where they are.
    models = {name: item["metadata"]["uid"] for name, item in custom(private, "modeldeployments").items()}
    uninstalled = private.helm("uninstall", release, "-n", system, "--wait", "--timeout", "60s")
    assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr, uninstalled.stdout
    for name in CRDS:
        crd(private, name)
    assert {name: item["metadata"]["uid"] for name, item in custom(private, "modeldeployments").items()} == models
