"""TrainingJob controller: observe a run, plan it (``perennial.domain.training``), execute the plan.

Watch events of TrainingJobs and of their Jobs reach it through the caches it subscribes
to; a Job's events are batched for a second (``CHILD_EVENT_BATCH_SECONDS``). A reconcile
costs, per transition: one create (the Job; plus the headless Service of a distributed
run), one status patch, one Event, and one pod list when the run ends (to read the
trainer's termination message).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from perennial.adapters import logs, metrics
from perennial.adapters.kube import JOBS, PODS, TRAINING_JOBS, ApiError
from perennial.adapters.store import Key, key_of
from perennial.api.trainingjob import TrainingJobStatus
from perennial.controllers.context import CHILD_EVENT_BATCH_SECONDS, Cluster, Controller
from perennial.controllers.execute import create_child, post, write_status
from perennial.domain.training import (
    TRAINING_JOB_LABEL,
    ObservedRun,
    TrainingJobRef,
    job_finished,
    plan_trainingjob,
    read_spec,
    record_child_outcome,
    run_finished,
)

logger = logging.getLogger(__name__)


class TrainingJobController(Controller):
    kind = "TrainingJob"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        cluster.trainingjobs.subscribe(self._trainingjob_event)
        cluster.jobs.subscribe(self._job_event)

    def _trainingjob_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type != "DELETED":
            self.queue.add(key_of(body))

    def _job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        run = (body["metadata"].get("labels") or {}).get(TRAINING_JOB_LABEL)
        if run:
            self.queue.add_after((body["metadata"]["namespace"], run), CHILD_EVENT_BATCH_SECONDS)

    async def reconcile(self, key: Key) -> float | None:
        body = self.cluster.trainingjobs.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # gone: garbage collection removes the Job, its pods and the Service
        observed = await self._observe(body)
        plan = plan_trainingjob(observed)
        for manifest in plan.create:
            outcome = await create_child(self.cluster, observed.ref.uid, manifest)
            record_child_outcome(plan, outcome)
            if outcome.failed:
                break
        await write_status(self.cluster, TRAINING_JOBS, self.cluster.trainingjobs, body, observed.status, plan.status)
        post(self.cluster, body, plan.events, plan.counts)
        _record_finish(body, observed.status, plan.status)
        return plan.requeue_after

    async def _observe(self, body: Mapping[str, Any]) -> ObservedRun:
        """The run, its Job (cache; one GET when status records a Job the cache lacks), its pods once it finished."""
        metadata = body["metadata"]
        ref = TrainingJobRef(metadata["name"], metadata["namespace"], metadata["uid"], metadata.get("generation"))
        status = TrainingJobStatus.model_validate(body.get("status") or {})
        job: Mapping[str, Any] | None = None
        pods: list[dict[str, Any]] = []
        if not run_finished(status):  # a finished run is history: its children are not read again
            job = self.cluster.jobs.get((ref.namespace, ref.name))
            if job is None and status.job_name:
                job = await self._get_job(ref)
            if job is not None and job_finished(job):
                pods = await self.cluster.client.list(PODS, ref.namespace, f"{TRAINING_JOB_LABEL}={ref.name}")
        return ObservedRun(ref, read_spec(body.get("spec")), status, job, pods, datetime.now(UTC))

    async def _get_job(self, ref: TrainingJobRef) -> dict[str, Any] | None:
        try:
            return await self.cluster.client.get(JOBS, ref.namespace, ref.name)
        except ApiError as error:
            if error.not_found:
                return None
            raise


def _record_finish(body: Mapping[str, Any], before: TrainingJobStatus, after: TrainingJobStatus) -> None:
    """Count a run that just finished, and how long it took."""
    if after.phase is None or run_finished(before) or not run_finished(after):
        return
    metrics.TRAINING_RUNS_FINISHED.labels(result=after.phase).inc()
    if after.start_time is not None and after.completion_time is not None:
        seconds = (after.completion_time - after.start_time).total_seconds()
        metrics.TRAINING_DURATION.labels(result=after.phase).observe(seconds)
    logger.info("training run finished: %s", after.phase, extra=logs.about(body))
