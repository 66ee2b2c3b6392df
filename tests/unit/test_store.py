"""The watch cache: slimmed bodies, no going back in time, the owner index."""

from typing import Any

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
