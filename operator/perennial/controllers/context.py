"""What every controller shares at run time: the API client, the watch caches, the Event recorder.

Built once by the composition root (``perennial.main``) and handed to each controller,
so an operator embedded in a test process has its own. The caches are informers: the
watch handlers in ``perennial.main`` feed them, and each controller subscribes to the
ones it needs. Controllers never call each other; they talk through the API server.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from perennial.adapters import metrics
from perennial.adapters.events import EventRecorder
from perennial.adapters.kube import (
    DEPLOYMENTS,
    DRIFT_POLICIES,
    JOBS,
    MODEL_DEPLOYMENTS,
    SERVICES,
    TRAINING_JOBS,
    KubeClient,
    Resource,
)
from perennial.adapters.store import Key, ObjectStore
from perennial.adapters.workqueue import WorkQueue
from perennial.api.base import API_VERSION
from perennial.domain.labels import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL
from perennial.domain.training import TRAINING_JOB_LABEL
from perennial.settings import Settings

logger = logging.getLogger(__name__)

# Events of children (a run's Job; a model's TrainingJobs, Deployment and Service) come in
# bursts: a Job's status changes three or four times within a second of its pod starting.
# Under load their owner is reconciled once, this long after the first event of a burst,
# and sees the latest state: fewer status writes and Events for the same outcome (kube-
# controller-manager's Job controller batches pod events the same way, syncJobBatchPeriod
# 1 s). With no backlog the batch shrinks towards CHILD_EVENT_QUIET_SECONDS (events of one
# burst arrive within it), so a lone model does not wait a second at each step of its
# chain (``WorkQueue.add_batched``). The owner's own events (a user's edit) are not delayed.
CHILD_EVENT_BATCH_SECONDS = 1.0
CHILD_EVENT_QUIET_SECONDS = 0.1


def _drift_policy_target(body: Mapping[str, Any]) -> Key | None:
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    return (str(body["metadata"]["namespace"]), str(target)) if target else None


@dataclass(frozen=True)
class Watch:
    """One watched kind: the watch (``perennial.main``) and the resync LIST select the same objects."""

    kind: str
    resource: Resource
    store: str  # the Cluster attribute holding its cache
    labels: Mapping[str, str | None]  # label -> required value; None: the label must be present

    @property
    def label_selector(self) -> str:
        return ",".join(key if value is None else f"{key}={value}" for key, value in self.labels.items())


# Children are watched by the labels Perennial puts on them. Children first: a resync
# refreshes them before it queues their owners.
JOB_WATCH = Watch("Job", JOBS, "jobs", {MANAGED_BY_LABEL: MANAGED_BY, TRAINING_JOB_LABEL: None})
DEPLOYMENT_WATCH = Watch("Deployment", DEPLOYMENTS, "deployments", {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: None})
SERVICE_WATCH = Watch("Service", SERVICES, "services", {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: None})
TRAINING_JOB_WATCH = Watch("TrainingJob", TRAINING_JOBS, "trainingjobs", {})
MODEL_DEPLOYMENT_WATCH = Watch("ModelDeployment", MODEL_DEPLOYMENTS, "modeldeployments", {})
DRIFT_POLICY_WATCH = Watch("DriftPolicy", DRIFT_POLICIES, "driftpolicies", {})
WATCHES = (JOB_WATCH, DEPLOYMENT_WATCH, SERVICE_WATCH, TRAINING_JOB_WATCH, MODEL_DEPLOYMENT_WATCH, DRIFT_POLICY_WATCH)


class StaleObjectError(Exception):
    """A write found the object changed since it was read (409 Conflict).

    The cache already holds the object as it is now; the controller plans again at once.
    """


class ObjectGoneError(Exception):
    """A write found the object deleted (404); it has left the cache, and nothing retries."""


@dataclass
class Cluster:
    client: KubeClient
    settings: Settings = field(default_factory=Settings)
    events: EventRecorder = field(init=False)
    trainingjobs: ObjectStore = field(default_factory=ObjectStore)
    jobs: ObjectStore = field(default_factory=ObjectStore)
    modeldeployments: ObjectStore = field(default_factory=ObjectStore)
    deployments: ObjectStore = field(default_factory=ObjectStore)
    services: ObjectStore = field(default_factory=ObjectStore)
    driftpolicies: ObjectStore = field(default_factory=lambda: ObjectStore(refers_to=_drift_policy_target))

    def __post_init__(self) -> None:
        self.events = EventRecorder(self.client)
        self._child_stores = {
            TRAINING_JOBS: self.trainingjobs,
            JOBS: self.jobs,
            DEPLOYMENTS: self.deployments,
            SERVICES: self.services,
        }

    def store_of(self, resource: Resource) -> ObjectStore:
        """The cache holding children of ``resource``'s kind."""
        return self._child_stores[resource]

    def cache(self, watch: Watch) -> ObjectStore:
        store: ObjectStore = getattr(self, watch.store)
        return store


def owner_key(body: Mapping[str, Any], kind: str) -> Key | None:
    """The key of ``body``'s Perennial owner of ``kind`` (a TrainingJob's ModelDeployment), if any."""
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == kind and owner.get("apiVersion") == API_VERSION:
            return str(body["metadata"]["namespace"]), str(owner["name"])
    return None


class Controller(ABC):
    """One kind's controller: its own work queue of object keys and its reconcile.

    Subclasses subscribe to the caches they follow (in ``__init__``) and implement
    ``reconcile``: observe, plan (pure, in ``perennial.domain``), execute. One object is
    never reconciled twice at once; a reconcile that raises is retried with backoff.
    """

    kind: ClassVar[str]
    store: ClassVar[str]  # the Cluster attribute caching this kind's objects
    # Reconciles mostly wait on the API server: enough workers to keep its pipeline full
    # (the client bounds requests in flight), one in flight per object.
    workers: ClassVar[int] = 16

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.queue = WorkQueue(self.kind, self._measured, workers=self.workers)

    async def _measured(self, key: Key) -> float | None:
        return await metrics.measured_reconcile(self.kind, self._reconcile(key))

    async def _reconcile(self, key: Key) -> float | None:
        try:
            return await self.reconcile(key)
        except StaleObjectError:
            return 0.0  # plan again at once, from the fresh copy now cached; never the same write again
        except ObjectGoneError:
            return None  # deleted meanwhile: nothing left to converge

    @abstractmethod
    async def reconcile(self, key: Key) -> float | None:
        """Converge one object; returns seconds until it wants another look, or None."""

    def start(self) -> None:
        """Start the workers with every cached object queued: a new leader looks at everything once."""
        cache: ObjectStore = getattr(self.cluster, self.store)
        for key in list(cache.keys()):
            self.queue.add(key)
        self.queue.start()

    async def stop(self) -> None:
        """Stop the workers at once (a reconcile in flight is cancelled); keys keep being queued."""
        await self.queue.stop()


class Resync:
    """Every ``settings.resync_period_seconds``: LIST each watched kind and replace its cache.

    kopf relists after a 410 Gone without telling its handlers which objects the relist no
    longer found, and any watch can drop an event; the resync bounds both (as client-go's
    informers do with their resync and relist): an object deleted meanwhile leaves its
    cache and its subscribers hear DELETED, and every listed object is queued again, so a
    missed change is reconciled within one period. The LISTs come from the API server's
    watch cache, a page at a time (``KubeClient.list_pages``).
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="resync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.settings.resync_period_seconds)
            await self.run_once()

    async def run_once(self) -> bool:
        """One resync of every watched kind in every watched namespace; False if a LIST failed."""
        ok = True
        for watch in WATCHES:
            for namespace in self.cluster.settings.namespaces or (None,):
                try:
                    await self._relist(watch, namespace)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The caches stay as they were (nothing removed); the next period tries again.
                    logger.exception("resync of %s in %s failed", watch.kind, namespace or "all namespaces")
                    ok = False
        metrics.RESYNCS.labels(result="success" if ok else "error").inc()
        return ok

    async def _relist(self, watch: Watch, namespace: str | None) -> None:
        store = self.cluster.cache(watch)
        listed_at = ""
        with store.relist(namespace) as relist:
            pages = self.cluster.client.list_pages(watch.resource, namespace, watch.label_selector)
            async for items, listed_at in pages:  # noqa: B007 - the last page's resourceVersion is the LIST's
                relist.add(items)
            removed = relist.finish(listed_at)
        if removed:
            metrics.RESYNC_REMOVED.labels(kind=watch.kind).inc(len(removed))
            logger.info(
                "resync: %d %s(s) deleted while their watch missed it left the cache: %s",
                len(removed),
                watch.kind,
                ", ".join(f"{ns}/{name}" for ns, name in removed[:10]),
            )
