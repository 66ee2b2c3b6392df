"""TrainingJob logic: the desired Job (and headless Service), and the plan of one reconcile.

Pure functions of what was observed (the TrainingJob, its Job and pods, now): no I/O, no
kopf. ``plan_trainingjob`` decides everything a reconcile does; the controller executes
the plan and hands back what the API server answered (``record_child_outcome``).

Two bounds keep a run from blocking its model or losing its result:
- the start deadline: a run none of whose trainers started (an image that cannot be pulled,
  a pod no node takes, pods the API refuses) fails with StartDeadlineExceeded that long
  after its Job was created (or resumed from suspension), and the Job is deleted;
- the Job is created without ``ttlSecondsAfterFinished``: Kubernetes' TTL controller may
  delete a finished Job (and the pods holding the trainer's termination message) only after
  the operator has read the result and set the run's ``ttlAfterFinished`` on it, however
  long the operator was down.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from pydantic import ValidationError

from perennial.api.base import Condition
from perennial.api.durations import format_duration, parse_duration
from perennial.api.trainingjob import (
    DATASET_PLACEHOLDERS,
    Dataset,
    TrainingJobSpec,
    TrainingJobStatus,
    TrainingPhase,
    ValidationRule,
)
from perennial.domain.children import controlled_by
from perennial.domain.labels import MANAGED_BY, OwnerRef, managed_labels
from perennial.domain.plan import ChildRef, Plan
from perennial.domain.timeutil import format_time, parse_time, truncate

TRAINER_CONTAINER = "trainer"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MASTER_PORT = 29500
TRAINING_JOB_LABEL = "perennial.dev/training-job"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# Reasons (api.md); the Job controller's own reasons (BackoffLimitExceeded,
# DeadlineExceeded, ...) pass through unchanged.
JOB_DELETED = "JobDeleted"
START_DEADLINE_EXCEEDED = "StartDeadlineExceeded"
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
# How long a run waits for its trainers to start when neither spec.startDeadline nor the
# operator's setting (PERENNIAL_TRAINING_START_DEADLINE) says otherwise.
DEFAULT_START_DEADLINE = timedelta(minutes=10)
JOBS_PLURAL = "jobs"


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


# ---------------------------------------------------------------- the data a run trains on
_DATASET_PLACEHOLDER = re.compile(r"\{(" + "|".join(DATASET_PLACEHOLDERS) + r")\}")


def resolve_dataset(
    dataset: Dataset | None, *, model: str, version: str, namespace: str, trigger_time: datetime
) -> Dataset | None:
    """The data a run triggered at ``trigger_time`` trains on: the placeholders of ``uri`` and
    ``version`` filled in (in one pass: a value is never read as a placeholder) and, for a
    ``window`` without an explicit ``windowStart``/``windowEnd``, the window ending at the trigger
    time (to the second; a fraction of a second widens the window to whole seconds).

    Resolving a resolved dataset changes nothing, so a TrainingJob's recorded values stay what
    its trainer gets."""
    if dataset is None:
        return None
    moment = truncate(trigger_time)
    values = {
        "triggerTime": format_time(moment),
        "triggerDate": moment.strftime("%Y-%m-%d"),
        "version": version,
        "model": model,
        "namespace": namespace,
    }

    def fill(text: str | None) -> str | None:
        return None if text is None else _DATASET_PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    resolved = dataset.model_copy(update={"uri": fill(dataset.uri), "version": fill(dataset.version)})
    if dataset.window and dataset.window_start is None and dataset.window_end is None:
        resolved.window_end = moment
        resolved.window_start = truncate(moment - parse_duration(dataset.window))
    return resolved


def run_dataset(ref: TrainingJobRef, spec: TrainingJobSpec, created_at: datetime) -> Dataset | None:
    """The resolved data of this run. A ModelDeployment's TrainingJob carries it resolved already;
    one created by hand is resolved against its trigger time: its ``windowEnd`` when set, else
    ``created_at`` (its creationTimestamp)."""
    dataset = spec.dataset
    if dataset is None:
        return None
    return resolve_dataset(
        dataset,
        model=spec.model or "",
        version=version_of(ref, spec),
        namespace=ref.namespace,
        trigger_time=dataset.window_end or created_at,
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


def _perennial_env(ref: TrainingJobRef, spec: TrainingJobSpec, created_at: datetime) -> list[dict[str, Any]]:
    trigger = spec.trigger.to_api() if spec.trigger else {}
    dataset = run_dataset(ref, spec, created_at)
    env: list[dict[str, Any]] = [
        {"name": "PERENNIAL_MODEL", "value": spec.model or ""},
        {"name": "PERENNIAL_VERSION", "value": version_of(ref, spec)},
        {"name": "PERENNIAL_MODEL_URI", "value": model_uri(ref, spec)},
        {"name": "PERENNIAL_DATASET_URI", "value": (dataset.uri if dataset else None) or ""},
        {"name": "PERENNIAL_DATASET_VERSION", "value": (dataset.version if dataset else None) or ""},
        {"name": "PERENNIAL_HYPERPARAMETERS", "value": json.dumps(spec.hyperparameters or {}, sort_keys=True)},
        {"name": "PERENNIAL_TRIGGER", "value": json.dumps(trigger, sort_keys=True)},
    ]
    # Present only when they apply, so a trainer tells "no window" and "no champion" apart.
    if dataset is not None and dataset.window_start is not None and dataset.window_end is not None:
        env += [
            {"name": "PERENNIAL_DATA_WINDOW_START", "value": format_time(dataset.window_start)},
            {"name": "PERENNIAL_DATA_WINDOW_END", "value": format_time(dataset.window_end)},
        ]
    if spec.champion is not None:
        env += [
            {"name": "PERENNIAL_CHAMPION_VERSION", "value": spec.champion.version},
            {"name": "PERENNIAL_CHAMPION_MODEL_URI", "value": spec.champion.model_uri},
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


def desired_job(ref: TrainingJobRef, spec: TrainingJobSpec, created_at: datetime) -> dict[str, Any]:
    """The batch/v1 Job that runs this TrainingJob: restricted-profile pods, no API token by default.

    ``created_at`` is the TrainingJob's creationTimestamp: the trigger time of a run created by
    hand whose dataset has placeholders or a window (``run_dataset``)."""
    labels = child_labels(ref, spec)
    user_env = [e.to_api() for e in spec.env or []]
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": spec.image,
        # The user's env comes last so it can see (and reference) the PERENNIAL_* values.
        "env": _perennial_env(ref, spec, created_at) + user_env,
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
        # No ttlSecondsAfterFinished yet: the TTL controller would delete the Job and the
        # pods holding the result before the operator read it (ttlAfterFinished "0", or an
        # operator down longer than the TTL). It is set once the result is read (``TrainingPlan``).
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


def ttl_seconds(spec: TrainingJobSpec) -> int:
    """The ``ttlSecondsAfterFinished`` the run's Job gets once its result is read."""
    return int(parse_duration(spec.ttl_after_finished).total_seconds())


