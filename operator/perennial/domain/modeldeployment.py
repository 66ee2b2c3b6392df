"""ModelDeployment logic: triggers and their arbitration, versions, promotion, rollout, history.

Pure functions of (ModelDeployment, its TrainingJobs and Deployment, now). The controller
feeds them what the watches saw and applies what they return; the single code path that
starts a training (``arbitrate`` then ``training_job_for``) lives here, so the Initial,
SpecChange, Schedule, Manual and Drift triggers all obey the same rules.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from perennial.api.base import API_VERSION, LONG_TEXT, TEXT
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import (
    RETRAIN_REQUEST_ANNOTATION,
    AutomaticRetrains,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersionRecord,
    PromotionDecision,
    RequireImprovement,
    RolloutStatus,
)
from perennial.api.trainingjob import Champion, DatasetRecord
from perennial.api.trainingjob import Trigger as TriggerRecord
from perennial.domain import cron
from perennial.domain.canary import CANARY_TRACK, STABLE_TRACK, TRACK_LABEL, canary_name
from perennial.domain.labels import MANAGED_BY_LABEL, MODEL_LABEL, VERSION_LABEL, OwnerRef, managed_labels
from perennial.domain.text import shorten
from perennial.domain.timeutil import format_time, parse_time
from perennial.domain.training import TERMINAL_PHASES, resolve_dataset

# Trigger reasons, most important first: one run satisfies every pending trigger, and
# the most important names it.
INITIAL, MANUAL, SPEC_CHANGE, DRIFT, SCHEDULE = "Initial", "Manual", "SpecChange", "Drift", "Schedule"
TRIGGER_PRIORITY = (INITIAL, MANUAL, SPEC_CHANGE, DRIFT, SCHEDULE)
# Manual requests and spec changes are a person's explicit wish: they bypass the cooldown
# and the circuit breaker; suspend stops only automatic triggers.
EXPLICIT = frozenset({MANUAL, SPEC_CHANGE})
AUTOMATIC = frozenset({INITIAL, SPEC_CHANGE, DRIFT, SCHEDULE})

# Suppression reasons (condition RetrainSuppressed, Events, metrics).
COOLDOWN, TRAINING_IN_PROGRESS, CIRCUIT_OPEN, SUSPENDED = "Cooldown", "TrainingInProgress", "CircuitOpen", "Suspended"
NO_IMPROVEMENT = "NoImprovement"
SUPPRESSIONS = (COOLDOWN, TRAINING_IN_PROGRESS, CIRCUIT_OPEN, NO_IMPROVEMENT, SUSPENDED)
# The triggers the cooldown and the futility breaker hold back: retrains nobody asked for.
UNATTENDED = frozenset({DRIFT, SCHEDULE})
# What a trainer reports as the champion's score on the challenger's holdout.
CHAMPION_METRIC_PREFIX = "champion_"

TRAINED_STATES = ("Candidate", "Serving", "Retired", "RolledBack")


@dataclass(frozen=True)
class ModelRef(OwnerRef):
    kind: ClassVar[str] = "ModelDeployment"


@dataclass(frozen=True)
class Trigger:
    reason: str
    source: str = ""
    detail: str = ""
    request: str = ""
    """For Drift: the id of the DriftPolicy's retrain request this trigger answers."""

    def to_api(self) -> dict[str, str]:
        # A request annotation may hold anything up to 256 KiB: lineage keeps a bounded copy.
        result = {"reason": self.reason}
        if self.source:
            result["source"] = shorten(self.source, TEXT)
        if self.detail:
            result["detail"] = shorten(self.detail, LONG_TEXT)
        return result

    def record(self) -> TriggerRecord:
        return TriggerRecord.model_validate(self.to_api())


@dataclass(frozen=True)
class DriftRequest:
    """A DriftPolicy's pending retrain request (its status.retrainRequest)."""

    policy: str
    id: str
    detail: str = ""


