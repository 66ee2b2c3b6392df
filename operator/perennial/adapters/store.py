"""In-memory caches of watched objects, fed by kopf's watch events (an informer's store).

Reconciles read children from here instead of GETting them, so steady state costs no
API reads. A cache may lag the API server (or miss an object right after a restart,
before its watch listed it): code that acts on an *absence* confirms it with one GET.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def key_of(body: Mapping[str, Any]) -> Key:
    metadata = body.get("metadata", {})
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def _owner_uids(body: Mapping[str, Any]) -> set[str]:
    return {str(o.get("uid")) for o in body.get("metadata", {}).get("ownerReferences") or []}


class ObjectStore:
    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        # Owner UID -> keys of its children: "this ModelDeployment's TrainingJobs" without a scan.
        self._by_owner: dict[str, set[Key]] = {}

    def apply_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record one watch event: ADDED/MODIFIED/None (initial listing) store, DELETED forgets."""
        key = key_of(body)
        if event_type == "DELETED":
            self.forget(key)
            return
        previous = self._objects.get(key)
        # Events can arrive out of order across reconnects; never go back in time.
        if previous is not None and _older(body, previous):
            return
        if previous is not None:
            self._unindex(key, previous)
        self._objects[key] = dict(body)
        for uid in _owner_uids(body):
            self._by_owner.setdefault(uid, set()).add(key)

    def put(self, body: Mapping[str, Any]) -> None:
        """Record what a write returned, so the next reconcile sees it before the watch does."""
        self.apply_event("MODIFIED", body)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self._objects.get(key)

    def forget(self, key: Key) -> None:
        previous = self._objects.pop(key, None)
        if previous is not None:
            self._unindex(key, previous)

    def _unindex(self, key: Key, body: Mapping[str, Any]) -> None:
        for uid in _owner_uids(body):
            keys = self._by_owner.get(uid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[uid]

    def owned_by(self, uid: str) -> list[dict[str, Any]]:
        return [self._objects[key] for key in sorted(self._by_owner.get(uid, ()))]

    def keys(self) -> Iterator[Key]:
        return iter(list(self._objects))

    def __len__(self) -> int:
        return len(self._objects)


def _older(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    def version(body: Mapping[str, Any]) -> int:
        raw = body.get("metadata", {}).get("resourceVersion", "")
        return int(raw) if str(raw).isdigit() else -1

    # resourceVersions are opaque by contract, but etcd-backed ones are integers that
    # grow; when they are not, every event counts as newer.
    return -1 < version(candidate) < version(current)
