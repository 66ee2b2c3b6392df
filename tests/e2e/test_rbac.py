"""Least privilege, proven: the operator runs the whole loop as the ServiceAccount from manifests/.

The operator runs as a subprocess (``perennial run``) with a kubeconfig that holds only a
token of ``perennial-system/perennial`` (``kubectl create token``), so every request it
makes — kopf's watches and the operator's own writes — is authorized by the ClusterRole
in ``manifests/rbac.yaml`` and nothing else. It drives a training run, a rollout, a drift
trigger, a second rollout and a history trim, with zero 403s. The test namespace enforces
the restricted Pod Security level, so every pod the operator causes (training and
serving) is admitted by the API server's own PodSecurity admission.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.operator import (
    OPERATOR_USER,
    RunningOperator,
    api_requests,
    forbidden_lines,
    service_account_kubeconfig,
    subprocess_operator,
)
from tests.support.resources import GROUP, VERSION, apply, get_custom, simulated_model, wait_for_status
from tests.support.waiting import StopWaitingError, wait_until

pytestmark = pytest.mark.timeout(240)

OPERATOR = OPERATOR_USER
MODEL = "churn"


@pytest.fixture
def installed(perennial_crds: ClusterInfo) -> ClusterInfo:
    delivery.install_manifests(perennial_crds)
    return perennial_crds


def kubectl_as(cluster: ClusterInfo, kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def modeldeployment() -> dict[str, Any]:
    """Trains in 1s to auc 0.93; retrains on drift at once (cooldown 1s); keeps no retired run."""
    return simulated_model(MODEL, cooldown="1s", historyLimit=0)


def driftpolicy() -> dict[str, Any]:
    """Always out of bounds (the query is the constant 1): one retrain, then the 6h trigger cooldown."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": "churn-drift"},
        "spec": {
            "targetRef": {"name": MODEL},
            "interval": "10s",
            "metrics": [{"name": "constant", "query": "vector(1)", "max": 0.5}],
        },
    }


def serving(version: str) -> Callable[[dict[str, Any]], bool]:
    def predicate(status: dict[str, Any]) -> bool:
        return status.get("servingVersion") == version and status.get("phase") == "Serving"

    return predicate


def failing_fast_on_403(
    running: RunningOperator, log: Path, predicate: Callable[[dict[str, Any]], bool]
) -> Callable[[dict[str, Any]], bool]:
    """``predicate``, but a 403 anywhere stops the wait at once with the evidence."""

    def check(status: dict[str, Any]) -> bool:
        forbidden = {key: n for key, n in api_requests(running.metrics_text()).items() if key[1] == "403" and n}
        if forbidden or forbidden_lines(log.read_text()):
            raise StopWaitingError(f"403s {forbidden}:\n" + "\n".join(forbidden_lines(log.read_text())[:20]))
        return predicate(status)

    return check