@dataclass(frozen=True)
class Arbitration:
    run: bool
    suppression: str | None = None
    message: str = ""


def training_hash(spec: ModelDeploymentSpec) -> str:
    """Identity of spec.training: a change (new dataset version, new image) is a SpecChange."""
    canonical = json.dumps(spec.training.to_api(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- triggers
def next_schedule(spec: ModelDeploymentSpec, after: datetime) -> datetime | None:
    if not spec.retraining.schedule:
        return None
    return cron.parse(spec.retraining.schedule).next_after(after)


def schedule_fires_at(spec: ModelDeploymentSpec, moment_text: str | None) -> bool:
    """Whether ``moment_text`` is a firing time of the current schedule (false once it changes)."""
    moment = parse_time(moment_text)
    if moment is None or not spec.retraining.schedule:
        return False
    return cron.parse(spec.retraining.schedule).next_after(moment - timedelta(minutes=1)) == moment


def unanswered_drift_requests(status: ModelDeploymentStatus, requests: Sequence[DriftRequest]) -> list[DriftRequest]:
    """The requests whose id this model has not answered yet (one answer per policy is kept)."""
    answered = {(a.policy, a.id) for a in status.drift_requests or []}
    return [r for r in requests if (r.policy, r.id) not in answered]


def pending_triggers(
    spec: ModelDeploymentSpec,
    annotations: Mapping[str, str],
    status: ModelDeploymentStatus,
    now: datetime,
    drift_requests: Sequence[DriftRequest] = (),
) -> list[Trigger]:
    """Every trigger waiting for an answer, most important first (one run answers them all)."""
    triggers: list[Trigger] = []
    if not status.latest_version:
        triggers.append(Trigger(INITIAL, "", "no version yet"))
    request = annotations.get(RETRAIN_REQUEST_ANNOTATION)
    if request and request_identity(request) != status.handled_retrain_request:
        triggers.append(Trigger(MANUAL, request, f"{RETRAIN_REQUEST_ANNOTATION}={request}"))
    recorded = status.training_spec_hash
    if spec.retraining.on_spec_change and recorded and recorded != training_hash(spec):
        triggers.append(Trigger(SPEC_CHANGE, "", "spec.training changed"))
    for drift in unanswered_drift_requests(status, drift_requests):
        triggers.append(Trigger(DRIFT, drift.policy, drift.detail, request=drift.id))
    due = status.next_scheduled_retrain
    if spec.retraining.schedule and due is not None and due <= now:
        triggers.append(Trigger(SCHEDULE, spec.retraining.schedule, f"scheduled for {format_time(due)}"))
    return sorted(triggers, key=lambda t: TRIGGER_PRIORITY.index(t.reason))


def circuit_open(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    return (status.consecutive_failures or 0) >= spec.retraining.max_consecutive_failures


def futile(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """The futility breaker: the last maxConsecutiveNotPromoted automatic runs were all validated
    and none beat the champion, so another one like them is not worth the compute."""
    return (status.consecutive_not_promoted or 0) >= spec.retraining.max_consecutive_not_promoted


def not_promoted_streak(status: ModelDeploymentStatus) -> list[ModelVersionRecord]:
    """The automatic runs counted by ``consecutive_not_promoted``, oldest first."""
    count = status.consecutive_not_promoted or 0
    streak = [
        record
        for record in status.versions or []
        if record.decision is not None
        and record.decision.result == "NotPromoted"
        and record.state in TRAINED_STATES
        and record.trigger is not None
        and record.trigger.reason in UNATTENDED
    ]
    return streak[-count:] if count else []


def automatic_retrains(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> AutomaticRetrains:
    """Whether Drift and Schedule triggers may start a training (the printer column): the
    suspension or breaker that stops them, else Active."""
    if spec.suspend:
        return "Suspended"
    if circuit_open(spec, status):
        return "CircuitOpen"
    if futile(spec, status):
        return "NoImprovement"
    return "Active"


def arbitrate(
    trigger: Trigger,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    now: datetime,
    *,
    training_active: bool,
) -> Arbitration:
    """Whether ``trigger`` may start a training now: the one rule book for every trigger."""
    if training_active:
        return Arbitration(False, TRAINING_IN_PROGRESS, f"{trigger.reason}: a training is already running")
    if trigger.reason == MANUAL:
        return Arbitration(True)
    if spec.suspend and trigger.reason in AUTOMATIC:
        return Arbitration(False, SUSPENDED, f"{trigger.reason}: spec.suspend is true")
    if trigger.reason in EXPLICIT or trigger.reason == INITIAL:
        return Arbitration(True)
    if circuit_open(spec, status):
        failures = status.consecutive_failures or 0
        return Arbitration(
            False,
            CIRCUIT_OPEN,
            f"{trigger.reason}: {failures} runs in a row failed or were rejected; automatic retrains stop"
            " until a manual request or a spec change succeeds",
        )
    if trigger.reason in UNATTENDED and futile(spec, status):
        streak = not_promoted_streak(status)
        runs = ", ".join(r.training_job or f"version {r.version}" for r in streak) or "the last runs"
        champion = f" than serving version {status.serving_version}" if status.serving_version else ""
        return Arbitration(
            False,
            NO_IMPROVEMENT,
            f"{trigger.reason}: {len(streak) or status.consecutive_not_promoted} automatic runs in a row ({runs})"
            f" were validated but not better{champion}; automatic retrains stop until a manual request"
            " or a spec change",
        )
    ready_at = cooldown_ends(spec, status)
    if ready_at is not None and now < ready_at:
        return Arbitration(False, COOLDOWN, f"{trigger.reason}: in cooldown until {format_time(ready_at)}")
    return Arbitration(True)


# ---------------------------------------------------------------- versions and runs
# What a TrainingJob says about the trigger it answered, written when the ModelDeployment
# creates it: a pass that crashed between creating the TrainingJob and recording it in
# status restores its bookkeeping from here, so the trigger is neither lost nor repeated.
TRIGGERED_AT_ANNOTATION = "perennial.dev/triggered-at"
SPEC_HASH_ANNOTATION = "perennial.dev/training-spec-hash"
HANDLED_REQUEST_ANNOTATION = "perennial.dev/handled-retrain-request"
DRIFT_REQUESTS_ANNOTATION = "perennial.dev/drift-requests"  # JSON {policy: request id}
STARTS_COOLDOWN_ANNOTATION = "perennial.dev/starts-cooldown"  # "true": it answered a Drift or Schedule trigger


def request_identity(request: str) -> str:
    """How a retrain request is recorded as handled (status, the TrainingJob's annotation).

    The value itself, or for one longer than ``TEXT`` characters its SHA-256: an annotation
    may hold up to 256 KiB, and a copy of it must still fit beside the TrainingJob's other
    annotations. Either way the same request is never acted on twice.
    """
    if len(request) <= TEXT:
        return request
    return "sha256:" + hashlib.sha256(request.encode()).hexdigest()


@dataclass(frozen=True)
class Run:
    """What the operator knows of one TrainingJob this ModelDeployment owns."""

    name: str
    version: str
    phase: str | None
    metrics: Mapping[str, float]
    model_uri: str | None
    reason: str = ""
    trigger: Mapping[str, Any] | None = None
    image: str | None = None
    dataset: Mapping[str, Any] | None = None
    hyperparameters: Mapping[str, str] | None = None
    created_at: datetime | None = None
    annotations: Mapping[str, str] | None = None
    champion: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES


def run_from(body: Mapping[str, Any]) -> Run:
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    metadata = body["metadata"]
    succeeded: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})
    return Run(
        name=metadata["name"],
        version=str(spec.get("version") or metadata.get("labels", {}).get(VERSION_LABEL, "")),
        phase=status.get("phase"),
        metrics=dict(status.get("metrics") or {}),
        model_uri=status.get("modelUri"),
        reason=str(succeeded.get("reason") or ""),
        trigger=spec.get("trigger"),
        image=spec.get("image"),
        dataset=spec.get("dataset"),
        hyperparameters=spec.get("hyperparameters"),
        created_at=parse_time(metadata.get("creationTimestamp")),
        annotations=dict(metadata.get("annotations") or {}),
        champion=spec.get("champion"),
    )


def own_runs(bodies: Sequence[Mapping[str, Any]], ref: ModelRef) -> dict[str, Run]:
    """This model's runs by version: TrainingJobs in its namespace that it controls.

    A TrainingJob elsewhere, or one that merely names the model as a non-controlling owner,
    is never a version of it.
    """
    runs: dict[str, Run] = {}
    for body in bodies:
        metadata = body.get("metadata", {})
        controlled = any(
            o.get("uid") == ref.uid and o.get("controller") and o.get("kind") == ref.kind
            for o in metadata.get("ownerReferences") or []
        )
        if controlled and metadata.get("namespace") == ref.namespace:
            run = run_from(body)
            if run.version.isdigit():
                runs[run.version] = run
    return runs


def training_job_name(model: str, version: int | str) -> str:
    return f"{model}-v{version}"


def next_version(status: ModelDeploymentStatus, known_versions: Iterable[str]) -> int:
    """One more than any version ever allocated (status or an existing TrainingJob)."""
    numbers = [int(v) for v in known_versions if str(v).isdigit()]
    latest = status.latest_version or "0"
    numbers.append(int(latest) if latest.isdigit() else 0)
    numbers += [int(r.version) for r in status.versions or [] if r.version.isdigit()]
    return max(numbers) + 1


def champion_of(status: ModelDeploymentStatus) -> Champion | None:
    """The version serving now: the model a new run must beat, whose URI its trainer gets."""
    version = status.serving_version
    if not version:
        return None
    record = next((r for r in status.versions or [] if r.version == version), None)
    uri = (record.model_uri if record is not None else None) or status.serving_model_uri
    return Champion(version=version, model_uri=uri) if uri else None


def training_job_for(
    ref: ModelRef,
    spec: ModelDeploymentSpec,
    version: int,
    trigger: Trigger,
    bookkeeping: Mapping[str, str],
    *,
    champion: Champion | None = None,
) -> dict[str, Any]:
    """The TrainingJob for one version: the template plus identity, the trigger (lineage) and
    the bookkeeping its trigger consumed (annotations, see ``TRIGGERED_AT_ANNOTATION``).

    The dataset is resolved here, once, against the trigger time the bookkeeping records
    (``TRIGGERED_AT_ANNOTATION``): the TrainingJob carries the resolved values, so its trainer,
    its lineage and a pass that adopts it after a crash all read the same ones. ``champion`` is
    the version serving now (``champion_of``), if any."""
    triggered_at = parse_time(bookkeeping.get(TRIGGERED_AT_ANNOTATION))
    if triggered_at is None:
        raise ValueError(f"the bookkeeping of a new TrainingJob must record {TRIGGERED_AT_ANNOTATION}")
    training = spec.training.to_api()
    dataset = resolve_dataset(
        spec.training.dataset, model=ref.name, version=str(version), namespace=ref.namespace, trigger_time=triggered_at
    )
    if dataset is not None:
        training["dataset"] = dataset.to_api()
    training.update({"model": ref.name, "version": str(version), "trigger": trigger.to_api()})
    if champion is not None:
        training["champion"] = champion.to_api()
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": training_job_name(ref.name, version),
            "namespace": ref.namespace,
            "labels": managed_labels(model=ref.name, version=str(version)),
            "annotations": dict(bookkeeping),
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": training,
    }


def version_record(training_job: Mapping[str, Any]) -> ModelVersionRecord:
    """The lineage of the run ``training_job_for`` just made, read back from that TrainingJob
    the way ``adopted_record`` reads it after a crash: both record the same resolved dataset,
    champion, trigger and trigger time."""
    return adopted_record(run_from(training_job))


def adopted_record(run: Run) -> ModelVersionRecord:
    """The lineage of a run found without a record (created by a pass that crashed before writing status)."""
    triggered_at = parse_time((run.annotations or {}).get(TRIGGERED_AT_ANNOTATION)) or run.created_at
    return ModelVersionRecord(
        version=run.version,
        training_job=run.name,
        state="Training",
        image=run.image,
        trigger=TriggerRecord.model_validate(run.trigger) if run.trigger else TriggerRecord(reason=INITIAL),
        created_at=triggered_at,
        dataset=DatasetRecord.model_validate(run.dataset) if run.dataset else None,
        hyperparameters=dict(run.hyperparameters) if run.hyperparameters else None,
        champion=Champion.model_validate(run.champion) if run.champion else None,
    )


# ---------------------------------------------------------------- promotion
@dataclass(frozen=True)
class Decision:
    result: str  # Promoted | Candidate | NotPromoted
    reason: str
    compared_to: str | None = None

    def record(self) -> PromotionDecision:
        return PromotionDecision.model_validate(
            {"result": self.result, "reason": self.reason, "comparedTo": self.compared_to}
        )


def promotion_decision(
    spec: ModelDeploymentSpec,
    challenger: Mapping[str, float],
    champion: ModelVersionRecord | None,
    scored: str | None = None,
) -> Decision:
    """Whether a validated version should serve: ``requireImprovement`` against the serving version.

    ``scored``: the version the challenger's trainer was given as the champion (its
    ``champion_<metric>`` is that version's score, so it counts only if that one still serves)."""
    requirement = spec.promotion.require_improvement
    compared_to = champion.version if champion else None
    evidence = "validated"
    if requirement is not None and champion is not None:
        comparison = improvement(requirement, challenger, champion, scored)
        if not comparison.better:
            return Decision("NotPromoted", comparison.evidence, compared_to)
        evidence = comparison.evidence
    elif champion is None:
        evidence = "validated; no version serving yet"
    if spec.promotion.policy == "Manual":
        return Decision("Candidate", f"{evidence}; set spec.pinnedVersion to promote (policy Manual)", compared_to)
    return Decision("Promoted", evidence, compared_to)


@dataclass(frozen=True)
class Comparison:
    better: bool
    evidence: str  # the numbers compared, the direction and where the champion's number comes from


def improvement(
    requirement: RequireImprovement,
    challenger: Mapping[str, float],
    champion: ModelVersionRecord,
    scored: str | None,
) -> Comparison:
    """The challenger against the champion on ``requirement.metric``, in the goal's direction.

    Like for like when the trainer scored this champion on the challenger's holdout
    (``champion_<metric>``); else against the number the champion's own run recorded."""
    metric, delta = requirement.metric, requirement.min_delta
    reported = CHAMPION_METRIC_PREFIX + metric
    ours = challenger.get(metric)
    if ours is None:
        return Comparison(False, f"{metric} missing from the candidate's metrics")
    same_holdout = challenger.get(reported)
    if same_holdout is not None and scored == champion.version:
        theirs, basis = same_holdout, f"both on this run's holdout: {reported}"
    else:
        recorded = (champion.metrics or {}).get(metric)
        if recorded is None:
            return Comparison(True, f"serving version has no {metric}: promoted on validation")
        if same_holdout is None:
            why = f"no {reported} reported"
        else:
            given = f"version {scored}" if scored else "no champion"
            why = f"{reported} ignored: the run was given {given} to score, version {champion.version} serves"
        theirs, basis = recorded, f"champion's number from its own run: {why}"
    if requirement.goal == "Minimize":
        bound, relation, worse = theirs - delta, "<=", ">"
        better = ours <= bound
    else:
        bound, relation, worse = theirs + delta, ">=", "<"
        better = ours >= bound
    # A tolerance, so 0.95 vs 0.93 + 0.02 (= 0.9500000000000001) counts as enough.
    better = better or math.isclose(ours, bound, rel_tol=1e-9, abs_tol=1e-12)
    sign = "-" if requirement.goal == "Minimize" else "+"
    text = f"{metric} {ours:g} {relation if better else worse} champion {theirs:g} {sign} minDelta {delta:g}"
    goal = "Minimize; " if requirement.goal == "Minimize" else ""
    return Comparison(better, f"{text} ({goal}{basis})")


# ---------------------------------------------------------------- serving
def selector_labels(ref: ModelRef) -> dict[str, str]:
    return {MANAGED_BY_LABEL: "perennial", MODEL_LABEL: ref.name}


def desired_deployment(
    ref: ModelRef,
    spec: ModelDeploymentSpec,
    version: str,
    model_uri: str,
    *,
    replicas: int | None = None,
    canary: bool = False,
    max_unavailable: int = 0,
    track_stable: bool = False,
) -> dict[str, Any]:
    """The serving Deployment (named after the model) running ``version``, or with ``canary``
    a canary's (``<model>-canary``, its pods labelled track=canary); ``replicas`` overrides
    serving.replicas (a canary's share). ``max_unavailable``: replicas the serving Deployment
    may lend to a canary, whose pods stand in for them (``canary.max_unavailable``);
    otherwise none may be unavailable during a rollout."""
    serving = spec.serving
    labels = managed_labels(model=ref.name, version=version)
    selector = selector_labels(ref)
    if canary:
        labels[TRACK_LABEL] = selector[TRACK_LABEL] = CANARY_TRACK
    elif track_stable:
        labels[TRACK_LABEL] = STABLE_TRACK  # the pods only: the selector of a Deployment is immutable
    container: dict[str, Any] = {
        "name": "server",
        "image": serving.image,
        "ports": [{"name": "http", "containerPort": serving.port}],
        "env": [{"name": serving.model_uri_env, "value": model_uri}] + [e.to_api() for e in serving.env or []],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    optional = {
        "resources": serving.resources.to_api() if serving.resources else None,
        "volumeMounts": [m.to_api() for m in serving.volume_mounts] if serving.volume_mounts else None,
        "readinessProbe": serving.readiness_probe.to_api() if serving.readiness_probe else None,
        "livenessProbe": serving.liveness_probe.to_api() if serving.liveness_probe else None,
    }
    container.update({k: v for k, v in optional.items() if v})
    pod: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if serving.service_account_name:
        pod["serviceAccountName"] = serving.service_account_name
    else:
        pod["automountServiceAccountToken"] = False
    optional_pod = {
        "nodeSelector": serving.node_selector,
        "tolerations": [t.to_api() for t in serving.tolerations] if serving.tolerations else None,
        "imagePullSecrets": [s.to_api() for s in serving.image_pull_secrets] if serving.image_pull_secrets else None,
        "volumes": [v.to_api() for v in serving.volumes] if serving.volumes else None,
    }
    pod.update({k: v for k, v in optional_pod.items() if v})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(ref.name) if canary else ref.name,
            "namespace": ref.namespace,
            "labels": labels,
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": {
            # With externalScaling the replicas are an HPA's (or a person's): not applied.
            **({} if serving.external_scaling else {"replicas": serving.replicas if replicas is None else replicas}),
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": "25%"},
            },
            "progressDeadlineSeconds": int(parse_duration(spec.rollout.progress_deadline).total_seconds()) or 1,
            "template": {
                "metadata": {
                    "labels": {**(serving.pod_labels or {}), **labels},
                    "annotations": dict(serving.pod_annotations or {}),
                },
                "spec": pod,
            },
        },
    }


