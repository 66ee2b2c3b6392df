"""Golden values of ``training_hash``: the identity of a ModelDeployment's spec.training.

Every ModelDeployment records the hash of the spec.training its last run used
(``status.trainingSpecHash``); a different hash is a SpecChange, and a SpecChange retrains
(with ``retraining.onSpecChange``, the default). So the hash of a spec that did not change
must never change either, from one release of the operator to the next. If it does, the
upgrade itself is a SpecChange for every model in the cluster: all of them retrain at once
(and their TrainingJobs land on the cluster together).

The values below were computed once and are written out literally. A release that adds a
field to spec.training with a default (or changes a default, or how the spec is serialised)
must keep them: a spec that does not set the new field must hash as before, so a default
must not enter the hash. If one of these tests fails, fix ``training_hash``, not the value.
Only a deliberate, documented retrain-everything release may change them.
"""

from __future__ import annotations

from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec
from perennial.api.trainingjob import TrainingTemplate
from perennial.domain.modeldeployment import training_hash

SERVING = {"image": "registry.example/churn-server:1.9.0"}

MINIMAL: dict[str, Any] = {
    "image": "registry.example/churn-trainer:2.3.0",
    "output": {"modelUri": "s3://models/{model}/{version}"},
}

# MINIMAL with every defaulted field written out at its default, as `kubectl get -o yaml`
# shows it once the API server applied the CRD's defaults.
MINIMAL_DEFAULTS_EXPLICIT: dict[str, Any] = {
    **MINIMAL,
    "workers": 1,
    "backoffLimit": 2,
    "ttlAfterFinished": "24h",
}

TYPICAL: dict[str, Any] = {
    "image": "registry.example/churn-trainer:2.3.0",
    "dataset": {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"},
    "hyperparameters": {"learning_rate": "0.01", "max_depth": "8"},
    "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
    "validation": [{"metric": "auc", "min": 0.9}, {"metric": "loss", "max": 0.3}],
    "activeDeadline": "2h",
}

# Every field of spec.training set (nested objects too), none at its default.
FULL: dict[str, Any] = {
    "image": "registry.example/churn-trainer:2.3.0",
    "command": ["python", "-m", "churn.train"],
    "args": ["--epochs", "20"],
    "env": [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "churn-db", "key": "password"}}},
        {
            "name": "REGION",
            "valueFrom": {"configMapKeyRef": {"name": "churn-config", "key": "region", "optional": True}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEMORY", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ],
    "envFrom": [
        {"configMapRef": {"name": "churn-config"}},
        {"prefix": "S3_", "secretRef": {"name": "churn-s3", "optional": False}},
    ],
    "resources": {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": 1},
    },
    "dataset": {"uri": "s3://data/churn/2026-11-26/", "version": "2026-11-26"},
    "hyperparameters": {"learning_rate": "0.01", "max_depth": "8"},
    "output": {"modelUri": "s3://models/{namespace}/{model}/{version}"},
    "validation": [{"metric": "auc", "min": 0.9, "max": 1.0}, {"metric": "loss", "max": 0.3}],
    "workers": 4,
    "backoffLimit": 5,
    "activeDeadline": "6h",
    "ttlAfterFinished": "1h",
    "serviceAccountName": "churn-trainer",
    "nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 300},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]},
                }
            ],
        },
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "feature-store"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchExpressions": [{"key": "perennial.dev/model", "operator": "Exists"}]},
                    "namespaces": ["ml"],
                    "namespaceSelector": {"matchLabels": {"team": "risk"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        },
    },
    "volumes": [
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {
            "name": "config",
            "configMap": {
                "name": "churn-config",
                "items": [{"key": "a", "path": "a.yaml", "mode": 0o644}],
                "defaultMode": 0o440,
                "optional": True,
            },
        },
        {"name": "creds", "secret": {"secretName": "churn-s3", "defaultMode": 0o400}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "churn-data", "readOnly": True}},
    ],
    "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "config", "mountPath": "/etc/churn", "subPath": "a.yaml", "readOnly": True},
    ],
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "priorityClassName": "training-low",
    "podLabels": {"team": "risk"},
    "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
}


def spec_with(training: dict[str, Any], **fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"training": training, "serving": SERVING, **fields})


# ---------------------------------------------------------------- the golden values
@pytest.mark.parametrize(
    ("training", "golden"),
    [
        pytest.param(MINIMAL, "9710e2d9a7cc99af", id="minimal"),
        pytest.param(MINIMAL_DEFAULTS_EXPLICIT, "9710e2d9a7cc99af", id="minimal-defaults-written-out"),
        pytest.param(TYPICAL, "b3d9cdaffc508bea", id="typical"),
        pytest.param(FULL, "5282353d2f433769", id="full"),
        pytest.param({**MINIMAL, "startDeadline": "15m"}, "aa7409899f2b197e", id="start-deadline"),
        # dataset placeholders and window: the template is hashed, never what it resolves to.
        pytest.param(
            {
                **TYPICAL,
                "dataset": {
                    "uri": "s3://data/{model}/{triggerDate}/{triggerTime}",
                    "version": "{triggerDate}",
                    "window": "24h",
                },
            },
            "3de4982af0204a3d",
            id="dataset-template-and-window",
        ),
    ],
)
def test_training_hash_is_stable_across_releases(training: dict[str, Any], golden: str) -> None:
    assert training_hash(spec_with(training)) == golden


def test_defaults_written_out_hash_as_defaults_left_out() -> None:
    # The API server writes the CRD's defaults into the stored object; a spec read before
    # and after that must be the same spec.training.
    assert training_hash(spec_with(MINIMAL_DEFAULTS_EXPLICIT)) == training_hash(spec_with(MINIMAL))


def test_key_order_does_not_matter() -> None:
    reordered = {key: FULL[key] for key in reversed(FULL)}
    reordered["hyperparameters"] = {"max_depth": "8", "learning_rate": "0.01"}

    assert training_hash(spec_with(reordered)) == "5282353d2f433769"


def test_only_spec_training_counts() -> None:
    spec = spec_with(
        MINIMAL,
        serving={"image": "registry.example/churn-server:2.0.0", "replicas": 5},
        promotion={"policy": "Manual"},
        rollout={"progressDeadline": "30m", "autoRollback": False},
        retraining={"schedule": "0 3 * * 0", "cooldown": "6h", "historyLimit": 2},
        pinnedVersion="4",
        suspend=True,
    )

    assert training_hash(spec) == "9710e2d9a7cc99af"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"image": "registry.example/churn-trainer:2.4.0"}, id="image"),
        pytest.param({"dataset": {"version": "2026-11-27"}}, id="dataset"),
        pytest.param({"hyperparameters": {"learning_rate": "0.02"}}, id="hyperparameters"),
        pytest.param({"workers": 2}, id="a-default-changed"),
    ],
)
def test_a_change_to_spec_training_changes_the_hash(change: dict[str, Any]) -> None:
    assert training_hash(spec_with({**MINIMAL, **change})) != "9710e2d9a7cc99af"


# The fields of spec.training when the golden values were computed. FULL sets each of
# them and stays as it is: it is what a user wrote before any later field existed.
FIELDS_OF_THE_GOLDEN_VALUES = [
    "active_deadline",
    "affinity",
    "args",
    "backoff_limit",
    "command",
    "dataset",
    "env",
    "env_from",
    "hyperparameters",
    "image",
    "image_pull_secrets",
    "node_selector",
    "output",
    "pod_annotations",
    "pod_labels",
    "priority_class_name",
    "resources",
    "service_account_name",
    "tolerations",
    "ttl_after_finished",
    "validation",
    "volume_mounts",
    "volumes",
    "workers",
]


def test_the_full_sample_sets_every_field_and_nothing_unknown() -> None:
    training = spec_with(FULL).training

    # Unknown keys are dropped silently (extra="ignore"): a typo would leave a field out.
    assert training.to_api() == FULL
    assert sorted(training.model_fields_set) == FIELDS_OF_THE_GOLDEN_VALUES


# Fields added to spec.training after the golden values were computed.
FIELDS_ADDED_SINCE: list[str] = ["start_deadline"]


def test_a_new_field_of_spec_training_is_a_deliberate_change() -> None:
    # A new field fails this test on purpose. Keep the golden values, FULL and
    # FIELDS_OF_THE_GOLDEN_VALUES as they are: a spec that leaves the new field out must
    # hash as before (a field defaulting to None does; one with any other default must be
    # left out of the hash while at its default). List the field in FIELDS_ADDED_SINCE and
    # add a sample that sets it, with its own golden value.
    assert sorted(TrainingTemplate.model_fields) == sorted(FIELDS_OF_THE_GOLDEN_VALUES + FIELDS_ADDED_SINCE)
