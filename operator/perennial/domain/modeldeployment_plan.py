"""The ModelDeployment's reconcile as one pure function: ``plan_modeldeployment(observed) -> Plan``.

What a pass sees (the object, its TrainingJobs and Deployment from the caches, the
DriftPolicies' pending requests, now) goes in; the new status, the children, the
TrainingJob to create, the TrainingJobs to delete, the Events and the next look come out.
The steps, in order (the README's "The loop" section):

1. lineage: record runs created by a pass that crashed before writing status; absorb
   finished runs and decide their promotion;
2. triggers: Initial, Manual, SpecChange, Drift, Schedule through one rule book
   (``arbitrate``); a run answers every pending trigger;
3. serving: the pin, the rollout state machine, the desired Deployment and Service;
4. history: TrainingJobs beyond ``historyLimit``;
5. summary: conditions, phase, replicas.

``record_child_outcomes`` records what executing the plan's children did (a refused or
conflicting child becomes a condition), so the controller decides nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from perennial.api.base import LONG_TEXT, Condition
from perennial.api.driftpolicy import DriftMetricStatus
from perennial.api.modeldeployment import (
    RETRAIN_REQUEST_ANNOTATION,
    DeploymentPhase,
    DriftRequestAnswer,
    LastRetrain,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersionRecord,
    PromotionDecision,
    RollbackReason,
    RollbackRecord,
    RolloutStatus,
)
from perennial.domain import canary
from perennial.domain import modeldeployment as md
from perennial.domain.canary import AnalysisReading
from perennial.domain.children import controlled_by
from perennial.domain.conditions import get_condition
from perennial.domain.cron import InvalidScheduleError
from perennial.domain.driftpolicy import metric_status
from perennial.domain.plan import ChildRef, Plan
from perennial.domain.text import shorten
from perennial.domain.timeutil import format_time, truncate

# Triggers whose runs start retraining.cooldown (api.md: automatic retrains; not Initial).
# Degraded reasons of children that could not be converged (see record_child_outcomes).
NAME_CONFLICT, CHILD_REFUSED = "NameConflict", "ChildRefused"
CHILD_PROBLEMS = (NAME_CONFLICT, CHILD_REFUSED)
NAME_CONFLICT_RETRY_SECONDS = 10.0
ROUTE_RETRY_SECONDS = 2.0
TRAINING_JOBS = "trainingjobs"
DEPLOYMENTS = "deployments"


@dataclass(frozen=True)
class ObservedModel:
    """Everything one pass of a ModelDeployment reads."""

    ref: md.ModelRef
    spec: ModelDeploymentSpec
    annotations: Mapping[str, str]
    status: ModelDeploymentStatus
    runs: Mapping[str, md.Run]
    """This model's TrainingJobs by version (``md.own_runs``)."""
    runs_listed: bool
    """``runs`` come from a LIST just made, not only from the cache: a missing run is gone."""
    deployment: Mapping[str, object] | None
    drift_requests: Sequence[md.DriftRequest]
    now: datetime
    canary: Mapping[str, object] | None = None
    """The canary's Deployment (``<model>-canary``) from the cache, if there is one."""
    analysis: AnalysisReading | None = None
    """The canary's analysis metrics, read just before this pass (``canary.analysis_due``)."""
    route: Mapping[str, Any] | None = None
    """The HTTPRoute of ``spec.rollout.canary.httpRoute``, read just before this pass."""
    route_problem: str | None = None
    """Why that HTTPRoute could not be read (not found, forbidden), in the API server's words."""
    taken_names: frozenset[str] = frozenset()
    """TrainingJob names found taken by something this model does not control."""
    refused_training: str | None = None
    """The API server's message when it refused the TrainingJob this pass wanted to create."""


@dataclass
class _Pass:
    observed: ObservedModel
    plan: Plan[ModelDeploymentStatus]
    versions: list[ModelVersionRecord] = field(default_factory=list)
    progress: tuple[str, str] | None = None
    """Progressing's (reason, message) for a rollout in progress, when the serving step says it."""

    @property
    def spec(self) -> ModelDeploymentSpec:
        return self.observed.spec

    @property
    def status(self) -> ModelDeploymentStatus:
        return self.plan.status

    @property
    def conditions(self) -> list[Condition]:
        return self.plan.conditions

    def record(self, version: str | None) -> ModelVersionRecord | None:
        return next((r for r in self.versions if r.version == version), None) if version else None


def plan_modeldeployment(observed: ObservedModel) -> Plan[ModelDeploymentStatus]:
    status = observed.status.model_copy(deep=True)
    status.versions = status.versions or []
    work = _Pass(observed, Plan(status, truncate(observed.now), observed.ref.generation))
    work.versions = status.versions
    _adopt_unrecorded_runs(work)
    _absorb_finished_runs(work)
    _schedule_bookkeeping(work)
    _triggers(work)
    _serving(work)
    _history(work)
    _summarise(work)
    if not status.versions:
        status.versions = None
    return work.plan


# ---------------------------------------------------------------- 1. lineage
def _adopt_unrecorded_runs(work: _Pass) -> None:
    """A TrainingJob created right before a crash, not yet recorded: record it, and restore
    what its trigger consumed from its annotations."""
    status = work.status
    latest_before = int(status.latest_version or 0)
    for version in sorted(work.observed.runs, key=int):
        run = work.observed.runs[version]
        if work.record(version) is not None:
            continue
        if run.finished and int(version) <= latest_before:
            continue  # history this model already trimmed (a stale cache entry): never judged again
        record = md.adopted_record(run)
        work.versions.append(record)
        status.latest_version = str(max(int(status.latest_version or 0), int(version)))
        if not run.finished:
            status.active_training_job = run.name
        if int(version) > latest_before:
            _restore_bookkeeping(work, run, record)


def _restore_bookkeeping(work: _Pass, run: md.Run, record: ModelVersionRecord) -> None:
    status, annotations = work.status, run.annotations or {}
    trigger, triggered_at = record.trigger, record.created_at
    if trigger is not None and triggered_at is not None:
        status.last_retrain = LastRetrain(time=triggered_at, reason=trigger.reason, source=trigger.source)
        if trigger.reason in md.UNATTENDED or annotations.get(md.STARTS_COOLDOWN_ANNOTATION) == "true":
            status.last_automatic_retrain = triggered_at
        if status.next_scheduled_retrain is not None and status.next_scheduled_retrain <= triggered_at:
            upcoming = md.next_schedule(work.spec, triggered_at) if work.spec.retraining.schedule else None
            status.next_scheduled_retrain = upcoming
    if annotations.get(md.SPEC_HASH_ANNOTATION):
        status.training_spec_hash = annotations[md.SPEC_HASH_ANNOTATION]
    if annotations.get(md.HANDLED_REQUEST_ANNOTATION):
        status.handled_retrain_request = annotations[md.HANDLED_REQUEST_ANNOTATION]
    try:
        answered = json.loads(annotations.get(md.DRIFT_REQUESTS_ANNOTATION) or "{}")
    except json.JSONDecodeError:
        answered = {}
    for policy, request in answered.items() if isinstance(answered, dict) else ():
        _answer_drift(work, md.Trigger(md.DRIFT, str(policy), request=str(request)), "Started", run.name, "", "")


def _absorb_finished_runs(work: _Pass) -> None:
    runs, status = work.observed.runs, work.status
    for record in work.versions:
        if record.state != "Training":
            continue
        run = runs.get(record.version)
        if run is None:
            if not work.observed.runs_listed:
                continue  # the cache may lag; the controller lists before trusting an absence
            run = md.Run(record.training_job or "", record.version, "Failed", {}, None, "TrainingJobDeleted")
        if run.finished:
            _finish_version(work, record, run)
    active = status.active_training_job
    if active and not any(r.name == active and not r.finished for r in runs.values()):
        active_record = next((r for r in work.versions if r.training_job == active), None)
        if active_record is None or active_record.state != "Training":
            status.active_training_job = None


def _finish_version(work: _Pass, record: ModelVersionRecord, run: md.Run) -> None:
    status, plan = work.status, work.plan
    record.metrics = dict(run.metrics)
    if run.model_uri:
        record.model_uri = run.model_uri
    if status.active_training_job == run.name:
        status.active_training_job = None
    version = record.version
    if run.phase != "Succeeded":
        record.state = "Failed" if run.phase == "Failed" else "Rejected"
        record.decision = PromotionDecision(result="NotPromoted", reason=f"training {run.phase}: {run.reason}")
        status.consecutive_failures = (status.consecutive_failures or 0) + 1
        plan.event(
            "Warning",
            f"Version{record.state}",
            f"version {version} {(run.phase or '').lower()} ({run.reason}); the serving version keeps serving",
        )
        plan.count("promotions", result="NotPromoted")
        return
    status.consecutive_failures = 0
    champion = work.record(status.serving_version)
    scored = record.champion.version if record.champion else None
    decision = md.promotion_decision(work.spec, run.metrics, champion, scored)
    record.decision = decision.record()
    if decision.result != "NotPromoted":
        status.consecutive_not_promoted = 0
    elif record.trigger is not None and record.trigger.reason in md.UNATTENDED:
        status.consecutive_not_promoted = (status.consecutive_not_promoted or 0) + 1
    record.state = "Candidate"  # Promoted: Serving once its rollout completes; otherwise pinnable
    plan.count("promotions", result=decision.result)
    if decision.result == "Promoted":
        if work.spec.pinned_version:
            # A pin decides what serves: the validated version waits as a Candidate.
            record.decision = PromotionDecision(
                result="Candidate",
                reason=f"{decision.reason}; spec.pinnedVersion {work.spec.pinned_version} holds serving",
                compared_to=decision.compared_to,
            )
            plan.event("Normal", "Candidate", f"version {version} is a candidate: {record.decision.reason}")
            return
        _begin_rollout(work, version)
        plan.event("Normal", "Promoted", f"version {version} promoted: {decision.reason}")
    elif decision.result == "Candidate":
        plan.event("Normal", "Candidate", f"version {version} is a candidate: {decision.reason}")
    else:
        plan.event("Normal", "NotPromoted", f"version {version} not promoted: {decision.reason}")


def _begin_rollout(work: _Pass, version: str, *, may_canary: bool = True) -> None:
    """Start rolling ``version`` out: with strategy Canary (and a stable version to compare
    with), at its first step; otherwise, or for a pin (a person's decision), at once."""
    now, previous = work.plan.now, work.status.serving_version
    steps = work.spec.rollout.steps or []
    if may_canary and work.spec.rollout.strategy == "Canary" and steps and previous:
        work.status.rollout = RolloutStatus(
            version=version,
            previous_version=previous,
            started_at=now,
            strategy="Canary",
            stage="Step",
            step=1,
            steps=len(steps),
            weight=steps[0].weight,
            step_started_at=now,
        )
        work.plan.event("Normal", "CanaryStep", f"version {version}: canary step 1/{len(steps)} at {steps[0].weight}%")
    else:
        work.status.rollout = RolloutStatus(version=version, previous_version=previous, started_at=now)
    work.plan.count("rollouts", result="Started")


# ---------------------------------------------------------------- 2. triggers
def _schedule_bookkeeping(work: _Pass) -> None:
    status, spec = work.status, work.spec
    if not spec.retraining.schedule:
        status.next_scheduled_retrain = None
        return
    try:
        due = status.next_scheduled_retrain
        if not md.schedule_fires_at(spec, format_time(due) if due else None):
            status.next_scheduled_retrain = md.next_schedule(spec, work.plan.now)  # new, or the schedule changed
    except InvalidScheduleError as error:
        # The format passed the CRD, the meaning did not (a reversed range, Feb 30).
        status.next_scheduled_retrain = None
        message = f"spec.retraining.schedule: {error}; no scheduled retrains until it is fixed"
        work.plan.condition("RetrainSuppressed", "True", "InvalidSchedule", message, event="Warning")
        return
    work.plan.later(md.seconds_until(status.next_scheduled_retrain, work.plan.now))


def _triggers(work: _Pass) -> None:
    observed, status, plan = work.observed, work.status, work.plan
    triggers = md.pending_triggers(observed.spec, observed.annotations, status, plan.now, observed.drift_requests)
    if not triggers:
        return
    trigger = triggers[0]
    decision = md.arbitrate(trigger, work.spec, status, plan.now, training_active=bool(status.active_training_job))
    if decision.run and observed.refused_training is not None:
        decision = md.Arbitration(False, "TrainingJobRefused", observed.refused_training)
    if not decision.run:
        _suppressed(work, triggers, decision)
        return
    known = set(observed.runs) | {name.rsplit("-v", 1)[-1] for name in observed.taken_names}
    version = md.next_version(status, known)
    name = md.training_job_name(observed.ref.name, version)
    automatic = any(t.reason in md.UNATTENDED for t in triggers)
    drift = [t for t in triggers if t.reason == md.DRIFT]
    request = observed.annotations.get(RETRAIN_REQUEST_ANNOTATION)
    bookkeeping = {
        md.TRIGGERED_AT_ANNOTATION: format_time(plan.now),
        md.SPEC_HASH_ANNOTATION: md.training_hash(work.spec),
    }
    if request:
        bookkeeping[md.HANDLED_REQUEST_ANNOTATION] = md.request_identity(request)
    if automatic:
        bookkeeping[md.STARTS_COOLDOWN_ANNOTATION] = "true"
    if drift:
        bookkeeping[md.DRIFT_REQUESTS_ANNOTATION] = json.dumps({t.source: t.request for t in drift}, sort_keys=True)
    job = md.training_job_for(observed.ref, work.spec, version, trigger, bookkeeping, champion=md.champion_of(status))
    plan.create.append(job)

    work.versions.append(md.version_record(job))  # the resolved dataset and champion, as adoption reads them
    status.latest_version = str(version)
    status.active_training_job = name
    status.last_retrain = LastRetrain.model_validate(
        {"time": plan.now, "reason": trigger.reason, "source": trigger.source or None}
    )
    status.training_spec_hash = md.training_hash(work.spec)
    if any(t.reason in md.EXPLICIT for t in triggers):
        status.consecutive_not_promoted = 0  # a person asked: the futility breaker counts afresh
    if automatic:
        status.last_automatic_retrain = plan.now
    if request:
        status.handled_retrain_request = md.request_identity(request)  # this run also answers a pending request
    if any(t.reason == md.SCHEDULE for t in triggers):
        status.next_scheduled_retrain = md.next_schedule(work.spec, plan.now)
    for t in drift:
        _answer_drift(work, t, "Started", name, "", f"started {name}")
    plan.condition("RetrainSuppressed", "False", "Started", f"{trigger.reason} started version {version}")
    plan.count("retrains_triggered", reason=trigger.reason)
    detail = f": {trigger.detail}" if trigger.detail else ""
    plan.event("Normal", "RetrainStarted", f"training version {version} ({trigger.reason}{detail})")


