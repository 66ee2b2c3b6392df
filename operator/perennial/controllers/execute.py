"""Executing plans: the one way every controller writes children, status and Events.

A plan (``perennial.domain.plan``) is decided without I/O; these functions carry it out
and report what happened, so the controller can record it (a child the API server
refused becomes a condition with the API's message, not a stuck reconcile).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from perennial.adapters import metrics
from perennial.adapters.kube import ApiError, Resource, resource_of
from perennial.adapters.store import ObjectStore
from perennial.api.base import ApiModel
from perennial.controllers.context import Cluster, ObjectGoneError, StaleObjectError
from perennial.domain.children import controlled_by, first_difference
from perennial.domain.conditions import merge_patch
from perennial.domain.plan import Count, Event

logger = logging.getLogger(__name__)

ChildResult = Literal["created", "applied", "unchanged", "conflict", "refused"]


@dataclass(frozen=True)
class ChildOutcome:
    kind: str
    name: str
    result: ChildResult
    message: str = ""
    """For ``conflict`` and ``refused``: what is wrong, in the API server's words where it has some."""

    @property
    def failed(self) -> bool:
        return self.result in ("conflict", "refused")


async def converge_child(cluster: Cluster, owner_uid: str, desired: Mapping[str, Any]) -> ChildOutcome:
    """Make the mutable child ``desired`` (a serving Deployment, a Service) what Perennial wants.

    Server-side applied as ``perennial`` when absent or when a field Perennial sets differs,
    so `kubectl set image` is reverted while fields Perennial leaves out (an HPA's
    ``replicas``, another controller's annotations) stay their owners'. An object of the
    same name that this owner does not control is left alone (``conflict``): the caches
    only hold Perennial's children, so an absent one is looked up before the first apply.
    A child the API server refuses (400/422) is ``refused`` with the API's message; other
    errors propagate and the work queue retries.
    """
    resource = resource_of(desired)
    store = cluster.store_of(resource)
    namespace, name, kind = _identity(desired)
    try:
        observed = store.get((namespace, name))
        if observed is None:
            observed = await _get_or_none(cluster, resource, namespace, name)
            if observed is not None and controlled_by(observed, owner_uid):
                store.put(observed)  # the cache lagged: remember what the GET found
        if observed is not None and not controlled_by(observed, owner_uid):
            return _conflict(kind, name)
        difference = None if observed is None else first_difference(observed, desired)
        if observed is None or difference is not None:
            logger.debug(
                "applying %s %s/%s: %s",
                kind,
                namespace,
                name,
                "absent" if observed is None else f"{difference or '(whole object)'} differs",
            )
            store.put(await cluster.client.apply(resource, namespace, desired))
            return ChildOutcome(kind, name, "created" if observed is None else "applied")
        return ChildOutcome(kind, name, "unchanged")
    except ApiError as error:
        return _refused(kind, name, error)


async def create_child(cluster: Cluster, owner_uid: str, manifest: Mapping[str, Any]) -> ChildOutcome:
    """Create a child that is never changed afterwards (a TrainingJob, a run's Job).

    An existing one controlled by ``owner_uid`` is adopted (``unchanged``: created by an
    earlier pass that crashed before recording it); anyone else's is a ``conflict``.
    """
    resource = resource_of(manifest)
    store = cluster.store_of(resource)
    namespace, name, kind = _identity(manifest)
    try:
        try:
            store.put(await cluster.client.create(resource, namespace, manifest))
            return ChildOutcome(kind, name, "created")
        except ApiError as error:
            if not error.already_exists:
                raise
        existing = await cluster.client.get(resource, namespace, name)
        if not controlled_by(existing, owner_uid):
            return _conflict(kind, name)
        store.put(existing)
        return ChildOutcome(kind, name, "unchanged")
    except ApiError as error:
        return _refused(kind, name, error)


def _identity(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = manifest["metadata"]
    return str(metadata["namespace"]), str(metadata["name"]), str(manifest["kind"])


async def _get_or_none(cluster: Cluster, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await cluster.client.get(resource, namespace, name)
    except ApiError as error:
        if error.not_found:
            return None
        raise


def _conflict(kind: str, name: str) -> ChildOutcome:
    return ChildOutcome(
        kind, name, "conflict", f"a {kind} named {name} exists and Perennial did not create it; it is left alone"
    )


def _refused(kind: str, name: str, error: ApiError) -> ChildOutcome:
    if error.status in (400, 422):
        return ChildOutcome(kind, name, "refused", f"the API server refused the {kind} {name}: {error.message}")
    raise error


async def delete_child(cluster: Cluster, resource: Resource, namespace: str, name: str) -> None:
    """Delete a child (its own children go with it); one already gone is fine."""
    try:
        await cluster.client.delete(resource, namespace, name)
    except ApiError as error:
        if not error.not_found:
            raise
    cluster.store_of(resource).forget((namespace, name))


async def write_status(
    cluster: Cluster,
    resource: Resource,
    store: ObjectStore,
    body: Mapping[str, Any],
    before: ApiModel | None,
    after: ApiModel,
) -> bool:
    """Merge-patch the status subresource from ``before`` to ``after``; nothing when equal.

    The patch carries the resourceVersion ``body`` was read at, so the API server refuses
    it (409) if anyone wrote the object since: a merge patch replaces lists whole, and
    without the precondition a plan made from a stale read would drop what another
    writer added (an entry of ``status.versions``). On a conflict the object is read
    again into ``store`` and ``StaleObjectError`` makes the controller plan again at once
    from what is there now; the same patch is never sent twice. On a 404 the object was
    deleted: it leaves ``store`` (subscribers hear DELETED) and ``ObjectGoneError`` ends
    the reconcile, so a deleted object is never patched in a loop.
    """
    old = before.to_api() if before is not None else {}
    new = after.to_api()
    if old == new:
        return False
    metadata = body["metadata"]
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    try:
        updated = await cluster.client.patch_status(
            resource, namespace, name, merge_patch(old, new), resource_version=metadata.get("resourceVersion")
        )
    except ApiError as error:
        if error.not_found:
            store.delete((namespace, name))
            raise ObjectGoneError(f"{body.get('kind')} {namespace}/{name} was deleted") from error
        if not error.conflict:
            raise
        metrics.STATUS_CONFLICTS.labels(kind=str(body.get("kind"))).inc()
        fresh = await _get_or_none(cluster, resource, namespace, name)
        if fresh is None:
            store.delete((namespace, name))
            raise ObjectGoneError(f"{body.get('kind')} {namespace}/{name} was deleted") from error
        store.put(fresh)
        raise StaleObjectError(f"{body.get('kind')} {namespace}/{name} changed since it was read") from error
    store.put(updated)
    return True


def post(cluster: Cluster, body: Mapping[str, Any], events: Iterable[Event], counts: Iterable[Count]) -> None:
    """Post a plan's Events (in the background) and bump its counters."""
    for event in events:
        cluster.events.record(body, event.type, event.reason, event.message)
    for item in counts:
        metrics.count(item.metric, item.labels)
