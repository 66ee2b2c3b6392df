"""Shared fixtures: one local cluster per test session, one namespace per test.

Tiers are marked by folder: tests/unit (no cluster), tests/integration (`api` profile:
etcd + kube-apiserver), tests/e2e (`full` profile: + controllers, kwok, Prometheus).
A cluster that was already up (``make cluster-up``) is reused and left running; one
the session started is stopped at the end unless PERENNIAL_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo, ScrapeTargets, bring_down, bring_up, cluster_is_up, install_crds
from tests.support.waiting import wait_until

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Measurements tests report (not assert), printed at the end of every run.

    They travel as user_properties of the test reports, so they reach this summary from
    pytest-xdist workers too.
    """
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "measurement"
    ]
    if lines:
        terminalreporter.section("measurements")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def report_measurement(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a number for the end-of-run "measurements" section."""

    def report(text: str) -> None:
        request.node.user_properties.append(("measurement", text))

    return report


class _ClusterSession:
    """Brings profiles up lazily: a run of unit tests never starts a cluster."""

    def __init__(self) -> None:
        self.started_here = False
        self.infos: dict[str, ClusterInfo] = {}

    def get(self, profile: str) -> ClusterInfo:
        if profile not in self.infos:
            if not self.infos and not cluster_is_up():
                self.started_here = True
            self.infos[profile] = bring_up(profile)
            if profile == "full":
                self.infos["api"] = self.infos["full"]
        return self.infos[profile]

    def close(self) -> None:
        # Under pytest-xdist every worker has its own session: none may stop the cluster
        # the others still use (`.ci/run` stops it at the end).
        parallel_worker = "PYTEST_XDIST_WORKER" in os.environ
        if self.started_here and not parallel_worker and os.environ.get("PERENNIAL_KEEP_CLUSTER") != "1":
            bring_down()


@pytest.fixture(scope="session")
def _cluster_session() -> Iterator[_ClusterSession]:
    session = _ClusterSession()
    yield session
    session.close()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, _cluster_session: _ClusterSession) -> ClusterInfo:
    """The cluster this test's tier needs (e2e: full, otherwise api)."""
    profile = "full" if request.node.get_closest_marker("e2e") else "api"
    return _cluster_session.get(profile)


@pytest.fixture
def api_client(cluster: ClusterInfo) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: ClusterInfo, api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for this test, ready once its `default` ServiceAccount exists."""
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"perennial.dev/test": "true"}))
    )
    if cluster.profile == "full":
        wait_until(
            lambda: core.read_namespaced_service_account("default", name),
            timeout=60,
            what=f"ServiceAccount default in {name}",
        )
    else:
        # The api profile has no controller-manager to create it. A parallel worker may
        # have started the full profile meanwhile, whose controller-manager did: fine too.
        try:
            core.create_namespaced_service_account(
                name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
            )
        except ApiException as error:
            if error.status != 409:
                raise
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def perennial_crds(cluster: ClusterInfo) -> ClusterInfo:
    """The cluster with Perennial's CRDs installed from crds/."""
    install_crds(cluster)
    return cluster


@pytest.fixture
def scrape_targets(cluster: ClusterInfo) -> ScrapeTargets:
    assert cluster.targets_file is not None, "scrape targets need the full profile"
    return ScrapeTargets(cluster.targets_file)


@pytest.fixture
def operator_in_process(perennial_crds: ClusterInfo, namespace: str) -> Iterator[operator_support.RunningOperator]:
    """The operator, embedded in the test process, watching this test's namespace."""
    with operator_support.in_process(perennial_crds, [namespace], perennial_crds.prometheus_url) as running:
        yield running


@pytest.fixture
def operator_subprocess(
    perennial_crds: ClusterInfo, namespace: str, tmp_path: Path
) -> Iterator[operator_support.RunningOperator]:
    """The operator as `perennial run` in its own process, watching this test's namespace."""
    with operator_support.subprocess_operator(
        perennial_crds, [namespace], tmp_path / "operator.log", perennial_crds.prometheus_url
    ) as running:
        yield running
