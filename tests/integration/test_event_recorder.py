"""Events go out in the background and reach the real API server; stopping flushes them."""

from typing import Any

from kubernetes import client

from perennial.adapters.events import EventRecorder
from perennial.adapters.kube import KubeClient
from perennial.adapters.login import Login
from tests.support.cluster import ClusterInfo


def _config_map(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    created = client.CoreV1Api(api).create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="subject"))
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "subject", "namespace": namespace, "uid": created.metadata.uid},
    }


async def test_recorded_events_are_all_posted_by_the_time_the_recorder_stops(
    cluster: ClusterInfo, api_client: client.ApiClient, namespace: str
) -> None:
    subject = _config_map(api_client, namespace)
    kube = KubeClient(Login(str(cluster.kubeconfig)))
    recorder = EventRecorder(kube, senders=2)
    recorder.start()
    try:
        for i in range(25):
            recorder.record(subject, "Normal", "Counted", f"event {i}")  # returns at once
    finally:
        await recorder.stop(flush_timeout=30)
        await kube.close()
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert sorted(str(e.message) for e in events) == sorted(f"event {i}" for i in range(25))
    assert {(e.involved_object.kind, e.involved_object.uid, e.reason) for e in events} == {
        ("ConfigMap", subject["metadata"]["uid"], "Counted")
    }