def _suppressed(work: _Pass, triggers: Sequence[md.Trigger], decision: md.Arbitration) -> None:
    status, plan = work.status, work.plan
    trigger = triggers[0]
    suppression = decision.suppression or "Suppressed"
    if any(t.reason == md.SCHEDULE for t in triggers):
        status.next_scheduled_retrain = md.next_schedule(work.spec, plan.now)  # a missed schedule is skipped
    for t in triggers:
        if t.reason == md.DRIFT:
            _answer_drift(work, t, "Suppressed", None, suppression, decision.message)
    if plan.condition("RetrainSuppressed", "True", suppression, decision.message):
        plan.event("Normal", "RetrainSuppressed", decision.message)
        if suppression in md.SUPPRESSIONS:
            plan.count("retrains_suppressed", reason=trigger.reason, suppression=suppression)
    if suppression == md.COOLDOWN:
        plan.later(md.seconds_until(md.cooldown_ends(work.spec, status), plan.now))


def _answer_drift(
    work: _Pass,
    trigger: md.Trigger,
    result: Literal["Started", "Suppressed"],
    training_job: str | None,
    reason: str,
    message: str,
) -> None:
    answers = [a for a in work.status.drift_requests or [] if a.policy != trigger.source]
    answers.append(
        DriftRequestAnswer(
            policy=trigger.source,
            id=trigger.request,
            result=result,
            training_job=training_job,
            reason=reason or None,
            message=message or None,
            answered_at=work.plan.now,
        )
    )
    work.status.drift_requests = sorted(answers, key=lambda a: a.policy)


# ---------------------------------------------------------------- 3. serving
def _pinnable(record: ModelVersionRecord | None) -> bool:
    """Trained and validated: Candidate, Serving, Retired or RolledBack, with a model URI."""
    return record is not None and bool(record.model_uri) and record.state in md.TRAINED_STATES


def _apply_pin(work: _Pass) -> None:
    status, plan = work.status, work.plan
    pinned = work.spec.pinned_version
    degraded = get_condition(work.conditions, "Degraded")
    pin_was_unknown = degraded is not None and degraded.reason == "PinnedVersionUnknown"
    if not pinned:
        if pin_was_unknown:
            plan.condition("Degraded", "False", "PinCleared", "spec.pinnedVersion is empty")
        return
    record = work.record(pinned)
    if record is None or not _pinnable(record):
        serving = status.serving_version or "nothing"
        message = f"spec.pinnedVersion {pinned} is not a trained version in status.versions; {serving} keeps serving"
        plan.condition("Degraded", "True", "PinnedVersionUnknown", message, event="Warning")
        return
    if pin_was_unknown:
        plan.condition("Degraded", "False", "Pinned", f"serving pinned version {pinned}")
    rollout = status.rollout
    if pinned == status.serving_version and rollout is None:
        return
    if rollout is not None and rollout.version == pinned:
        if canary.is_canary(rollout) and rollout.stage == "Step":
            # Pinning the canary's own version is a person promoting it: the steps left are skipped.
            plan.event("Normal", "Pinned", f"canary of version {pinned} promoted at once: spec.pinnedVersion names it")
            _promote_canary(work, rollout)
        return
    if rollout is not None and pinned == status.serving_version:
        # A pin back to what serves cancels the rollout in progress.
        cancelled = work.record(rollout.version)
        if cancelled is not None and cancelled.state == "Candidate":
            cancelled.decision = PromotionDecision(
                result="Candidate", reason=f"spec.pinnedVersion {pinned} holds serving", compared_to=pinned
            )
        status.rollout = None
        plan.event("Normal", "Pinned", f"rollout of version {rollout.version} cancelled: pinned to version {pinned}")
        return
    if record.state == "RolledBack" and status.last_rolled_back == pinned:
        return  # it failed its rollout once: do not loop; change the pin to try again
    if record.state == "Candidate":
        record.decision = PromotionDecision(result="Pinned", reason="spec.pinnedVersion selects it")
    plan.event("Normal", "Pinned", f"rolling out pinned version {pinned}")
    _begin_rollout(work, pinned, may_canary=False)  # a person chose it: no canary