def desired_service(ref: ModelRef, spec: ModelDeploymentSpec, *, track: str | None = None) -> dict[str, Any]:
    """The model's Service (every serving pod), or with ``track`` the Service of one track
    (``<name>-stable`` or ``<name>-canary``: an HTTPRoute's backends)."""
    selector = selector_labels(ref)
    if track is not None:
        selector[TRACK_LABEL] = track
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{ref.name}-{track}" if track else ref.name,
            "namespace": ref.namespace,
            "labels": managed_labels(model=ref.name, version=None),
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": spec.serving.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def deployed_version(deployment: Mapping[str, Any] | None) -> str | None:
    if deployment is None:
        return None
    labels = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    version = labels.get(VERSION_LABEL)
    return str(version) if version else None


@dataclass(frozen=True)
class DeploymentHealth:
    replicas: int
    ready_replicas: int
    available: bool  # Available condition True
    rolled_out: bool  # every replica runs the current template and is available
    available_replicas: int = 0
    updated_replicas: int = 0


def deployment_health(deployment: Mapping[str, Any] | None) -> DeploymentHealth:
    if deployment is None:
        return DeploymentHealth(0, 0, False, False, 0, 0)
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    observed = int(status.get("observedGeneration", -1))
    updated = int(status.get("updatedReplicas", 0))
    available_replicas = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    available = any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or [])
    rolled_out = observed >= generation and updated >= desired and available_replicas >= desired and total <= desired
    return DeploymentHealth(
        desired, int(status.get("readyReplicas", 0)), available, rolled_out, available_replicas, updated
    )


