"""In-memory caches of watched objects, fed by kopf's watch events (an informer's store).

Reconciles read children from here instead of GETting them, so steady state costs no
API reads. A cache may lag the API server (or miss an object right after a restart,
before its watch listed it): code that acts on an *absence* confirms it with one GET.

Cached bodies are slimmed as client-go's informer transforms do: ``managedFields`` and
kubectl's last-applied annotation are dropped, which no reconcile reads and which are
often the larger part of an object (measured in benchmarks/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (namespace, name)
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def key_of(body: Mapping[str, Any]) -> Key:
    metadata = body.get("metadata", {})
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def _owner_uids(body: Mapping[str, Any]) -> set[str]:
    return {str(o.get("uid")) for o in body.get("metadata", {}).get("ownerReferences") or []}


@dataclass(frozen=True)
class _Entry:
    resource_version: int  # -1 when not an integer
    owners: frozenset[str]
    document: str  # compact JSON of the slimmed body


class ObjectStore:
    """Watched objects by key, each kept as compact JSON.

    JSON, not the parsed dict: a parsed Kubernetes object takes about five times the
    memory of its JSON in CPython, and with six cached objects per model that decides
    the operator's footprint at scale (benchmarks/README.md). ``get`` decodes a private
    copy, so a reconcile can change what it got without touching the cache.
    """

    def __init__(self) -> None:
        self._objects: dict[Key, _Entry] = {}
        # Owner UID -> keys of its children: "this ModelDeployment's TrainingJobs" without a scan.
        self._by_owner: dict[str, set[Key]] = {}

    def apply_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record one watch event: ADDED/MODIFIED/None (initial listing) store, DELETED forgets."""
        key = key_of(body)
        if event_type == "DELETED":
            self.forget(key)
            return
        previous = self._objects.get(key)
        version = _resource_version(body)
        # Events can arrive out of order across reconnects; never go back in time.
        if previous is not None and -1 < version < previous.resource_version:
            return
        if previous is not None:
            self._unindex(key, previous)
        entry = _Entry(version, frozenset(_owner_uids(body)), json.dumps(slim(body), separators=(",", ":")))
        self._objects[key] = entry
        for uid in entry.owners:
            self._by_owner.setdefault(uid, set()).add(key)

    def put(self, body: Mapping[str, Any]) -> None:
        """Record what a write returned, so the next reconcile sees it before the watch does."""
        self.apply_event("MODIFIED", body)

    def get(self, key: Key) -> dict[str, Any] | None:
        entry = self._objects.get(key)
        return _decode(entry) if entry is not None else None

    def forget(self, key: Key) -> None:
        previous = self._objects.pop(key, None)
        if previous is not None:
            self._unindex(key, previous)

    def _unindex(self, key: Key, entry: _Entry) -> None:
        for uid in entry.owners:
            keys = self._by_owner.get(uid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[uid]

    def owned_by(self, uid: str) -> list[dict[str, Any]]:
        return [_decode(self._objects[key]) for key in sorted(self._by_owner.get(uid, ()))]

    def keys(self) -> Iterator[Key]:
        return iter(list(self._objects))

    def __len__(self) -> int:
        return len(self._objects)


def _decode(entry: _Entry) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(entry.document)
    return body


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` without the fields a cache never needs (the input is left as it is)."""
    slimmed = dict(body)
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if annotations and LAST_APPLIED_ANNOTATION in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED_ANNOTATION}
    slimmed["metadata"] = metadata
    return slimmed


def _resource_version(body: Mapping[str, Any]) -> int:
    # resourceVersions are opaque by contract, but etcd-backed ones are integers that
    # grow; when they are not (-1), every event counts as newer.
    raw = body.get("metadata", {}).get("resourceVersion", "")
    return int(raw) if str(raw).isdigit() else -1
