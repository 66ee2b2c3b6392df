"""TrainingJob logic: the desired Job (and headless Service), and status from what exists.

Pure functions of (TrainingJob, observed children, now): no I/O, no kopf. The
controller feeds them what the watches saw and applies what they return.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from perennial.api.durations import format_duration, parse_duration
from perennial.api.trainingjob import TrainingJobSpec, ValidationRule
from perennial.domain.conditions import ConditionState, find_condition, merge_conditions
from perennial.domain.labels import MANAGED_BY, OwnerRef, managed_labels
from perennial.domain.timeutil import format_time, parse_time

TRAINER_CONTAINER = "trainer"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MASTER_PORT = 29500
TRAINING_JOB_LABEL = "perennial.dev/training-job"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# Reasons (api.md); the Job controller's own reasons (BackoffLimitExceeded,
# DeadlineExceeded, ...) pass through unchanged.
JOB_DELETED = "JobDeleted"
JOB_CONFLICT = "JobConflict"
METRIC_BELOW_MIN = "MetricBelowMin"
METRIC_ABOVE_MAX = "MetricAboveMax"
METRICS_MISSING = "MetricsMissing"
INVALID_TERMINATION_MESSAGE = "InvalidTerminationMessage"

TERMINAL_PHASES = ("Succeeded", "Failed", "Rejected")


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


def owned_by(obj: Mapping[str, Any], ref: TrainingJobRef) -> bool:
    return any(o.get("uid") == ref.uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


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


# ---------------------------------------------------------------- status
@dataclass(frozen=True)
class Observed:
    """What the watches and the last list call saw of a run's children."""

    job: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class RunEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class StatusResult:
    status: dict[str, Any]
    events: list[RunEvent] = field(default_factory=list)
    finished: bool = False


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    condition = find_condition(job.get("status", {}).get("conditions"), type_)
    if condition is not None and condition.get("status") == "True":
        return condition
    return None


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


def derive_status(
    ref: TrainingJobRef,
    spec: TrainingJobSpec,
    current: Mapping[str, Any],
    observed: Observed,
    now: datetime,
) -> StatusResult:
    """The TrainingJob's status from its Job (and, once finished, its pods).

    ``current`` is the status as stored; a finished run keeps its result even after the
    Job's TTL deleted the Job.
    """
    base: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "version": version_of(ref, spec),
        "modelUri": model_uri(ref, spec),
    }
    phase_before = current.get("phase")
    if phase_before in TERMINAL_PHASES:
        # Finished runs are history: nothing the Job does later (TTL deletion) changes them.
        return StatusResult({**current, "observedGeneration": ref.generation}, finished=True)

    job = observed.job
    conditions_before = current.get("conditions")
    if job is None:
        if current.get("jobName"):
            # The Job existed and someone deleted it before the run finished: say so, do not rerun.
            kept = {k: current[k] for k in ("jobName", "startTime", "attempts") if current.get(k) is not None}
            return _finished(
                ref,
                {**base, **kept},
                current,
                now,
                "Failed",
                JOB_DELETED,
                "the Job was deleted before the run finished; create a new TrainingJob to run again",
                metrics=None,
                validated=None,
            )
        conditions = merge_conditions(
            conditions_before,
            [
                ConditionState("Succeeded", "Unknown", "Pending", "creating the Job"),
                ConditionState("Running", "False", "Pending", "the Job has not started"),
            ],
            now=now,
            generation=ref.generation,
        )
        return StatusResult({**base, "phase": "Pending", "conditions": conditions})

    job_status = job.get("status", {})
    status = {**base, "jobName": ref.name, "attempts": _attempts(job_status)}
    start_time = job_status.get("startTime") or current.get("startTime")
    if start_time:  # a merge patch stores no nulls: leave it out until there is one
        status["startTime"] = start_time
    failed = _job_condition(job, "Failed")
    if failed is not None:
        reason = str(failed.get("reason") or "JobFailed")
        message = str(failed.get("message") or "the Job failed")
        return _finished(
            ref,
            status,
            current,
            now,
            "Failed",
            reason,
            message,
            metrics=None,
            validated=None,
            completion=failed.get("lastTransitionTime"),
        )
    if _job_condition(job, "Complete") is not None:
        pod = result_pod(observed.pods, spec.workers)
        terminated = trainer_termination(pod) if pod else {}
        parsed = parse_termination_message(terminated.get("message"))
        completion = job_status.get("completionTime")
        if parsed.error_reason == INVALID_TERMINATION_MESSAGE or (
            parsed.error_reason == METRICS_MISSING and spec.validation
        ):
            return _finished(
                ref,
                status,
                current,
                now,
                "Rejected",
                str(parsed.error_reason),
                parsed.error_message,
                metrics=parsed.metrics,
                validated=False,
                completion=completion,
            )
        gate = check_gates(spec.validation or [], parsed.metrics)
        if not gate.passed:
            return _finished(
                ref,
                status,
                current,
                now,
                "Rejected",
                gate.reason,
                gate.message,
                metrics=parsed.metrics,
                validated=False,
                completion=completion,
            )
        return _finished(
            ref,
            status,
            current,
            now,
            "Succeeded",
            gate.reason,
            gate.message,
            metrics=parsed.metrics,
            validated=True,
            completion=completion,
        )

    ready = int(job_status.get("ready") or 0)
    # FailureTarget/SuccessCriteriaMet: the outcome is decided, and Failed/Complete follow
    # (with final counts) once the pods have terminated. Until then the run is still
    # running, not back to Pending.
    finishing = _job_condition(job, "FailureTarget") or _job_condition(job, "SuccessCriteriaMet")
    running = ready > 0 or (finishing is not None and phase_before == "Running")
    phase = "Running" if running else "Pending"
    conditions = merge_conditions(
        conditions_before,
        [
            ConditionState("Succeeded", "Unknown", phase, "the run has not finished"),
            ConditionState(
                "Running",
                "True" if running else "False",
                "PodsRunning" if running else "PodsStarting",
                f"{ready} of {spec.workers} worker(s) running" if running else "waiting for the pods to start",
            ),
        ],
        now=now,
        generation=ref.generation,
    )
    events = []
    if running and phase_before != "Running":
        events.append(RunEvent("Normal", "Started", f"training {version_of(ref, spec)} started ({spec.image})"))
    return StatusResult({**status, "phase": phase, "conditions": conditions}, events=events)


def _finished(
    ref: TrainingJobRef,
    status: dict[str, Any],
    current: Mapping[str, Any],
    now: datetime,
    phase: str,
    reason: str,
    message: str,
    *,
    metrics: dict[str, float] | None,
    validated: bool | None,
    completion: object = None,
) -> StatusResult:
    completion_time = parse_time(str(completion)) if completion else now
    start = parse_time(status.get("startTime") or current.get("startTime"))
    result: dict[str, Any] = {**status, "phase": phase, "completionTime": format_time(completion_time or now)}
    if start is not None and completion_time is not None:
        result["duration"] = format_duration(max(completion_time - start, timedelta(0)))
    if metrics is not None:
        result["metrics"] = metrics
    states = [
        ConditionState("Succeeded", "True" if phase == "Succeeded" else "False", reason, message),
        ConditionState("Running", "False", "Finished", f"the run finished: {phase}"),
    ]
    if validated is not None:
        states.append(ConditionState("Validated", "True" if validated else "False", reason, message))
    result["conditions"] = merge_conditions(current.get("conditions"), states, now=now, generation=ref.generation)
    event_reason = {"Succeeded": "Succeeded", "Rejected": "Rejected"}.get(phase, "Failed")
    event_type = "Normal" if phase == "Succeeded" else "Warning"
    return StatusResult(result, events=[RunEvent(event_type, event_reason, f"{reason}: {message}")], finished=True)