def _serving(work: _Pass) -> None:
    status, plan, observed = work.status, work.plan, work.observed
    _apply_pin(work)
    rollout = status.rollout
    if canary.is_canary(rollout):
        assert rollout is not None
        _canary(work, rollout)
    elif rollout is not None:
        step = md.rollout_step(
            rollout,
            work.spec,
            md.deployed_version(observed.deployment),
            md.deployment_health(observed.deployment),
            plan.now,
        )
        if step.action == md.COMPLETE:
            _complete_rollout(work, rollout)
        elif step.action == md.ROLL_BACK:
            message = (
                f"version {rollout.version} was not Available within {work.spec.rollout.progress_deadline};"
                f" rolled back to version {rollout.previous_version}"
            )
            _roll_back(work, rollout, "ProgressDeadlineExceeded", message)
        elif step.action == md.STUCK:
            _stuck(work, rollout)
        else:
            plan.later(step.seconds_left)
    _desired_children(work)


def _stuck(work: _Pass, rollout: RolloutStatus) -> None:
    work.plan.condition(
        "Degraded",
        "True",
        "RolloutStuck",
        f"version {rollout.version} is not Available after {work.spec.rollout.progress_deadline}"
        + ("" if rollout.previous_version else "; there is no previous version to roll back to"),
    )


def _desired_children(work: _Pass) -> None:
    """The Service, the serving Deployment, and a canary's Deployment while a canary steps."""
    status, plan, observed = work.status, work.plan, work.observed
    rollout = status.rollout
    stepping = canary.is_canary(rollout) and rollout is not None and rollout.stage == "Step"
    if stepping:
        assert rollout is not None
        target = rollout.previous_version or status.serving_version
    else:
        target = rollout.version if rollout is not None else status.serving_version
    route = canary.http_route(work.spec)
    if target is not None:
        service = md.desired_service(observed.ref, work.spec)
        plan.apply.append(service)
        status.url = _service_url(service)
        if route:
            for track in (canary.STABLE_TRACK, canary.CANARY_TRACK):
                plan.apply.append(md.desired_service(observed.ref, work.spec, track=track))
    kept_canary = canary.is_canary(rollout) and rollout is not None and rollout.canary_replicas
    if kept_canary:
        assert rollout is not None
        # Applied before the serving Deployment shrinks: capacity moves, it is never missing.
        plan.apply.append(
            md.desired_deployment(
                observed.ref,
                work.spec,
                rollout.version,
                _model_uri(work, rollout.version),
                replicas=rollout.canary_replicas,
                canary=True,
            )
        )
    elif observed.canary is not None and controlled_by(observed.canary, observed.ref.uid):
        plan.delete.append(ChildRef(DEPLOYMENTS, canary.canary_name(observed.ref.name)))
    if target is None:
        return  # nothing validated yet: no Deployment runs a model that does not exist
    replicas = rollout.stable_replicas if stepping and rollout is not None and not route else None
    lent = canary.max_unavailable(work.spec)
    plan.apply.append(
        md.desired_deployment(
            observed.ref,
            work.spec,
            target,
            _model_uri(work, target),
            replicas=replicas,
            max_unavailable=lent,
            track_stable=bool(route),
        )
    )
    if route and observed.route is not None:
        update = canary.weighted_route(observed.route, observed.ref.name, canary.route_weights(status.rollout))
        if update.body is not None:
            plan.update.append(update.body)


def _model_uri(work: _Pass, version: str) -> str:
    record = work.record(version)
    return (record.model_uri if record else None) or ""


# ---------------------------------------------------------------- 3b. canary
def _canary(work: _Pass, rollout: RolloutStatus) -> None:
    """One look at a canary: its step's replicas, its pause, its analysis; or its promotion."""
    step = canary.current_step(work.spec, rollout)
    if rollout.stage == "Step" and step is None:
        _promote_canary(work, rollout)  # the steps are done, or the spec no longer has them
    if rollout.stage == "Promote":
        _canary_promotion(work, rollout)
        return
    assert step is not None
    assert rollout.step is not None
    plan, spec, observed = work.plan, work.spec, work.observed
    total = spec.serving.replicas
    wanted = canary.canary_replicas(total, step.weight)
    health = md.deployment_health(observed.canary)
    ready = md.deployed_version(observed.canary) == rollout.version and health.replicas == wanted and health.rolled_out
    rollout.weight = step.weight
    rollout.canary_replicas = wanted
    route_waits = _route_waits(work, rollout)
    if canary.http_route(spec):
        rollout.stable_replicas = total  # the route's weights share the traffic: the stable version keeps all
    else:
        # Only pods of this version's template count (a Deployment being rolled to another
        # version still reports the old pods as available).
        serving_pods = health.available_replicas if md.deployed_version(observed.canary) == rollout.version else 0
        rollout.stable_replicas = canary.stable_replicas(total, wanted, min(serving_pods, health.updated_replicas))
    where = f"version {rollout.version}: canary step {rollout.step}/{rollout.steps} at {step.weight}%"
    shares = f"{wanted} canary, {rollout.stable_replicas} stable replica(s)"
    if rollout.pause_started_at is None:
        if not ready or route_waits:
            deadline = canary.step_deadline(spec, rollout)
            if deadline is not None and plan.now > deadline:
                why = "was not Available" if not ready else f"could not get its traffic ({route_waits})"
                message = (
                    f"version {rollout.version}'s canary {why} within {spec.rollout.progress_deadline}"
                    f" at step {rollout.step}; rolled back to version {rollout.previous_version}"
                )
                if spec.rollout.auto_rollback:
                    _roll_back(work, rollout, "ProgressDeadlineExceeded", message)
                else:
                    _stuck(work, rollout)
                return
            waiting = f"waiting for {shares} to be available" if not ready else route_waits
            work.progress = ("CanaryStep", f"{where}: {waiting}")
            plan.later(canary.seconds(deadline - plan.now) if deadline is not None else None)
            if ready:
                plan.later(ROUTE_RETRY_SECONDS)  # the route is not watched: look at it again
            return
        rollout.pause_started_at = plan.now
    ends = canary.pause_ends(step, rollout)
    assert ends is not None
    statuses = _read_analysis(work, rollout)
    final = plan.now > canary.analysis_deadline(spec, ends)
    verdict = canary.verdict(statuses, final=final) if spec.rollout.analysis else canary.StepVerdict("Passed", "")
    if verdict.result == "Failed":
        _roll_back(
            work,
            rollout,
            "AnalysisFailed",
            f"version {rollout.version}'s canary failed its analysis at step {rollout.step}: {verdict.message};"
            f" rolled back to version {rollout.previous_version}",
            statuses,
        )
        return
    if plan.now < ends:
        work.progress = ("CanaryStep", f"{where} ({shares}), paused until {format_time(ends)}")
        plan.later(canary.seconds(ends - plan.now))
        plan.later(canary.next_analysis_in(spec, rollout, plan.now))
        return
    if verdict.result == "Passed" and (not spec.rollout.analysis or _read_since(rollout, ends)):
        _next_step(work, rollout, verdict.message)
        return
    if verdict.result == "Passed":
        work.progress = ("CanaryStep", f"{where} ({shares}): the pause ended, reading the analysis")
        plan.later(0.0)
        return
    if final:
        _roll_back(
            work,
            rollout,
            "AnalysisNoData",
            f"version {rollout.version}'s canary had no conclusive analysis {spec.rollout.progress_deadline}"
            f" after the pause of step {rollout.step}: {verdict.message}; rolled back to version"
            f" {rollout.previous_version}",
            statuses,
        )
        return
    message = f"{where}: the pause ended, the analysis is inconclusive: {verdict.message}"
    if plan.condition("Progressing", "True", "AnalysisInconclusive", message):
        plan.event("Normal", "AnalysisInconclusive", message)
    work.progress = ("AnalysisInconclusive", message)
    plan.later(canary.seconds(canary.analysis_deadline(spec, ends) - plan.now))
    plan.later(canary.next_analysis_in(spec, rollout, plan.now))


def _route_waits(work: _Pass, rollout: RolloutStatus) -> str:
    """Why the HTTPRoute does not carry this step's weights yet ("" when it does, or there is none)."""
    route = canary.http_route(work.spec)
    observed = work.observed
    if not route:
        return ""
    if observed.route is None:
        return observed.route_problem or f"HTTPRoute {route} not found"
    update = canary.weighted_route(observed.route, observed.ref.name, canary.route_weights(rollout))
    if update.problem is not None:
        return update.problem
    return f"setting the weights of HTTPRoute {route}" if update.body is not None else ""


def _read_since(rollout: RolloutStatus, moment: datetime) -> bool:
    return rollout.last_analysis_time is not None and rollout.last_analysis_time >= moment


def _read_analysis(work: _Pass, rollout: RolloutStatus) -> list[DriftMetricStatus]:
    """Fold this pass's reading (if it belongs to this step) into the step's metric states."""
    reading, previous = work.observed.analysis, list(rollout.analysis or [])
    if reading is None or reading.version != rollout.version or reading.step != rollout.step:
        return previous
    if work.spec.rollout.analysis is None:
        return previous
    states = canary.analysis_states(work.spec, previous, reading)
    for state in states:
        if state.breached and not any(m.name == state.name and m.breached for m in previous):
            work.plan.event("Warning", "AnalysisMetricBreached", f"version {rollout.version}: {state.detail}")
    rollout.analysis = [metric_status(state) for state in states]
    rollout.last_analysis_time = reading.time
    return rollout.analysis


def _next_step(work: _Pass, rollout: RolloutStatus, evidence: str) -> None:
    steps = work.spec.rollout.steps or []
    assert rollout.step is not None
    passed = f"version {rollout.version}: canary step {rollout.step}/{rollout.steps} passed"
    passed += f" ({evidence})" if evidence else ""
    if rollout.step >= len(steps):
        work.plan.event("Normal", "CanaryPassed", passed)
        _promote_canary(work, rollout)
        _canary_promotion(work, rollout)
        return
    step = steps[rollout.step]
    rollout.step += 1
    rollout.steps = len(steps)
    rollout.weight = step.weight
    rollout.step_started_at = work.plan.now
    rollout.pause_started_at = rollout.last_analysis_time = rollout.analysis = None
    work.plan.event("Normal", "CanaryStep", f"{passed}; step {rollout.step}/{len(steps)} at {step.weight}%")
    _canary(work, rollout)


def _promote_canary(work: _Pass, rollout: RolloutStatus) -> None:
    """The steps are over (or a person skipped them): the serving Deployment rolls to the new
    version; the canary keeps its replicas until that is done."""
    rollout.stage = "Promote"
    rollout.step_started_at = work.plan.now
    rollout.pause_started_at = rollout.last_analysis_time = None
    rollout.stable_replicas = None


def _canary_promotion(work: _Pass, rollout: RolloutStatus) -> None:
    spec, plan, observed = work.spec, work.plan, work.observed
    deployed = md.deployed_version(observed.deployment)
    if deployed == rollout.version and md.deployment_health(observed.deployment).rolled_out:
        _complete_rollout(work, rollout)
        return
    deadline = canary.step_deadline(spec, rollout)
    if deadline is not None and plan.now > deadline:
        if spec.rollout.auto_rollback:
            message = (
                f"version {rollout.version} was not Available within {spec.rollout.progress_deadline} after its"
                f" canary; rolled back to version {rollout.previous_version}"
            )
            _roll_back(work, rollout, "ProgressDeadlineExceeded", message)
        else:
            _stuck(work, rollout)
        return
    work.progress = ("Promoting", f"version {rollout.version} passed its canary: the serving Deployment rolls to it")
    plan.later(canary.seconds(deadline - plan.now) if deadline is not None else None)


def _service_url(service: Mapping[str, Any]) -> str:
    """The Service's in-cluster URL (status.url): http://<name>.<namespace>.svc:<port>."""
    metadata, (port,) = service["metadata"], service["spec"]["ports"]
    return f"http://{metadata['name']}.{metadata['namespace']}.svc:{port['port']}"


def _complete_rollout(work: _Pass, rollout: RolloutStatus) -> None:
    status, plan = work.status, work.plan
    version = rollout.version
    previous = work.record(status.serving_version)
    if previous is not None and previous.version != version:
        previous.state = "Retired"
    record = work.record(version)
    if record is not None:
        record.state = "Serving"
        record.promoted_at = plan.now
        status.serving_model_uri = record.model_uri
    status.serving_version = version
    status.rollout = None
    plan.condition("Degraded", "False", "RolloutSucceeded", f"version {version} serves")
    plan.event("Normal", "RolloutSucceeded", f"version {version} is serving")
    plan.count("rollouts", result="Succeeded")


def _roll_back(
    work: _Pass,
    rollout: RolloutStatus,
    reason: RollbackReason,
    message: str,
    analysis: Sequence[DriftMetricStatus] = (),
) -> None:
    status, plan = work.status, work.plan
    version = rollout.version
    record = work.record(version)
    if record is not None:
        record.state = "RolledBack"
        record.rollback = RollbackRecord(
            time=plan.now, reason=reason, message=shorten(message, LONG_TEXT), analysis=list(analysis) or None
        )
    status.last_rolled_back = version
    status.rollout = None
    degraded = reason if reason != "ProgressDeadlineExceeded" else "RolledBack"
    plan.condition("Degraded", "True", degraded, message)
    plan.event("Warning", degraded, message)
    plan.count("rollouts", result="RolledBack")
    plan.count("rollbacks", reason=reason)


# ---------------------------------------------------------------- 4. history
def _history(work: _Pass) -> None:
    status, spec = work.status, work.spec
    rollout = status.rollout
    protected = {
        v
        for v in (
            status.serving_version,
            spec.pinned_version,
            rollout.version if rollout else None,
            rollout.previous_version if rollout else None,
        )
        if v
    }
    runs = list(work.observed.runs.values())
    for name in md.history_to_delete(runs, spec.retraining.history_limit, protected):
        work.plan.delete.append(ChildRef(TRAINING_JOBS, name))
        work.versions[:] = [r for r in work.versions if r.training_job != name]


# ---------------------------------------------------------------- 5. summary
def _summarise(work: _Pass) -> None:
    status, plan = work.status, work.plan
    conditions = work.conditions
    serving = status.serving_version
    rollout = status.rollout
    active = status.active_training_job
    health = md.deployment_health(work.observed.deployment)
    # A canary's pods serve too: the counts are of both Deployments while it runs.
    extra = md.deployment_health(work.observed.canary) if canary.is_canary(rollout) else md.deployment_health(None)
    status.replicas = health.replicas + extra.replicas
    status.ready_replicas = health.ready_replicas + extra.ready_replicas
    status.ready = f"{status.ready_replicas}/{status.replicas}"
    if serving and health.available:
        plan.condition("Ready", "True", "Serving", f"version {serving} is serving and available")
    elif serving:
        plan.condition("Ready", "False", "Unavailable", f"version {serving}'s Deployment is not available")
    else:
        candidates = [r.version for r in work.versions if r.state == "Candidate"]
        if candidates and not active:
            plan.condition(
                "Ready",
                "False",
                "AwaitingPromotion",
                f"version {candidates[-1]} is a Candidate: set spec.pinnedVersion to serve it",
            )
        else:
            plan.condition("Ready", "False", "NoVersion", "no validated version serves yet")
    if rollout is not None:
        reason, message = work.progress or ("RollingOut", f"rolling out version {rollout.version}")
        plan.condition("Progressing", "True", reason, message)
    else:
        plan.condition("Progressing", "False", "Stable", "no rollout in progress")
    if active:
        record = next((r for r in work.versions if r.training_job == active), None)
        reason = record.trigger.reason if record is not None and record.trigger is not None else "Training"
        plan.condition("Training", "True", reason, f"training {active}")
    else:
        plan.condition("Training", "False", "Idle", "no training running")
    for type_ in ("Degraded", "RetrainSuppressed"):
        if get_condition(conditions, type_) is None:
            plan.condition(type_, "False", "AsExpected", "")
    status.phase = phase_of(status)
    status.automatic_retrains = md.automatic_retrains(work.spec, status)
    status.observed_generation = work.observed.ref.generation


def phase_of(status: ModelDeploymentStatus) -> DeploymentPhase:
    """Rolling, Degraded, Serving, Training (nothing serves yet) or Failed (nothing serves
    and the last run failed)."""
    degraded = get_condition(status.conditions, "Degraded")
    is_degraded = degraded is not None and degraded.status == "True"
    if is_degraded and degraded is not None and degraded.reason in CHILD_PROBLEMS:
        return "Degraded"  # the serving children cannot be applied: no rollout can progress
    if status.rollout is not None:
        return "Rolling"
    if is_degraded:
        return "Degraded"
    if status.serving_version:
        return "Serving"
    versions = status.versions or []
    last_state = versions[-1].state if versions else None
    if status.active_training_job or last_state not in ("Failed", "Rejected"):
        return "Training"
    return "Failed"


# ---------------------------------------------------------------- after execution
def record_child_outcomes(plan: Plan[ModelDeploymentStatus], problems: Sequence[tuple[str, str]]) -> None:
    """Record children that could not be converged, as ``(reason, message)`` pairs
    (``NameConflict``: a same-named object Perennial did not create; ``ChildRefused``: the
    API server refused what the spec asks for). What serves keeps serving; fixing the
    spec (or removing the foreign object) recovers on the next pass."""
    if problems:
        reason = problems[0][0]
        message = "; ".join(message for _, message in problems)
        plan.condition("Degraded", "True", reason, message, event="Warning")
        if any(problem == NAME_CONFLICT for problem, _ in problems):
            # Nothing Perennial watches changes when the other object goes away: look again.
            plan.later(NAME_CONFLICT_RETRY_SECONDS)
    else:
        degraded = get_condition(plan.conditions, "Degraded")
        if degraded is not None and degraded.status == "True" and degraded.reason in CHILD_PROBLEMS:
            plan.condition("Degraded", "False", "ChildrenApplied", "the Deployment and Service are applied")
    plan.status.phase = phase_of(plan.status)
