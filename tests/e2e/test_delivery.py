"""Delivery: manifests/, the Helm chart, the operator image, the policy check.

Installs go to the real local cluster: ``kubectl apply -k manifests/`` and the chart
rendered with default and non-default values, each through a server-side dry run and
then a real apply. kwok plays the kubelet, so the operator's pod is admitted, scheduled
and marked Running (its image is never pulled): that proves the API server's Pod
Security admission accepts it in a namespace that enforces the restricted level.
The chart is the source; manifests/ is generated from it (``make manifests``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from perennial import __version__
from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = delivery.REPO_ROOT
RESTRICTED = "pod-security.kubernetes.io/enforce"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"
ALT_NAMESPACE = "perennial-alt"
ALT_WATCHED = ("perennial-alt-team-a", "perennial-alt-team-b")


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def manifest_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    kustomization = yaml.safe_load((delivery.MANIFESTS_DIR / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        objects += documents((delivery.MANIFESTS_DIR / resource).read_text())
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_pod_running(api: client.ApiClient, namespace: str, selector: str) -> client.V1Pod | None:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
    return running[0] if running else None


# ---------------------------------------------------------------- the chart is the source
def test_manifests_are_generated_from_the_chart(cluster: ClusterInfo) -> None:
    stale = delivery.stale_files()
    assert not stale, f"manifests/ or the chart's templates/crds/ are stale, run `make manifests`: {stale}"


def test_image_tag_is_the_operator_version_and_never_latest() -> None:
    chart = yaml.safe_load((delivery.CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__, "Chart.yaml appVersion must follow perennial.__version__"
    values = yaml.safe_load((delivery.CHART_DIR / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "an empty tag means appVersion; a fixed one would go stale"
    container = one(manifest_objects(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"perennial:{__version__}"


def test_argo_cd_sync_waves_put_crds_first_and_the_operator_next() -> None:
    objects = manifest_objects()
    waves = {(o["kind"], o["metadata"]["name"]): int(o["metadata"]["annotations"][SYNC_WAVE]) for o in objects}
    crd_waves = {wave for (kind, _), wave in waves.items() if kind == "CustomResourceDefinition"}
    operator_waves = {
        wave for (kind, _), wave in waves.items() if kind not in ("CustomResourceDefinition", "Namespace")
    }
    assert len(crd_waves) == 1, waves
    assert len(operator_waves) == 1, waves
    # Everything before wave 0, where users' own resources land by default.
    assert max(crd_waves) < min(operator_waves) < 0, waves
    assert waves[("Namespace", delivery.NAMESPACE)] <= min(crd_waves)


def test_every_object_carries_the_standard_labels() -> None:
    for obj in manifest_objects():
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/name") == "perennial", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "perennial", obj["metadata"]["name"]
        if obj["kind"] != "CustomResourceDefinition":
            assert labels.get("app.kubernetes.io/instance") == delivery.RELEASE
            assert labels.get("app.kubernetes.io/version") == __version__


# ---------------------------------------------------------------- kubectl apply -k manifests/
def test_kubectl_apply_k_installs_an_operator_admitted_as_restricted(
    perennial_crds: ClusterInfo, api_client: client.ApiClient
) -> None:
    namespace = one(manifest_objects(), "Namespace")
    assert namespace["metadata"]["name"] == delivery.NAMESPACE
    assert namespace["metadata"]["labels"][RESTRICTED] == "restricted"

    dry_run, real = delivery.install_manifests(perennial_crds)
    # The namespace also *warns* at restricted: a violating pod template would say so here.
    assert "PodSecurity" not in dry_run + real, dry_run + real
    # Applied as written: the server keeps nothing that differs (no permanent GitOps diff).
    diff = perennial_crds.kubectl_run("diff", "-k", str(delivery.MANIFESTS_DIR), check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr

    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    labels = core.read_namespace(delivery.NAMESPACE).metadata.labels
    assert labels[RESTRICTED] == "restricted"
    selector = f"app.kubernetes.io/name=perennial,app.kubernetes.io/instance={delivery.RELEASE}"
    pod = wait_until(
        lambda: operator_pod_running(api_client, delivery.NAMESPACE, selector),
        timeout=60,
        what="the operator pod admitted and Running in perennial-system",
    )
    assert pod.spec.service_account_name == delivery.SERVICE_ACCOUNT

    deployment = apps.read_namespaced_deployment(delivery.RELEASE, delivery.NAMESPACE)
    assert deployment.spec.replicas == 2, "a leader and a warm standby"
    assert deployment.spec.strategy.type == "RollingUpdate"
    assert (
        deployment.spec.strategy.rolling_update.max_unavailable,
        deployment.spec.strategy.rolling_update.max_surge,
    ) == (0, 1)
    spec = deployment.spec.template.spec
    assert spec.security_context.run_as_non_root is True
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    (container,) = spec.containers
    context = container.security_context
    assert context.read_only_root_filesystem is True
    assert context.allow_privilege_escalation is False
    assert context.capabilities.drop == ["ALL"]
    assert (context.run_as_user or spec.security_context.run_as_user) >= 10000
    tmp = next(m for m in container.volume_mounts if m.mount_path == "/tmp")
    assert next(v for v in spec.volumes if v.name == tmp.name).empty_dir is not None
    for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
        assert (probe.http_get.path, probe.http_get.port) == ("/healthz", "metrics")
    for kind in ("requests", "limits"):
        assert set(getattr(container.resources, kind)) == {"cpu", "memory"}, kind
    env = {e.name: e.value for e in container.env}
    assert env["PERENNIAL_METRICS_PORT"] == "8080"
    assert env["PERENNIAL_METRICS_ADDRESS"] == "0.0.0.0"
    assert not env["PERENNIAL_NAMESPACES"], "the default install watches the whole cluster"
    assert env["PERENNIAL_LOG_FORMAT"] == "json"

    service = core.read_namespaced_service(f"{delivery.RELEASE}-metrics", delivery.NAMESPACE)
    assert [(p.name, p.port, p.target_port) for p in service.spec.ports] == [("metrics", 8080, "metrics")]
    assert service.spec.selector.items() <= pod.metadata.labels.items()

    policy = client.NetworkingV1Api(api_client).read_namespaced_network_policy(delivery.RELEASE, delivery.NAMESPACE)
    assert policy.spec.pod_selector.match_labels.items() <= pod.metadata.labels.items()
    assert policy.spec.policy_types == ["Ingress", "Egress"]
    egress = [sorted((p.port, p.protocol) for p in rule.ports) for rule in policy.spec.egress]
    assert egress == [[(443, "TCP"), (6443, "TCP")], [(53, "TCP"), (53, "UDP")]]  # no Prometheus URL by default
    assert all(rule.to is None for rule in policy.spec.egress)
    rules = policy.spec.ingress or []
    assert len(rules) == 1, rules
    assert [(p.port, p.protocol) for p in rules[0].ports] == [("metrics", "TCP")]
    peers = rules[0]._from or []
    assert len(peers) == 1, peers
    peer = peers[0]
    assert peer.pod_selector is None
    assert peer.ip_block is None
    assert peer.namespace_selector.match_labels == {"perennial.dev/metrics-access": "true"}


def test_users_get_the_three_kinds_through_the_built_in_view_and_edit_roles(
    perennial_crds: ClusterInfo, namespace: str
) -> None:
    delivery.install_manifests(perennial_crds)
    for user, role in (("alice", "view"), ("bob", "edit")):
        perennial_crds.kubectl_run(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", namespace
        )

    def can(user: str, verb: str, resource: str, *extra: str) -> bool:
        args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", *extra]
        return perennial_crds.kubectl_run(*args, check=False).stdout.strip() == "yes"

    # The aggregation controller copies the rules into view/edit asynchronously.
    wait_until(lambda: can("bob", "create", "modeldeployments.perennial.dev"), timeout=30, what="edit aggregated")
    wait_until(lambda: can("alice", "list", "trainingjobs.perennial.dev"), timeout=30, what="view aggregated")
    for kind in ("trainingjobs", "modeldeployments", "driftpolicies"):
        resource = f"{kind}.perennial.dev"
        assert [can("alice", verb, resource) for verb in ("get", "watch", "create", "delete")] == [
            True,
            True,
            False,
            False,
        ]
        assert all(can("bob", verb, resource) for verb in ("create", "patch", "delete")), resource
        # Status is the operator's alone.
        assert not can("bob", "patch", resource, "--subresource=status")


# ---------------------------------------------------------------- high availability
LEASE_ENV = ("PERENNIAL_LEASE_DURATION", "PERENNIAL_LEASE_RENEW_DEADLINE", "PERENNIAL_LEASE_RETRY_PERIOD")


def operator_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator container's env by name: the value, or the whole entry for a valueFrom."""
    return {e["name"]: e.get("value", e) for e in operator_container(deployment)["env"]}


