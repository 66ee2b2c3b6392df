"""ModelDeployment controller: the continuous-training loop — train, gate, promote, roll out, roll back.

One level-based reconcile per object (a work queue key), fed by watch events of
ModelDeployments and of what they own (TrainingJobs, the serving Deployment and Service).
Each reconcile:

1. absorbs finished TrainingJobs into the lineage (``status.versions``) and decides promotion;
2. raises its own triggers (Initial, Manual, SpecChange, Schedule) and, through the one
   code path every trigger uses (``_start_training``, also the Drift entry point
   ``request_retrain``), starts at most one training;
3. converges the serving Deployment and Service to the target version, tracks the
   rollout and rolls back when it misses ``progressDeadline``;
4. deletes TrainingJobs beyond ``historyLimit``;
5. writes status (only when it changed) and Events.

Everything that must survive a restart lives in the API server: TrainingJobs are the
record of allocated versions (a TrainingJob created just before a crash is found and
recorded on the next pass), and ``status`` holds the lineage, the rollout in progress and
the retrain bookkeeping. Per-model work is serialised by a lock, so the Drift entry point
and the reconcile never allocate concurrently.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from perennial.adapters import logs, metrics
from perennial.adapters.kube import DEPLOYMENTS, MODEL_DEPLOYMENTS, SERVICES, TRAINING_JOBS, ApiError
from perennial.adapters.store import Key, key_of
from perennial.api.base import GROUP, VERSION
from perennial.api.modeldeployment import RETRAIN_REQUEST_ANNOTATION, ModelDeploymentSpec
from perennial.controllers.runtime import Runtime, runtime_of
from perennial.domain import modeldeployment as md
from perennial.domain.conditions import ConditionState, find_condition, merge_conditions, merge_patch
from perennial.domain.cron import InvalidScheduleError
from perennial.domain.labels import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL
from perennial.domain.timeutil import format_time, parse_time

KIND = "ModelDeployment"
logger = logging.getLogger(__name__)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def modeldeployment_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.modeldeployments.apply_event(event.get("type"), body)
    if event.get("type") == "DELETED":
        metrics.forget_model(body["metadata"]["namespace"], body["metadata"]["name"])
        return
    runtime.modeldeployment_queue.add(key_of(body))


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: kopf.PRESENT})
async def deployment_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.deployments.apply_event(event.get("type"), body)
    runtime.enqueue_model_owner(body)


@kopf.on.event("", "v1", "services", labels={MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: kopf.PRESENT})
async def service_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.services.apply_event(event.get("type"), body)
    runtime.enqueue_model_owner(body)


# ---------------------------------------------------------------- one pass
@dataclass
class Pass:
    """One reconcile's working state: the object as read, and the status being built."""

    body: dict[str, Any]
    ref: md.ModelRef
    spec: ModelDeploymentSpec
    now: datetime
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def later(self, seconds: float | None) -> None:
        self.requeue_after = md.earliest(self.requeue_after, seconds)

    def records(self) -> list[dict[str, Any]]:
        versions: list[dict[str, Any]] = self.status.setdefault("versions", [])
        return versions

    def record(self, version: str | None) -> dict[str, Any] | None:
        return next((r for r in self.records() if r.get("version") == version), None) if version else None

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.status["conditions"] = merge_conditions(
            self.status.get("conditions"),
            [ConditionState(type_, status, reason, message)],
            now=self.now,
            generation=self.ref.generation,
        )


@dataclass(frozen=True)
class RetrainOutcome:
    started: bool
    training_job: str | None = None
    suppression: str | None = None
    message: str = ""


class TargetNotFoundError(LookupError):
    pass


def _open_pass(runtime: Runtime, key: Key) -> Pass | None:
    body = runtime.modeldeployments.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    metadata = body["metadata"]
    ref = md.ModelRef(metadata["name"], metadata["namespace"], metadata["uid"], metadata.get("generation"))
    spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    # The cache hands out a private copy: the pass may change its status in place.
    return Pass(body, ref, spec, datetime.now(UTC), body.get("status") or {})


async def reconcile(runtime: Runtime, key: Key) -> float | None:
    return await metrics.measured_reconcile(KIND, _reconcile(runtime, key))


async def _reconcile(runtime: Runtime, key: Key) -> float | None:
    async with runtime.model_lock(key):
        try:
            work = _open_pass(runtime, key)
        except ValidationError as error:
            namespace, name = key
            logger.error("spec the CRD should have refused: %s", error, extra=logs.about_object(KIND, namespace, name))
            return None
        if work is None:
            return None
        before = copy.deepcopy(work.status)
        await _absorb_runs(runtime, work)
        _schedule_bookkeeping(work)
        triggers = md.pending_triggers(work.spec, work.body["metadata"].get("annotations") or {}, work.status, work.now)
        if triggers:
            await _start_training(runtime, work, triggers)
        await _converge_serving(runtime, work)
        await _collect_history(runtime, work)
        _summarise(runtime, work)
        await _write(runtime, work, before)
        return work.requeue_after


async def request_retrain(runtime: Runtime, namespace: str, name: str, trigger: md.Trigger) -> RetrainOutcome:
    """The entry point for DriftPolicies: ask ``namespace/name`` to retrain, under its own rules.

    The ModelDeployment's suspend, cooldown, circuit breaker and one-training-at-a-time
    rules apply exactly as for its own triggers; the outcome says what happened.
    """
    key = (namespace, name)
    async with runtime.model_lock(key):
        work = _open_pass(runtime, key)
        if work is None:
            raise TargetNotFoundError(f"ModelDeployment {namespace}/{name} not found")
        before = copy.deepcopy(work.status)
        await _absorb_runs(runtime, work)
        outcome = await _start_training(runtime, work, [trigger])
        _summarise(runtime, work)
        await _write(runtime, work, before)
    return outcome


# ---------------------------------------------------------------- 1. lineage
def _owned_runs(runtime: Runtime, ref: md.ModelRef) -> dict[str, md.Run]:
    runs = {}
    for body in runtime.trainingjobs.owned_by(ref.uid):
        run = md.run_from(body)
        runs[run.version] = run
    return runs


