"""Named Prometheus endpoints end to end: the real Prometheus behind an authenticating TLS proxy.

The test makes a private CA (openssl), starts ``AuthProxy`` in front of the local
cluster's real Prometheus (TLS from that CA; a bearer token or basic auth; the tenant
header ``X-Scope-OrgID``) and gives the operator, started as ``perennial run``, an
endpoints file (``PERENNIAL_PROMETHEUS_ENDPOINTS_FILE``) naming it three times: ``thanos``
(a bearer token and a client certificate, its CA inline), ``mimir`` (basic auth, its CA
from a file) and ``stale`` (a token the proxy refuses). Each policy's query is
``vector(<its own number>)``: the real Prometheus computes the value, and the proxy's log
of queries tells which policy asked what. A second proxy, the bystander, is no endpoint
and on no allowlist: it must never be asked anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import ClusterInfo
from tests.support.operator import RunningOperator, subprocess_operator
from tests.support.prometheus_proxy import AuthProxy
from tests.support.resources import GROUP, VERSION, apply, condition, events_for, simulated_model, wait_for_status
from tests.support.tls import Pki, make_pki
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

TOKEN = "e2e-t0ken-0f-thanos"
WRONG_TOKEN = "e2e-t0ken-that-expired"
USER, PASSWORD = "ml-team", "e2e-passw0rd-0f-mimir"
TENANT = "team-a"
SECRETS = (TOKEN, WRONG_TOKEN, PASSWORD)
TARGET = "churn"
INTERVAL = "10s"


@dataclass(frozen=True)
class Setup:
    proxy: AuthProxy
    bystander: AuthProxy
    pki: Pki
    endpoints_file: Path
    log: Path


def endpoints(proxy: AuthProxy, pki: Pki, **more: dict[str, Any]) -> dict[str, Any]:
    tenant = {"X-Scope-OrgID": TENANT}
    return {
        "endpoints": {
            "thanos": {
                "url": proxy.url,
                "bearerToken": TOKEN,
                "headers": tenant,
                "tls": {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key},
                "timeout": "5s",
            },
            "mimir": {
                "url": f"{proxy.url}/",
                "basicAuth": {"username": USER, "password": PASSWORD},
                "headers": tenant,
                "tls": {"caFile": str(pki.path("ca.crt"))},
            },
            "stale": {"url": proxy.url, "bearerToken": WRONG_TOKEN, "headers": tenant, "tls": {"ca": pki.ca}},
            **more,
        }
    }


def write_atomically(path: Path, text: str) -> None:
    """As the kubelet updates a mounted Secret: the new content appears whole, under the same name."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


@pytest.fixture
def setup(cluster: ClusterInfo, tmp_path: Path) -> Iterator[Setup]:
    pki = make_pki(tmp_path / "pki")
    proxy = AuthProxy(pki, upstream=cluster.prometheus_url, tokens={TOKEN}, basic={(USER, PASSWORD)}, tenants={TENANT})
    bystander = AuthProxy(None, upstream=cluster.prometheus_url, tokens={TOKEN})
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump(endpoints(proxy, pki)))
    with proxy, bystander:
        yield Setup(proxy, bystander, pki, path, tmp_path / "operator.log")


@pytest.fixture
def operator(perennial_crds: ClusterInfo, namespace: str, setup: Setup) -> Iterator[RunningOperator]:
    env = {"PERENNIAL_PROMETHEUS_ENDPOINTS_FILE": str(setup.endpoints_file)}
    with subprocess_operator(
        perennial_crds, [namespace], setup.log, perennial_crds.prometheus_url, extra_env=env
    ) as running:
        yield running


def policy(name: str, number: float, prometheus: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": TARGET},
            "interval": INTERVAL,
            "prometheus": prometheus,
            "metrics": [{"name": "value", "query": f"vector({number})", "max": 1}],
        },
    }


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})


