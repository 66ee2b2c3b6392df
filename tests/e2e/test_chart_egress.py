"""The chart's NetworkPolicy limits the operator's egress: the API server, DNS, the allowed Prometheus.

A NetworkPolicy matches pods, namespaces and addresses, never URLs, so the Prometheus
rules are either listed (``networkPolicy.egress.prometheus``) or derived from the URLs a
DriftPolicy may query (``prometheusUrl`` and ``prometheus.allowedUrls``). Rendered with
``helm template``; a server-side dry run shows the API server accepts what is rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import delivery
from tests.support.cluster import ClusterInfo

pytestmark = pytest.mark.timeout(180)

API_SERVER = {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def values_file(directory: Path, values: dict[str, Any]) -> Path:
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def network_policy(directory: Path, namespace: str = delivery.NAMESPACE, **values: Any) -> dict[str, Any]:
    rendered = delivery.render(namespace=namespace, values_files=[values_file(directory, values)])
    (policy,) = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "NetworkPolicy"]
    assert isinstance(policy, dict)
    return policy


def to_namespace(name: str, port: int) -> dict[str, Any]:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
    return {"to": [peer], "ports": [{"port": port, "protocol": "TCP"}]}


def test_by_default_egress_is_the_api_server_and_dns_only(cluster: ClusterInfo, tmp_path: Path) -> None:
    policy = network_policy(tmp_path)

    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == [API_SERVER, DNS], "no Prometheus URL is set: none is reachable"


def test_each_allowed_prometheus_url_becomes_a_rule_for_its_namespace_or_address(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    policy = network_policy(
        tmp_path,
        prometheusUrl="http://prometheus-operated.monitoring.svc:9090",
        prometheus={
            "allowedUrls": [
                "http://prometheus-operated.monitoring.svc:9090/",  # the same endpoint again
                "http://thanos-query.observability:10902/prometheus",
                "https://prometheus.platform.svc.cluster.local",
                "http://prometheus:9090",
                "http://10.20.30.40:9090",
            ]
        },
    )

    assert policy["spec"]["egress"][2:] == [
        to_namespace("monitoring", 9090),
        to_namespace("observability", 10902),
        to_namespace("platform", 443),
        to_namespace(delivery.NAMESPACE, 9090),  # a bare Service name: the operator's own namespace
        {"to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}], "ports": [{"port": 9090, "protocol": "TCP"}]},
    ]


def test_listed_rules_replace_the_derived_ones_and_narrow_api_server_and_dns(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    prometheus_rule = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
        "ports": [{"port": 9090, "protocol": "TCP"}],
    }
    dns_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    policy = network_policy(
        tmp_path,
        prometheusUrl="https://prometheus.example.com",  # not derivable: listed instead
        networkPolicy={
            "egress": {
                "apiServer": {"cidrs": ["192.0.2.10/32"], "ports": [6443]},
                "dns": {"to": [dns_peer]},
                "prometheus": [prometheus_rule],
            }
        },
    )

    assert policy["spec"]["egress"] == [
        {"ports": [{"port": 6443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
        {**DNS, "to": [dns_peer]},
        prometheus_rule,
    ]


@pytest.mark.parametrize("url", ["https://prometheus.example.com", "http://[fd00::1]:9090"])
def test_a_url_no_rule_can_be_derived_for_fails_the_install_and_says_what_to_do(
    cluster: ClusterInfo, tmp_path: Path, url: str
) -> None:
    path = values_file(tmp_path, {"prometheus": {"allowedUrls": [url]}})
    result = delivery.helm(
        "template", "perennial", str(delivery.CHART_DIR), "--kube-version", delivery.KUBE_VERSION,
        "--values", str(path), check=False,
    )  # fmt: skip

    assert result.returncode != 0
    assert url in result.stderr
    assert "networkPolicy.egress.prometheus" in result.stderr


def test_egress_can_be_left_to_the_cluster(cluster: ClusterInfo, tmp_path: Path) -> None:
    policy = network_policy(
        tmp_path, prometheusUrl="https://prometheus.example.com", networkPolicy={"egress": {"enabled": False}}
    )

    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]


def test_the_api_server_accepts_the_rendered_policy(
    perennial_crds: ClusterInfo, namespace: str, tmp_path: Path
) -> None:
    policy = network_policy(
        tmp_path,
        namespace,
        prometheusUrl="http://prometheus-operated.monitoring.svc:9090",
        prometheus={"allowedUrls": ["http://10.20.30.40:9090"]},
        networkPolicy={"egress": {"apiServer": {"cidrs": ["192.0.2.10/32"], "ports": [443, 6443]}}},
    )

    result = perennial_crds.kubectl_run(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(policy)
    )
    assert "networkpolicy.networking.k8s.io/perennial created (server dry run)" in result.stdout