async def _absorb_runs(runtime: Runtime, work: Pass) -> None:
    runs = _owned_runs(runtime, work.ref)
    latest = int(work.status.get("latestVersion") or 0)
    # A TrainingJob created right before a crash, not yet recorded: record it now.
    for version, run in sorted(runs.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        if version.isdigit() and work.record(version) is None:
            body = runtime.trainingjobs.get((work.ref.namespace, run.name)) or {}
            trigger = (body.get("spec") or {}).get("trigger") or {"reason": "Initial"}
            record = {
                "version": version,
                "trainingJob": run.name,
                "state": "Training",
                "image": (body.get("spec") or {}).get("image"),
                "trigger": trigger,
                "createdAt": body.get("metadata", {}).get("creationTimestamp"),
            }
            work.records().append({k: v for k, v in record.items() if v is not None})
            latest = max(latest, int(version))
            if not run.finished:
                work.status["activeTrainingJob"] = run.name
    if latest:
        work.status["latestVersion"] = str(latest)

    for record in work.records():
        if record.get("state") != "Training":
            continue
        found: md.Run | None = runs.get(record["version"])
        if found is None:
            found = await _confirm_run(runtime, work, record)
        if found is None or not found.finished:
            continue
        _finish_version(work, record, found)
    active = work.status.get("activeTrainingJob")
    if active and all(r.name != active or r.finished for r in runs.values()):
        active_record = next((r for r in work.records() if r.get("trainingJob") == active), None)
        if active_record is None or active_record.get("state") != "Training":
            work.status.pop("activeTrainingJob", None)


async def _confirm_run(runtime: Runtime, work: Pass, record: dict[str, Any]) -> md.Run | None:
    """A recorded training the cache does not know: GET it; if it is gone, the version failed."""
    name = record.get("trainingJob") or md.training_job_name(work.ref.name, record["version"])
    try:
        body = await runtime.client.get(TRAINING_JOBS, work.ref.namespace, name)
    except ApiError as error:
        if not error.not_found:
            raise
        return md.Run(name, record["version"], "Failed", {}, None, "TrainingJobDeleted")
    runtime.trainingjobs.put(body)
    return md.run_from(body)


def _finish_version(work: Pass, record: dict[str, Any], run: md.Run) -> None:
    record["metrics"] = dict(run.metrics)
    if run.model_uri:
        record["modelUri"] = run.model_uri
    if work.status.get("activeTrainingJob") == run.name:
        work.status.pop("activeTrainingJob", None)
    version = record["version"]
    if run.phase != "Succeeded":
        record["state"] = "Failed" if run.phase == "Failed" else "Rejected"
        record["decision"] = {"result": "NotPromoted", "reason": f"training {run.phase}: {run.reason}"}
        work.status["consecutiveFailures"] = int(work.status.get("consecutiveFailures") or 0) + 1
        work.event(
            "Warning",
            f"Version{record['state']}",
            f"version {version} {run.phase.lower() if run.phase else ''}"
            f" ({run.reason}); the serving version keeps serving",
        )
        metrics.PROMOTIONS.labels(result="NotPromoted").inc()
        return
    work.status["consecutiveFailures"] = 0
    champion = work.record(work.status.get("servingVersion"))
    decision = md.promotion_decision(work.spec, run.metrics, champion)
    record["decision"] = decision.to_api()
    metrics.PROMOTIONS.labels(result=decision.result).inc()
    if decision.result == "Promoted":
        record["state"] = "Candidate"  # Serving once the rollout completes
        _begin_rollout(work, version)
        work.event("Normal", "Promoted", f"version {version} promoted: {decision.reason}")
    elif decision.result == "Candidate":
        record["state"] = "Candidate"
        work.event("Normal", "Candidate", f"version {version} is a candidate: {decision.reason}")
    else:
        record["state"] = "Candidate"  # validated, not better: stays pinnable
        work.event("Normal", "NotPromoted", f"version {version} not promoted: {decision.reason}")


def _begin_rollout(work: Pass, version: str) -> None:
    rollout: dict[str, Any] = {"version": version, "startedAt": format_time(work.now)}
    if work.status.get("servingVersion"):
        rollout["previousVersion"] = work.status["servingVersion"]
    work.status["rollout"] = rollout
    metrics.ROLLOUTS.labels(result="Started").inc()


# ---------------------------------------------------------------- 2. triggers
def _schedule_bookkeeping(work: Pass) -> None:
    if not work.spec.retraining.schedule:
        work.status.pop("nextScheduledRetrain", None)
        return
    try:
        fires = md.schedule_fires_at(work.spec, work.status.get("nextScheduledRetrain"))
        if not fires:
            _advance_schedule(work)  # new, or the schedule changed
    except InvalidScheduleError as error:
        # The format passed the CRD, the meaning did not (a reversed range, Feb 30).
        work.status.pop("nextScheduledRetrain", None)
        message = f"spec.retraining.schedule: {error}; no scheduled retrains until it is fixed"
        previous = find_condition(work.status.get("conditions"), "RetrainSuppressed") or {}
        if previous.get("message") != message:
            work.condition("RetrainSuppressed", "True", "InvalidSchedule", message)
            work.event("Warning", "InvalidSchedule", message)
        return
    due = parse_time(work.status.get("nextScheduledRetrain"))
    work.later(md.seconds_until(due, work.now))


def _training_active(work: Pass) -> bool:
    return bool(work.status.get("activeTrainingJob"))


async def _start_training(runtime: Runtime, work: Pass, triggers: list[md.Trigger]) -> RetrainOutcome:
    """The one code path that starts a training: arbitrate, allocate the next version, record it."""
    trigger = min(triggers, key=lambda t: md.TRIGGER_PRIORITY.index(t.reason))
    decision = md.arbitrate(trigger, work.spec, work.status, work.now, training_active=_training_active(work))
    if decision.run:
        # The cache may lag: list this model's TrainingJobs before allocating a version.
        listed = await runtime.client.list(
            TRAINING_JOBS, work.ref.namespace, f"{MODEL_LABEL}={work.ref.name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )
        owned = [
            b for b in listed if any(o.get("uid") == work.ref.uid for o in b["metadata"].get("ownerReferences") or [])
        ]
        for body in owned:
            runtime.trainingjobs.put(body)
        running = [md.run_from(b) for b in owned if not md.run_from(b).finished]
        if running:
            work.status["activeTrainingJob"] = running[0].name
            decision = md.arbitrate(trigger, work.spec, work.status, work.now, training_active=True)
    if not decision.run:
        _suppressed(work, trigger, decision)
        return RetrainOutcome(False, suppression=decision.suppression, message=decision.message)

    known = [md.run_from(b).version for b in owned]
    for _ in range(5):
        version = md.next_version(work.status, known)
        manifest = md.training_job_for(work.ref, work.spec, version, trigger)
        try:
            created = await runtime.client.create(TRAINING_JOBS, work.ref.namespace, manifest)
            break
        except ApiError as error:
            if not error.already_exists:
                raise
            known.append(str(version))  # allocated by someone else in the meantime
    else:
        raise kopf.TemporaryError("could not allocate a version: every candidate name exists", delay=5)
    runtime.trainingjobs.put(created)

    name = created["metadata"]["name"]
    work.records().append(md.version_record(work.spec, version, trigger, work.now, name))
    work.status.update(
        {
            "latestVersion": str(version),
            "activeTrainingJob": name,
            "lastRetrain": {"time": format_time(work.now), "reason": trigger.reason, "source": trigger.source}
            if trigger.source
            else {"time": format_time(work.now), "reason": trigger.reason},
            "trainingSpecHash": md.training_hash(work.spec),
        }
    )
    request = (work.body["metadata"].get("annotations") or {}).get(RETRAIN_REQUEST_ANNOTATION)
    if request:
        work.status["handledRetrainRequest"] = request  # this run also answers a pending manual request
    if trigger.reason == md.SCHEDULE or any(t.reason == md.SCHEDULE for t in triggers):
        _advance_schedule(work)
    work.condition("RetrainSuppressed", "False", "Started", f"{trigger.reason} started version {version}")
    metrics.RETRAINS_TRIGGERED.labels(reason=trigger.reason).inc()
    detail = f": {trigger.detail}" if trigger.detail else ""
    work.event("Normal", "RetrainStarted", f"training version {version} ({trigger.reason}{detail})")
    return RetrainOutcome(True, training_job=name, message=f"started {name}")


def _advance_schedule(work: Pass) -> None:
    upcoming = md.next_schedule(work.spec, work.now)
    if upcoming is not None:
        work.status["nextScheduledRetrain"] = format_time(upcoming)


def _suppressed(work: Pass, trigger: md.Trigger, decision: md.Arbitration) -> None:
    suppression = decision.suppression or "Suppressed"
    previous = find_condition(work.status.get("conditions"), "RetrainSuppressed") or {}
    if trigger.reason == md.SCHEDULE:
        _advance_schedule(work)  # a missed schedule is skipped, not queued
    if (
        previous.get("status") != "True"
        or previous.get("reason") != suppression
        or previous.get("message") != (decision.message)
    ):
        work.condition("RetrainSuppressed", "True", suppression, decision.message)
        work.event("Normal", "RetrainSuppressed", decision.message)
        metrics.RETRAINS_SUPPRESSED.labels(reason=trigger.reason, suppression=suppression).inc()
    if suppression == md.COOLDOWN:
        work.later(md.seconds_until(md.cooldown_ends(work.spec, work.status), work.now))


# ---------------------------------------------------------------- 3. serving
def _pinnable(record: Mapping[str, Any] | None) -> bool:
    """Trained and validated: Candidate, Serving, Retired or RolledBack, with a model URI."""
    return record is not None and bool(record.get("modelUri")) and record.get("state") in md.TRAINED_STATES


def _apply_pin(work: Pass) -> None:
    pinned = work.spec.pinned_version
    if not pinned:
        degraded = find_condition(work.status.get("conditions"), "Degraded")
        if degraded and degraded.get("reason") == "PinnedVersionUnknown":
            work.condition("Degraded", "False", "PinCleared", "spec.pinnedVersion is empty")
        return
    record = work.record(pinned)
    if not _pinnable(record):
        serving = work.status.get("servingVersion") or "nothing"
        message = f"spec.pinnedVersion {pinned} is not a trained version in status.versions; {serving} keeps serving"
        previous = find_condition(work.status.get("conditions"), "Degraded") or {}
        if previous.get("reason") != "PinnedVersionUnknown" or previous.get("message") != message:
            work.event("Warning", "PinnedVersionUnknown", message)
        work.condition("Degraded", "True", "PinnedVersionUnknown", message)
        return
    assert record is not None
    degraded = find_condition(work.status.get("conditions"), "Degraded")
    if degraded and degraded.get("reason") == "PinnedVersionUnknown":
        work.condition("Degraded", "False", "Pinned", f"serving pinned version {pinned}")
    rollout = work.status.get("rollout") or {}
    if pinned == work.status.get("servingVersion") or rollout.get("version") == pinned:
        return
    if record.get("state") == "RolledBack" and (work.status.get("lastRolledBack") == pinned):
        return  # it failed its rollout once: do not loop; change the pin to try again
    if record.get("state") == "Candidate":
        record["decision"] = {"result": "Pinned", "reason": "spec.pinnedVersion selects it"}
    work.event("Normal", "Pinned", f"rolling out pinned version {pinned}")
    _begin_rollout(work, pinned)


async def _converge_serving(runtime: Runtime, work: Pass) -> None:
    _apply_pin(work)
    rollout = work.status.get("rollout")
    target = (rollout or {}).get("version") or work.status.get("servingVersion")
    key = (work.ref.namespace, work.ref.name)
    deployment = runtime.deployments.get(key)
    if target is None:
        return  # nothing validated yet: no Deployment runs a model that does not exist
    await _apply_service(runtime, work)
    deployment = await _apply_deployment(runtime, work, deployment, target)

    if not rollout:
        return
    step = md.rollout_step(
        rollout, work.spec, md.deployed_version(deployment), md.deployment_health(deployment), work.now
    )
    if step.action == md.COMPLETE:
        _complete_rollout(work, rollout)
    elif step.action == md.ROLL_BACK:
        _roll_back(work, rollout)
        await _apply_deployment(runtime, work, deployment, rollout["previousVersion"])
    elif step.action == md.STUCK:
        work.condition(
            "Degraded",
            "True",
            "RolloutStuck",
            f"version {rollout['version']} is not Available after {work.spec.rollout.progress_deadline}"
            + ("" if rollout.get("previousVersion") else "; there is no previous version to roll back to"),
        )
    else:
        work.later(step.seconds_left)


async def _apply_service(runtime: Runtime, work: Pass) -> None:
    desired = md.desired_service(work.ref, work.spec)
    current = runtime.services.get((work.ref.namespace, work.ref.name))
    if current is None:
        current = await _create_or_get(runtime, SERVICES, work.ref.namespace, desired)
    elif md.needs_update(current, desired):
        # A Service's cluster IP is immutable: carry it over into the replacement.
        for field_name in ("clusterIP", "clusterIPs"):
            if field_name in current.get("spec", {}):
                desired["spec"][field_name] = current["spec"][field_name]
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        current = await runtime.client.replace(SERVICES, work.ref.namespace, work.ref.name, desired)
    runtime.services.put(current)


async def _apply_deployment(
    runtime: Runtime, work: Pass, current: dict[str, Any] | None, version: str
) -> dict[str, Any]:
    record = work.record(version) or {}
    desired = md.desired_deployment(work.ref, work.spec, version, str(record.get("modelUri") or ""))
    if current is None:
        current = await _create_or_get(runtime, DEPLOYMENTS, work.ref.namespace, desired)
    elif md.needs_update(current, desired):
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        current = await runtime.client.replace(DEPLOYMENTS, work.ref.namespace, work.ref.name, desired)
    runtime.deployments.put(current)
    return current


async def _create_or_get(runtime: Runtime, resource: Any, namespace: str, desired: dict[str, Any]) -> dict[str, Any]:
    try:
        return await runtime.client.create(resource, namespace, desired)
    except ApiError as error:
        if not error.already_exists:
            raise
    return await runtime.client.get(resource, namespace, desired["metadata"]["name"])


def _complete_rollout(work: Pass, rollout: Mapping[str, Any]) -> None:
    version = rollout["version"]
    previous = work.record(work.status.get("servingVersion"))
    if previous is not None and previous.get("version") != version:
        previous["state"] = "Retired"
    record = work.record(version)
    if record is not None:
        record["state"] = "Serving"
        record["promotedAt"] = format_time(work.now)
        work.status["servingModelUri"] = record.get("modelUri")
    work.status["servingVersion"] = version
    work.status.pop("rollout", None)
    work.condition("Degraded", "False", "RolloutSucceeded", f"version {version} serves")
    work.event("Normal", "RolloutSucceeded", f"version {version} is serving")
    metrics.ROLLOUTS.labels(result="Succeeded").inc()


def _roll_back(work: Pass, rollout: Mapping[str, Any]) -> None:
    version, previous = rollout["version"], rollout["previousVersion"]
    record = work.record(version)
    if record is not None:
        record["state"] = "RolledBack"
    work.status["lastRolledBack"] = version
    work.status.pop("rollout", None)
    message = (
        f"version {version} was not Available within {work.spec.rollout.progress_deadline};"
        f" rolled back to version {previous}"
    )
    work.condition("Degraded", "True", "RolledBack", message)
    work.event("Warning", "RolledBack", message)
    metrics.ROLLOUTS.labels(result="RolledBack").inc()


# ---------------------------------------------------------------- 4. history
async def _collect_history(runtime: Runtime, work: Pass) -> None:
    runs = list(_owned_runs(runtime, work.ref).values())
    rollout = work.status.get("rollout") or {}
    protected = {
        v
        for v in (
            work.status.get("servingVersion"),
            work.spec.pinned_version,
            rollout.get("version"),
            rollout.get("previousVersion"),
        )
        if v
    }
    for name in md.history_to_delete(runs, work.spec.retraining.history_limit, protected):
        try:
            await runtime.client.delete(TRAINING_JOBS, work.ref.namespace, name)
        except ApiError as error:
            if not error.not_found:
                raise
        runtime.trainingjobs.forget((work.ref.namespace, name))
        work.status["versions"] = [r for r in work.records() if r.get("trainingJob") != name]


# ---------------------------------------------------------------- 5. summary and write
def _summarise(runtime: Runtime, work: Pass) -> None:
    status = work.status
    serving = status.get("servingVersion")
    rollout = status.get("rollout")
    active = status.get("activeTrainingJob")
    # From the cache, which holds what this pass wrote: every caller (the reconcile and the
    # Drift entry point) reports the same availability.
    health = md.deployment_health(runtime.deployments.get((work.ref.namespace, work.ref.name)))
    status["replicas"] = health.replicas
    status["readyReplicas"] = health.ready_replicas
    status["ready"] = f"{health.ready_replicas}/{health.replicas}"
    ready = bool(serving) and health.available
    metrics.set_model_ready(work.ref.namespace, work.ref.name, ready)
    if ready:
        work.condition("Ready", "True", "Serving", f"version {serving} is serving and available")
    elif serving:
        work.condition("Ready", "False", "Unavailable", f"version {serving}'s Deployment is not available")
    else:
        candidates = [r["version"] for r in work.records() if r.get("state") == "Candidate"]
        if candidates and not active:
            work.condition(
                "Ready",
                "False",
                "AwaitingPromotion",
                f"version {candidates[-1]} is a Candidate: set spec.pinnedVersion to serve it",
            )
        else:
            work.condition("Ready", "False", "NoVersion", "no validated version serves yet")
    if rollout:
        work.condition("Progressing", "True", "RollingOut", f"rolling out version {rollout['version']}")
    else:
        work.condition("Progressing", "False", "Stable", "no rollout in progress")
    if active:
        record = next((r for r in work.records() if r.get("trainingJob") == active), {})
        reason = (record.get("trigger") or {}).get("reason", "Training")
        work.condition("Training", "True", reason, f"training {active}")
    else:
        work.condition("Training", "False", "Idle", "no training running")
    for type_ in ("Degraded", "RetrainSuppressed"):
        if find_condition(status.get("conditions"), type_) is None:
            work.condition(type_, "False", "AsExpected", "")

    degraded = find_condition(status.get("conditions"), "Degraded") or {}
    last_state = work.records()[-1].get("state") if work.records() else None
    if rollout:
        phase = "Rolling"
    elif degraded.get("status") == "True":
        phase = "Degraded"
    elif serving:
        phase = "Serving"
    elif active or not work.records():
        phase = "Training"
    else:
        phase = "Failed" if last_state in ("Failed", "Rejected") else "Training"
    status["phase"] = phase
    status["observedGeneration"] = work.ref.generation
    if serving:
        metrics.set_model_info(work.ref.namespace, work.ref.name, serving)


async def _write(runtime: Runtime, work: Pass, before: Mapping[str, Any]) -> None:
    if work.status != before:
        updated = await runtime.client.patch_status(
            MODEL_DEPLOYMENTS,
            work.ref.namespace,
            work.ref.name,
            merge_patch(before, work.status),
            resource_version=None,
        )
        runtime.modeldeployments.put(updated)
    for type_, reason, message in work.events:
        runtime.events.record(work.body, type_, reason, message)