def test_operator_runs_the_loop_as_its_service_account_without_a_single_403(
    installed: ClusterInfo, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    installed.kubectl_run(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    kubeconfig = service_account_kubeconfig(installed, tmp_path / "operator.kubeconfig")
    who = kubectl_as(installed, kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who == OPERATOR

    log = tmp_path / "operator.log"
    with subprocess_operator(installed, [namespace], log, installed.prometheus_url, kubeconfig=kubeconfig) as running:
        # A training run and the first rollout.
        apply(installed, namespace, modeldeployment())
        wait_for_status(
            api_client, namespace, "modeldeployments", MODEL, failing_fast_on_403(running, log, serving("1")), what="v1"
        )
        # A drift trigger, a retrain, a second rollout (server-side apply of the Deployment), and the
        # retired v1 trimmed (historyLimit 0: DELETE of its TrainingJob).
        apply(installed, namespace, driftpolicy())
        status = wait_for_status(
            api_client,
            namespace,
            "modeldeployments",
            MODEL,
            failing_fast_on_403(running, log, serving("2")),
            what="v2 serving after the drift trigger",
            timeout=90,
        )
        (record,) = [v for v in status["versions"] if v["version"] == "2"]
        assert record["trigger"]["reason"] == "Drift"
        custom = client.CustomObjectsApi(api_client)

        def trainingjobs() -> list[str]:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")
            return [item["metadata"]["name"] for item in listed["items"]]

        wait_until(lambda: trainingjobs() == [f"{MODEL}-v2"], timeout=30, what="the retired v1 TrainingJob deleted")
        policy = get_custom(api_client, namespace, "driftpolicies", "churn-drift")["status"]
        assert policy["triggerCount"] == 1
        # A Service change (any field: here the port) is applied as this ServiceAccount too.
        installed.kubectl_run(
            "patch", "-n", namespace, f"mdep/{MODEL}", "--type=merge", "-p", '{"spec": {"serving": {"port": 9090}}}'
        )
        core = client.CoreV1Api(api_client)

        def service_on_9090() -> bool:
            forbidden = {key: n for key, n in api_requests(running.metrics_text()).items() if key[1] == "403" and n}
            if forbidden:
                raise StopWaitingError(f"403s {forbidden}")
            return [p.port for p in core.read_namespaced_service(MODEL, namespace).spec.ports] == [9090]

        wait_until(service_on_9090, timeout=30, what="the Service on port 9090")
        requests = api_requests(running.metrics_text())

    # Pods were admitted under `enforce: restricted`: v2's training pod and its serving pods
    # (v1's went with its TrainingJob and the rollout).
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="perennial.dev/version=2").items
    training = [p for p in pods if p.metadata.labels.get("perennial.dev/training-job") == f"{MODEL}-v2"]
    serving_pods = [p for p in pods if "perennial.dev/training-job" not in p.metadata.labels]
    assert training, [p.metadata.name for p in pods]
    assert serving_pods, [p.metadata.name for p in pods]

    forbidden = {key: count for key, count in requests.items() if key[1] == "403" and count}
    assert not forbidden, f"403s: {forbidden}"
    # Every verb of the role was exercised and succeeded: create, get/list, status patch and
    # server-side apply (PATCH), DELETE. No PUT: nothing is replaced whole.
    for method in ("POST", "GET", "PATCH", "DELETE"):
        ok = sum(count for (m, code), count in requests.items() if m == method and code.startswith("2"))
        assert ok > 0, f"no successful {method}: {requests}"
    lines = forbidden_lines(log.read_text())
    assert not lines, "\n".join(lines[:20])


ALLOWED = [
    ("list", "trainingjobs.perennial.dev"),
    ("watch", "modeldeployments.perennial.dev"),
    ("get", "driftpolicies.perennial.dev"),
    ("create", "trainingjobs.perennial.dev"),
    ("delete", "trainingjobs.perennial.dev"),
    ("patch", "modeldeployments.perennial.dev", "--subresource=status"),
    ("patch", "trainingjobs.perennial.dev", "--subresource=status"),
    ("patch", "driftpolicies.perennial.dev", "--subresource=status"),
    ("create", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("patch", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("delete", "deployments.apps"),  # a canary's Deployment, when the canary ends
    ("get", "httproutes.gateway.networking.k8s.io"),  # a canary's HTTPRoute: its weights
    ("update", "httproutes.gateway.networking.k8s.io"),
    ("create", "services"),
    ("patch", "services"),
    ("list", "pods"),
    ("create", "events"),
    ("list", "namespaces"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]

DENIED = [
    # No Secrets, in any form.
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    # No pods directly: Jobs and Deployments create them.
    ("create", "pods"),
    ("delete", "pods"),
    ("get", "pods"),
    ("create", "pods/exec"),
    # Nothing it does not do: user-owned spec, deletions of children, other verbs.
    ("update", "modeldeployments.perennial.dev"),
    ("patch", "modeldeployments.perennial.dev"),
    ("delete", "modeldeployments.perennial.dev"),
    ("create", "modeldeployments.perennial.dev"),
    ("update", "deployments.apps"),
    ("update", "services"),
    ("delete", "services"),
    ("create", "httproutes.gateway.networking.k8s.io"),
    ("delete", "httproutes.gateway.networking.k8s.io"),
    ("list", "httproutes.gateway.networking.k8s.io"),
    ("update", "events"),
    ("get", "configmaps"),
    ("create", "serviceaccounts/token"),
    # Cluster-level and other API groups.
    ("delete", "nodes"),
    ("get", "nodes"),
    ("create", "namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
    ("create", "ingresses.networking.k8s.io"),
    ("create", "networkpolicies.networking.k8s.io"),
    # Leases only in the operator's own namespace (below), none in the watched ones.
    ("get", "leases.coordination.k8s.io"),
    ("create", "leases.coordination.k8s.io"),
    ("update", "leases.coordination.k8s.io/perennial"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("approve", "certificatesigningrequests.certificates.k8s.io"),
    ("create", "statefulsets.apps"),
    ("create", "cronjobs.batch"),
    ("*", "*"),
]


def test_service_account_may_do_exactly_what_the_operator_needs(installed: ClusterInfo, namespace: str) -> None:
    def can(verb: str, resource: str, *extra: str) -> str:
        args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={OPERATOR}", *extra]
        return str(installed.kubectl_run(*args, check=False).stdout.strip())

    wrong = [f"{' '.join(q)}: {answer}" for q in ALLOWED if (answer := can(*q)) != "yes"]
    wrong += [f"{' '.join(q)}: {answer}" for q in DENIED if (answer := can(*q)) != "no"]
    assert not wrong, "\n".join(wrong)


# Leader election: in the release namespace, create, read and renew (update) Leases; nothing
# else on Leases, and nowhere else. Not limited to the release's Lease by name: operators
# the tests start as this ServiceAccount campaign for Leases of their own there.
LEASE_ALLOWED = [
    ("create", "leases.coordination.k8s.io"),
    ("get", f"leases.coordination.k8s.io/{delivery.RELEASE}"),
    ("update", f"leases.coordination.k8s.io/{delivery.RELEASE}"),
]
LEASE_DENIED = [
    ("list", "leases.coordination.k8s.io"),
    ("watch", "leases.coordination.k8s.io"),
    ("patch", f"leases.coordination.k8s.io/{delivery.RELEASE}"),
    ("delete", f"leases.coordination.k8s.io/{delivery.RELEASE}"),
    ("deletecollection", "leases.coordination.k8s.io"),
]


def test_service_account_may_hold_its_own_lease_in_the_release_namespace_only(
    installed: ClusterInfo, namespace: str
) -> None:
    def can(verb: str, resource: str, where: list[str]) -> str:
        args = ["auth", "can-i", verb, resource, *where, f"--as={OPERATOR}"]
        return str(installed.kubectl_run(*args, check=False).stdout.strip())

    home = ["-n", delivery.NAMESPACE]
    wrong = [f"{' '.join(q)} in {delivery.NAMESPACE}: {a}" for q in LEASE_ALLOWED if (a := can(*q, home)) != "yes"]
    wrong += [f"{' '.join(q)} in {delivery.NAMESPACE}: {a}" for q in LEASE_DENIED if (a := can(*q, home)) != "no"]
    # Nowhere else: not in a watched namespace, not in kube-system, not cluster-wide.
    for where in (["-n", namespace], ["-n", "kube-system"], ["--all-namespaces"]):
        wrong += [f"{' '.join(q)} {' '.join(where)}: {a}" for q in LEASE_ALLOWED if (a := can(*q, where)) != "no"]
    assert not wrong, "\n".join(wrong)

    # The server's own account of the ServiceAccount's rules on Leases, exactly.
    def lease_rules(in_namespace: str) -> set[tuple[str, str]]:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": in_namespace},
        }
        created = installed.kubectl_run("create", "-o", "json", f"--as={OPERATOR}", "-f", "-", stdin=json.dumps(review))
        rules = json.loads(created.stdout)["status"]["resourceRules"]
        return {
            (verb, name)
            for rule in rules
            if {"coordination.k8s.io", "*"} & set(rule.get("apiGroups", []))
            and {"leases", "*"} & set(rule.get("resources", []))
            for verb in rule["verbs"]
            for name in rule.get("resourceNames") or ["*"]
        }

    assert lease_rules(delivery.NAMESPACE) == {("get", "*"), ("create", "*"), ("update", "*")}
    assert lease_rules(namespace) == set()


def test_leases_are_granted_by_a_namespaced_role_and_by_no_cluster_role() -> None:
    objects = [doc for doc in yaml.safe_load_all((delivery.MANIFESTS_DIR / "rbac.yaml").read_text()) if doc]

    def on_leases(rule: dict[str, Any]) -> bool:
        groups, resources = set(rule.get("apiGroups", [])), set(rule.get("resources", []))
        return bool({"coordination.k8s.io", "*"} & groups and {"leases", "*"} & resources)

    for role in (o for o in objects if o["kind"] == "ClusterRole"):
        assert not [r for r in role["rules"] if on_leases(r)], role["metadata"]["name"]
    (role,) = [o for o in objects if o["kind"] == "Role" and any(on_leases(r) for r in o["rules"])]
    assert role["metadata"]["namespace"] == delivery.NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["metadata"]["namespace"] == delivery.NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": delivery.SERVICE_ACCOUNT, "namespace": delivery.NAMESPACE}
    ]
