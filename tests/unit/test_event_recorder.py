"""Recording an Event never blocks a reconcile: a full backlog drops and counts."""

from perennial.adapters import metrics
from perennial.adapters.events import EventRecorder, event_body
from perennial.adapters.kube import KubeClient
from perennial.adapters.login import Login

SUBJECT = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1", "resourceVersion": "7"},
}


def _dropped() -> float:
    return metrics.REGISTRY.get_sample_value("perennial_events_dropped_total") or 0.0


async def test_a_full_backlog_drops_the_newest_and_counts_it() -> None:
    kube = KubeClient(Login("/nonexistent/kubeconfig"))  # never reached: no sender runs
    recorder = EventRecorder(kube, backlog=2)
    before = _dropped()
    for i in range(5):
        recorder.record(SUBJECT, "Normal", "Counted", f"event {i}")
    assert _dropped() - before == 3
    await kube.close()


def test_an_event_names_its_object_and_is_stamped_by_perennial() -> None:
    event = event_body(SUBJECT, "Warning", "RolledBack", "x" * 2000, "operator-0")
    assert event["metadata"] == {"generateName": "churn.", "namespace": "ml"}
    assert event["involvedObject"] == {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "churn",
        "namespace": "ml",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], len(event["message"].encode())) == ("Warning", "RolledBack", 1024)
    assert event["message"].endswith("…")  # cut, and says so
    assert event["reportingComponent"] == event["source"]["component"] == "perennial"
    assert event["reportingInstance"] == "operator-0"
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_pending_events_are_discarded_when_a_replica_stops_leading() -> None:
    recorder = EventRecorder(KubeClient(Login("/nonexistent/kubeconfig")))
    for _ in range(3):
        recorder.record(SUBJECT, "Normal", "Counted", "event")
    assert recorder.discard_pending() == 3
    assert recorder.discard_pending() == 0
