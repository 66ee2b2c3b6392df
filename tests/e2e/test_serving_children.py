"""The serving Deployment and Service are server-side applied: Perennial owns its fields, others keep theirs.

What a user and their other tools see: a `kubectl set image` on the serving Deployment is
reverted; a port change keeps the Service's cluster IP; an HPA (here `kubectl scale`)
keeps the replicas when the model says `serving.externalScaling`; an object of the same
name that Perennial did not create is never touched.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import apply, condition, simulated_model, wait_for_status
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.timeout(180)

SERVER = "registry.example/churn-server:1.9.0"


def serving(version: str) -> Any:
    def predicate(status: dict[str, Any]) -> bool:
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return status.get("servingVersion") == version and ready.get("status") == "True"

    return predicate


def serve_v1(cluster: ClusterInfo, api: client.ApiClient, namespace: str, name: str, **serving_fields: Any) -> None:
    model = simulated_model(name)
    model["spec"]["serving"].update(serving_fields)
    apply(cluster, namespace, model)
    wait_for_status(api, namespace, "modeldeployments", name, serving("1"), what="v1 serving", timeout=90)


def test_a_hand_edited_serving_deployment_is_reverted_and_perennial_is_its_apply_manager(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apps = client.AppsV1Api(api_client)
    serve_v1(perennial_crds, api_client, namespace, "churn")

    managers = {
        (f.manager, f.operation) for f in apps.read_namespaced_deployment("churn", namespace).metadata.managed_fields
    }
    assert ("perennial", "Apply") in managers, managers

    perennial_crds.kubectl_run("annotate", "-n", namespace, "deployment/churn", "team.example/owner=ml-platform")
    perennial_crds.kubectl_run("set", "image", "-n", namespace, "deployment/churn", "server=registry.example/hand:0")

    def image_restored() -> bool:
        deployment = apps.read_namespaced_deployment("churn", namespace)
        return bool(deployment.spec.template.spec.containers[0].image == SERVER)

    wait_until(image_restored, timeout=30, what="the image Perennial applies restored")
    # Another manager's field stays: Perennial applies only what it owns.
    annotations = apps.read_namespaced_deployment("churn", namespace).metadata.annotations or {}
    assert annotations.get("team.example/owner") == "ml-platform"


def test_a_port_change_reaches_the_service_and_keeps_its_cluster_ip(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    serve_v1(perennial_crds, api_client, namespace, "churn")
    cluster_ip = core.read_namespaced_service("churn", namespace).spec.cluster_ip
    assert cluster_ip

    perennial_crds.kubectl_run(
        "patch", "-n", namespace, "mdep/churn", "--type=merge", "-p", '{"spec": {"serving": {"port": 9090}}}'
    )

    def service_on_9090() -> client.V1Service | None:
        service = core.read_namespaced_service("churn", namespace)
        return service if [p.port for p in service.spec.ports] == [9090] else None

    service = wait_until(service_on_9090, timeout=30, what="the Service on port 9090")
    assert service.spec.cluster_ip == cluster_ip
    assert service.spec.ports[0].name == "http"
    assert service.spec.ports[0].target_port == "http"
    wait_until(
        lambda: (
            apps.read_namespaced_deployment("churn", namespace).spec.template.spec.containers[0].ports[0].container_port
            == 9090
        ),
        timeout=30,
        what="the server's containerPort 9090",
    )


def test_external_scaling_leaves_replicas_to_their_owner_and_fixed_replicas_are_kept(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apps = client.AppsV1Api(api_client)
    serve_v1(perennial_crds, api_client, namespace, "scaled", externalScaling=True)
    serve_v1(perennial_crds, api_client, namespace, "fixed", replicas=1)

    for name in ("scaled", "fixed"):
        perennial_crds.kubectl_run("scale", "-n", namespace, f"deployment/{name}", "--replicas=3")

    def replicas(name: str) -> int:
        return int(apps.read_namespaced_deployment(name, namespace).spec.replicas)

    wait_until(lambda: replicas("fixed") == 1, timeout=30, what="fixed: replicas back to serving.replicas")
    holds_for(lambda: replicas("scaled") == 3, seconds=5, what="scaled: the scaler's replicas kept")
    # The scaled model still follows everything else Perennial owns.
    status = wait_for_status(api_client, namespace, "modeldeployments", "scaled", serving("1"), what="still serving")
    assert status["phase"] == "Serving"


def test_a_deployment_perennial_did_not_create_is_never_adopted_or_changed(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    apps = client.AppsV1Api(api_client)
    labels = {"app": "someone-elses"}
    foreign = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="churn", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="registry.example/web:1")]),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, foreign)
    apply(perennial_crds, namespace, simulated_model("churn"))

    def name_conflict(status: dict[str, Any]) -> bool:
        degraded: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), {})
        return degraded.get("status") == "True" and degraded.get("reason") == "NameConflict"

    status = wait_for_status(api_client, namespace, "modeldeployments", "churn", name_conflict, what="NameConflict")
    assert "Deployment named churn" in condition(status, "Degraded")["message"]
    assert status["phase"] == "Degraded"
    untouched = apps.read_namespaced_deployment("churn", namespace)
    assert untouched.metadata.owner_references is None
    assert untouched.spec.template.spec.containers[0].image == "registry.example/web:1"
    assert "perennial.dev/model" not in (untouched.metadata.labels or {})

    # Once the other object is gone, the model's own Deployment is created and serves.
    apps.delete_namespaced_deployment("churn", namespace)

    def gone() -> bool:
        try:
            current = apps.read_namespaced_deployment("churn", namespace)
        except ApiException as error:
            return bool(error.status == 404)
        return bool(current.metadata.owner_references)

    wait_until(gone, timeout=30, what="the foreign Deployment gone")
    status = wait_for_status(api_client, namespace, "modeldeployments", "churn", serving("1"), what="v1 serving")
    assert condition(status, "Degraded")["status"] == "False"


def _counter(metrics_text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_a_serving_model_is_not_applied_again_when_nothing_it_asks_for_changed(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    operator_subprocess: operator_support.RunningOperator,
) -> None:
    # No podAnnotations on the serving template: the API server drops the empty map the
    # operator sends, which once read as "differs" and re-applied on every pass.
    serve_v1(perennial_crds, api_client, namespace, "churn")
    metrics_text = operator_subprocess.metrics_text
    reconciles_before = _counter(metrics_text(), "perennial_reconciles_total", kind="ModelDeployment")
    patches_before = _counter(metrics_text(), "perennial_api_requests_total", method="PATCH")

    # Each edit of a field Perennial does not own is a child event: a reconcile that must find nothing to do.
    for value in ("a", "b", "c"):
        perennial_crds.kubectl_run(
            "annotate", "--overwrite", "-n", namespace, "deployment/churn", f"team.example/x={value}"
        )
    wait_until(
        lambda: _counter(metrics_text(), "perennial_reconciles_total", kind="ModelDeployment") >= reconciles_before + 1,
        timeout=30,
        what="a reconcile after the edits",
    )
    holds_for(
        lambda: _counter(metrics_text(), "perennial_api_requests_total", method="PATCH") == patches_before,
        seconds=3,
        what="no PATCH (apply or status) from the operator",
    )