def rollout_overdue(rollout: RolloutStatus, spec: ModelDeploymentSpec, now: datetime) -> bool:
    started = rollout.started_at
    return started is not None and now - started > parse_duration(spec.rollout.progress_deadline)


def rollout_seconds_left(rollout: RolloutStatus, spec: ModelDeploymentSpec, now: datetime) -> float | None:
    started = rollout.started_at
    if started is None:
        return None
    left = started + parse_duration(spec.rollout.progress_deadline) - now
    return max(0.0, left.total_seconds())


COMPLETE, ROLL_BACK, STUCK, WAIT = "Complete", "RollBack", "Stuck", "Wait"


@dataclass(frozen=True)
class RolloutStep:
    action: str  # Complete | RollBack | Stuck | Wait
    seconds_left: float | None = None


def rollout_step(
    rollout: RolloutStatus,
    spec: ModelDeploymentSpec,
    deployed: str | None,
    health: DeploymentHealth,
    now: datetime,
) -> RolloutStep:
    """The rollout state machine: done once the new version runs everywhere and is available;
    past ``progressDeadline`` it rolls back (with ``autoRollback`` and a previous version) or is
    stuck; otherwise it waits, and says how long until the deadline."""
    if deployed == rollout.version and health.rolled_out:
        return RolloutStep(COMPLETE)
    if rollout_overdue(rollout, spec, now):
        if spec.rollout.auto_rollback and rollout.previous_version:
            return RolloutStep(ROLL_BACK)
        return RolloutStep(STUCK)
    return RolloutStep(WAIT, rollout_seconds_left(rollout, spec, now))


# ---------------------------------------------------------------- history
def history_to_delete(runs: Sequence[Run], limit: int, protected_versions: set[str]) -> list[str]:
    """Finished TrainingJobs beyond the newest ``limit``; serving, pinned and rolling versions are never cut."""
    finished = sorted(
        (r for r in runs if r.finished and r.version not in protected_versions and r.version.isdigit()),
        key=lambda r: int(r.version),
        reverse=True,
    )
    return [r.name for r in finished[limit:]]


def seconds_until(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def earliest(*delays: float | None) -> float | None:
    present = [d for d in delays if d is not None]
    return min(present) if present else None


def cooldown_ends(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> datetime | None:
    """When the cooldown after the last automatic (Drift, Schedule) retrain ends; Initial,
    Manual and SpecChange runs do not start it (api.md)."""
    last = status.last_automatic_retrain
    return last + parse_duration(spec.retraining.cooldown) if last else None
