"""TrainingJob logic: the desired Job (and headless Service), and the plan of one reconcile.

Pure functions of what was observed (the TrainingJob, its Job and pods, now): no I/O, no
kopf. ``plan_trainingjob`` decides everything a reconcile does; the controller executes
the plan and hands back what the API server answered (``record_child_outcome``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from pydantic import ValidationError

from perennial.api.base import Condition
from perennial.api.durations import format_duration, parse_duration
from perennial.api.trainingjob import TrainingJobSpec, TrainingJobStatus, TrainingPhase, ValidationRule
from perennial.domain.children import controlled_by
from perennial.domain.labels import MANAGED_BY, OwnerRef, managed_labels
from perennial.domain.plan import Plan
from perennial.domain.timeutil import parse_time, truncate

TRAINER_CONTAINER = "trainer"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MASTER_PORT = 29500
TRAINING_JOB_LABEL = "perennial.dev/training-job"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# Reasons (api.md); the Job controller's own reasons (BackoffLimitExceeded,
# DeadlineExceeded, ...) pass through unchanged.
JOB_DELETED = "JobDeleted"
JOB_CONFLICT = "JobConflict"
JOB_REFUSED = "JobRefused"
INVALID_SPEC = "InvalidSpec"
METRIC_BELOW_MIN = "MetricBelowMin"
METRIC_ABOVE_MAX = "MetricAboveMax"
METRICS_MISSING = "MetricsMissing"
INVALID_TERMINATION_MESSAGE = "InvalidTerminationMessage"

TERMINAL_PHASES = ("Succeeded", "Failed", "Rejected")
# A Job of the same name that is not ours: look again this often, so the run starts soon
# after its owner deletes it (a foreign Job without our labels sends us no watch events).
CONFLICT_RETRY_SECONDS = 15.0
# The counter a created Job increments (perennial.adapters.metrics.COUNTERS).
RUNS_STARTED = "training_runs_started"


@dataclass(frozen=True)
class TrainingJobRef(OwnerRef):
    kind: ClassVar[str] = "TrainingJob"


def version_of(ref: TrainingJobRef, spec: TrainingJobSpec) -> str:
    return spec.version or ref.name


def resolve_model_uri(template: str, *, model: str, version: str, namespace: str) -> str:
    return template.replace("{model}", model).replace("{version}", version).replace("{namespace}", namespace)


def model_uri(ref: TrainingJobRef, spec: TrainingJobSpec) -> str:
    return resolve_model_uri(
        spec.output.model_uri, model=spec.model or "", version=version_of(ref, spec), namespace=ref.namespace
    )


def child_labels(ref: TrainingJobRef, spec: TrainingJobSpec) -> dict[str, str]:
    labels = managed_labels(model=spec.model, version=version_of(ref, spec))
    labels[TRAINING_JOB_LABEL] = ref.name
    return labels


def headless_service_name(ref: TrainingJobRef) -> str:
    return ref.name


def master_address(ref: TrainingJobRef) -> str:
    # Indexed Job pods are named <job>-<index> with hostname <job>-<index>; with
    # `subdomain` set to the headless Service, rank 0 resolves at this stable name.
    return f"{ref.name}-0.{headless_service_name(ref)}.{ref.namespace}.svc"


def _perennial_env(ref: TrainingJobRef, spec: TrainingJobSpec) -> list[dict[str, Any]]:
    trigger = spec.trigger.to_api() if spec.trigger else {}
    env: list[dict[str, Any]] = [
        {"name": "PERENNIAL_MODEL", "value": spec.model or ""},
        {"name": "PERENNIAL_VERSION", "value": version_of(ref, spec)},
        {"name": "PERENNIAL_MODEL_URI", "value": model_uri(ref, spec)},
        {"name": "PERENNIAL_DATASET_URI", "value": (spec.dataset.uri if spec.dataset else None) or ""},
        {"name": "PERENNIAL_DATASET_VERSION", "value": (spec.dataset.version if spec.dataset else None) or ""},
        {"name": "PERENNIAL_HYPERPARAMETERS", "value": json.dumps(spec.hyperparameters or {}, sort_keys=True)},
        {"name": "PERENNIAL_TRIGGER", "value": json.dumps(trigger, sort_keys=True)},
    ]
    if spec.workers > 1:
        env += [
            {"name": "WORLD_SIZE", "value": str(spec.workers)},
            {
                "name": "RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}},
            },
            {"name": "MASTER_ADDR", "value": master_address(ref)},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        ]
    return env


def desired_job(ref: TrainingJobRef, spec: TrainingJobSpec) -> dict[str, Any]:
    """The batch/v1 Job that runs this TrainingJob: restricted-profile pods, no API token by default."""
    labels = child_labels(ref, spec)
    user_env = [e.to_api() for e in spec.env or []]
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": spec.image,
        # The user's env comes last so it can see (and reference) the PERENNIAL_* values.
        "env": _perennial_env(ref, spec) + user_env,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    optional_container = {
        "command": spec.command,
        "args": spec.args,
        "envFrom": [e.to_api() for e in spec.env_from] if spec.env_from else None,
        "resources": spec.resources.to_api() if spec.resources else None,
        "volumeMounts": [m.to_api() for m in spec.volume_mounts] if spec.volume_mounts else None,
    }
    container.update({k: v for k, v in optional_container.items() if v})

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    else:
        pod_spec["automountServiceAccountToken"] = False
    optional_pod = {
        "nodeSelector": spec.node_selector,
        "tolerations": [t.to_api() for t in spec.tolerations] if spec.tolerations else None,
        "affinity": spec.affinity.to_api() if spec.affinity else None,
        "volumes": [v.to_api() for v in spec.volumes] if spec.volumes else None,
        "imagePullSecrets": [s.to_api() for s in spec.image_pull_secrets] if spec.image_pull_secrets else None,
        "priorityClassName": spec.priority_class_name,
    }
    pod_spec.update({k: v for k, v in optional_pod.items() if v})

    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": int(parse_duration(spec.ttl_after_finished).total_seconds()),
        "completions": spec.workers,
        "parallelism": spec.workers,
        "template": {
            "metadata": {
                "labels": {**(spec.pod_labels or {}), **labels},
                "annotations": dict(spec.pod_annotations or {}),
            },
            "spec": pod_spec,
        },
    }
    if spec.active_deadline:
        job_spec["activeDeadlineSeconds"] = max(1, int(parse_duration(spec.active_deadline).total_seconds()))
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
        pod_spec["subdomain"] = headless_service_name(ref)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": ref.name,
            "namespace": ref.namespace,
            "labels": labels,
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": job_spec,
    }


def desired_service(ref: TrainingJobRef, spec: TrainingJobSpec) -> dict[str, Any] | None:
    """The headless Service that gives a distributed run's workers stable DNS names."""
    if spec.workers <= 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": headless_service_name(ref),
            "namespace": ref.namespace,
            "labels": child_labels(ref, spec),
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {TRAINING_JOB_LABEL: ref.name, "app.kubernetes.io/managed-by": MANAGED_BY},
            # Workers must find rank 0 before any of them is Ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


# ---------------------------------------------------------------- metrics and gates
@dataclass(frozen=True)
class MetricsResult:
    metrics: dict[str, float]
    error_reason: str | None = None
    error_message: str = ""


def parse_termination_message(message: str | None) -> MetricsResult:
    """Read ``{"metrics": {"auc": 0.93}}``; anything else is a clear reason, never an exception."""
    if message is None or not message.strip():
        return MetricsResult(
            {}, METRICS_MISSING, f"the trainer wrote no termination message to {TERMINATION_MESSAGE_PATH}"
        )
    try:
        document = json.loads(message)
    except json.JSONDecodeError as error:
        return MetricsResult({}, INVALID_TERMINATION_MESSAGE, f"termination message is not JSON ({error.msg})")
    if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict):
        return MetricsResult(
            {}, INVALID_TERMINATION_MESSAGE, 'termination message must be a JSON object {"metrics": {"name": number}}'
        )
    metrics: dict[str, float] = {}
    for name, value in document["metrics"].items():
        number = _finite_number(value)
        if number is None:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            return MetricsResult({}, INVALID_TERMINATION_MESSAGE, f"metric {name!r} is {shown}, not a finite number")
        metrics[str(name)] = number
    return MetricsResult(metrics)


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # a huge JSON integer overflows here
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    message: str


def _num(value: float) -> str:
    """40.0 -> "40"; 0.8999999 stays exact (str(float) is the shortest round-tripping text)."""
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def _bound_text(rule: ValidationRule) -> str:
    if rule.min is not None and rule.max is not None:
        return f"[{_num(rule.min)}, {_num(rule.max)}]"
    if rule.min is not None:
        return f">= {_num(rule.min)}"
    return f"<= {_num(rule.max)}" if rule.max is not None else "any value"


def check_gates(rules: Sequence[ValidationRule], metrics: Mapping[str, float]) -> GateResult:
    """Every rule must hold; the first failure gives the reason, the message lists all."""
    failures: list[tuple[str, str]] = []
    for rule in rules:
        value = metrics.get(rule.metric)
        if value is None:
            failures.append((METRICS_MISSING, f"metric {rule.metric} is missing (needed {_bound_text(rule)})"))
        elif rule.min is not None and value < rule.min:
            failures.append((METRIC_BELOW_MIN, f"{rule.metric}={_num(value)} < min {_num(rule.min)}"))
        elif rule.max is not None and value > rule.max:
            failures.append((METRIC_ABOVE_MAX, f"{rule.metric}={_num(value)} > max {_num(rule.max)}"))
    if failures:
        return GateResult(False, failures[0][0], "; ".join(message for _, message in failures))
    if not rules:
        return GateResult(True, "NoValidationRules", "no validation rules: every trained run is validated")
    return GateResult(True, "AllGatesPassed", ", ".join(f"{r.metric} {_bound_text(r)}" for r in rules) + " hold")


# ---------------------------------------------------------------- observing a run
@dataclass(frozen=True)
class InvalidSpec:
    """A spec the model refuses (the CRD schema makes this unreachable for admitted objects)."""

    detail: str


def read_spec(document: Mapping[str, Any] | None) -> TrainingJobSpec | InvalidSpec:
    try:
        return TrainingJobSpec.model_validate(document or {})
    except ValidationError as error:
        return InvalidSpec(str(error))


@dataclass(frozen=True)
class ObservedRun:
    """What one reconcile saw of a TrainingJob: the object, its Job and pods (caches or API), now."""

    ref: TrainingJobRef
    spec: TrainingJobSpec | InvalidSpec
    status: TrainingJobStatus
    """The status as stored (``TrainingJobStatus()`` when there is none yet)."""
    job: Mapping[str, Any] | None
    """The run's Job (of that name, whoever owns it), or None when there is none."""
    pods: Sequence[Mapping[str, Any]]
    """The pods carrying the run's label; listed only once the Job finished."""
    now: datetime


def run_finished(status: TrainingJobStatus) -> bool:
    """A finished run is history: nothing its Job does later (TTL deletion) changes it."""
    return status.phase in TERMINAL_PHASES


def job_finished(job: Mapping[str, Any]) -> bool:
    """The Job reached Complete or Failed: its pods' termination messages are final."""
    return _true_job_condition(job, "Complete") is not None or _true_job_condition(job, "Failed") is not None


def _true_job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            result: Mapping[str, Any] = condition
            return result
    return None


def pods_of_job(pods: Sequence[Mapping[str, Any]], job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pods ``job`` created: anyone may put the run's label on a pod, only the Job controls its own."""
    uid = str(job.get("metadata", {}).get("uid") or "")
    return [pod for pod in pods if uid and controlled_by(pod, uid)]


def _attempts(job_status: Mapping[str, Any]) -> int:
    started = int(job_status.get("failed") or 0)
    if job_status.get("succeeded") or job_status.get("active"):
        started += 1
    return started


def result_pod(pods: Sequence[Mapping[str, Any]], workers: int) -> Mapping[str, Any] | None:
    """The pod whose termination message counts: the succeeded one (rank 0 for distributed runs)."""
    succeeded = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
    if workers > 1:
        succeeded = [
            p for p in succeeded if p.get("metadata", {}).get("annotations", {}).get(COMPLETION_INDEX_ANNOTATION) == "0"
        ]
    # Newest first: a retried run's last success is the one that produced the model.
    succeeded.sort(key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), reverse=True)
    return succeeded[0] if succeeded else None