def lease_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Roles and ClusterRoles with any rule on coordination.k8s.io leases."""
    return [
        o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        and any(
            {"coordination.k8s.io", "*"} & set(rule.get("apiGroups", []))
            and {"leases", "*"} & set(rule.get("resources", []))
            for rule in o.get("rules") or []
        )
    ]


def test_chart_runs_a_leader_and_a_standby_by_default() -> None:
    values = yaml.safe_load((delivery.CHART_DIR / "values.yaml").read_text())
    assert values["replicaCount"] == 2
    assert values["leaderElection"] == {
        "enabled": True,
        "leaseDuration": "15s",
        "renewDeadline": "10s",
        "retryPeriod": "2s",
    }
    # manifests/ (the defaults plus the Namespace) and `helm template` with the defaults agree.
    for objects in (manifest_objects(), documents(delivery.render())):
        deployment = one(objects, "Deployment")
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

        env = env_of(deployment)
        for name, field in (("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")):
            assert env[name] == {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}, name
        assert env["PERENNIAL_LEADER_ELECTION"] == "true"
        # The Lease is named after the release: the Deployment's own name.
        assert env["PERENNIAL_LEASE_NAME"] == deployment["metadata"]["name"] == delivery.RELEASE
        assert [env[name] for name in LEASE_ENV] == ["15s", "10s", "2s"]
        # Every replica serves /healthz and is Ready: a standby serves /metrics too.
        container = operator_container(deployment)
        assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}

        # Soft anti-affinity across nodes for exactly the operator's pods; nothing required.
        affinity = spec["template"]["spec"]["affinity"]
        assert list(affinity) == ["podAntiAffinity"]
        assert list(affinity["podAntiAffinity"]) == ["preferredDuringSchedulingIgnoredDuringExecution"]
        (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"] == {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": spec["selector"],
        }
        assert 1 <= term["weight"] <= 100
        assert "topologySpreadConstraints" not in spec["template"]["spec"]

        # The disruption budget selects exactly the Deployment's pods.
        budget = one(objects, "PodDisruptionBudget")
        assert budget["apiVersion"] == "policy/v1"
        assert budget["metadata"]["name"] == delivery.RELEASE
        assert budget["metadata"]["namespace"] == delivery.NAMESPACE
        assert budget["spec"]["selector"] == spec["selector"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
        assert budget["metadata"]["labels"] == deployment["metadata"]["labels"]
        assert budget["metadata"]["annotations"][SYNC_WAVE] == deployment["metadata"]["annotations"][SYNC_WAVE]


def test_manifests_list_the_disruption_budget_in_its_own_file() -> None:
    kustomization = yaml.safe_load((delivery.MANIFESTS_DIR / "kustomization.yaml").read_text())
    assert "poddisruptionbudget.yaml" in kustomization["resources"]
    (budget,) = documents((delivery.MANIFESTS_DIR / "poddisruptionbudget.yaml").read_text())
    assert budget["kind"] == "PodDisruptionBudget"


def test_two_releases_in_one_namespace_never_share_a_lease_or_a_budget() -> None:
    releases = [documents(delivery.render(release=name, namespace="ml-platform")) for name in ("perennial", "canary")]
    leases = [env_of(one(objects, "Deployment"))["PERENNIAL_LEASE_NAME"] for objects in releases]
    assert leases == ["perennial", "canary-perennial"]
    roles = [one(objects, "Role") for objects in releases]
    assert [r["metadata"]["name"] for r in roles] == ["perennial-leader-election", "canary-perennial-leader-election"]
    selectors = [one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] for objects in releases]
    assert [s["app.kubernetes.io/instance"] for s in selectors] == ["perennial", "canary"]


def test_chart_values_override_replicas_lease_timings_and_placement(tmp_path: Path) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "node-role.example.com/platform", "operator": "Exists"}]}
                ]
            }
        }
    }
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "perennial"}},
        }
    ]
    values = {
        "replicaCount": 3,
        "fullnameOverride": "ml-operator",
        "leaderElection": {"enabled": True, "leaseDuration": "1m", "renewDeadline": "40s", "retryPeriod": "5s"},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        "affinity": affinity,
        "topologySpreadConstraints": spread,
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    objects = documents(delivery.render(values_files=[path]))
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    env = env_of(deployment)
    assert env["PERENNIAL_LEASE_NAME"] == "ml-operator"
    assert [env[name] for name in LEASE_ENV] == ["1m", "40s", "5s"]
    # The user's affinity replaces the default anti-affinity, as written.
    pod = deployment["spec"]["template"]["spec"]
    assert pod["affinity"] == affinity
    assert pod["topologySpreadConstraints"] == spread
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == "50%"
    assert budget["metadata"]["name"] == "ml-operator"
    assert one(objects, "Role")["metadata"]["name"] == "ml-operator-leader-election"


def test_without_leader_election_the_chart_runs_one_replica_replaced_with_recreate() -> None:
    objects = documents(delivery.render(set_values=["leaderElection.enabled=false", "replicaCount=1"]))
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never two operators at once"
    assert env_of(deployment)["PERENNIAL_LEADER_ELECTION"] == "false"
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert not lease_roles(objects), "no Lease, no permission on Leases"
    # Two replicas that both act: refused, with the reason.
    chart = str(delivery.CHART_DIR)
    both = [
        "template",
        "perennial",
        chart,
        "--kube-version",
        delivery.KUBE_VERSION,
        "--set",
        "leaderElection.enabled=false",
    ]
    result = delivery.helm(*both, check=False)
    assert result.returncode != 0
    assert "replicaCount 2 needs leaderElection.enabled" in result.stderr, result.stderr


def test_one_replica_gets_no_disruption_budget_and_the_budget_can_be_turned_off() -> None:
    single = documents(delivery.render(set_values=["replicaCount=1"]))
    assert one(single, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"  # the new pod waits for the Lease
    assert not [o for o in single if o["kind"] == "PodDisruptionBudget"], "it would block every drain"
    assert len(lease_roles(single)) == 1
    off = documents(delivery.render(set_values=["podDisruptionBudget.enabled=false"]))
    assert not [o for o in off if o["kind"] == "PodDisruptionBudget"]


def test_manifests_run_a_leader_and_a_standby_within_a_disruption_budget(
    perennial_crds: ClusterInfo, api_client: client.ApiClient
) -> None:
    """Both replicas run on the one kwok node (the anti-affinity is soft); the PDB counts exactly them."""
    delivery.install_manifests(perennial_crds)
    selector = f"app.kubernetes.io/name=perennial,app.kubernetes.io/instance={delivery.RELEASE}"
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)

    def rolled_out() -> list[client.V1Pod] | None:
        deployment = apps.read_namespaced_deployment(delivery.RELEASE, delivery.NAMESPACE)
        status = deployment.status
        if (status.observed_generation, status.updated_replicas, status.ready_replicas, status.replicas) != (
            deployment.metadata.generation,
            2,
            2,
            2,
        ):
            return None
        pods = core.list_namespaced_pod(delivery.NAMESPACE, label_selector=selector).items
        live = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
        return live if len(live) == len(pods) == 2 else None

    pods = wait_until(rolled_out, timeout=90, what="two operator pods Running and Ready")
    assert len({p.spec.node_name for p in pods}) == 1, "one node, and both are scheduled there"
    policy = client.PolicyV1Api(api_client)

    def budget_counts_both() -> client.V1PodDisruptionBudget | None:
        budget = policy.read_namespaced_pod_disruption_budget(delivery.RELEASE, delivery.NAMESPACE)
        status = budget.status
        done = status and status.observed_generation == budget.metadata.generation and status.expected_pods == 2
        return budget if done else None

    budget = wait_until(budget_counts_both, timeout=60, what="the PodDisruptionBudget counting the two pods")
    assert (budget.status.current_healthy, budget.status.disruptions_allowed) == (2, 1)
    lease_role = client.RbacAuthorizationV1Api(api_client).read_namespaced_role(
        f"{delivery.RELEASE}-leader-election", delivery.NAMESPACE
    )
    assert [(r.api_groups, r.resources, r.verbs, r.resource_names) for r in lease_role.rules] == [
        (["coordination.k8s.io"], ["leases"], ["get", "create", "update"], None)
    ]


# ---------------------------------------------------------------- the chart
def test_helm_lint_passes_with_default_and_non_default_values(cluster: ClusterInfo) -> None:
    for args in ([], ["--values", str(delivery.ALT_VALUES)]):
        chart = str(delivery.CHART_DIR)
        result = delivery.helm("lint", "--strict", chart, "--kube-version", delivery.KUBE_VERSION, *args)
        assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"image": {"repository": "perennial", "tag": "latest"}}, "at '/image/tag'", id="latest-tag"),
        pytest.param({"logFormat": "xml"}, "at '/logFormat': value must be one of 'text', 'json'", id="log-format"),
        pytest.param({"logLevel": "TRACE"}, "at '/logLevel': value must be one of", id="log-level"),
        pytest.param({"metrics": {"port": 80}}, "at '/metrics/port': minimum: got 80", id="privileged-port"),
        pytest.param({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0': 'Team_A' does not match", id="ns"),
        pytest.param({"prometheusUrl": "prometheus:9090"}, "at '/prometheusUrl'", id="prometheus-url"),
        pytest.param({"rbac": {"craete": True}}, "at '/rbac': additional properties 'craete' not allowed", id="typo"),
        pytest.param({"resources": {"limits": {"memory": "lots"}}}, "at '/resources", id="quantity"),
        pytest.param({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1", id="no-replicas"),
        pytest.param({"replicaCount": "two"}, "at '/replicaCount': got string, want integer", id="replicas-word"),
        pytest.param({"replicaCount": 1.5}, "at '/replicaCount'", id="replicas-fraction"),
        pytest.param(
            {"leaderElection": {"leaseDuration": "15"}}, "at '/leaderElection/leaseDuration'", id="lease-no-unit"
        ),
        pytest.param(
            {"leaderElection": {"renewDeadline": "10 seconds"}}, "at '/leaderElection/renewDeadline'", id="renew"
        ),
        pytest.param({"leaderElection": {"retryPeriod": "0"}}, "at '/leaderElection/retryPeriod'", id="retry-zero"),
        pytest.param({"leaderElection": {"retryPeriod": 2}}, "at '/leaderElection/retryPeriod'", id="retry-number"),
        pytest.param(
            {"leaderElection": {"enabled": "yes"}}, "at '/leaderElection/enabled': got string, want boolean", id="le"
        ),
        pytest.param(
            {"leaderElection": {"leseDuration": "15s"}},
            "additional properties 'leseDuration' not allowed",
            id="le-typo",
        ),
        pytest.param(
            {"podDisruptionBudget": {"maxUnavailable": 0}}, "at '/podDisruptionBudget/maxUnavailable'", id="pdb"
        ),
    ],
)
def test_values_schema_rejects_bad_values(
    cluster: ClusterInfo, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = delivery.helm("lint", str(delivery.CHART_DIR), "--values", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, result.stdout + result.stderr


def test_service_monitor_is_rendered_only_where_its_api_is_served(cluster: ClusterInfo) -> None:
    values = {"values_files": [delivery.ALT_VALUES], "release": "perennial-alt", "namespace": ALT_NAMESPACE}
    without = documents(delivery.render(**values))
    assert not [o for o in without if o["kind"] == "ServiceMonitor"]
    served = documents(delivery.render(**values, api_versions=["monitoring.coreos.com/v1/ServiceMonitor"]))
    monitor = one(served, "ServiceMonitor")
    service = one(served, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}
    ]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job="perennial", as the alerts expect
    # Enabled by default values but no API: nothing rendered, and NOTES.txt says why.
    default = delivery.render(set_values=["serviceMonitor.enabled=true"])
    assert "kind: ServiceMonitor" not in default


def test_chart_ships_the_alerts_and_the_dashboard_from_monitoring() -> None:
    rendered = documents(
        delivery.render(
            set_values=["prometheusRule.enabled=true", "dashboard.enabled=true"],
            api_versions=["monitoring.coreos.com/v1/PrometheusRule"],
        )
    )
    rule = one(rendered, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((REPO_ROOT / "monitoring" / "alerts.yaml").read_text())
    dashboard = next(o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["perennial.json"]) == json.loads(
        (REPO_ROOT / "monitoring" / "dashboard.json").read_text()
    )
    # Without the PrometheusRule API nothing is rendered for it; by default neither is shipped.
    assert "kind: PrometheusRule" not in delivery.render(set_values=["prometheusRule.enabled=true"])
    assert "-dashboard" not in delivery.render()


def test_chart_default_values_pass_a_server_side_dry_run(perennial_crds: ClusterInfo) -> None:
    delivery.install_manifests(perennial_crds)  # the namespace, as `--create-namespace` would make it
    rendered = delivery.render()
    assert "kind: Namespace" not in rendered, "Helm users create the namespace with --create-namespace"
    result = perennial_crds.kubectl_run("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    assert "deployment.apps/perennial" in result.stdout
    assert "PodSecurity" not in result.stderr


def test_helm_install_and_uninstall_as_the_readme_says(
    perennial_crds: ClusterInfo, api_client: client.ApiClient
) -> None:
    """`helm install` into a namespace labelled restricted, the CRDs already present, then uninstall."""
    release = namespace = "perennial-helm"
    perennial_crds.kubectl_run("create", "namespace", namespace, check=False)  # left over by an aborted run: reuse
    try:
        perennial_crds.kubectl_run("label", "namespace", namespace, f"{RESTRICTED}=restricted")
        kubeconfig = ["--kubeconfig", str(perennial_crds.kubeconfig), "--namespace", namespace]
        # A second cluster-wide install beside the session's (manifests/): its ownership
        # policy would refuse the session operator's TrainingJobs cluster-wide, as the
        # chart's values say, so this one leaves it out.
        installed = delivery.helm(
            "install",
            release,
            str(delivery.CHART_DIR),
            *kubeconfig,
            "--set",
            "ownershipPolicy.enabled=false",
            # The CRDs belong to the session's install (manifests/): one owner per cluster.
            "--set",
            "crds.install=false",
            "--wait",
            "--timeout",
            "90s",
        )
        assert "STATUS: deployed" in installed.stdout, installed.stdout
        assert "Upgrading the CRDs" in installed.stdout, "NOTES.txt is shown"
        pod = operator_pod_running(api_client, namespace, f"app.kubernetes.io/instance={release}")
        assert pod is not None
        assert pod.spec.service_account_name == release
        # --wait waited for both replicas; the Lease Role and the budget are the release's own.
        assert client.AppsV1Api(api_client).read_namespaced_deployment(release, namespace).status.ready_replicas == 2
        rbac = client.RbacAuthorizationV1Api(api_client)
        assert rbac.read_namespaced_role(f"{release}-leader-election", namespace).rules[0].resources == ["leases"]
        client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget(release, namespace)
        delivery.helm("uninstall", release, *kubeconfig, "--wait", "--timeout", "60s")
        # The CRDs stay: this release never owned them (crds.install=false).
        perennial_crds.kubectl_run("get", "crd", "modeldeployments.perennial.dev")
        roles = {r.metadata.name for r in client.RbacAuthorizationV1Api(api_client).list_cluster_role().items}
        assert not {f"{release}", f"{release}-discovery", f"{release}-view"} & roles
    finally:
        delivery.helm(
            "uninstall", release, "--kubeconfig", str(perennial_crds.kubeconfig), "-n", namespace, check=False
        )
        perennial_crds.kubectl_run("delete", "namespace", namespace, "--timeout=60s", check=False)


@pytest.fixture
def alt_release(perennial_crds: ClusterInfo) -> Iterator[str]:
    """The chart rendered with the non-default values; removed again afterwards."""
    for name in ALT_WATCHED:
        perennial_crds.kubectl_run("create", "namespace", name, check=False)
    rendered = delivery.render(release="perennial-alt", namespace=ALT_NAMESPACE, values_files=[delivery.ALT_VALUES])
    yield rendered
    perennial_crds.kubectl_run("delete", "--ignore-not-found", "--timeout=60s", "-f", "-", stdin=rendered, check=False)
    for name in ALT_WATCHED:
        perennial_crds.kubectl_run("delete", "namespace", name, "--ignore-not-found", "--timeout=60s", check=False)


def test_chart_with_non_default_values_installs_namespaced_rbac(
    perennial_crds: ClusterInfo, api_client: client.ApiClient, alt_release: str
) -> None:
    objects = documents(alt_release)
    namespace = one(objects, "Namespace")
    perennial_crds.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    dry_run = perennial_crds.kubectl_run("apply", "--dry-run=server", "-f", "-", stdin=alt_release)
    real = perennial_crds.kubectl_run("apply", "-f", "-", stdin=alt_release)
    assert "PodSecurity" not in dry_run.stderr + real.stderr

    pod = wait_until(
        lambda: operator_pod_running(api_client, ALT_NAMESPACE, "app.kubernetes.io/instance=perennial-alt"),
        timeout=60,
        what="the alt operator pod admitted and Running",
    )
    (container,) = pod.spec.containers
    assert container.image.endswith("@sha256:" + "0123456789abcdef" * 4)
    env = {e.name: e.value for e in container.env}
    assert env["PERENNIAL_NAMESPACES"] == ",".join(ALT_WATCHED)
    assert env["PERENNIAL_METRICS_PORT"] == "9095"
    assert env["PERENNIAL_LOG_FORMAT"] == "text"
    assert pod.spec.service_account_name == "perennial-alt-operator"
    # One replica without leader election: Recreate, no budget, no Lease permissions; the
    # user's affinity and topology spread instead of the default anti-affinity.
    assert env["PERENNIAL_LEADER_ELECTION"] == "false"
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment("perennial-alt", ALT_NAMESPACE)
    assert (deployment.spec.replicas, deployment.spec.strategy.type) == (1, "Recreate")
    assert pod.spec.affinity.pod_anti_affinity is None
    assert pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    assert [c.topology_key for c in pod.spec.topology_spread_constraints] == ["topology.kubernetes.io/zone"]
    assert not client.PolicyV1Api(api_client).list_namespaced_pod_disruption_budget(ALT_NAMESPACE).items
    assert not lease_roles(objects)

    # Watching listed namespaces: the role is bound there only, not cluster-wide.
    rbac = client.RbacAuthorizationV1Api(api_client)
    for name in ALT_WATCHED:
        binding = rbac.read_namespaced_role_binding("perennial-alt", name)
        assert binding.role_ref.name == "perennial-alt"
    bindings = {b.metadata.name for b in rbac.list_cluster_role_binding().items}
    assert "perennial-alt-discovery" in bindings
    assert "perennial-alt" not in bindings
    operator = "system:serviceaccount:perennial-alt:perennial-alt-operator"

    def can(verb: str, resource: str, namespace: str) -> str:
        args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={operator}"]
        return str(perennial_crds.kubectl_run(*args, check=False).stdout.strip())

    assert can("create", "jobs.batch", ALT_WATCHED[0]) == "yes"
    assert can("create", "jobs.batch", "default") == "no"
    assert can("list", "trainingjobs.perennial.dev", "default") == "no"
    # rbac.aggregateToDefaultRoles: false
    assert not [o for o in objects if o["metadata"]["name"].startswith("perennial-alt-view")]


# ---------------------------------------------------------------- the image
def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def dockerfile_global_args() -> list[str]:
    """The ARG instructions before the first FROM (what FROM lines may refer to)."""
    instructions = dockerfile_instructions()
    first_from = next(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    before = instructions[:first_from]
    assert all(line.startswith("ARG ") for line in before), f"only ARGs before the first FROM: {before}"
    return before


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage (global ARGs before the first FROM left out: dockerfile_global_args)."""
    stages: list[list[str]] = []
    for line in dockerfile_instructions()[len(dockerfile_global_args()) :]:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, "a builder stage and a final stage"
    builder, final = stages
    # The base is a build argument (the local cluster's `real` profile builds on a Debian-built
    # base without a registry), pinned by default to the slim image every other build uses.
    assert dockerfile_global_args() == ["ARG BASE=python:3.11-slim"]
    assert builder[0] == "FROM ${BASE} AS builder"
    assert final[0] == "FROM ${BASE}", "the final stage starts from the slim base, not the builder"
    # checkov cannot resolve the ARG: its base-tag check is skipped inline, for that check only.
    skips = re.findall(r"checkov:skip=(\S+?):", (REPO_ROOT / "Dockerfile").read_text())
    assert skips == ["CKV_DOCKER_7"]
    # Dependencies come from pyproject.toml, installed in the builder only.
    assert any("pyproject.toml" in line for line in builder if line.startswith("COPY"))
    assert any("tomllib" in line and "pip install" in line for line in builder)
    assert not [line for line in final if line.startswith("RUN")], "the final stage installs nothing"
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/perennial /opt/perennial"], "only the virtualenv"
    users = [line.split()[1] for line in final if line.startswith("USER")]
    assert users == ["65532:65532"], "one numeric, non-root user (65532, as in the chart)"
    entrypoint = [line for line in final if line.startswith("ENTRYPOINT")]
    assert entrypoint == ['ENTRYPOINT ["/opt/perennial/bin/perennial", "run"]']
    for stage in stages:
        for line in stage:
            assert not re.search(r"apt-get install|gcc|build-essential", line), line
            assert ":latest" not in line


