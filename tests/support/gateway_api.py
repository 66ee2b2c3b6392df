"""Gateway API on the local cluster: the HTTPRoute CRD only (no gateway implementation is
needed to check the weights the operator writes on a route's backends)."""

from __future__ import annotations

from localcluster.build import gateway_api_crds

from tests.support.cluster import ClusterInfo
from tests.support.waiting import wait_until

HTTP_ROUTE_CRD = "gateway.networking.k8s.io_httproutes.yaml"


def install_httproute_crd(cluster: ClusterInfo) -> None:
    """Server-side apply the HTTPRoute CRD (idempotent), then wait until HTTPRoutes are served."""
    cluster.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds() / HTTP_ROUTE_CRD))

    def served() -> bool:
        result = cluster.kubectl_run("get", "httproutes.gateway.networking.k8s.io", "-A", check=False)
        return result.returncode == 0

    wait_until(served, timeout=60, what="HTTPRoutes served")
