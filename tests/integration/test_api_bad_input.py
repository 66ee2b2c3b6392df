"""A corpus of malformed resources the real API server must refuse, each with a usable error.

Every case deep-copies a *valid* base object of its kind and changes one thing, so it
fails for exactly one reason. It is applied the way a user would (`kubectl apply -f -`
with kubectl's default strict field validation), and the test asserts that kubectl
fails, that its error names the rejected field, and that it says what is wrong in
words a user can act on (the CEL rule's message or the schema error).

Known CRD defects stay in the table as strict xfails that expect one specific
exception: a case the API server wrongly *accepts* raises AcceptedError, a rejection
whose error does not name the field raises FieldNotNamedError, one that quotes the
schema's raw regex instead of the expected words raises RawPatternError, and one
mistake reported as several errors raises ReportedTwiceError. Any other failure
(say, a regression in the message) still fails the run.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from subprocess import CompletedProcess
from typing import Any, Final

import pytest
import yaml
from _pytest.mark import ParameterSet

from tests.support.cluster import ClusterInfo, install_crds

Resource = dict[str, Any]
Mutation = Callable[[Resource], None]


@pytest.fixture(autouse=True)
def _crds_installed(cluster: ClusterInfo) -> None:
    """The CRDs under test, applied and Established once per cluster this session."""
    install_crds(cluster)


# ---------------------------------------------------------------- valid bases
TRAINING_JOB: Final[Resource] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn-experiment-1"},
    "spec": {
        "image": "registry.example/churn-trainer:2.3.0",
        "output": {"modelUri": "s3://models/{model}/{version}"},
        "validation": [{"metric": "auc", "min": 0.9}],
    },
}

MODEL_DEPLOYMENT: Final[Resource] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "churn"},
    "spec": {
        "training": {
            "image": "registry.example/churn-trainer:2.3.0",
            "output": {"modelUri": "s3://models/{model}/{version}"},
        },
        "serving": {"image": "registry.example/churn-server:1.9.0"},
    },
}

DRIFT_POLICY: Final[Resource] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "DriftPolicy",
    "metadata": {"name": "churn-drift"},
    "spec": {
        "targetRef": {"name": "churn"},
        "metrics": [
            {"name": "feature_psi", "query": 'max(churn_feature_psi{model="churn"})', "max": 0.2},
            {
                "name": "tenure_shift",
                "distribution": {
                    "test": "psi",
                    "current": "sum by (le) (increase(churn_tenure_bucket[1h]))",
                    "baseline": {"sincePromotion": "1h"},
                },
                "max": 0.25,
            },
        ],
    },
}


# ---------------------------------------------------------------- mutations
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    """`spec.validation[0].min` -> ["spec", "validation", 0, "min"]."""
    return [key if key else int(index) for key, index in _STEP.findall(path)]


def _parent(obj: Resource, steps: list[str | int]) -> Any:
    node: Any = obj
    for step in steps[:-1]:
        node = node[step] if isinstance(step, int) else node.setdefault(step, {})
    return node


def put(path: str, value: Any) -> Mutation:
    """Set the field at `path`, creating missing parent objects: put("spec.workers", 0)."""

    def mutate(obj: Resource) -> None:
        steps = _steps(path)
        _parent(obj, steps)[steps[-1]] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    """Remove the field at `path`: drop("spec.image")."""

    def mutate(obj: Resource) -> None:
        steps = _steps(path)
        del _parent(obj, steps)[steps[-1]]

    return mutate


def every(*mutations: Mutation) -> Mutation:
    def mutate(obj: Resource) -> None:
        for mutation in mutations:
            mutation(obj)

    return mutate


def build(base: Resource, mutate: Mutation | None = None) -> Resource:
    obj = copy.deepcopy(base)
    if mutate is not None:
        mutate(obj)
    return obj


# ---------------------------------------------------------------- the corpus
class AcceptedError(AssertionError):
    """The API server accepted a resource it must refuse."""


class FieldNotNamedError(AssertionError):
    """The API server refused the resource, but its error does not name the rejected field."""


class RawPatternError(AssertionError):
    """The API server refused the resource, but says only that the value "should match" a raw regex."""


class ReportedTwiceError(AssertionError):
    """The API server refused the resource, but reports the one mistake as more than one error."""


@dataclass(frozen=True)
class BadInput:
    """One malformed resource: a valid base plus one mutation, and the error it must earn."""

    id: str
    base: Resource
    mutate: Mutation
    expected_field: str
    expected_message: str

    def manifest(self) -> str:
        return yaml.safe_dump(build(self.base, self.mutate), sort_keys=False)


def bad(
    case_id: str,
    base: Resource,
    mutate: Mutation,
    field: str,
    message: str,
    *,
    accepted: str | None = None,
    field_not_named: str | None = None,
    raw_pattern: str | None = None,
    reported_twice: str | None = None,
) -> ParameterSet:
    """A table row. Each keyword argument gives the reason of a known CRD defect of that kind."""
    defects: dict[type[AssertionError], str | None] = {
        AcceptedError: accepted,
        FieldNotNamedError: field_not_named,
        RawPatternError: raw_pattern,
        ReportedTwiceError: reported_twice,
    }
    marks = [pytest.mark.xfail(strict=True, raises=error, reason=reason) for error, reason in defects.items() if reason]
    return pytest.param(BadInput(case_id, base, mutate, field, message), id=case_id, marks=marks)


TJ, MD, DP = TRAINING_JOB, MODEL_DEPLOYMENT, DRIFT_POLICY
LONG_IMAGE: Final = "registry.example/" + "a" * 1983  # 2000 characters
BASELINE_QUERY: Final = "sum by (le) (increase(churn_tenure_bucket[1h] offset 7d))"

# Stable parts of the API server's schema errors.
AT_LEAST_0: Final = "should be greater than or equal to 0"
AT_LEAST_1: Final = "should be greater than or equal to 1"
NOT_INTEGER: Final = "must be of type integer"
NOT_OBJECT: Final = "must be of type object"
NOT_ARRAY: Final = "must be of type array"
NO_MATCH: Final = "should match"
REQUIRED: Final = "Required value"
UNSUPPORTED: Final = "Unsupported value"
UNKNOWN: Final = "unknown field"
# Stable parts of the CEL rules' messages for formats (FRIENDLY_PATTERNS in perennial.api.base).
DURATION: Final = "must be a duration such as 30s, 10m, 6h or 1h30m (units h, m, s, ms, largest first)"
CRON: Final = 'must be a cron schedule in UTC: five fields "minute hour day-of-month month day-of-week"'
DNS_NAME: Final = "must be a DNS name: lower-case letters, digits, '-' and '.'"
LABEL_VALUE: Final = "must be a label value: letters, digits, '-', '_' or '.', starting and ending with one"
ENV_NAME: Final = "must be an environment variable name: letters, digits, '_', '-' or '.', not starting with a digit"
METRIC_NAME: Final = "must be a metric name: letters, digits and '_', not starting with a digit"
IMAGE: Final = "must be an image reference such as registry.example/trainer:1.2.0 (no spaces)"
QUANTITY: Final = "must be a quantity such as 500m, 2, 4Gi or 1.5"
PINNED_VERSION: Final = 'must be a version number such as "3", or empty to serve what promotion chose'
PLACEHOLDERS: Final = "may use only the placeholders {triggerTime}, {triggerDate}, {version}, {model} and {namespace}"

CASES: Final = [
    # -------------------------------------------------- TrainingJob
    bad("tj-workers-string", TJ, put("spec.workers", "two"), "spec.workers", NOT_INTEGER),
    bad(
        "tj-hyperparameter-number",
        TJ,
        put("spec.hyperparameters", {"lr": 0.01}),
        "spec.hyperparameters.lr",
        "must be of type string",
    ),
    bad("tj-workers-zero", TJ, put("spec.workers", 0), "spec.workers", AT_LEAST_1),
    bad("tj-backoff-limit-negative", TJ, put("spec.backoffLimit", -1), "spec.backoffLimit", AT_LEAST_0),
    bad("tj-image-missing", TJ, drop("spec.image"), "spec.image", REQUIRED),
    bad("tj-image-whitespace", TJ, put("spec.image", " "), "spec.image", IMAGE),
    bad(
        "tj-image-too-long",
        TJ,
        put("spec.image", LONG_IMAGE),
        "spec.image",
        "Too long: may not be more than 1024 bytes",
    ),
    bad("tj-output-model-uri-missing", TJ, drop("spec.output.modelUri"), "spec.output.modelUri", REQUIRED),
    bad(
        "tj-output-model-uri-empty",
        TJ,
        put("spec.output.modelUri", ""),
        "spec.output.modelUri",
        "should be at least 1 chars long",
    ),
    bad(
        "tj-output-unknown-placeholder",
        TJ,
        put("spec.output.modelUri", "s3://models/{model}/{date}"),
        "spec.output.modelUri",
        "output.modelUri may use only the placeholders {model}, {version} and {namespace}",
    ),
    bad("tj-output-list-for-object", TJ, put("spec.output", ["s3://models/churn"]), "spec.output", NOT_OBJECT),
    bad("tj-validation-string-for-list", TJ, put("spec.validation", "auc > 0.9"), "spec.validation", NOT_ARRAY),
    bad(
        "tj-validation-min-above-max",
        TJ,
        put("spec.validation[0]", {"metric": "auc", "min": 0.9, "max": 0.5}),
        "spec.validation[0].min",
        "min must not exceed max",
    ),
    bad(
        "tj-validation-no-bound",
        TJ,
        put("spec.validation[0]", {"metric": "auc"}),
        "spec.validation[0].metric",
        "a validation rule needs min, max or both",
    ),
    bad("tj-validation-metric-missing", TJ, drop("spec.validation[0].metric"), "spec.validation[0].metric", REQUIRED),
    bad(
        "tj-validation-duplicate-metric",
        TJ,
        put("spec.validation", [{"metric": "auc", "min": 0.9}, {"metric": "auc", "max": 0.99}]),
        "spec.validation",
        "each metric may have one validation rule",
    ),
    bad("tj-active-deadline-words", TJ, put("spec.activeDeadline", "10 minutes"), "spec.activeDeadline", DURATION),
    bad("tj-active-deadline-negative", TJ, put("spec.activeDeadline", "-5m"), "spec.activeDeadline", DURATION),
    bad(
        "tj-active-deadline-seven-digits",
        TJ,
        put("spec.activeDeadline", "1234567s"),
        "spec.activeDeadline",
        DURATION,
    ),
    bad("tj-ttl-after-finished-fraction", TJ, put("spec.ttlAfterFinished", "1.5h"), "spec.ttlAfterFinished", DURATION),
    bad("tj-trigger-reason-unknown", TJ, put("spec.trigger", {"reason": "Retry"}), "spec.trigger.reason", UNSUPPORTED),
    bad("tj-trigger-reason-missing", TJ, put("spec.trigger", {"source": "me"}), "spec.trigger.reason", REQUIRED),
    # "v3" is a valid spec.version: it defaults to metadata.name, so it is a label value, not a number.
    bad("tj-version-not-a-label-value", TJ, put("spec.version", "v 3"), "spec.version", LABEL_VALUE),
    bad(
        "tj-security-context-privileged",
        TJ,
        put("spec.securityContext", {"privileged": True}),
        "spec.securityContext",
        UNKNOWN,
    ),
    bad("tj-host-network", TJ, put("spec.hostNetwork", True), "spec.hostNetwork", UNKNOWN),
    bad(
        "tj-host-path-volume",
        TJ,
        put("spec.volumes", [{"name": "host", "hostPath": {"path": "/"}}]),
        "spec.volumes[0].hostPath",
        UNKNOWN,
    ),
    bad(
        "tj-volume-two-sources",
        TJ,
        put("spec.volumes", [{"name": "data", "emptyDir": {}, "configMap": {"name": "settings"}}]),
        "spec.volumes[0]",
        "a volume needs exactly one source: emptyDir, configMap, secret or persistentVolumeClaim",
    ),
    bad(
        "tj-volume-mount-propagation",
        TJ,
        put("spec.volumeMounts", [{"name": "data", "mountPath": "/data", "mountPropagation": "Bidirectional"}]),
        "spec.volumeMounts[0].mountPropagation",
        UNKNOWN,
    ),
    bad(
        "tj-pod-labels-reserved-prefix",
        TJ,
        put("spec.podLabels", {"perennial.dev/version": "9"}),
        "spec.podLabels",
        "podLabels may not use the perennial.dev/ prefix or app.kubernetes.io/managed-by",
    ),
    bad(
        "tj-pod-labels-invalid-value",
        TJ,
        put("spec.podLabels", {"team": "machine learning"}),
        "spec.podLabels",
        "podLabels values must be label values: at most 63 letters, digits, '-', '_' or '.'",
    ),
    bad(
        "tj-pod-annotations-managed-by",
        TJ,
        put("spec.podAnnotations", {"app.kubernetes.io/managed-by": "me"}),
        "spec.podAnnotations",
        "podAnnotations may not use the perennial.dev/ prefix or app.kubernetes.io/managed-by",
    ),
    bad(
        "tj-pod-annotations-key-space",
        TJ,
        put("spec.podAnnotations", {"team name": "ml"}),
        "spec.podAnnotations",
        "podAnnotations keys must be label keys: [prefix/]name",
    ),
    bad(
        "tj-env-value-and-value-from",
        TJ,
        put(
            "spec.env",
            [{"name": "TOKEN", "value": "x", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
        ),
        "spec.env[0]",
        "an env var has either value or valueFrom, not both",
    ),
    bad(
        "tj-env-value-from-two-sources",
        TJ,
        put(
            "spec.env",
            [
                {
                    "name": "TOKEN",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.name"},
                        "secretKeyRef": {"name": "creds", "key": "token"},
                    },
                }
            ],
        ),
        "spec.env[0].valueFrom",
        "valueFrom needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
    ),
    bad(
        "tj-env-name-leading-digit",
        TJ,
        put("spec.env", [{"name": "1TOKEN", "value": "x"}]),
        "spec.env[0].name",
        ENV_NAME,
    ),
    bad(
        "tj-env-from-config-map-and-secret",
        TJ,
        put("spec.envFrom", [{"configMapRef": {"name": "settings"}, "secretRef": {"name": "creds"}}]),
        "spec.envFrom[0]",
        "envFrom needs exactly one of configMapRef or secretRef",
    ),
    bad(
        "tj-resources-bad-quantity",
        TJ,
        put("spec.resources", {"requests": {"cpu": "lots"}}),
        "spec.resources.requests[cpu]",
        QUANTITY,
    ),
    bad(
        "tj-toleration-operator-unknown",
        TJ,
        put("spec.tolerations", [{"key": "gpu", "operator": "Has"}]),
        "spec.tolerations[0].operator",
        UNSUPPORTED,
    ),
    bad(
        "tj-name-too-long",
        TJ,
        put("metadata.name", "t" * 64),
        "metadata.name",
        "Too long: may not be more than 63 bytes",
    ),
    bad(
        "tj-dataset-unknown-placeholder",
        TJ,
        put("spec.dataset", {"uri": "s3://data/{model}/{date}/"}),
        "spec.dataset.uri",
        f"dataset.uri {PLACEHOLDERS}",
    ),
    bad(
        "tj-dataset-window-start-without-end",
        TJ,
        put("spec.dataset", {"windowStart": "2026-11-29T06:00:00Z"}),
        "spec.dataset.windowStart",
        "dataset.windowStart and dataset.windowEnd are set together",
    ),
    bad(
        "tj-dataset-window-reversed",
        TJ,
        put("spec.dataset", {"windowStart": "2026-11-30T06:00:00Z", "windowEnd": "2026-11-29T06:00:00Z"}),
        "spec.dataset.windowStart",
        "dataset.windowStart must not be after dataset.windowEnd",
    ),
    bad(
        "tj-dataset-window-end-not-a-time",
        TJ,
        put("spec.dataset", {"windowStart": "2026-11-29T06:00:00Z", "windowEnd": "tomorrow"}),
        "spec.dataset.windowEnd",
        "must be of type date-time",
    ),
    bad(
        "tj-champion-model-uri-missing",
        TJ,
        put("spec.champion", {"version": "3"}),
        "spec.champion.modelUri",
        REQUIRED,
    ),
    # -------------------------------------------------- ModelDeployment
    bad(
        "md-training-output-model-uri-missing",
        MD,
        drop("spec.training.output.modelUri"),
        "spec.training.output.modelUri",
        REQUIRED,
    ),
    bad("md-serving-image-missing", MD, drop("spec.serving.image"), "spec.serving.image", REQUIRED),
    bad(
        "md-serving-image-empty",
        MD,
        put("spec.serving.image", ""),
        "spec.serving.image",
        IMAGE,
    ),
    bad("md-training-workers-zero", MD, put("spec.training.workers", 0), "spec.training.workers", AT_LEAST_1),
    bad("md-replicas-string", MD, put("spec.serving.replicas", "three"), "spec.serving.replicas", NOT_INTEGER),
    bad("md-replicas-negative", MD, put("spec.serving.replicas", -1), "spec.serving.replicas", AT_LEAST_0),
    bad(
        "md-port-out-of-range",
        MD,
        put("spec.serving.port", 70000),
        "spec.serving.port",
        "should be less than or equal to 65535",
    ),
    bad("md-suspend-string", MD, put("spec.suspend", "yes"), "spec.suspend", "must be of type boolean"),
    bad("md-rollout-list-for-object", MD, put("spec.rollout", ["10m"]), "spec.rollout", NOT_OBJECT),
    bad(
        "md-max-consecutive-failures-zero",
        MD,
        put("spec.retraining.maxConsecutiveFailures", 0),
        "spec.retraining.maxConsecutiveFailures",
        AT_LEAST_1,
    ),
    bad(
        "md-history-limit-101",
        MD,
        put("spec.retraining.historyLimit", 101),
        "spec.retraining.historyLimit",
        "should be less than or equal to 100",
    ),
    bad("md-cooldown-words", MD, put("spec.retraining.cooldown", "10 minutes"), "spec.retraining.cooldown", DURATION),
    bad("md-cooldown-days", MD, put("spec.retraining.cooldown", "7d"), "spec.retraining.cooldown", DURATION),
    bad(
        "md-progress-deadline-fraction",
        MD,
        put("spec.rollout.progressDeadline", "1.5h"),
        "spec.rollout.progressDeadline",
        DURATION,
    ),
    bad(
        "md-training-ttl-negative",
        MD,
        put("spec.training.ttlAfterFinished", "-5m"),
        "spec.training.ttlAfterFinished",
        DURATION,
    ),
    bad("md-schedule-minute-61", MD, put("spec.retraining.schedule", "61 * * * *"), "spec.retraining.schedule", CRON),
    bad("md-schedule-three-fields", MD, put("spec.retraining.schedule", "* * *"), "spec.retraining.schedule", CRON),
    bad("md-schedule-words", MD, put("spec.retraining.schedule", "every day"), "spec.retraining.schedule", CRON),
    bad("md-promotion-policy-unknown", MD, put("spec.promotion.policy", "Auto"), "spec.promotion.policy", UNSUPPORTED),
    bad(
        "md-require-improvement-metric-missing",
        MD,
        put("spec.promotion.requireImprovement", {"minDelta": 0.1}),
        "spec.promotion.requireImprovement.metric",
        REQUIRED,
    ),
    bad(
        "md-require-improvement-goal-unknown",
        MD,
        put("spec.promotion.requireImprovement", {"metric": "rmse", "goal": "Lower"}),
        "spec.promotion.requireImprovement.goal",
        UNSUPPORTED,
    ),
    bad(
        "md-require-improvement-goal-lower-case",
        MD,
        put("spec.promotion.requireImprovement", {"metric": "rmse", "goal": "minimize"}),
        "spec.promotion.requireImprovement.goal",
        UNSUPPORTED,
    ),
    bad("md-max-age-words", MD, put("spec.retraining.maxAge", "a week"), "spec.retraining.maxAge", DURATION),
    bad(
        "md-max-age-too-short",
        MD,
        put("spec.retraining.maxAge", "30s"),
        "spec.retraining.maxAge",
        "retraining.maxAge must be at least 1m",
    ),
    bad(
        "md-max-consecutive-not-promoted-zero",
        MD,
        put("spec.retraining.maxConsecutiveNotPromoted", 0),
        "spec.retraining.maxConsecutiveNotPromoted",
        AT_LEAST_1,
    ),
    bad(
        "md-pinned-version-prefixed",
        MD,
        put("spec.pinnedVersion", "v3"),
        "spec.pinnedVersion",
        PINNED_VERSION,
    ),
    bad(
        "md-pinned-version-zero",
        MD,
        put("spec.pinnedVersion", "0"),
        "spec.pinnedVersion",
        PINNED_VERSION,
    ),
    bad(
        "md-training-security-context-privileged",
        MD,
        put("spec.training.securityContext", {"privileged": True}),
        "spec.training.securityContext",
        UNKNOWN,
    ),
    bad(
        "md-serving-security-context-privileged",
        MD,
        put("spec.serving.securityContext", {"privileged": True}),
        "spec.serving.securityContext",
        UNKNOWN,
    ),
    bad(
        "md-serving-capabilities-added",
        MD,
        put("spec.serving.capabilities", {"add": ["NET_ADMIN"]}),
        "spec.serving.capabilities",
        UNKNOWN,
    ),
    bad("md-serving-host-network", MD, put("spec.serving.hostNetwork", True), "spec.serving.hostNetwork", UNKNOWN),
    bad("md-training-host-pid", MD, put("spec.training.hostPID", True), "spec.training.hostPID", UNKNOWN),
    bad(
        "md-serving-host-port",
        MD,
        put("spec.serving.ports", [{"containerPort": 80, "hostPort": 80}]),
        "spec.serving.ports",
        UNKNOWN,
    ),
    bad(
        "md-training-host-path-volume",
        MD,
        put("spec.training.volumes", [{"name": "host", "hostPath": {"path": "/var/run"}}]),
        "spec.training.volumes[0].hostPath",
        UNKNOWN,
    ),
    bad(
        "md-serving-host-path-volume",
        MD,
        put("spec.serving.volumes", [{"name": "host", "hostPath": {"path": "/var/run"}}]),
        "spec.serving.volumes[0].hostPath",
        UNKNOWN,
    ),
    bad(
        "md-serving-volume-mount-relative-path",
        MD,
        put("spec.serving.volumeMounts", [{"name": "models", "mountPath": "models"}]),
        "spec.serving.volumeMounts[0].mountPath",
        "should match '^/'",
    ),
    bad(
        "md-serving-pod-labels-reserved-prefix",
        MD,
        put("spec.serving.podLabels", {"perennial.dev/model": "other"}),
        "spec.serving.podLabels",
        "podLabels may not use the perennial.dev/ prefix or app.kubernetes.io/managed-by",
    ),
    bad(
        "md-serving-pod-labels-key-space",
        MD,
        put("spec.serving.podLabels", {"team name": "ml"}),
        "spec.serving.podLabels",
        "podLabels keys must be label keys: [prefix/]name",
    ),
    bad(
        "md-serving-env-value-and-value-from",
        MD,
        put(
            "spec.serving.env",
            [{"name": "POD", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        ),
        "spec.serving.env[0]",
        "an env var has either value or valueFrom, not both",
    ),
    bad(
        "md-readiness-probe-two-handlers",
        MD,
        put("spec.serving.readinessProbe", {"httpGet": {"path": "/ready", "port": 8080}, "tcpSocket": {"port": 8080}}),
        "spec.serving.readinessProbe",
        "a probe needs exactly one of httpGet, tcpSocket, exec or grpc",
    ),
    bad(
        "md-liveness-probe-no-handler",
        MD,
        put("spec.serving.livenessProbe", {"periodSeconds": 5}),
        "spec.serving.livenessProbe",
        "a probe needs exactly one of httpGet, tcpSocket, exec or grpc",
    ),
    bad(
        "md-model-uri-env-space", MD, put("spec.serving.modelUriEnv", "MODEL URI"), "spec.serving.modelUriEnv", ENV_NAME
    ),
    bad("md-training-model-field", MD, put("spec.training.model", "churn"), "spec.training.model", UNKNOWN),
    bad(
        "md-dataset-unknown-placeholder",
        MD,
        put("spec.training.dataset", {"uri": "s3://data/{model}/{foo}/"}),
        "spec.training.dataset.uri",
        f"dataset.uri {PLACEHOLDERS}; no other braces",
    ),
    bad(
        "md-dataset-placeholder-wrong-case",
        MD,
        put("spec.training.dataset", {"uri": "s3://data/{triggertime}/"}),
        "spec.training.dataset.uri",
        f"dataset.uri {PLACEHOLDERS}",
    ),
    bad(
        "md-dataset-version-stray-brace",
        MD,
        put("spec.training.dataset", {"version": "{triggerDate"}),
        "spec.training.dataset.version",
        f"dataset.version {PLACEHOLDERS}",
    ),
    bad(
        "md-dataset-window-words",
        MD,
        put("spec.training.dataset", {"window": "1 day"}),
        "spec.training.dataset.window",
        DURATION,
    ),
    bad(
        "md-dataset-window-days",
        MD,
        put("spec.training.dataset", {"window": "7d"}),
        "spec.training.dataset.window",
        DURATION,
    ),
    bad(
        "md-dataset-window-zero",
        MD,
        put("spec.training.dataset", {"window": "0s"}),
        "spec.training.dataset.window",
        "dataset.window must be at least 1s",
    ),
    bad(
        "md-training-champion-field",
        MD,
        put("spec.training.champion", {"version": "1", "modelUri": "s3://models/churn/1"}),
        "spec.training.champion",
        UNKNOWN,
    ),
    bad(
        "md-name-too-long",
        MD,
        put("metadata.name", "m" * 53),
        "metadata.name",
        "Too long: may not be more than 52 bytes",
    ),
    # A root CEL rule cannot point fieldPath at metadata, so kubectl prints the path as <nil>:
    # the field is named by the message itself ("metadata.name must start with a letter ...").
    bad(
        "md-name-leading-digit",
        MD,
        put("metadata.name", "1churn"),
        "metadata.name",
        "metadata.name must start with a letter and hold only lower-case letters, digits and '-'",
    ),
    bad(
        "md-name-upper-case",
        MD,
        put("metadata.name", "Churn"),
        "metadata.name",
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
    ),
    # -------------------------------------------------- ModelDeployment: canary rollouts
    bad(
        "md-canary-without-steps",
        MD,
        put("spec.rollout", {"strategy": "Canary"}),
        "spec.rollout.steps",
        "rollout.strategy Canary needs steps",
    ),
    bad(
        "md-steps-without-canary",
        MD,
        put("spec.rollout", {"steps": [{"weight": 20, "pause": "1m"}]}),
        "spec.rollout.strategy",
        "rollout.steps, rollout.analysis and rollout.canary need rollout.strategy Canary",
    ),
    bad(
        "md-canary-strategy-unknown",
        MD,
        put("spec.rollout", {"strategy": "BlueGreen"}),
        "spec.rollout.strategy",
        UNSUPPORTED,
    ),
    bad(
        "md-canary-weight-zero",
        MD,
        put("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 0, "pause": "1m"}]}),
        "spec.rollout.steps[0].weight",
        "should be greater than or equal to 1",
    ),
    bad(
        "md-canary-weight-over-100",
        MD,
        put("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 101, "pause": "1m"}]}),
        "spec.rollout.steps[0].weight",
        "should be less than or equal to 100",
    ),
    bad(
        "md-canary-pause-missing",
        MD,
        put("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 20}]}),
        "spec.rollout.steps[0].pause",
        REQUIRED,
    ),
    bad(
        "md-canary-pause-not-a-duration",
        MD,
        put("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 20, "pause": "a while"}]}),
        "spec.rollout.steps[0].pause",
        DURATION,
    ),
    bad(
        "md-canary-with-external-scaling",
        MD,
        every(
            put("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 20, "pause": "1m"}]}),
            put("spec.serving.externalScaling", True),
        ),
        "spec.rollout.strategy",
        "rollout.strategy Canary shares serving.replicas between two versions",
    ),
    bad(
        "md-canary-analysis-without-metrics",
        MD,
        put(
            "spec.rollout",
            {"strategy": "Canary", "steps": [{"weight": 20, "pause": "1m"}], "analysis": {"metrics": []}},
        ),
        "spec.rollout.analysis.metrics",
        "should have at least 1 items",
    ),
    bad(
        "md-canary-analysis-metric-without-bounds",
        MD,
        put(
            "spec.rollout",
            {
                "strategy": "Canary",
                "steps": [{"weight": 20, "pause": "1m"}],
                "analysis": {"metrics": [{"name": "errors", "query": "vector(1)"}]},
            },
        ),
        "spec.rollout.analysis.metrics[0].name",
        "a metric needs min, max or both",
    ),
    bad(
        "md-canary-analysis-duplicate-names",
        MD,
        put(
            "spec.rollout",
            {
                "strategy": "Canary",
                "steps": [{"weight": 20, "pause": "1m"}],
                "analysis": {
                    "metrics": [
                        {"name": "errors", "query": "vector(1)", "max": 1},
                        {"name": "errors", "query": "vector(2)", "max": 1},
                    ]
                },
            },
        ),
        "spec.rollout.analysis.metrics",
        "analysis metric names must be unique",
    ),
    bad(
        "md-canary-analysis-interval-too-short",
        MD,
        put(
            "spec.rollout",
            {
                "strategy": "Canary",
                "steps": [{"weight": 20, "pause": "1m"}],
                "analysis": {"interval": "1s", "metrics": [{"name": "errors", "query": "vector(1)", "max": 1}]},
            },
        ),
        "spec.rollout.analysis.interval",
        "analysis.interval must be at least 5s",
    ),
    # -------------------------------------------------- DriftPolicy
    bad(
        "dp-name-too-long",
        DP,
        put("metadata.name", "d" * 254),
        "metadata.name",
        "must be no more than 253 characters",
    ),
    bad(
        "dp-prometheus-timeout-over-cap",
        DP,
        put("spec.prometheus.timeout", "6m"),
        "spec.prometheus.timeout",
        "prometheus.timeout must be at most 5m",
    ),
    bad("dp-target-ref-name-missing", DP, put("spec.targetRef", {}), "spec.targetRef.name", REQUIRED),
    bad("dp-target-ref-name-upper-case", DP, put("spec.targetRef.name", "Churn"), "spec.targetRef.name", DNS_NAME),
    bad("dp-metrics-empty", DP, put("spec.metrics", []), "spec.metrics", "should have at least 1 items"),
    bad("dp-metrics-string-for-list", DP, put("spec.metrics", "feature_psi"), "spec.metrics", NOT_ARRAY),
    bad(
        "dp-metrics-too-many",
        DP,
        put("spec.metrics", [{"name": f"m{i}", "query": f"m{i}", "max": 1} for i in range(33)]),
        "spec.metrics",
        "must have at most 32 items",
    ),
    bad("dp-metric-name-missing", DP, drop("spec.metrics[0].name"), "spec.metrics[0].name", REQUIRED),
    bad("dp-metric-name-dash", DP, put("spec.metrics[0].name", "feature-psi"), "spec.metrics[0].name", METRIC_NAME),
    bad(
        "dp-metric-query-and-distribution",
        DP,
        put("spec.metrics[1].query", "max(churn_tenure)"),
        "spec.metrics[1].query",
        "a metric needs exactly one of query or distribution",
    ),
    bad(
        "dp-metric-neither-query-nor-distribution",
        DP,
        drop("spec.metrics[0].query"),
        "spec.metrics[0].query",
        "a metric needs exactly one of query or distribution",
    ),
    bad(
        "dp-metric-min-above-max", DP, put("spec.metrics[0].min", 0.5), "spec.metrics[0].min", "min must not exceed max"
    ),
    bad(
        "dp-metric-no-bound", DP, drop("spec.metrics[0].max"), "spec.metrics[0].name", "a metric needs min, max or both"
    ),
    bad("dp-metric-min-string", DP, put("spec.metrics[0].min", "low"), "spec.metrics[0].min", "must be of type number"),
    bad(
        "dp-metric-names-duplicate",
        DP,
        put("spec.metrics[1].name", "feature_psi"),
        "spec.metrics",
        "metric names must be unique",
    ),
    bad(
        "dp-distribution-test-unknown",
        DP,
        put("spec.metrics[1].distribution.test", "chi2"),
        "spec.metrics[1].distribution.test",
        UNSUPPORTED,
    ),
    bad(
        "dp-baseline-since-promotion-and-query",
        DP,
        put("spec.metrics[1].distribution.baseline.query", BASELINE_QUERY),
        "spec.metrics[1].distribution.baseline",
        "baseline needs exactly one of sincePromotion or query",
    ),
    bad(
        "dp-baseline-empty",
        DP,
        put("spec.metrics[1].distribution.baseline", {}),
        "spec.metrics[1].distribution.baseline",
        "baseline needs exactly one of sincePromotion or query",
    ),
    bad(
        "dp-baseline-since-promotion-words",
        DP,
        put("spec.metrics[1].distribution.baseline.sincePromotion", "10 minutes"),
        "spec.metrics[1].distribution.baseline.sincePromotion",
        DURATION,
    ),
    bad(
        "dp-min-samples-zero",
        DP,
        put("spec.metrics[1].distribution.minSamples", 0),
        "spec.metrics[1].distribution.minSamples",
        AT_LEAST_1,
    ),
    bad("dp-interval-words", DP, put("spec.interval", "10 minutes"), "spec.interval", DURATION),
    bad("dp-interval-missing-unit", DP, put("spec.interval", "1h30"), "spec.interval", DURATION),
    bad("dp-interval-below-minimum", DP, put("spec.interval", "5s"), "spec.interval", "interval must be at least 10s"),
    bad("dp-interval-zero", DP, put("spec.interval", "0s"), "spec.interval", "interval must be at least 10s"),
    bad("dp-for-negative", DP, put("spec.metrics[0].for", "-5m"), "spec.metrics[0].for", DURATION),
    bad("dp-for-units-out-of-order", DP, put("spec.metrics[0].for", "5s1h"), "spec.metrics[0].for", DURATION),
    bad(
        "dp-prometheus-timeout-fraction",
        DP,
        put("spec.prometheus.timeout", "1.5h"),
        "spec.prometheus.timeout",
        DURATION,
    ),
    bad(
        "dp-prometheus-timeout-zero",
        DP,
        put("spec.prometheus.timeout", "0s"),
        "spec.prometheus.timeout",
        "prometheus.timeout must be at least 1s",
    ),
    bad(
        "dp-prometheus-url-scheme", DP, put("spec.prometheus.url", "ftp://prometheus"), "spec.prometheus.url", NO_MATCH
    ),
    bad(
        "dp-prometheus-url-and-endpoint",
        DP,
        put("spec.prometheus", {"url": "http://prometheus.monitoring:9090", "endpoint": "thanos"}),
        "spec.prometheus.endpoint",
        "prometheus.endpoint and prometheus.url are exclusive: name an endpoint the operator defines,"
        " or give a URL the operator allows",
    ),
    bad(
        "dp-prometheus-endpoint-not-a-name",
        DP,
        put("spec.prometheus.endpoint", "Thanos_EU"),
        "spec.prometheus.endpoint",
        "must be a DNS label: lower-case letters, digits and '-', starting and ending with one",
    ),
    bad(
        "dp-prometheus-endpoint-too-long",
        DP,
        put("spec.prometheus.endpoint", "t" * 64),
        "spec.prometheus.endpoint",
        "Too long: may not be more than 63 bytes",
    ),
    bad("dp-trigger-cooldown-negative", DP, put("spec.trigger.cooldown", "-5m"), "spec.trigger.cooldown", DURATION),
    bad("dp-trigger-when-unknown", DP, put("spec.trigger.when", "SomeMetrics"), "spec.trigger.when", UNSUPPORTED),
    bad("dp-trigger-action-unknown", DP, put("spec.trigger.action", "Page"), "spec.trigger.action", UNSUPPORTED),
]


# ---------------------------------------------------------------- helpers
_NOT_CHECKED = "some validation rules were not checked because the object was invalid"
_RAW_PATTERN = "in body should match '"


def _apply(cluster: ClusterInfo, namespace: str, obj: Resource, *extra: str) -> CompletedProcess[str]:
    manifest = yaml.safe_dump(obj, sort_keys=False)
    return cluster.kubectl_run("apply", "-n", namespace, *extra, "-f", "-", stdin=manifest, check=False)


def _get(cluster: ClusterInfo, namespace: str, obj: Resource) -> Resource:
    name = obj["metadata"]["name"]
    result = cluster.kubectl_run("get", "-n", namespace, obj["kind"].lower(), name, "-o", "json")
    stored: Resource = json.loads(result.stdout)
    return stored


def _names_field(stderr: str, field: str) -> bool:
    """The error names `field` itself, not merely a longer path that starts with it."""
    return re.search(rf"(?<![\w.\[\]]){re.escape(field)}(?![\w.\[])", stderr) is not None


def _reasons(stderr: str) -> list[str]:
    """The distinct errors kubectl reports (the API server's "not checked" footnote aside)."""
    if "strict decoding error:" in stderr:
        return re.findall(r'unknown field "[^"]*"', stderr)
    bullets = [line[2:] for line in stderr.splitlines() if line.startswith("* ")]
    if bullets:
        return [bullet for bullet in bullets if _NOT_CHECKED not in bullet]
    return [stderr.strip()]


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("base", [TJ, MD, DP], ids=lambda base: str(base["kind"]))
def test_valid_base_applies_cleanly(cluster: ClusterInfo, namespace: str, base: Resource) -> None:
    """The corpus is only meaningful if every base is accepted before it is mutated."""
    result = _apply(cluster, namespace, build(base))
    assert result.returncode == 0, result.stderr
    assert f"{base['metadata']['name']} created" in result.stdout
    assert _get(cluster, namespace, base)["spec"]  # stored, defaults and all


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_rejected_with_a_usable_error(cluster: ClusterInfo, namespace: str, case: BadInput) -> None:
    result = cluster.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=case.manifest(), check=False)
    if result.returncode == 0:
        raise AcceptedError(f"accepted:\n{case.manifest()}\n{result.stdout}")
    stderr = result.stderr
    if case.expected_message not in stderr and _RAW_PATTERN in stderr:
        raise RawPatternError(f"{case.expected_message!r} not in:\n{stderr}")
    assert case.expected_message in stderr, stderr
    if len(_reasons(stderr)) != 1:
        raise ReportedTwiceError(f"the case should fail for exactly one reason:\n{stderr}")
    if not _names_field(stderr, case.expected_field):
        raise FieldNotNamedError(f"{case.expected_field} not named in:\n{stderr}")


def test_training_job_spec_is_immutable_but_metadata_is_not(cluster: ClusterInfo, namespace: str) -> None:
    assert _apply(cluster, namespace, build(TJ)).returncode == 0

    edited = _apply(cluster, namespace, build(TJ, put("spec.image", "registry.example/churn-trainer:2.4.0")))
    assert edited.returncode != 0, edited.stdout
    assert "TrainingJob spec is immutable: create a new TrainingJob to change a run" in edited.stderr
    assert _names_field(edited.stderr, "spec"), edited.stderr

    relabelled = _apply(cluster, namespace, build(TJ, put("metadata.labels", {"team": "ml"})))
    assert relabelled.returncode == 0, relabelled.stderr
    stored = _get(cluster, namespace, TJ)
    assert stored["metadata"]["labels"] == {"team": "ml"}
    assert stored["spec"]["image"] == TJ["spec"]["image"]


def test_unknown_privileged_fields_are_pruned_without_client_validation(cluster: ClusterInfo, namespace: str) -> None:
    """A client that skips field validation cannot smuggle privilege in: the fields never reach storage."""
    sneaky = build(TJ, put("spec.securityContext", {"privileged": True}))
    sneaky["spec"]["hostNetwork"] = True
    result = _apply(cluster, namespace, sneaky, "--validate=false")
    assert result.returncode == 0, result.stderr
    stored = _get(cluster, namespace, TJ)["spec"]
    assert "securityContext" not in stored
    assert "hostNetwork" not in stored


def test_host_path_volume_is_refused_without_client_validation(cluster: ClusterInfo, namespace: str) -> None:
    """Pruning leaves a volume without a source, and the exactly-one-source rule refuses it."""
    obj = build(TJ, put("spec.volumes", [{"name": "host", "hostPath": {"path": "/"}}]))
    result = _apply(cluster, namespace, obj, "--validate=false")
    assert result.returncode != 0, result.stdout
    assert "a volume needs exactly one source" in result.stderr
    assert _names_field(result.stderr, "spec.volumes[0]"), result.stderr


def test_a_canary_with_analysis_placeholders_is_accepted_and_stored_as_written(
    cluster: ClusterInfo, namespace: str
) -> None:
    rollout = {
        "strategy": "Canary",
        "steps": [{"weight": 10, "pause": "0s"}, {"weight": 50, "pause": "10m"}, {"weight": 100, "pause": "1m"}],
        "analysis": {
            "metrics": [
                {
                    "name": "errors",
                    "query": 'sum(rate(errors{model="{model}",namespace="{namespace}",version="{version}"}[1m]))'
                    ' - sum(rate(errors{version="{stableVersion}"}[1m]))',
                    "max": 0.01,
                    "for": "30s",
                }
            ]
        },
    }
    result = _apply(cluster, namespace, build(MD, put("spec.rollout", rollout)))
    assert result.returncode == 0, result.stderr
    stored = _get(cluster, namespace, MD)["spec"]["rollout"]
    assert stored["steps"] == rollout["steps"]
    assert stored["analysis"]["metrics"][0]["query"] == rollout["analysis"]["metrics"][0]["query"]
    assert stored["analysis"]["interval"] == "30s"
    assert stored["progressDeadline"] == "10m"


def test_dataset_placeholders_and_windows_are_accepted(cluster: ClusterInfo, namespace: str) -> None:
    """Every placeholder, a window, and an explicit window (start = end too) apply and are stored as written."""
    template = {
        "uri": "s3://data/{namespace}/{model}/{triggerDate}/{triggerTime}/v{version}",
        "version": "{triggerDate}",
        "window": "24h",
    }
    model = build(MD, put("spec.training.dataset", template))
    explicit = {"windowStart": "2026-11-29T06:00:00Z", "windowEnd": "2026-11-29T06:00:00Z"}
    run = build(TJ, put("spec.dataset", {"uri": "s3://data/churn/", "window": "24h", **explicit}))
    for obj in (model, run):
        result = _apply(cluster, namespace, obj)
        assert result.returncode == 0, result.stderr

    assert _get(cluster, namespace, MD)["spec"]["training"]["dataset"] == template
    assert _get(cluster, namespace, TJ)["spec"]["dataset"] == {"uri": "s3://data/churn/", "window": "24h", **explicit}
