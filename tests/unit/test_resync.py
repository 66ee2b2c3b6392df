"""The periodic resync: every watched kind listed in every watched namespace, its cache replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from perennial.adapters import metrics
from perennial.adapters.kube import KubeClient, Resource
from perennial.controllers.context import JOB_WATCH, MODEL_DEPLOYMENT_WATCH, WATCHES, Cluster, Resync
from perennial.settings import Settings


def model(name: str, namespace: str, resource_version: str) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "resourceVersion": resource_version}
    return {"apiVersion": "perennial.dev/v1alpha1", "kind": "ModelDeployment", "metadata": metadata}


class FakeLister:
    """Answers LISTs from ``objects`` (by plural and namespace); a plural in ``broken`` fails."""

    def __init__(
        self, objects: dict[tuple[str, str], list[dict[str, Any]]], broken: frozenset[str] = frozenset()
    ) -> None:
        self.objects = objects
        self.broken = broken
        self.listed: list[tuple[str, str | None, str]] = []

    async def list_pages(
        self, resource: Resource, namespace: str | None, label_selector: str = ""
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        self.listed.append((resource.plural, namespace, label_selector))
        if resource.plural in self.broken:
            raise RuntimeError("the LIST broke off")
        yield list(self.objects.get((resource.plural, str(namespace)), [])), "100"


def cluster_with(lister: FakeLister, namespaces: tuple[str, ...]) -> Cluster:
    return Cluster(client=cast(KubeClient, lister), settings=Settings(namespaces=namespaces))


async def test_every_watched_kind_is_listed_in_every_watched_namespace_with_its_watchs_labels() -> None:
    lister = FakeLister({})
    assert await Resync(cluster_with(lister, ("ml", "team-b"))).run_once()
    assert lister.listed == [
        (watch.resource.plural, namespace, watch.label_selector) for watch in WATCHES for namespace in ("ml", "team-b")
    ]
    assert (JOB_WATCH.resource.plural, "ml", "app.kubernetes.io/managed-by=perennial,perennial.dev/training-job") in (
        lister.listed
    )


async def test_a_resync_replaces_the_caches_and_requeues_what_it_listed() -> None:
    lister = FakeLister({("modeldeployments", "ml"): [model("churn", "ml", "50")]})
    cluster = cluster_with(lister, ("ml",))
    cluster.modeldeployments.apply_event("ADDED", model("churn", "ml", "40"))
    cluster.modeldeployments.apply_event("ADDED", model("gone", "ml", "41"))
    heard: list[tuple[str | None, str]] = []
    cluster.modeldeployments.subscribe(lambda event_type, body: heard.append((event_type, body["metadata"]["name"])))
    removed = metrics.REGISTRY.get_sample_value("perennial_resync_removed_total", {"kind": "ModelDeployment"}) or 0

    assert await Resync(cluster).run_once()

    assert sorted(cluster.modeldeployments.keys()) == [("ml", "churn")]
    assert heard == [(None, "churn"), ("DELETED", "gone")]
    after = metrics.REGISTRY.get_sample_value("perennial_resync_removed_total", {"kind": "ModelDeployment"})
    assert after == removed + 1


async def test_a_failed_list_leaves_that_cache_alone_and_the_others_are_still_resynced() -> None:
    lister = FakeLister({}, broken=frozenset({MODEL_DEPLOYMENT_WATCH.resource.plural}))
    cluster = cluster_with(lister, ())
    cluster.modeldeployments.put(model("churn", "ml", "40"))
    cluster.jobs.put({"kind": "Job", "metadata": {"name": "gone-v1", "namespace": "ml", "resourceVersion": "41"}})
    errors = metrics.REGISTRY.get_sample_value("perennial_resyncs_total", {"result": "error"}) or 0

    assert not await Resync(cluster).run_once()

    assert len(cluster.modeldeployments) == 1  # its LIST failed: nothing removed
    assert len(cluster.jobs) == 0  # cluster-wide LIST (namespace None) found no Job
    assert lister.listed[0][1] is None
    assert metrics.REGISTRY.get_sample_value("perennial_resyncs_total", {"result": "error"}) == errors + 1
