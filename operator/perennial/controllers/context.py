"""What every controller shares at run time: the API client, the watch caches, the Event recorder.

Built once by the composition root (``perennial.main``) and handed to each controller,
so an operator embedded in a test process has its own. The caches are informers: the
watch handlers in ``perennial.main`` feed them, and each controller subscribes to the
ones it needs. Controllers never call each other; they talk through the API server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from perennial.adapters import metrics
from perennial.adapters.events import EventRecorder
from perennial.adapters.kube import DEPLOYMENTS, JOBS, SERVICES, TRAINING_JOBS, KubeClient, Resource
from perennial.adapters.store import Key, ObjectStore
from perennial.adapters.workqueue import WorkQueue
from perennial.api.base import API_VERSION
from perennial.settings import Settings

# Events of children (a run's Job; a model's TrainingJobs, Deployment and Service) come in
# bursts: a Job's status changes three or four times within a second of its pod starting.
# Their owner is reconciled once, this long after the first event of a burst, and sees the
# latest state: fewer status writes and Events for the same outcome. kube-controller-
# manager's Job controller batches pod events the same way (syncJobBatchPeriod, 1 s). The
# owner's own events (a user's edit) are not delayed.
CHILD_EVENT_BATCH_SECONDS = 1.0


def _drift_policy_target(body: Mapping[str, Any]) -> Key | None:
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    return (str(body["metadata"]["namespace"]), str(target)) if target else None


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
    # Reconciles mostly wait on the API server: enough workers to keep its pipeline full
    # (the client bounds requests in flight), one in flight per object.
    workers: ClassVar[int] = 16

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.queue = WorkQueue(self.kind, self._measured, workers=self.workers)

    async def _measured(self, key: Key) -> float | None:
        return await metrics.measured_reconcile(self.kind, self.reconcile(key))

    @abstractmethod
    async def reconcile(self, key: Key) -> float | None:
        """Converge one object; returns seconds until it wants another look, or None."""

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
