"""The chart's named Prometheus endpoints: values -> a Secret the operator mounts, or the user's own Secret.

Rendered with ``helm template`` (helm from the local cluster's build cache); the rendered
Secret must be a file the operator itself accepts (``parse_prometheus_endpoints``), and a
server-side dry run shows the API server takes the Secret and the Deployment mounting it.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial.settings import BasicAuth, parse_prometheus_endpoints
from tests.support import delivery
from tests.support.cluster import ClusterInfo
from tests.support.tls import make_pki

pytestmark = pytest.mark.timeout(180)

ENDPOINTS = {
    "default": {
        "url": "https://thanos-query.monitoring.svc:10902",
        "bearerToken": "t0ken",
        "tls": {"ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
        "timeout": "20s",
    },
    "mimir-team-a": {
        "url": "https://mimir.observability/prometheus",
        "basicAuth": {"username": 12345, "password": "passw0rd"},
        "headers": {"X-Scope-OrgID": "team-a"},
    },
}
MOUNT = "/etc/perennial/prometheus"


def render(directory: Path, values: dict[str, Any], namespace: str = delivery.NAMESPACE) -> list[dict[str, Any]]:
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return [doc for doc in yaml.safe_load_all(delivery.render(namespace=namespace, values_files=[path])) if doc]


def refused(directory: Path, values: dict[str, Any]) -> str:
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    args = ["template", "perennial", str(delivery.CHART_DIR), "--kube-version", delivery.KUBE_VERSION, "-f", str(path)]
    result = delivery.helm(*args, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def operator_pod(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = kinds(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def endpoints_volume(objects: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """The endpoints Secret volume and PERENNIAL_PROMETHEUS_ENDPOINTS_FILE, if the pod has them."""
    pod, container = operator_pod(objects)
    volume = next((v for v in pod["volumes"] if v["name"] == "prometheus-endpoints"), None)
    env = {e["name"]: e.get("value") for e in container["env"]}
    return volume, env.get("PERENNIAL_PROMETHEUS_ENDPOINTS_FILE")


def test_by_default_there_is_no_endpoints_secret(cluster: ClusterInfo, tmp_path: Path) -> None:
    objects = render(tmp_path, {})
    assert not kinds(objects, "Secret")
    assert endpoints_volume(objects) == (None, None)


def test_endpoints_in_values_become_a_secret_the_operator_mounts_and_accepts(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    endpoints = copy.deepcopy(ENDPOINTS)
    endpoints["default"]["tls"]["ca"] = make_pki(tmp_path / "pki").ca
    objects = render(tmp_path, {"prometheus": {"endpoints": endpoints}})

    (secret,) = kinds(objects, "Secret")
    assert secret["metadata"]["name"] == "perennial-prometheus-endpoints"
    assert secret["metadata"]["namespace"] == delivery.NAMESPACE
    assert secret["type"] == "Opaque"
    assert list(secret["data"]) == ["endpoints.yaml"]
    text = base64.b64decode(secret["data"]["endpoints.yaml"]).decode()
    assert yaml.safe_load(text) == {"endpoints": endpoints}
    mimir = next(e for e in parse_prometheus_endpoints(text) if e.name == "mimir-team-a")
    assert mimir.basic_auth == BasicAuth("12345", "passw0rd")
    assert mimir.headers == (("X-Scope-OrgID", "team-a"),)

    volume, variable = endpoints_volume(objects)
    assert variable == f"{MOUNT}/endpoints.yaml"
    assert volume == {
        "name": "prometheus-endpoints",
        "secret": {
            "secretName": "perennial-prometheus-endpoints",
            "items": [{"key": "endpoints.yaml", "path": "endpoints.yaml"}],
            "defaultMode": 0o444,
        },
    }
    _, container = operator_pod(objects)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "prometheus-endpoints"]
    # A directory, not a subPath: the kubelet then updates the file in place.
    assert mount == {"name": "prometheus-endpoints", "mountPath": MOUNT, "readOnly": True}


def test_an_existing_secret_is_mounted_instead_and_its_egress_must_be_listed(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    rule = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": 10902, "protocol": "TCP"}],
    }
    values = {
        "prometheus": {"existingEndpointsSecret": "ml-prometheus"},
        "networkPolicy": {"egress": {"prometheus": [rule]}},
    }
    objects = render(tmp_path, values)
    assert not kinds(objects, "Secret"), "the chart renders no Secret of its own"
    volume, variable = endpoints_volume(objects)
    assert volume is not None
    assert volume["secret"]["secretName"] == "ml-prometheus"
    assert variable == f"{MOUNT}/endpoints.yaml"

    # The chart cannot see the URLs in a Secret it did not render: no egress rule can be derived.
    error = refused(tmp_path, {"prometheus": {"existingEndpointsSecret": "ml-prometheus"}})
    assert "the endpoints in Secret ml-prometheus are not visible to the chart" in error
    assert "networkPolicy.egress.prometheus" in error
    off = {"prometheus": {"existingEndpointsSecret": "ml-prometheus"}, "networkPolicy": {"egress": {"enabled": False}}}
    assert endpoints_volume(render(tmp_path, off))[0] is not None


def test_each_endpoints_url_gets_an_egress_rule(cluster: ClusterInfo, tmp_path: Path) -> None:
    (policy,) = kinds(render(tmp_path, {"prometheus": {"endpoints": ENDPOINTS}}), "NetworkPolicy")
    derived = policy["spec"]["egress"][2:]
    assert {
        (rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], rule["ports"][0]["port"])
        for rule in derived
    } == {("monitoring", 10902), ("observability", 443)}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"prometheus": {"endpoints": ENDPOINTS, "existingEndpointsSecret": "ml-prometheus"}},
            "prometheus.endpoints and prometheus.existingEndpointsSecret are exclusive",
        ),
        (
            {"prometheusUrl": "http://prometheus:9090", "prometheus": {"endpoints": {"default": {"url": "https://x"}}}},
            "prometheusUrl and prometheus.endpoints.default both define the default Prometheus: keep one",
        ),
        ({"prometheus": {"endpoints": {"Thanos_EU": {"url": "https://x"}}}}, "'Thanos_EU' does not match pattern"),
        ({"prometheus": {"endpoints": {"x": {"url": "https://u:p@x"}}}}, "/prometheus/endpoints/x/url"),
        ({"prometheus": {"endpoints": {"x": {"url": "https://x", "token": "t"}}}}, "additional properties 'token'"),
        ({"prometheus": {"endpoints": {"x": {"bearerToken": "t"}}}}, "missing property 'url'"),
        ({"prometheus": {"endpoints": {"x": {"url": "https://x", "tls": {"ca": "no PEM"}}}}}, "/tls/ca"),
        ({"prometheus": {"endpoints": {"x": {"url": "https://x", "timeout": "soon"}}}}, "/timeout"),
    ],
)
def test_bad_endpoint_values_fail_the_install(
    cluster: ClusterInfo, tmp_path: Path, values: dict[str, Any], expected: str
) -> None:
    assert expected in refused(tmp_path, values)


def test_the_api_server_accepts_the_secret_and_the_deployment_mounting_it(
    perennial_crds: ClusterInfo, tmp_path: Path
) -> None:
    delivery.install_manifests(perennial_crds)  # the namespace and the ServiceAccount exist
    objects = render(tmp_path, {"prometheus": {"endpoints": ENDPOINTS}})
    wanted = kinds(objects, "Secret") + kinds(objects, "Deployment")
    result = perennial_crds.kubectl_run(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(wanted), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "secret/perennial-prometheus-endpoints created (server dry run)" in result.stdout
    assert "PodSecurity" not in result.stderr, result.stderr
