"""Status writes against a real API server: no lost updates, no write loops on deleted objects.

Two writers of one ModelDeployment's status: the operator's controller (writer A, the
real ``write_status`` in a real work queue) and someone who appends to
``status.versions`` between A's read and A's write (writer B). A merge patch replaces a
list whole, so A's write must not be made from its stale read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes import client

from perennial.adapters import metrics
from perennial.adapters.kube import MODEL_DEPLOYMENTS, KubeClient
from perennial.adapters.login import Login
from perennial.adapters.store import Key
from perennial.adapters.workqueue import WorkQueue
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.controllers.context import Cluster, Controller
from perennial.controllers.execute import write_status
from tests.support.cluster import ClusterInfo
from tests.support.resources import GROUP, VERSION, get_custom, simulated_model
from tests.support.waiting import holds_for, wait_until

NAME = "churn"


def _record(version: str, state: str) -> dict[str, Any]:
    return {"version": version, "trainingJob": f"{NAME}-v{version}", "state": state}


class PromotingWriter(Controller):
    """Writer A: a controller whose plan marks version 1 a Candidate, from what its cache holds.

    ``meanwhile`` runs once, between the first pass's read and its write (the race).
    """

    kind = "ModelDeployment"
    store = "modeldeployments"

    def __init__(self, cluster: Cluster, meanwhile: Callable[[], None]) -> None:
        super().__init__(cluster)
        # Failures retried after 10 ms, not 0.5 s: a write loop shows at once.
        self.queue = WorkQueue(self.kind, self._measured, workers=1, base_delay=0.01)
        self.meanwhile: Callable[[], None] | None = meanwhile
        self.passes = 0

    async def reconcile(self, key: Key) -> float | None:
        self.passes += 1
        body = self.cluster.modeldeployments.get(key)
        if body is None:
            return None
        before = ModelDeploymentStatus.model_validate(body.get("status") or {})
        after = before.model_copy(deep=True)
        for record in after.versions or []:
            if record.version == "1":
                record.state = "Candidate"
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await asyncio.to_thread(meanwhile)
        await write_status(self.cluster, MODEL_DEPLOYMENTS, self.cluster.modeldeployments, body, before, after)
        return None


@pytest.fixture
async def kube(perennial_crds: ClusterInfo) -> AsyncIterator[KubeClient]:
    kube = KubeClient(Login(str(perennial_crds.kubeconfig)))
    yield kube
    await kube.close()


def _create_model(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", simulated_model(NAME))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "modeldeployments", NAME, {"status": {"versions": [_record("1", "Training")]}}
    )


def _versions(api: client.ApiClient, namespace: str) -> list[tuple[str, str]]:
    status = get_custom(api, namespace, "modeldeployments", NAME).get("status") or {}
    return [(v["version"], v.get("state")) for v in status.get("versions") or []]


async def test_a_status_write_never_drops_a_version_another_writer_added_meanwhile(
    kube: KubeClient, api_client: client.ApiClient, namespace: str
) -> None:
    _create_model(api_client, namespace)
    cluster = Cluster(client=kube)
    cluster.modeldeployments.put(await kube.get(MODEL_DEPLOYMENTS, namespace, NAME))  # A's read

    def writer_b_appends_version_2() -> None:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "modeldeployments",
            NAME,
            {"status": {"versions": [_record("1", "Training"), _record("2", "Training")]}},
        )

    conflicts = metrics.REGISTRY.get_sample_value("perennial_status_conflicts_total", {"kind": "ModelDeployment"})
    writer_a = PromotingWriter(cluster, writer_b_appends_version_2)
    writer_a.start()
    try:
        writer_a.queue.add((namespace, NAME))
        # A's change lands, planned again on what B wrote: both writers' updates are kept.
        expected = [("1", "Candidate"), ("2", "Training")]

        def both_writes_kept() -> bool:
            versions = _versions(api_client, namespace)
            assert versions == expected, f"status.versions is {versions}"
            return True

        await asyncio.to_thread(
            wait_until, both_writes_kept, timeout=30, what="version 1 a Candidate and version 2 still recorded"
        )
    finally:
        await writer_a.stop()
    assert writer_a.passes == 2  # the conflict, then one pass on fresh data
    after = metrics.REGISTRY.get_sample_value("perennial_status_conflicts_total", {"kind": "ModelDeployment"})
    assert (after or 0) - (conflicts or 0) == 1


async def test_a_status_write_to_an_object_deleted_meanwhile_forgets_it_and_stops(
    kube: KubeClient, api_client: client.ApiClient, namespace: str
) -> None:
    _create_model(api_client, namespace)
    cluster = Cluster(client=kube)
    cluster.modeldeployments.put(await kube.get(MODEL_DEPLOYMENTS, namespace, NAME))
    heard: list[str | None] = []
    cluster.modeldeployments.subscribe(lambda event_type, body: heard.append(event_type))

    def deleted_before_the_write() -> None:
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", NAME
        )

    writer = PromotingWriter(cluster, deleted_before_the_write)
    writer.start()
    try:
        writer.queue.add((namespace, NAME))
        await asyncio.to_thread(
            wait_until,
            lambda: cluster.modeldeployments.get((namespace, NAME)) is None,
            timeout=30,
            what="the deleted ModelDeployment to leave the cache",
        )
        # Nothing patches it again (retries of a failed reconcile would come every few ms here).
        await asyncio.to_thread(holds_for, lambda: writer.passes == 1, seconds=2, what="one pass only")
    finally:
        await writer.stop()
    assert heard == ["DELETED"]  # its controllers hear of it as from the watch
