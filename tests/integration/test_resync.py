"""Watch gaps: the periodic resync reconciles what a missed event hid and drops what was deleted unseen.

A watch can miss events (kopf relists after a 410 Gone without telling its handlers
what disappeared; a dropped connection loses what happened meanwhile). Here the gap is
made on purpose: the in-process operator's watch handlers stop passing on the events
of one object, and the resync (every 2 s here) must make up for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client

import perennial.main
from perennial.adapters.store import ObjectStore
from tests.support import operator as operator_support
from tests.support.cluster import ClusterInfo
from tests.support.resources import GROUP, VERSION, apply, get_custom, simulated_model, wait_for_status
from tests.support.waiting import wait_until


@pytest.fixture
def missed(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of objects whose watch events the operator never sees from now on (a watch gap)."""
    names: set[str] = set()
    feed = perennial.main._feed

    def feed_with_a_gap(store: ObjectStore, event: Mapping[str, Any]) -> None:
        if event["object"]["metadata"]["name"] not in names:
            feed(store, event)

    monkeypatch.setattr(perennial.main, "_feed", feed_with_a_gap)
    return names


@pytest.fixture
def resyncing_operator(
    perennial_crds: ClusterInfo, namespace: str, missed: set[str]
) -> Iterator[operator_support.RunningOperator]:
    """The in-process operator watching this test's namespace, resyncing every 2 s."""
    resync = {"PERENNIAL_RESYNC_PERIOD": "2s"}
    with operator_support.in_process(perennial_crds, [namespace], extra_env=resync) as running:
        yield running


def _reconciled(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    generation = get_custom(api, namespace, "modeldeployments", name)["metadata"]["generation"]
    return wait_for_status(
        api,
        namespace,
        "modeldeployments",
        name,
        lambda status: status.get("observedGeneration") == generation,
        what=f"status of generation {generation}",
        timeout=30,
    )


def test_a_model_changed_while_its_watch_missed_it_is_reconciled_by_the_resync(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    missed: set[str],
    resyncing_operator: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, simulated_model("churn"))
    _reconciled(api_client, namespace, "churn")

    missed.add("churn")
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", "churn", {"spec": {"serving": {"replicas": 2}}}
    )

    _reconciled(api_client, namespace, "churn")  # generation 2, never seen in a watch event


def _settled(api: client.ApiClient, namespace: str, name: str, quiet: float = 3.0) -> None:
    """Wait until the ModelDeployment stops changing: the same resourceVersion for ``quiet`` seconds."""
    seen: dict[str, Any] = {"version": None, "since": 0.0}

    def probe() -> bool:
        version = get_custom(api, namespace, "modeldeployments", name)["metadata"]["resourceVersion"]
        if version != seen["version"]:
            seen.update(version=version, since=time.monotonic())
        return bool(time.monotonic() - seen["since"] >= quiet)

    wait_until(probe, timeout=60, what=f"{name} to settle")


def _model_ready_series(running: operator_support.RunningOperator, namespace: str, name: str) -> list[str]:
    return [
        line
        for line in running.metrics_text().splitlines()
        if line.startswith("perennial_model_ready{")
        and f'namespace="{namespace}"' in line
        and f'model="{name}"' in line
    ]


def _removed_by_resync(running: operator_support.RunningOperator) -> float:
    for line in running.metrics_text().splitlines():
        if line.startswith('perennial_resync_removed_total{kind="ModelDeployment"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_model_deleted_while_its_watch_missed_it_leaves_the_operator(
    perennial_crds: ClusterInfo,
    namespace: str,
    api_client: client.ApiClient,
    missed: set[str],
    resyncing_operator: operator_support.RunningOperator,
) -> None:
    apply(perennial_crds, namespace, simulated_model("gone"))
    _reconciled(api_client, namespace, "gone")
    wait_until(
        lambda: _model_ready_series(resyncing_operator, namespace, "gone"),
        timeout=30,
        what="perennial_model_ready of the model",
    )
    # Settled (its TrainingJob created, nothing left to write), so that no status write of
    # its own finds it gone (a 404 forgets it too): what removes it below is the resync.
    _settled(api_client, namespace, "gone")
    removed_before = _removed_by_resync(resyncing_operator)

    missed.add("gone")
    client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", "gone"
    )

    # Forgotten as if its DELETED event had come: no series left for an alert about a model
    # that does not exist, and its controller has nothing left to reconcile.
    wait_until(
        lambda: not _model_ready_series(resyncing_operator, namespace, "gone"),
        timeout=30,
        what="perennial_model_ready of the deleted model to go",
    )
    assert _removed_by_resync(resyncing_operator) == removed_before + 1