def trainer_termination(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == TRAINER_CONTAINER:
            terminated: Mapping[str, Any] = status.get("state", {}).get("terminated") or {}
            return terminated
    return {}


# ---------------------------------------------------------------- the plan
def plan_trainingjob(observed: ObservedRun) -> Plan[TrainingJobStatus]:
    """Everything one reconcile of a TrainingJob does: its status, the children to create, the Events.

    The status comes from the Job (and, once it finished, its pods). The Job (and a
    distributed run's headless Service) is created only while status records no
    ``jobName``: once it does, a missing Job is never recreated — rerunning a finished or
    half-finished training would silently produce a second model under one version.
    """
    ref = observed.ref
    plan = Plan(status=observed.status.model_copy(deep=True), now=truncate(observed.now), generation=ref.generation)
    plan.status.observed_generation = ref.generation
    if run_finished(observed.status):
        return plan  # history: only the observed generation follows the object
    if isinstance(observed.spec, InvalidSpec):
        plan.status.phase = "Failed"
        plan.condition("Succeeded", "False", INVALID_SPEC, observed.spec.detail[:1000])
        return plan
    spec = observed.spec
    job = observed.job
    if job is not None and not controlled_by(job, ref.uid):
        _conflict(plan, "Job", ref.name)
        return plan

    plan.status = _base_status(ref, spec, plan.status.conditions)
    if job is None:
        if observed.status.job_name:
            # The Job existed and someone deleted it before the run finished: say so, do not rerun.
            plan.status.job_name = observed.status.job_name
            plan.status.start_time = observed.status.start_time
            plan.status.attempts = observed.status.attempts
            _finish(
                plan,
                "Failed",
                JOB_DELETED,
                "the Job was deleted before the run finished; create a new TrainingJob to run again",
            )
            return plan
        plan.status.phase = "Pending"
        plan.condition("Succeeded", "Unknown", "Pending", "creating the Job")
        plan.condition("Running", "False", "Pending", "the Job has not started")
        service = desired_service(ref, spec)
        plan.create = [*([service] if service is not None else []), desired_job(ref, spec)]
        return plan

    job_status = job.get("status", {})
    plan.status.job_name = ref.name
    plan.status.attempts = _attempts(job_status)
    # A merge patch stores no nulls: leave startTime out until there is one.
    plan.status.start_time = parse_time(job_status.get("startTime")) or observed.status.start_time
    failed = _true_job_condition(job, "Failed")
    if failed is not None:
        _finish(
            plan,
            "Failed",
            str(failed.get("reason") or "JobFailed"),
            str(failed.get("message") or "the Job failed"),
            completion=parse_time(failed.get("lastTransitionTime")),
        )
    elif _true_job_condition(job, "Complete") is not None:
        _complete(plan, spec, job, pods_of_job(observed.pods, job))
    else:
        _progress(plan, ref, spec, job, observed.status.phase)
    return plan


def _base_status(ref: TrainingJobRef, spec: TrainingJobSpec, conditions: list[Condition] | None) -> TrainingJobStatus:
    """What every status of an unfinished run names; the stored conditions carry on."""
    return TrainingJobStatus(
        observed_generation=ref.generation,
        version=version_of(ref, spec),
        model_uri=model_uri(ref, spec),
        conditions=conditions,
    )


def _progress(
    plan: Plan[TrainingJobStatus],
    ref: TrainingJobRef,
    spec: TrainingJobSpec,
    job: Mapping[str, Any],
    phase_before: str | None,
) -> None:
    """A Job that has not finished: Pending until a worker is ready, then Running."""
    ready = int(job.get("status", {}).get("ready") or 0)
    # FailureTarget/SuccessCriteriaMet: the outcome is decided, and Failed/Complete follow
    # (with final counts) once the pods have terminated. Until then the run is still
    # running, not back to Pending.
    finishing = _true_job_condition(job, "FailureTarget") or _true_job_condition(job, "SuccessCriteriaMet")
    running = ready > 0 or (finishing is not None and phase_before == "Running")
    _set_progress(plan, running=f"{ready} of {spec.workers} worker(s) running" if running else None)
    if running and phase_before != "Running":
        plan.event("Normal", "Started", f"training {version_of(ref, spec)} started ({spec.image})")


def _set_progress(plan: Plan[TrainingJobStatus], *, running: str | None) -> None:
    """The run has a Job and has not finished; ``running`` says how many workers run, None: none yet."""
    plan.status.phase = "Pending" if running is None else "Running"
    plan.condition("Succeeded", "Unknown", plan.status.phase, "the run has not finished")
    if running is None:
        plan.condition("Running", "False", "PodsStarting", "waiting for the pods to start")
    else:
        plan.condition("Running", "True", "PodsRunning", running)


def _complete(
    plan: Plan[TrainingJobStatus], spec: TrainingJobSpec, job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> None:
    """A Complete Job: the trainer's metrics against the gates make the run Succeeded or Rejected."""
    pod = result_pod(pods, spec.workers)
    terminated = trainer_termination(pod) if pod else {}
    parsed = parse_termination_message(terminated.get("message"))
    completion = parse_time(job.get("status", {}).get("completionTime"))
    if parsed.error_reason == INVALID_TERMINATION_MESSAGE or (
        parsed.error_reason == METRICS_MISSING and spec.validation
    ):
        outcome = GateResult(False, str(parsed.error_reason), parsed.error_message)
    else:
        outcome = check_gates(spec.validation or [], parsed.metrics)
    _finish(
        plan,
        "Succeeded" if outcome.passed else "Rejected",
        outcome.reason,
        outcome.message,
        metrics=parsed.metrics,
        validated=outcome.passed,
        completion=completion,
    )


def _finish(
    plan: Plan[TrainingJobStatus],
    phase: TrainingPhase,
    reason: str,
    message: str,
    *,
    metrics: dict[str, float] | None = None,
    validated: bool | None = None,
    completion: datetime | None = None,
) -> None:
    """The run ended: its result, when and how long, the conditions that say why, and one Event."""
    status = plan.status
    status.phase = phase
    status.completion_time = truncate(completion or plan.now)
    if status.start_time is not None:
        status.duration = format_duration(max(status.completion_time - status.start_time, timedelta(0)))
    if metrics is not None:
        status.metrics = metrics
    plan.condition("Succeeded", "True" if phase == "Succeeded" else "False", reason, message)
    plan.condition("Running", "False", "Finished", f"the run finished: {phase}")
    if validated is not None:
        plan.condition("Validated", "True" if validated else "False", reason, message)
    plan.event("Normal" if phase == "Succeeded" else "Warning", phase, f"{reason}: {message}")


def _conflict(plan: Plan[TrainingJobStatus], kind: str, name: str) -> None:
    """A child of the run's name exists and is not the run's: left alone, reported, looked at again."""
    message = (
        f"a {kind} named {name} exists but belongs to something else; it is left alone."
        " Delete it (or rename this TrainingJob) to run."
    )
    plan.status.phase = "Pending"
    plan.condition("Succeeded", "Unknown", JOB_CONFLICT, message)
    plan.later(CONFLICT_RETRY_SECONDS)


# ---------------------------------------------------------------- what creating the children did
class CreateOutcome(Protocol):
    """What the controller's create of one child came to (``perennial.controllers.execute.ChildOutcome``)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def message(self) -> str: ...


def record_child_outcome(plan: Plan[TrainingJobStatus], outcome: CreateOutcome) -> None:
    """Record in ``plan`` what creating one of ``plan.create`` came to.

    - the Job created: status records it (``jobName``: from now on a missing Job means it
      was deleted), its pods are starting; Event ``JobCreated`` and the started-runs count;
    - the Job already there and ours (created by a pass that died before writing status):
      adopted the same way, without a second Event or count;
    - a child of that name that is not ours (``conflict``): the run waits (JobConflict);
    - a child the API server refused (``refused``): the run fails (JobRefused) with the
      API's message: the spec is immutable, so the next pass would be refused again.
    The controller stops creating at the first outcome that failed.
    """
    if outcome.result == "conflict":
        _conflict(plan, outcome.kind, outcome.name)
    elif outcome.result == "refused":
        _finish(plan, "Failed", JOB_REFUSED, outcome.message)
    elif outcome.kind == "Job":
        plan.status.job_name = outcome.name
        plan.status.attempts = 0
        _set_progress(plan, running=None)
        if outcome.result == "created":
            plan.event("Normal", "JobCreated", f"created Job {outcome.name}")
            plan.count(RUNS_STARTED)