def test_image_user_matches_the_chart_security_context() -> None:
    deployment = one(manifest_objects(), "Deployment")
    (user,) = [line.split()[1] for line in dockerfile_stages()[-1] if line.startswith("USER")]
    uid, gid = (int(part) for part in user.split(":"))
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 8080
    assert "EXPOSE 8080" in dockerfile_stages()[-1]


def test_builder_reads_the_dependencies_of_pyproject() -> None:
    """Run the builder's own requirements one-liner against pyproject.toml."""
    (line,) = [line for line in dockerfile_stages()[0] if "tomllib" in line]
    command = re.search(r'python -c "(?P<code>[^"]+)"', line)
    assert command is not None, line
    # Inside shell double quotes the backslash of `\n` stays: Python sees the same source.
    result = subprocess.run([sys.executable, "-c", command["code"]], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = {re.split(r"[~=<>!]", requirement)[0] for requirement in result.stdout.split()}
    # The test tools stay out of the image.
    assert names == {"kopf", "pydantic", "prometheus-client", "aiohttp", "kubernetes", "pyyaml"}


def test_docker_context_excludes_local_state() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded unless listed"
    allowed = {pattern[1:] for pattern in patterns if pattern.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "operator/"}
    # ...and everything the build copies from the context is in it.
    copies = [line.split()[1:-1] for stage in dockerfile_stages() for line in stage if line.startswith("COPY ")]
    from_context = [sources for sources in copies if not any(s.startswith("--from=") for s in sources)]
    sources = {source for sources in from_context for source in sources}
    assert sources == allowed


# ---------------------------------------------------------------- the policy check
def test_policy_check_passes_over_manifests_chart_and_dockerfile(cluster: ClusterInfo, tmp_path: Path) -> None:
    for target in delivery.policy_inputs(tmp_path):
        result = delivery.run_checkov(target)
        assert result.returncode == 0, f"checkov over {target.name}:\n{result.stdout}\n{result.stderr}"
        assert re.search(r"Passed checks: [1-9]", result.stdout), result.stdout


def test_policy_check_catches_a_privileged_deployment(cluster: ClusterInfo, tmp_path: Path) -> None:
    """The checker is not vacuous: the operator's Deployment made privileged fails it."""
    deployment = one(manifest_objects(), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(deployment))
    result = delivery.run_checkov(tmp_path)
    assert result.returncode != 0
    assert "CKV_K8S_16" in result.stdout, result.stdout  # privileged
    assert "CKV_K8S_20" in result.stdout, result.stdout  # allowPrivilegeEscalation


def test_the_license_is_apache_2_and_ships_with_the_package_and_the_chart() -> None:
    license_text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a notice
    # Helm packages the chart directory alone: it carries its own copy.
    assert (REPO_ROOT / "charts" / "perennial" / "LICENSE").read_text() == license_text
    chart = yaml.safe_load((REPO_ROOT / "charts" / "perennial" / "Chart.yaml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    project = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in project
    assert 'license-files = ["LICENSE"]' in project
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in (REPO_ROOT / "Dockerfile").read_text()
