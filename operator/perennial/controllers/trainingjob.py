"""TrainingJob controller: one level-based reconcile per object, fed by watch events.

Watch events of TrainingJobs and of the Jobs they own only record the object in a cache
and queue the TrainingJob's key (a Job's events batched for a second, see
``CHILD_EVENT_BATCH_SECONDS``); the work queue runs ``reconcile`` once per key at a time.
A reconcile costs, per transition: one create (the Job; plus the headless Service of a
distributed run), one status patch, one Event, and one pod list when the run ends (to read
the trainer's termination message).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from perennial.adapters import logs, metrics
from perennial.adapters.kube import JOBS, PODS, SERVICES, TRAINING_JOBS, ApiError
from perennial.adapters.store import Key, key_of
from perennial.api.base import GROUP, VERSION
from perennial.api.trainingjob import TrainingJobSpec
from perennial.controllers.runtime import CHILD_EVENT_BATCH_SECONDS, Runtime, runtime_of
from perennial.domain.conditions import ConditionState, merge_conditions, merge_patch
from perennial.domain.labels import MANAGED_BY, MANAGED_BY_LABEL
from perennial.domain.timeutil import parse_time
from perennial.domain.training import (
    JOB_CONFLICT,
    TERMINAL_PHASES,
    TRAINING_JOB_LABEL,
    Observed,
    StatusResult,
    TrainingJobRef,
    derive_status,
    desired_job,
    desired_service,
    owned_by,
)

KIND = "TrainingJob"
logger = logging.getLogger(__name__)
CONFLICT_RETRY_SECONDS = 15.0


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def trainingjob_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.trainingjobs.apply_event(event.get("type"), body)
    runtime.enqueue_model_owner(body)  # its ModelDeployment follows the run
    if event.get("type") != "DELETED":
        runtime.trainingjob_queue.add(key_of(body))


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY_LABEL: MANAGED_BY, TRAINING_JOB_LABEL: kopf.PRESENT})
async def job_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.jobs.apply_event(event.get("type"), body)
    namespace = body["metadata"]["namespace"]
    key = (namespace, body["metadata"]["labels"][TRAINING_JOB_LABEL])
    runtime.trainingjob_queue.add_after(key, CHILD_EVENT_BATCH_SECONDS)


async def reconcile(runtime: Runtime, key: Key) -> float | None:
    """Converge one TrainingJob; returns seconds until it wants another look, or None."""
    return await metrics.measured_reconcile(KIND, _reconcile(runtime, key))


async def _reconcile(runtime: Runtime, key: Key) -> float | None:
    body = runtime.trainingjobs.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None  # gone: garbage collection removes the Job, its pods and the Service
    metadata = body["metadata"]
    ref = TrainingJobRef(metadata["name"], metadata["namespace"], metadata["uid"], metadata.get("generation"))
    current: dict[str, Any] = body.get("status") or {}
    if current.get("phase") in TERMINAL_PHASES and current.get("observedGeneration") == ref.generation:
        return None
    try:
        spec = TrainingJobSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        # The CRD schema makes this unreachable for objects it admitted; say so anyway.
        await _write_status(runtime, body, current, _invalid_spec(ref, current, str(error)))
        return None

    job = runtime.jobs.get(key)
    if job is None:
        job = await _find_or_create_job(runtime, body, ref, spec, current)
    if job is not None and not owned_by(job, ref):
        await _write_status(runtime, body, current, _conflict(ref, current))
        return CONFLICT_RETRY_SECONDS

    pods: list[dict[str, Any]] = []
    if job is not None and _finished(job):
        pods = await runtime.client.list(PODS, ref.namespace, f"{TRAINING_JOB_LABEL}={ref.name}")
    result = derive_status(ref, spec, current, Observed(job, pods), datetime.now(UTC))
    await _write_status(runtime, body, current, result)
    return None


def _finished(job: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in job.get("status", {}).get("conditions") or []
    )


async def _find_or_create_job(
    runtime: Runtime, body: Mapping[str, Any], ref: TrainingJobRef, spec: TrainingJobSpec, current: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The run's Job: from the cache, or confirmed with a GET, or created (adopting on AlreadyExists).

    Once status records a Job, a missing one is never recreated: re-running a finished or
    half-finished training would silently produce a second model under one version.
    """
    if current.get("jobName"):
        try:
            return await runtime.client.get(JOBS, ref.namespace, ref.name)
        except ApiError as error:
            if error.not_found:
                return None
            raise
    service = desired_service(ref, spec)
    if service is not None:
        await _create_or_adopt(runtime, SERVICES, ref.namespace, service)
    job, created = await _create_or_adopt(runtime, JOBS, ref.namespace, desired_job(ref, spec))
    runtime.jobs.put(job)
    if created:
        metrics.TRAINING_RUNS_STARTED.inc()
        runtime.events.record(body, "Normal", "JobCreated", f"created Job {ref.name}")
    return job


async def _create_or_adopt(
    runtime: Runtime, resource: Any, namespace: str, desired: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    try:
        return await runtime.client.create(resource, namespace, desired), True
    except ApiError as error:
        if not error.already_exists:
            raise
    # Created by an earlier incarnation of the operator (or a race): adopt what is there.
    return await runtime.client.get(resource, namespace, desired["metadata"]["name"]), False


async def _write_status(
    runtime: Runtime, body: Mapping[str, Any], current: Mapping[str, Any], result: StatusResult
) -> None:
    if result.status == current:
        return  # nothing new: no write, no event
    metadata = body["metadata"]
    updated = await runtime.client.patch_status(
        TRAINING_JOBS,
        metadata["namespace"],
        metadata["name"],
        merge_patch(current, result.status),
        resource_version=None,
    )
    runtime.trainingjobs.put(updated)
    for event in result.events:
        runtime.events.record(body, event.type, event.reason, event.message)
    phase = result.status.get("phase")
    if result.finished and current.get("phase") not in TERMINAL_PHASES and phase in TERMINAL_PHASES:
        metrics.TRAINING_RUNS_FINISHED.labels(result=phase).inc()
        start = parse_time(result.status.get("startTime"))
        end = parse_time(result.status.get("completionTime"))
        if start and end:
            metrics.TRAINING_DURATION.labels(result=phase).observe((end - start).total_seconds())
        logger.info("training run finished: %s", phase, extra=logs.about(body))


def _conflict(ref: TrainingJobRef, current: Mapping[str, Any]) -> StatusResult:
    message = (
        f"a Job named {ref.name} exists but belongs to something else; it is left alone."
        " Delete it (or rename this TrainingJob) to run."
    )
    conditions = merge_conditions(
        current.get("conditions"),
        [ConditionState("Succeeded", "Unknown", JOB_CONFLICT, message)],
        now=datetime.now(UTC),
        generation=ref.generation,
    )
    status = {**current, "phase": "Pending", "observedGeneration": ref.generation, "conditions": conditions}
    return StatusResult(status)


def _invalid_spec(ref: TrainingJobRef, current: Mapping[str, Any], detail: str) -> StatusResult:
    conditions = merge_conditions(
        current.get("conditions"),
        [ConditionState("Succeeded", "False", "InvalidSpec", detail[:1000])],
        now=datetime.now(UTC),
        generation=ref.generation,
    )
    return StatusResult({**current, "phase": "Failed", "observedGeneration": ref.generation, "conditions": conditions})
