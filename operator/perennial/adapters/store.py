"""In-memory caches of watched objects, fed by kopf's watch events (an informer's store).

Reconciles read children from here instead of GETting them, so steady state costs no
API reads. A cache may lag the API server (or miss an object right after a restart,
before its watch listed it): code that acts on an *absence* confirms it with one GET.

A watch can miss events: kopf relists after a 410 Gone but tells its handlers neither
that a relist happened nor which objects it no longer found, so an object deleted during
the gap would stay cached for ever. ``relist`` replaces the cache's contents with what a
LIST returned, telling subscribers DELETED for what the LIST lacked (a periodic resync
does it: ``perennial.controllers.context.Resync``).

Cached bodies are slimmed as client-go's informer transforms do: ``managedFields`` and
kubectl's last-applied annotation are dropped, which no reconcile reads and which are
often the larger part of an object (measured in benchmarks/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

Key = tuple[str, str]  # (namespace, name)
# Called with each watch event after the store recorded it: (event type, body).
Subscriber = Callable[[str | None, Mapping[str, Any]], None]
# Another object an object points at (a DriftPolicy -> its target ModelDeployment's key).
Reference = Callable[[Mapping[str, Any]], Key | None]
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
    refers_to: Key | None
    document: str  # compact JSON of the slimmed body


class ObjectStore:
    """Watched objects by key, each kept as compact JSON.

    JSON, not the parsed dict: a parsed Kubernetes object takes about five times the
    memory of its JSON in CPython, and with six cached objects per model that decides
    the operator's footprint at scale (benchmarks/README.md). ``get`` decodes a private
    copy, so a reconcile can change what it got without touching the cache.
    """

    def __init__(self, refers_to: Reference | None = None) -> None:
        self._objects: dict[Key, _Entry] = {}
        # Owner UID -> keys of its children: "this ModelDeployment's TrainingJobs" without a scan.
        self._by_owner: dict[str, set[Key]] = {}
        # Referenced key -> keys referring to it: "the DriftPolicies targeting this model".
        self._refers_to = refers_to
        self._by_reference: dict[Key, set[Key]] = {}
        self._subscribers: list[Subscriber] = []
        # While a relist runs: keys the watch deleted meanwhile -> the deletion's resourceVersion,
        # so a LIST page taken before the deletion does not bring the object back.
        self._relists = 0
        self._tombstones: dict[Key, int] = {}

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every watch event, after the store recorded it (an informer's handler)."""
        self._subscribers.append(subscriber)

    def apply_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record one watch event (ADDED/MODIFIED/None for the initial listing store, DELETED
        forgets), then tell the subscribers."""
        if event_type == "DELETED":
            key = key_of(body)
            self.forget(key)
            self._bury(key, _resource_version(body))
        else:
            self._store(body)
        self._notify(event_type, body)

    def _notify(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        for subscriber in self._subscribers:
            subscriber(event_type, body)

    def delete(self, key: Key) -> bool:
        """The object is gone from the API server (a write found it missing, a relist lacked it):
        forget it and tell the subscribers, as its DELETED watch event would. False if it was not cached."""
        entry = self._objects.get(key)
        if entry is None:
            return False
        body = _decode(entry)
        self.forget(key)
        self._bury(key, entry.resource_version)
        self._notify("DELETED", body)
        return True

    def _bury(self, key: Key, resource_version: int) -> None:
        if self._relists:
            self._tombstones[key] = max(resource_version, self._tombstones.get(key, -1))

    def relist(self, namespace: str | None = None) -> Relist:
        """Start replacing the cached objects of ``namespace`` (None: all) with a LIST's result.

        Use it as a context manager: ``add`` each page, then ``finish`` with the LIST's
        resourceVersion. Leaving the block without ``finish`` (a failed LIST) removes nothing.
        """
        return Relist(self, namespace)

    def replace(
        self, items: Iterable[Mapping[str, Any]], resource_version: str, namespace: str | None = None
    ) -> list[Key]:
        """Make the cache hold what one LIST returned; the keys removed (see ``relist``)."""
        with self.relist(namespace) as relist:
            relist.add(items)
            return relist.finish(resource_version)

    def put(self, body: Mapping[str, Any]) -> None:
        """Record what a write returned, so the next reconcile sees it before the watch does.

        Subscribers are not told: the watch event of the same write follows."""
        self._store(body)

    def _store(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        previous = self._objects.get(key)
        version = _resource_version(body)
        # Events can arrive out of order across reconnects; never go back in time. The same
        # resourceVersion is the same object (a relist of an unchanged one): nothing to redo.
        if previous is not None and -1 < version <= previous.resource_version:
            return
        if previous is not None:
            self._unindex(key, previous)
        refers_to = self._refers_to(body) if self._refers_to is not None else None
        document = json.dumps(slim(body), separators=(",", ":"))
        entry = _Entry(version, frozenset(_owner_uids(body)), refers_to, document)
        self._objects[key] = entry
        for uid in entry.owners:
            self._by_owner.setdefault(uid, set()).add(key)
        if refers_to is not None:
            self._by_reference.setdefault(refers_to, set()).add(key)

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
        if entry.refers_to is not None:
            referring = self._by_reference.get(entry.refers_to)
            if referring is not None:
                referring.discard(key)
                if not referring:
                    del self._by_reference[entry.refers_to]

    def owned_by(self, uid: str) -> list[dict[str, Any]]:
        return [_decode(self._objects[key]) for key in sorted(self._by_owner.get(uid, ()))]

    def referring_to(self, key: Key) -> list[dict[str, Any]]:
        """The objects whose reference (see ``refers_to``) is ``key``."""
        return [_decode(self._objects[k]) for k in sorted(self._by_reference.get(key, ()))]

    def keys_referring_to(self, key: Key) -> list[Key]:
        return sorted(self._by_reference.get(key, ()))

    def keys(self) -> Iterator[Key]:
        return iter(list(self._objects))

    def __len__(self) -> int:
        return len(self._objects)


class Relist:
    """One relist in progress (``ObjectStore.relist``), as client-go's informer does on a relist.

    Every listed object is recorded and its subscribers are told (event type None, as
    for a watch's initial listing), so every key is queued again: a missed MODIFIED is
    reconciled. ``finish`` then removes the cached objects the LIST lacked and tells the
    subscribers DELETED — except objects cached at a resourceVersion newer than the
    LIST's (created after the LIST's snapshot, which a watch-cache LIST may predate).
    """

    def __init__(self, store: ObjectStore, namespace: str | None) -> None:
        self._store = store
        self._namespace = namespace
        self._seen: set[Key] = set()

    def __enter__(self) -> Relist:
        self._store._relists += 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        store = self._store
        store._relists -= 1
        if not store._relists:
            store._tombstones.clear()

    def add(self, items: Iterable[Mapping[str, Any]]) -> None:
        store = self._store
        for body in items:
            key = key_of(body)
            self._seen.add(key)
            deleted_at = store._tombstones.get(key)
            if deleted_at is not None and -1 < _resource_version(body) <= deleted_at:
                continue  # listed before the watch saw it deleted
            store.apply_event(None, body)

    def finish(self, resource_version: str) -> list[Key]:
        """Remove what the LIST (at ``resource_version``) lacked; the keys removed."""
        store = self._store
        listed_at = _resource_version({"metadata": {"resourceVersion": resource_version}})
        removed = []
        for key in sorted(store._objects.keys() - self._seen):
            if self._namespace is not None and key[0] != self._namespace:
                continue
            cached_at = store._objects[key].resource_version
            if -1 < listed_at < cached_at:
                continue  # the watch delivered it after the LIST's snapshot
            store.delete(key)
            removed.append(key)
        return removed


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