def start_deadline(spec: TrainingJobSpec, default: timedelta) -> timedelta:
    """How long after its Job's creation the run's trainers must have started: spec, else the operator's."""
    return parse_duration(spec.start_deadline) if spec.start_deadline else default


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
    """The pods carrying the run's label; listed only when ``pods_needed`` says so."""
    now: datetime
    default_start_deadline: timedelta = DEFAULT_START_DEADLINE
    """The operator's start deadline (PERENNIAL_TRAINING_START_DEADLINE), for runs without spec.startDeadline."""
    created_at: datetime | None = None
    """The TrainingJob's creationTimestamp (the trigger time of a run created by hand; ``now`` if unknown)."""


@dataclass
class TrainingPlan(Plan[TrainingJobStatus]):
    """A TrainingJob's plan: the shared shape, plus handing a finished Job to the TTL controller."""

    job_ttl_seconds: int | None = None
    """After the status is written, set the run's Job's ``ttlSecondsAfterFinished`` to this: its
    result is read, so Kubernetes' TTL-after-finished controller may delete it from now on."""


def run_finished(status: TrainingJobStatus) -> bool:
    """A finished run is history: nothing its Job does later (TTL deletion) changes it."""
    return status.phase in TERMINAL_PHASES


def job_finished(job: Mapping[str, Any]) -> bool:
    """The Job reached Complete or Failed: its pods' termination messages are final."""
    return _true_job_condition(job, "Complete") is not None or _true_job_condition(job, "Failed") is not None


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == type_:
            found: Mapping[str, Any] = condition
            return found
    return None


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


def pods_of_deleted_job(pods: Sequence[Mapping[str, Any]], job_name: str) -> list[Mapping[str, Any]]:
    """The pods a Job of ``job_name`` that is gone controlled (its UID is gone with it): the
    garbage collector deletes them after the Job, so for a moment they may still hold a result."""
    return [
        pod
        for pod in pods
        if any(
            owner.get("controller") and owner.get("kind") == "Job" and owner.get("name") == job_name
            for owner in pod.get("metadata", {}).get("ownerReferences") or []
        )
    ]


