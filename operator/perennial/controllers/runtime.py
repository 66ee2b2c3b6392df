"""What every controller shares at run time: the API client, the watch caches, the work queues.

Built once by the startup handler in ``perennial.main`` and handed to handlers through
kopf's memo, so an operator embedded in a test process has its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kopf

from perennial.adapters.events import EventRecorder
from perennial.adapters.kube import KubeClient
from perennial.adapters.store import ObjectStore
from perennial.adapters.workqueue import WorkQueue


@dataclass
class Runtime:
    client: KubeClient
    events: EventRecorder = field(init=False)
    trainingjobs: ObjectStore = field(default_factory=ObjectStore)
    jobs: ObjectStore = field(default_factory=ObjectStore)
    queues: list[WorkQueue] = field(default_factory=list)
    trainingjob_queue: WorkQueue = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventRecorder(self.client)
        # Imported here: the controller module registers kopf handlers and imports this one.
        from perennial.controllers import trainingjob

        async def reconcile_trainingjob(key: Any) -> float | None:
            return await trainingjob.reconcile(self, key)

        self.trainingjob_queue = WorkQueue("trainingjobs", reconcile_trainingjob, workers=4)
        self.queues = [self.trainingjob_queue]

    def start(self) -> None:
        for queue in self.queues:
            queue.start()

    async def stop(self) -> None:
        for queue in self.queues:
            await queue.stop()
        await self.client.close()


def runtime_of(memo: kopf.Memo) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime
