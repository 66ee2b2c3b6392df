"""TrainingJob controller: observe a run, plan it (``perennial.domain.training``), execute the plan.

Watch events of TrainingJobs and of their Jobs reach it through the caches it subscribes
to; a Job's events are batched, for up to a second under load (``CHILD_EVENT_BATCH_SECONDS``).
A reconcile costs, per transition: one create (the Job; plus the headless Service of a distributed
run), one status patch, one Event, and one pod list when the run ends (to read the
trainer's termination message) or when its start deadline passes with workers not yet
started (to tell why). A finished run costs one more request: the Job's TTL set once its
result is read, or the Job deleted when the run gave up on it (start deadline).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from perennial.adapters import logs, metrics
from perennial.adapters.kube import JOBS, PODS, TRAINING_JOBS, ApiError
from perennial.adapters.store import Key, key_of
from perennial.api.trainingjob import TrainingJobStatus
from perennial.controllers.context import CHILD_EVENT_BATCH_SECONDS, CHILD_EVENT_QUIET_SECONDS, Cluster, Controller
from perennial.controllers.execute import create_child, delete_child, post, write_status
from perennial.domain.timeutil import parse_time
from perennial.domain.training import (
    JOBS_PLURAL,
    TRAINING_JOB_LABEL,
    ObservedRun,
    TrainingJobRef,
    plan_trainingjob,
    pods_needed,
    read_spec,
    record_child_outcome,
    run_finished,
)

logger = logging.getLogger(__name__)


class TrainingJobController(Controller):
    kind = "TrainingJob"
    store = "trainingjobs"

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
            self.queue.add_batched(
                (body["metadata"]["namespace"], run), quiet=CHILD_EVENT_QUIET_SECONDS, batch=CHILD_EVENT_BATCH_SECONDS
            )

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
        # Only after the status holds the outcome: a crash before leaves the Job for the next pass.
        if plan.job_ttl_seconds is not None:
            await self._set_job_ttl(observed.ref, plan.job_ttl_seconds)
        for child in plan.delete:  # a run deletes nothing but its own Job
            if child.plural == JOBS_PLURAL:
                await delete_child(self.cluster, JOBS, observed.ref.namespace, child.name)
        post(self.cluster, body, plan.events, plan.counts)
        _record_finish(body, observed.status, plan.status)
        return plan.requeue_after

    async def _observe(self, body: Mapping[str, Any]) -> ObservedRun:
        """The run, its Job (cache; one GET when status records a Job the cache lacks), its pods when they decide."""
        metadata = body["metadata"]
        ref = TrainingJobRef(metadata["name"], metadata["namespace"], metadata["uid"], metadata.get("generation"))
        status = TrainingJobStatus.model_validate(body.get("status") or {})
        job = self.cluster.jobs.get((ref.namespace, ref.name))
        # A finished run is history: its Job is only looked up in the cache (to settle it), never fetched.
        if job is None and status.job_name and not run_finished(status):
            job = await self._get_job(ref)
        default_deadline = timedelta(seconds=self.cluster.settings.training_start_deadline_seconds)
        created_at = parse_time(metadata.get("creationTimestamp"))
        observed = ObservedRun(
            ref, read_spec(body.get("spec")), status, job, (), datetime.now(UTC), default_deadline, created_at
        )
        if pods_needed(observed):
            pods = await self.cluster.client.list(PODS, ref.namespace, f"{TRAINING_JOB_LABEL}={ref.name}")
            observed = replace(observed, pods=pods)
        return observed

    async def _get_job(self, ref: TrainingJobRef) -> dict[str, Any] | None:
        try:
            return await self.cluster.client.get(JOBS, ref.namespace, ref.name)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def _set_job_ttl(self, ref: TrainingJobRef, seconds: int) -> None:
        """Hand the finished Job to Kubernetes' TTL-after-finished controller (the field is mutable)."""
        try:
            updated = await self.cluster.client.merge_patch(
                JOBS, ref.namespace, ref.name, {"spec": {"ttlSecondsAfterFinished": seconds}}
            )
        except ApiError as error:
            if error.not_found:
                return  # already gone: nothing left to hand over
            raise
        self.cluster.jobs.put(updated)  # the next pass sees the TTL set, and sets it no more


def _record_finish(body: Mapping[str, Any], before: TrainingJobStatus, after: TrainingJobStatus) -> None:
    """Count a run that just finished, and how long it took."""
    if after.phase is None or run_finished(before) or not run_finished(after):
        return
    metrics.TRAINING_RUNS_FINISHED.labels(result=after.phase).inc()
    if after.start_time is not None and after.completion_time is not None:
        seconds = (after.completion_time - after.start_time).total_seconds()
        metrics.TRAINING_DURATION.labels(result=after.phase).observe(seconds)
    logger.info("training run finished: %s", after.phase, extra=logs.about(body))