def pods_needed(observed: ObservedRun) -> bool:
    """Whether the reconcile must list the run's pods (the one costly read, so only when it decides):
    the Job finished (the result), the Job is gone before the run finished (a result its pods may
    still hold), or the start deadline passed without the Job reporting every worker started."""
    if run_finished(observed.status) or isinstance(observed.spec, InvalidSpec):
        return False
    job = observed.job
    if job is None:
        return bool(observed.status.job_name)
    if not controlled_by(job, observed.ref.uid):
        return False
    if job_finished(job):
        return True
    deadline = _start_deadline_at(observed.spec, job, observed.default_start_deadline)
    return deadline is not None and observed.now >= deadline and not _start_settled(job, observed.spec.workers)


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
    terminated: Mapping[str, Any] = _trainer_status(pod).get("state", {}).get("terminated") or {}
    return terminated


# How much of a failed trainer's termination message a condition quotes (the kubelet keeps 4 KiB).
EXIT_MESSAGE_LIMIT = 300


def trainer_exit_detail(pods: Sequence[Mapping[str, Any]]) -> str:
    """How the last trainer that failed ended, in the kubelet's words, for a failed run's message:
    ``the last trainer exited 137 (OOMKilled)`` and what it wrote as its termination message
    (``bad input: ...``); empty when no pod recorded a failed trainer (e.g. its pods are gone).
    No pod name: the message is the same for every retry of the same failure (an Event is
    not a new one, a GitOps tool sees no change), and `kubectl logs job/<run>` finds the pod."""
    ended = [
        (str(terminated.get("finishedAt") or ""), terminated)
        for terminated in map(trainer_termination, pods)
        if terminated and terminated.get("exitCode") not in (None, 0)
    ]
    if not ended:
        return ""
    _, terminated = max(ended, key=lambda item: item[0])
    detail = f"the last trainer exited {terminated.get('exitCode')}"
    if terminated.get("reason"):
        detail += f" ({terminated['reason']})"
    message = " ".join(str(terminated.get("message") or "").split())
    if message:
        shortened = message if len(message) <= EXIT_MESSAGE_LIMIT else message[: EXIT_MESSAGE_LIMIT - 3] + "..."
        detail += f": {shortened}"
    return detail


def _trainer_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == TRAINER_CONTAINER:
            found: Mapping[str, Any] = status
            return found
    return {}


# ---------------------------------------------------------------- the start deadline
def trainer_started(pod: Mapping[str, Any]) -> bool:
    """The kubelet started the trainer container of ``pod``: it runs, or it ran and exited.

    A container that never ran (its image not pulled, the pod never scheduled, a start
    error) has no ``running`` state and no ``startedAt`` in its ``terminated`` one.
    """
    if pod.get("status", {}).get("phase") == "Succeeded":
        return True
    status = _trainer_status(pod)
    state = status.get("state") or {}
    if "running" in state:
        return True
    return any(
        bool((states.get("terminated") or {}).get("startedAt")) for states in (state, status.get("lastState") or {})
    )


def _worker(pod: Mapping[str, Any], workers: int) -> str:
    """Which worker a pod is: its completion index (distributed runs), else the only one."""
    if workers <= 1:
        return "0"
    metadata = pod.get("metadata", {})
    return str(metadata.get("annotations", {}).get(COMPLETION_INDEX_ANNOTATION) or metadata.get("name"))


def _indexes(text: str | None) -> set[str]:
    """The indexes of an Indexed Job's ``completedIndexes`` ("0-2,5")."""
    found: set[str] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            found.update(str(i) for i in range(int(first), int(last or first) + 1))
    return found


def _start_clock(job: Mapping[str, Any]) -> tuple[datetime, str] | None:
    """Since when the run's trainers may start, and what that moment was: the Job's creation, or
    its resumption (``status.startTime``, reset on resume) when a queue such as Kueue held it
    suspended. None while it is suspended: a queued run is not stuck."""
    suspended = _job_condition(job, "Suspended")  # a Job that was never suspended has none
    if job.get("spec", {}).get("suspend") or (suspended is not None and suspended.get("status") == "True"):
        return None
    created = parse_time(job.get("metadata", {}).get("creationTimestamp"))
    if created is None:
        return None
    started = parse_time(job.get("status", {}).get("startTime"))
    if suspended is not None and started is not None:
        return max(started, created), "resumption"
    return created, "creation"


def _start_deadline_at(spec: TrainingJobSpec, job: Mapping[str, Any], default: timedelta) -> datetime | None:
    clock = _start_clock(job)
    return clock[0] + start_deadline(spec, default) if clock is not None else None


def _start_settled(job: Mapping[str, Any], workers: int) -> bool:
    """The Job itself shows every worker started (ready or succeeded), or its outcome decided:
    nothing for the start deadline to do, and no pods to list for it."""
    status = job.get("status", {})
    if int(status.get("ready") or 0) + int(status.get("succeeded") or 0) >= workers:
        return True
    return any(
        _true_job_condition(job, type_) is not None
        for type_ in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
    )


def _started_workers(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], workers: int) -> set[str]:
    started = {_worker(pod, workers) for pod in pods if trainer_started(pod)}
    status = job.get("status", {})
    if workers > 1:
        started |= _indexes(status.get("completedIndexes"))
    elif int(status.get("succeeded") or 0) > 0:
        started.add("0")
    return started


def _why_not_started(pod: Mapping[str, Any]) -> str:
    """What holds a pod back, in the kubelet's or the scheduler's words."""
    status = pod.get("status", {})
    waiting = (_trainer_status(pod).get("state") or {}).get("waiting") or {}
    scheduled: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    if waiting.get("reason"):
        reason, message = waiting.get("reason"), waiting.get("message")
    elif scheduled.get("status") == "False":
        reason, message = scheduled.get("reason") or "NotScheduled", scheduled.get("message")
    elif status.get("phase") == "Failed":
        reason, message = status.get("reason") or "Failed", status.get("message")
    else:
        reason, message = status.get("phase") or "Pending", "no reason reported yet"
    name = pod.get("metadata", {}).get("name", "")
    return f"pod {name}: {reason}: {message}" if message else f"pod {name}: {reason}"


def _not_started_message(
    spec: TrainingJobSpec,
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    started: set[str],
    deadline: timedelta,
) -> str:
    source = (
        f"spec.startDeadline {spec.start_deadline}"
        if spec.start_deadline
        else "the operator's default, PERENNIAL_TRAINING_START_DEADLINE; spec.startDeadline overrides it"
    )
    clock = _start_clock(job)
    since = clock[1] if clock is not None else "creation"
    within = f"within {format_duration(deadline)} of the Job's {since} ({source})"
    head = (
        f"the trainer did not start {within}"
        if spec.workers == 1
        else f"{len(started)} of {spec.workers} workers started {within}"
    )
    waiting = [
        pod
        for pod in pods
        if not trainer_started(pod)
        and _worker(pod, spec.workers) not in started
        and not pod.get("metadata", {}).get("deletionTimestamp")
    ]
    if not waiting:
        name = job.get("metadata", {}).get("name", "")
        return (
            f"{head}: the Job has no pod waiting to start;"
            f" `kubectl describe job {name}` shows why (a ResourceQuota, an admission webhook)"
        )
    # Newest first: a replacement pod tells the current state, not a failed predecessor.
    waiting.sort(key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), reverse=True)
    more = f" (and {len(waiting) - 1} more pod(s))" if len(waiting) > 1 else ""
    return f"{head}: {_why_not_started(waiting[0])}{more}"


# ---------------------------------------------------------------- the plan
def plan_trainingjob(observed: ObservedRun) -> TrainingPlan:
    """Everything one reconcile of a TrainingJob does: its status, the children to create or
    delete, what to do with a finished Job, the Events, when to look again.

    The status comes from the Job (and, when it decides, its pods). The Job (and a
    distributed run's headless Service) is created only while status records no
    ``jobName``: once it does, a missing Job is never recreated — rerunning a finished or
    half-finished training would silently produce a second model under one version.
    """
    ref = observed.ref
    plan = TrainingPlan(
        status=observed.status.model_copy(deep=True), now=truncate(observed.now), generation=ref.generation
    )
    plan.status.observed_generation = ref.generation
    if not run_finished(observed.status):  # a finished run is history: only the observed generation follows
        _plan_run(plan, observed)
    if run_finished(plan.status):
        _settle_job(plan, observed)
    return plan


def _plan_run(plan: TrainingPlan, observed: ObservedRun) -> None:
    ref = observed.ref
    if isinstance(observed.spec, InvalidSpec):
        plan.status.phase = "Failed"
        plan.condition("Succeeded", "False", INVALID_SPEC, observed.spec.detail[:1000])
        return
    spec = observed.spec
    job = observed.job
    if job is not None and not controlled_by(job, ref.uid):
        _conflict(plan, "Job", ref.name)
        return

    plan.status = _base_status(ref, spec, plan.status.conditions)
    if job is None:
        if observed.status.job_name:
            _job_gone(plan, spec, observed)
            return
        plan.status.phase = "Pending"
        plan.condition("Succeeded", "Unknown", "Pending", "creating the Job")
        plan.condition("Running", "False", "Pending", "the Job has not started")
        service = desired_service(ref, spec)
        job_manifest = desired_job(ref, spec, observed.created_at or observed.now)
        plan.create = [*([service] if service is not None else []), job_manifest]
        return

    job_status = job.get("status", {})
    plan.status.job_name = ref.name
    plan.status.attempts = _attempts(job_status)
    # A merge patch stores no nulls: leave startTime out until there is one.
    plan.status.start_time = parse_time(job_status.get("startTime")) or observed.status.start_time
    failed = _true_job_condition(job, "Failed")
    if failed is not None:
        message = str(failed.get("message") or "the Job failed")
        exit_detail = trainer_exit_detail(pods_of_job(observed.pods, job))
        _finish(
            plan,
            "Failed",
            str(failed.get("reason") or "JobFailed"),
            f"{message}; {exit_detail}" if exit_detail else message,
            completion=parse_time(failed.get("lastTransitionTime")),
        )
    elif _true_job_condition(job, "Complete") is not None:
        completion = parse_time(job_status.get("completionTime"))
        _complete(plan, spec, pods_of_job(observed.pods, job), completion)
    else:
        _progress(plan, ref, spec, job, observed.status.phase)
        _check_start(plan, spec, job, observed)


def _job_gone(plan: TrainingPlan, spec: TrainingJobSpec, observed: ObservedRun) -> None:
    """The Job existed and is gone before the run finished (deleted by hand, or by a TTL set on
    it by someone else): a result its pods still hold is read; otherwise the run fails, never reruns."""
    stored = observed.status
    plan.status.job_name = stored.job_name
    plan.status.start_time = stored.start_time
    plan.status.attempts = stored.attempts
    pods = pods_of_deleted_job(observed.pods, stored.job_name or "")
    succeeded = [pod for pod in pods if pod.get("status", {}).get("phase") == "Succeeded"]
    if len({_worker(pod, spec.workers) for pod in succeeded}) >= spec.workers:
        finished = [parse_time(trainer_termination(pod).get("finishedAt")) for pod in succeeded]
        _complete(plan, spec, pods, max((t for t in finished if t is not None), default=None))
        return
    _finish(
        plan,
        "Failed",
        JOB_DELETED,
        "the Job was deleted before the operator read the run's result, and no pod of it holds one"
        " (the run had not finished, or its pods are gone too); create a new TrainingJob to run again",
    )


def _check_start(plan: TrainingPlan, spec: TrainingJobSpec, job: Mapping[str, Any], observed: ObservedRun) -> None:
    """Until every worker's trainer started, the run waits at most its start deadline (from the
    Job's creation); then it fails with the reason a pod gives, and its Job is deleted."""
    if _start_settled(job, spec.workers):
        return
    deadline = start_deadline(spec, observed.default_start_deadline)
    deadline_at = _start_deadline_at(spec, job, observed.default_start_deadline)
    if deadline_at is None:
        return
    if observed.now < deadline_at:
        plan.later((deadline_at - observed.now).total_seconds())  # look again exactly then
        return
    pods = pods_of_job(observed.pods, job)
    started = _started_workers(job, pods, spec.workers)
    if len(started) >= spec.workers:
        return  # they all ran; a retry waiting now is the backoff limit's and activeDeadline's business
    _finish(plan, "Failed", START_DEADLINE_EXCEEDED, _not_started_message(spec, job, pods, started, deadline))


def _settle_job(plan: TrainingPlan, observed: ObservedRun) -> None:
    """What becomes of a finished run's Job: one still running is deleted (the run gave up on it:
    its pods stop retrying); a finished one gets the run's TTL (its result is read), once."""
    job = observed.job
    metadata = job.get("metadata", {}) if job is not None else {}
    if job is None or not controlled_by(job, observed.ref.uid) or metadata.get("deletionTimestamp"):
        return
    if not job_finished(job):
        plan.delete.append(ChildRef(JOBS_PLURAL, str(metadata.get("name") or observed.ref.name)))
    elif not isinstance(observed.spec, InvalidSpec) and job.get("spec", {}).get("ttlSecondsAfterFinished") is None:
        plan.job_ttl_seconds = ttl_seconds(observed.spec)


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
    plan: Plan[TrainingJobStatus],
    spec: TrainingJobSpec,
    pods: Sequence[Mapping[str, Any]],
    completion: datetime | None,
) -> None:
    """A run whose workers all succeeded: the trainer's metrics against the gates make it Succeeded or Rejected."""
    pod = result_pod(pods, spec.workers)
    terminated = trainer_termination(pod) if pod else {}
    parsed = parse_termination_message(terminated.get("message"))
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
