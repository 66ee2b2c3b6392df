"""What every controller shares at run time: the API client, the watch caches, the work queues.

Built once by the startup handler in ``perennial.main`` and handed to handlers through
kopf's memo, so an operator embedded in a test process has its own.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from perennial.adapters.events import EventRecorder
from perennial.adapters.kube import KubeClient
from perennial.adapters.prometheus import PrometheusClient
from perennial.adapters.store import Key, ObjectStore
from perennial.adapters.workqueue import WorkQueue
from perennial.api.base import GROUP
from perennial.settings import Settings

# Events of children (a run's Job; a model's TrainingJobs, Deployment and Service) come in
# bursts: a Job's status changes three or four times within a second of its pod starting.
# Their owner is reconciled once, this long after the first event of a burst, and sees the
# latest state: fewer status writes and Events for the same outcome. kube-controller-
# manager's Job controller batches pod events the same way (syncJobBatchPeriod, 1 s). The
# owner's own events (a user's edit) are not delayed.
CHILD_EVENT_BATCH_SECONDS = 1.0


@dataclass
class Runtime:
    client: KubeClient
    settings: Settings = field(default_factory=Settings)
    prometheus: PrometheusClient = field(default_factory=PrometheusClient)
    events: EventRecorder = field(init=False)
    trainingjobs: ObjectStore = field(default_factory=ObjectStore)
    jobs: ObjectStore = field(default_factory=ObjectStore)
    modeldeployments: ObjectStore = field(default_factory=ObjectStore)
    deployments: ObjectStore = field(default_factory=ObjectStore)
    services: ObjectStore = field(default_factory=ObjectStore)
    driftpolicies: ObjectStore = field(default_factory=ObjectStore)
    trainingjob_queue: WorkQueue = field(init=False)
    modeldeployment_queue: WorkQueue = field(init=False)
    driftpolicy_queue: WorkQueue = field(init=False)
    _locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def __post_init__(self) -> None:
        # Imported here: the controller modules register kopf handlers and import this one.
        from perennial.controllers import driftpolicy, modeldeployment, trainingjob

        async def reconcile_trainingjob(key: Any) -> float | None:
            return await trainingjob.reconcile(self, key)

        async def reconcile_modeldeployment(key: Any) -> float | None:
            return await modeldeployment.reconcile(self, key)

        async def reconcile_driftpolicy(key: Any) -> float | None:
            return await driftpolicy.reconcile(self, key)

        self.events = EventRecorder(self.client)
        # Reconciles mostly wait on the API server: enough workers to keep its pipeline full
        # (the client bounds requests in flight), one in flight per object.
        self.trainingjob_queue = WorkQueue("TrainingJob", reconcile_trainingjob, workers=16)
        self.modeldeployment_queue = WorkQueue("ModelDeployment", reconcile_modeldeployment, workers=16)
        # Evaluations mostly wait on Prometheus: more workers, still one in flight per policy.
        self.driftpolicy_queue = WorkQueue("DriftPolicy", reconcile_driftpolicy, workers=16)

    @property
    def queues(self) -> list[WorkQueue]:
        return [self.trainingjob_queue, self.modeldeployment_queue, self.driftpolicy_queue]

    def model_lock(self, key: Key) -> asyncio.Lock:
        """Serialises everything that allocates versions or writes one ModelDeployment's status."""
        return self._locks[key]

    def enqueue_model_owner(self, body: Mapping[str, Any]) -> None:
        """Queue the ModelDeployment that owns ``body`` (a TrainingJob, Deployment or Service)."""
        for owner in body.get("metadata", {}).get("ownerReferences") or []:
            if owner.get("kind") == "ModelDeployment" and str(owner.get("apiVersion", "")).startswith(f"{GROUP}/"):
                key = (body["metadata"]["namespace"], owner["name"])
                self.modeldeployment_queue.add_after(key, CHILD_EVENT_BATCH_SECONDS)

    def start(self) -> None:
        self.events.start()
        for queue in self.queues:
            queue.start()

    async def stop(self) -> None:
        for queue in self.queues:
            await queue.stop()
        await self.events.stop()
        await self.client.close()
        await self.prometheus.close()


def runtime_of(memo: kopf.Memo) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime
