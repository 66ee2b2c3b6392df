"""Proof that the `api` profile is a real API server: storage, RBAC and admission."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from localcluster import versions

from tests.support.cluster import ClusterInfo
from tests.support.waiting import wait_until


def test_objects_round_trip_through_etcd(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="lineage"), data={"version": "1"})
    )
    core.patch_namespaced_config_map("lineage", namespace, {"data": {"version": "2"}})
    read = core.read_namespaced_config_map("lineage", namespace)
    assert read.data == {"version": "2"}
    assert int(read.metadata.resource_version) > int(created.metadata.resource_version)
    # Optimistic concurrency is real: a write with a stale resourceVersion conflicts.
    created.data = {"version": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("lineage", namespace, created)
    assert conflict.value.status == 409
    core.delete_namespaced_config_map("lineage", namespace)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("lineage", namespace)
    assert gone.value.status == 404


def test_server_reports_the_pinned_kubernetes_version(api_client: client.ApiClient) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == versions.KUBERNETES


def _token_client(cluster_client: client.ApiClient, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    base = cluster_client.configuration
    configuration.host = base.host
    configuration.ssl_ca_cert = base.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def test_rbac_refuses_an_unprivileged_service_account_until_granted(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="probe"))
    )
    token = core.create_namespaced_service_account_token(
        "probe", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    with _token_client(api_client, token) as as_probe:
        probe_core = client.CoreV1Api(as_probe)
        with pytest.raises(ApiException) as denied:
            probe_core.list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:probe" in denied.value.body

        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "probe-reads-configmaps"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-configmaps",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": namespace}],
            },
        )
        wait_until(
            lambda: probe_core.list_namespaced_config_map(namespace) is not None,
            timeout=30,
            what="the RoleBinding to take effect",
        )
        # The grant is exactly what the Role says: writes and Secrets stay forbidden.
        for forbidden in (
            lambda: probe_core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "x"})),
            lambda: probe_core.list_namespaced_secret(namespace),
        ):
            with pytest.raises(ApiException) as still_denied:
                forbidden()
            assert still_denied.value.status == 403


def test_default_admission_plugins_enforce_pod_security(cluster: ClusterInfo, namespace: str) -> None:
    cluster.kubectl_run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    privileged = """
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
  - name: c
    image: busybox:1
    securityContext: {privileged: true}
"""
    result = cluster.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=privileged, check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr
