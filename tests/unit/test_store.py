"""The watch cache: slimmed bodies, no going back in time, the owner index, relists."""

from collections.abc import Mapping
from typing import Any

import pytest

from perennial.adapters.store import LAST_APPLIED_ANNOTATION, ObjectStore, slim


def body(name: str, resource_version: str, *, owner: str | None = None, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ml", "resourceVersion": resource_version}
    if owner:
        metadata["ownerReferences"] = [{"uid": owner, "kind": "ModelDeployment", "name": "churn"}]
    metadata.update(extra)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {"parallelism": 1}}


def test_slim_drops_managed_fields_and_last_applied_but_keeps_other_annotations() -> None:
    original = body(
        "churn-v1",
        "10",
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        annotations={LAST_APPLIED_ANNOTATION: "{...}", "perennial.dev/retrain-request": "r1"},
    )
    slimmed = slim(original)
    assert "managedFields" not in slimmed["metadata"]
    assert slimmed["metadata"]["annotations"] == {"perennial.dev/retrain-request": "r1"}
    assert slimmed["spec"] == original["spec"]
    # The caller's body (kopf's) is left untouched.
    assert "managedFields" in original["metadata"]
    assert LAST_APPLIED_ANNOTATION in original["metadata"]["annotations"]


def test_the_store_keeps_slimmed_bodies() -> None:
    store = ObjectStore()
    store.apply_event("ADDED", body("churn-v1", "10", managedFields=[{"manager": "kube-controller-manager"}]))
    cached = store.get(("ml", "churn-v1"))
    assert cached is not None
    assert "managedFields" not in cached["metadata"]


def test_an_older_event_never_replaces_a_newer_body() -> None:
    store = ObjectStore()
    store.put(body("churn-v1", "12", labels={"seen": "newer"}))
    store.apply_event("MODIFIED", body("churn-v1", "11", labels={"seen": "older"}))
    cached = store.get(("ml", "churn-v1"))
    assert cached is not None
    assert cached["metadata"]["labels"] == {"seen": "newer"}


def test_the_owner_index_follows_adds_owner_changes_and_deletes() -> None:
    store = ObjectStore()
    store.apply_event("ADDED", body("churn-v1", "1", owner="uid-a"))
    store.apply_event("ADDED", body("churn-v2", "2", owner="uid-a"))
    assert [b["metadata"]["name"] for b in store.owned_by("uid-a")] == ["churn-v1", "churn-v2"]
    store.apply_event("MODIFIED", body("churn-v2", "3", owner="uid-b"))
    assert [b["metadata"]["name"] for b in store.owned_by("uid-a")] == ["churn-v1"]
    assert [b["metadata"]["name"] for b in store.owned_by("uid-b")] == ["churn-v2"]
    store.apply_event("DELETED", body("churn-v1", "4", owner="uid-a"))
    assert store.owned_by("uid-a") == []
    assert len(store) == 1


def test_get_hands_out_a_private_copy() -> None:
    store = ObjectStore()
    store.put(body("churn-v1", "1", labels={"a": "1"}))
    first = store.get(("ml", "churn-v1"))
    assert first is not None
    first["metadata"]["labels"]["a"] = "changed by a reconcile"
    first["status"] = {"phase": "Scribbled"}
    again = store.get(("ml", "churn-v1"))
    assert again is not None
    assert again["metadata"]["labels"] == {"a": "1"}
    assert "status" not in again


def test_non_integer_resource_versions_always_count_as_newer() -> None:
    store = ObjectStore()
    store.put(body("churn-v1", "12", labels={"seen": "first"}))
    store.apply_event("MODIFIED", body("churn-v1", "opaque-token", labels={"seen": "second"}))
    cached = store.get(("ml", "churn-v1"))
    assert cached is not None
    assert cached["metadata"]["labels"] == {"seen": "second"}


class Recorder:
    """A subscriber that remembers what it was told: (event type, name)."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, str]] = []

    def __call__(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.events.append((event_type, body["metadata"]["name"]))


def test_a_relist_removes_what_the_list_lacks_and_tells_subscribers_deleted() -> None:
    # The watch missed churn-v1's deletion (a 410 Gone and kopf's relist): the resync's LIST
    # no longer has it, so it leaves the cache and the controllers hear DELETED.
    store = ObjectStore()
    heard = Recorder()
    store.subscribe(heard)
    store.apply_event("ADDED", body("churn-v1", "10", owner="uid-a"))
    store.apply_event("ADDED", body("churn-v2", "11", owner="uid-a"))
    heard.events.clear()

    removed = store.replace([body("churn-v2", "11", owner="uid-a")], resource_version="20")

    assert removed == [("ml", "churn-v1")]
    assert store.get(("ml", "churn-v1")) is None
    assert [b["metadata"]["name"] for b in store.owned_by("uid-a")] == ["churn-v2"]  # indexes follow
    # Every listed object is announced again (its controller re-queues it), the missing one as DELETED.
    assert heard.events == [(None, "churn-v2"), ("DELETED", "churn-v1")]


def test_a_relist_records_changes_the_watch_missed() -> None:
    store = ObjectStore()
    store.apply_event("ADDED", body("churn-v1", "10", labels={"seen": "old"}))
    store.replace([body("churn-v1", "15", labels={"seen": "changed unseen"})], resource_version="20")
    cached = store.get(("ml", "churn-v1"))
    assert cached is not None
    assert cached["metadata"]["labels"] == {"seen": "changed unseen"}


def test_a_relist_keeps_what_the_watch_delivered_after_the_lists_snapshot() -> None:
    # A LIST from the watch cache may predate what the watch already delivered: an object
    # created after the LIST's resourceVersion is not "gone", and a newer body is not replaced.
    store = ObjectStore()
    store.apply_event("ADDED", body("churn-v1", "25", labels={"seen": "newer"}))
    store.apply_event("ADDED", body("churn-v2", "30"))
    removed = store.replace([body("churn-v1", "12", labels={"seen": "older"})], resource_version="20")
    assert removed == []
    assert len(store) == 2
    cached = store.get(("ml", "churn-v1"))
    assert cached is not None
    assert cached["metadata"]["labels"] == {"seen": "newer"}


def test_a_deletion_seen_during_a_relist_is_not_undone_by_an_older_page() -> None:
    store = ObjectStore()
    store.apply_event("ADDED", body("churn-v1", "10"))
    with store.relist() as relist:
        store.apply_event("DELETED", body("churn-v1", "21"))  # the watch, between two pages
        relist.add([body("churn-v1", "10")])  # a page listed before the deletion
        assert relist.finish("20") == []
    assert store.get(("ml", "churn-v1")) is None
    # A new object of the same name, created after the deletion, is listed again.
    store.replace([body("churn-v1", "40")], resource_version="40")
    assert store.get(("ml", "churn-v1")) is not None


def test_a_relist_of_one_namespace_leaves_the_others_alone() -> None:
    store = ObjectStore()
    store.put(body("churn-v1", "10"))
    store.put({**body("other", "11"), "metadata": {"name": "other", "namespace": "team-b", "resourceVersion": "11"}})
    assert store.replace([], resource_version="20", namespace="team-b") == [("team-b", "other")]
    assert store.get(("ml", "churn-v1")) is not None


def test_a_failed_relist_removes_nothing() -> None:
    store = ObjectStore()
    store.put(body("churn-v1", "10"))

    def broken_list() -> None:
        with store.relist() as relist:
            relist.add([])
            raise RuntimeError("the LIST broke off")

    with pytest.raises(RuntimeError):
        broken_list()
    assert store.get(("ml", "churn-v1")) is not None


def test_delete_forgets_a_cached_object_and_tells_subscribers_once() -> None:
    store = ObjectStore()
    heard = Recorder()
    store.subscribe(heard)
    store.put(body("churn-v1", "10"))
    assert store.delete(("ml", "churn-v1")) is True
    assert store.delete(("ml", "churn-v1")) is False
    assert store.get(("ml", "churn-v1")) is None
    assert heard.events == [("DELETED", "churn-v1")]