def wait_ready(api: client.ApiClient, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for_status(
        api,
        namespace,
        "driftpolicies",
        name,
        lambda s: ready(s).get("reason") == reason,
        what=f"DriftPolicy {name} Ready reason {reason}",
        timeout=60,
    )


def last_evaluation(operator: RunningOperator, namespace: str, name: str) -> float:
    """When the operator last evaluated the policy (its gauge; 0 before the first evaluation)."""
    labels = {"namespace": namespace, "policy": name}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == "perennial_drift_policy_last_evaluation_timestamp_seconds" and sample.labels == labels:
                return float(sample.value)
    return 0.0


def queries(proxy: AuthProxy, number: float) -> list[Any]:
    return [seen for seen in proxy.requests() if seen.query == f"vector({number})"]


def test_policies_query_through_named_endpoints_with_their_credentials_and_only_there(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    setup: Setup,
    operator: RunningOperator,
) -> None:
    proxy, bystander = setup.proxy, setup.bystander
    apply(perennial_crds, namespace, simulated_model(TARGET))
    manifests = [
        policy("via-thanos", 0.11, {"endpoint": "thanos"}),
        policy("via-mimir", 0.12, {"endpoint": "mimir"}),
        policy("unknown", 0.13, {"endpoint": "thanos-eu"}),
        policy("elsewhere", 0.14, {"url": bystander.url}),
        policy("stale", 0.15, {"endpoint": "stale"}),
        policy("default", 0.16, {}),
    ]
    apply(perennial_crds, namespace, "\n---\n".join(json.dumps(m) for m in manifests))

    # A bearer token, the tenant header and a client certificate, over TLS from the private CA.
    thanos = wait_ready(api_client, namespace, "via-thanos", "Evaluated")
    assert thanos["metrics"][0]["value"] == 0.11, thanos
    seen = queries(proxy, 0.11)
    assert seen, "the proxy never saw thanos's query"
    assert {(s.authorization, s.tenant, s.client, s.status) for s in seen} == {
        (f"Bearer {TOKEN}", TENANT, "perennial", 200)
    }

    # Basic auth, the CA from a file.
    mimir = wait_ready(api_client, namespace, "via-mimir", "Evaluated")
    assert mimir["metrics"][0]["value"] == 0.12, mimir
    assert {(s.authorization, s.tenant, s.status) for s in queries(proxy, 0.12)} == {
        (f"Basic {USER}:{PASSWORD}", TENANT, 200)
    }

    # No endpoint of that name: a condition, an Event, no request.
    unknown = wait_ready(api_client, namespace, "unknown", "EndpointUnknown")
    message = condition(unknown, "Ready")["message"]
    assert condition(unknown, "Ready")["status"] == "False"
    assert message.startswith("spec.prometheus.endpoint thanos-eu is not a Prometheus endpoint the operator defines")
    assert "(the operator defines default, mimir, stale, thanos)" in message
    assert unknown["metrics"][0]["error"] == message
    wait_until(
        lambda: ("Warning", "EndpointUnknown", message) in events_for(api_client, namespace, "unknown", "DriftPolicy"),
        timeout=30,
        what="an EndpointUnknown Event",
    )

    # A raw URL outside the allowlist: EndpointNotAllowed, no request.
    elsewhere = wait_ready(api_client, namespace, "elsewhere", "EndpointNotAllowed")
    assert bystander.url in condition(elsewhere, "Ready")["message"]

    # Credentials the proxy refuses: a readable condition, not a crash.
    stale = wait_ready(api_client, namespace, "stale", "PrometheusUnauthorized")
    refusal = condition(stale, "Ready")["message"]
    assert refusal.startswith(f"endpoint stale ({proxy.url}) answered HTTP 401 Unauthorized: it refused the operator's")
    assert "PERENNIAL_PROMETHEUS_ENDPOINTS_FILE" in refusal
    assert {s.status for s in queries(proxy, 0.15)} == {401}

    # No endpoint named: the default (PERENNIAL_PROMETHEUS_URL, the real Prometheus itself).
    default = wait_ready(api_client, namespace, "default", "Evaluated")
    assert default["metrics"][0]["value"] == 0.16
    assert not queries(proxy, 0.16), "the default is not the proxy"

    # One more evaluation of each refused policy, and still nothing asked where it must not be.
    # (Its status is not written again, nothing changed: the operator's gauge tells it ran.)
    evaluated = last_evaluation(operator, namespace, "unknown")
    wait_until(
        lambda: last_evaluation(operator, namespace, "unknown") > evaluated,
        timeout=60,
        what="another evaluation of the policy naming an unknown endpoint",
    )
    later = wait_ready(api_client, namespace, "unknown", "EndpointUnknown")
    assert later == unknown, "the same problem again: status is not written again"
    assert not queries(proxy, 0.13), "a policy naming an unknown endpoint sent a request"
    assert bystander.requests() == [], "a URL outside the allowlist was asked"

    # No credential anywhere a user or a log pipeline can read.
    statuses = json.dumps([thanos, mimir, unknown, elsewhere, stale, default, later])
    event_messages = json.dumps(
        [events_for(api_client, namespace, m["metadata"]["name"], "DriftPolicy") for m in manifests]
    )
    log = setup.log.read_text()
    for secret in SECRETS:
        for where, text in (("status", statuses), ("Events", event_messages), ("the operator's log", log)):
            assert secret not in text, f"a credential in {where}"
    assert "Prometheus endpoints: default (" in log, "the endpoints are logged, by name and kind of credentials"
    assert "thanos (https://127.0.0.1:" in log
    assert operator.metrics_text()  # still serving


def test_a_changed_endpoints_file_is_used_without_a_restart_and_an_invalid_one_is_ignored(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    setup: Setup,
    operator: RunningOperator,
) -> None:
    proxy = setup.proxy
    apply(perennial_crds, namespace, simulated_model(TARGET))
    apply(perennial_crds, namespace, policy("later", 0.21, {"endpoint": "thanos-eu"}))
    wait_ready(api_client, namespace, "later", "EndpointUnknown")

    # A broken file (an endpoint without a URL) is refused and logged; the old endpoints stay.
    broken = endpoints(proxy, setup.pki, **{"thanos-eu": {"bearerToken": TOKEN}})
    write_atomically(setup.endpoints_file, yaml.safe_dump(broken))
    wait_until(
        lambda: "endpoint thanos-eu: url is required" in setup.log.read_text(),
        timeout=45,
        what="the operator to log the refused endpoints file",
    )
    assert "the endpoints loaded before stay" in setup.log.read_text()

    fixed = endpoints(
        proxy,
        setup.pki,
        **{"thanos-eu": {"url": proxy.url, "bearerToken": TOKEN, "headers": {"X-Scope-OrgID": TENANT}}},
    )
    fixed["endpoints"]["thanos-eu"]["tls"] = {"ca": setup.pki.ca}
    write_atomically(setup.endpoints_file, yaml.safe_dump(fixed))

    later = wait_ready(api_client, namespace, "later", "Evaluated")
    assert later["metrics"][0]["value"] == 0.21
    assert {(s.authorization, s.tenant, s.status) for s in queries(proxy, 0.21)} == {(f"Bearer {TOKEN}", TENANT, 200)}
    log = setup.log.read_text()
    assert "changed: reloaded" in log
    assert TOKEN not in log
