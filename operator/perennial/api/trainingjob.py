"""TrainingJob (`tjob`): one training run as a Kubernetes Job, with lineage and validation gates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from perennial.api.base import (
    IMAGE_PATTERN,
    LONG_TEXT,
    SHORT,
    TEXT,
    URI,
    ApiModel,
    Condition,
    DnsSubdomain,
    Duration,
    LabelValue,
    MetricName,
    StringMap,
    at_least,
    cel,
    cel_rules,
    label_map_rules,
    validations,
)
from perennial.api.core import (
    Affinity,
    EnvFromSource,
    EnvVar,
    LocalObjectReference,
    ResourceRequirements,
    Toleration,
    Volume,
    VolumeMount,
)

TriggerReason = Literal["Initial", "SpecChange", "Schedule", "Drift", "Manual"]
TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Rejected"]

OUTPUT_URI_RULE = cel(
    r"self.modelUri.matches('^([^{}]|\\{(model|version|namespace)\\})*$')",
    "output.modelUri may use only the placeholders {model}, {version} and {namespace}",
    field_path=".modelUri",
)


# An RFC 3339 time in a spec (format date-time: CEL compares it as a timestamp); bounded like
# every spec string, for the API server's CEL cost estimate.
Timestamp = Annotated[datetime, Field(json_schema_extra={"maxLength": 64})]

# What dataset.uri and dataset.version may name, filled in when a run is triggered
# (domain.training.resolve_dataset). Any other brace is refused, so a placeholder that
# does not exist (a typo, {date}) fails at apply time instead of reaching the trainer.
DATASET_PLACEHOLDERS = ("triggerTime", "triggerDate", "version", "model", "namespace")
DATASET_PLACEHOLDERS_TEXT = "{triggerTime}, {triggerDate}, {version}, {model} and {namespace}"


def _dataset_placeholder_rule(field: str) -> dict[str, str]:
    names = "|".join(DATASET_PLACEHOLDERS)
    return cel(
        rf"!has(self.{field}) || self.{field}.matches('^([^{{}}]|\\{{({names})\\}})*$')",
        f"dataset.{field} may use only the placeholders {DATASET_PLACEHOLDERS_TEXT}; no other braces",
        field_path=f".{field}",
    )


class Dataset(ApiModel):
    """The data a run trains on (lineage). In a ModelDeployment's spec.training it is a template:
    the placeholders and the window are resolved each time a run is triggered, and the
    TrainingJob (and status.versions[].dataset) records the resolved values."""

    model_config = cel_rules(
        _dataset_placeholder_rule("uri"),
        _dataset_placeholder_rule("version"),
        cel(
            "has(self.windowStart) == has(self.windowEnd)",
            "dataset.windowStart and dataset.windowEnd are set together, or neither (then window and the"
            " trigger time give them)",
            field_path=".windowStart",
        ),
        cel(
            "!has(self.windowStart) || !has(self.windowEnd) || self.windowStart <= self.windowEnd",
            "dataset.windowStart must not be after dataset.windowEnd",
            field_path=".windowStart",
        ),
    )

    uri: Annotated[str, Field(max_length=URI)] | None = None
    """Where the data lives, in any form the trainer understands (s3://, gs://, a path). May hold
    placeholders, filled in when a run is triggered: {triggerTime} (the trigger time, RFC 3339 in
    UTC to the second, e.g. 2026-11-30T06:00:00Z), {triggerDate} (its date, YYYY-MM-DD),
    {version}, {model} and {namespace}. No other braces are allowed. The trigger time is when the
    ModelDeployment decided to train; for a TrainingJob created by hand, its windowEnd when set,
    else its creation time."""
    version: Annotated[str, Field(max_length=SHORT * 2)] | None = None
    """The data's version, e.g. a date or a snapshot id; may hold the same placeholders as uri."""
    window: Annotated[Duration, at_least("1s", "dataset.window")] | None = None
    """How much data before the trigger time the run trains on, e.g. 24h: the trainer gets
    PERENNIAL_DATA_WINDOW_START (the trigger time minus window, to the second) and
    PERENNIAL_DATA_WINDOW_END (the trigger time), and the TrainingJob records them as
    windowStart and windowEnd. Unset (and no windowStart/windowEnd): no window is passed."""
    window_start: Timestamp | None = None
    """Start of the data window (RFC 3339), given to the trainer as PERENNIAL_DATA_WINDOW_START.
    A ModelDeployment sets it on the TrainingJobs it creates (trigger time minus window); set by
    hand (with windowEnd) it is an explicit window that window does not change."""
    window_end: Timestamp | None = None
    """End of the data window (RFC 3339), given to the trainer as PERENNIAL_DATA_WINDOW_END. A
    ModelDeployment sets it to the trigger time on the TrainingJobs it creates. A TrainingJob
    created by hand with a window and neither windowStart nor windowEnd gets its creation time as
    the end."""


class DatasetRecord(ApiModel):
    """The data a version was trained on: its TrainingJob's dataset, placeholders resolved."""

    uri: str | None = None
    """Where the data lives, as the trainer got it (PERENNIAL_DATASET_URI)."""
    version: str | None = None
    """The data's version, as the trainer got it (PERENNIAL_DATASET_VERSION)."""
    window: str | None = None
    """The window length spec.training.dataset.window asked for."""
    window_start: datetime | None = None
    """Start of the data window the trainer got (PERENNIAL_DATA_WINDOW_START)."""
    window_end: datetime | None = None
    """End of the data window the trainer got (PERENNIAL_DATA_WINDOW_END): the trigger time."""


class Champion(ApiModel):
    """The version serving when the run was triggered: the model a new version must beat."""

    version: Annotated[str, Field(min_length=1, max_length=SHORT)]
    """The serving version (PERENNIAL_CHAMPION_VERSION)."""
    model_uri: Annotated[str, Field(min_length=1, max_length=URI)]
    """Where its model is (PERENNIAL_CHAMPION_MODEL_URI), so the trainer can score it on the same
    holdout as the new model and report that as champion_<metric>."""


class Output(ApiModel):
    """Where the trained model goes."""

    model_config = cel_rules(OUTPUT_URI_RULE)

    model_uri: Annotated[str, Field(min_length=1, max_length=URI)]
    """URI the trainer writes the model to; {model}, {version} and {namespace} are filled in."""


class ValidationRule(ApiModel):
    """A gate on one metric the trainer reports: the healthy range [min, max]."""

    model_config = cel_rules(
        cel("has(self.min) || has(self.max)", "a validation rule needs min, max or both", field_path=".metric"),
        cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must not exceed max",
            field_path=".min",
        ),
    )

    metric: MetricName
    """Name of a metric in the trainer's termination message."""
    min: float | None = None
    """Lowest healthy value (inclusive)."""
    max: float | None = None
    """Highest healthy value (inclusive)."""


class Trigger(ApiModel):
    """Why a run was started (lineage)."""

    reason: TriggerReason
    """Initial, SpecChange, Schedule, Drift or Manual."""
    source: Annotated[str, Field(max_length=TEXT)] | None = None
    """What asked for it, e.g. the DriftPolicy's name or the retrain-request value."""
    detail: Annotated[str, Field(max_length=LONG_TEXT)] | None = None
    """Evidence, e.g. "feature_psi=0.31 > max 0.2"."""


def _unique_metrics() -> dict[str, object]:
    return validations(
        cel(
            "self.all(x, self.exists_one(y, y.metric == x.metric))",
            "each metric may have one validation rule",
        )
    )


class TrainingTemplate(ApiModel):
    """Everything about a run except its identity: what a ModelDeployment's spec.training holds."""

    image: Annotated[str, Field(max_length=TEXT, pattern=IMAGE_PATTERN)]
    """The trainer's container image."""
    command: Annotated[list[Annotated[str, Field(max_length=LONG_TEXT)]], Field(max_length=64)] | None = None
    """Entrypoint (default: the image's)."""
    args: Annotated[list[Annotated[str, Field(max_length=LONG_TEXT)]], Field(max_length=128)] | None = None
    """Arguments (default: the image's)."""
    env: Annotated[list[EnvVar], Field(max_length=128)] | None = None
    """Environment variables, beside the PERENNIAL_* ones the operator sets."""
    env_from: Annotated[list[EnvFromSource], Field(max_length=32)] | None = None
    """ConfigMaps and Secrets whose keys become environment variables."""
    resources: ResourceRequirements | None = None
    """CPU, memory and accelerators of each worker."""
    dataset: Dataset | None = None
    """The training data (lineage; passed as PERENNIAL_DATASET_URI and PERENNIAL_DATASET_VERSION)."""
    hyperparameters: Annotated[StringMap | None, Field(json_schema_extra={"maxProperties": 128})] = None
    """Hyperparameters (lineage; passed as JSON in PERENNIAL_HYPERPARAMETERS)."""
    output: Output
    """Where the model goes."""
    validation: Annotated[list[ValidationRule], Field(max_length=32, json_schema_extra=_unique_metrics())] | None = None
    """Gates: every rule must hold for the run to be Validated."""
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    """Number of workers; more than 1 runs an Indexed Job with WORLD_SIZE, RANK and MASTER_ADDR."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 2
    """Retries before the run fails."""
    active_deadline: Duration | None = None
    """Longest a run may take, retries included; then it fails with DeadlineExceeded."""
    start_deadline: Annotated[Duration, at_least("1s", "startDeadline")] | None = None
    """Longest wait, from the Job's creation (or its resumption, when a queue such as Kueue held it
    suspended), until every worker's trainer container has started (an image that cannot be
    pulled, a pod no node can take); then the run fails with StartDeadlineExceeded and its Job
    is deleted. Unset: the operator's default (PERENNIAL_TRAINING_START_DEADLINE, 10m)."""
    ttl_after_finished: Duration = "24h"
    """How long the finished Job and its pods are kept once the operator has read the run's result
    (until then the Job is kept, so no result is lost while the operator is down)."""
    service_account_name: DnsSubdomain | None = None
    """ServiceAccount of the pods; without one the pods get no API token."""
    node_selector: StringMap | None = None
    """Node labels the pods require."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the pods tolerate."""
    affinity: Affinity | None = None
    """Scheduling constraints."""
    volumes: Annotated[list[Volume], Field(max_length=32)] | None = None
    """Volumes of the pods (emptyDir, configMap, secret, persistentVolumeClaim)."""
    volume_mounts: Annotated[list[VolumeMount], Field(max_length=32)] | None = None
    """Where the volumes appear in the trainer's container."""
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(max_length=16)] | None = None
    """Secrets for pulling the image."""
    priority_class_name: Annotated[str, Field(max_length=SHORT * 4)] | None = None
    """PriorityClass of the pods."""
    pod_labels: Annotated[
        StringMap | None, Field(json_schema_extra=label_map_rules("podLabels", values_are_labels=True))
    ] = None
    """Extra labels on the pods."""
    pod_annotations: Annotated[
        StringMap | None, Field(json_schema_extra=label_map_rules("podAnnotations", values_are_labels=False))
    ] = None
    """Extra annotations on the pods."""


class TrainingJobSpec(TrainingTemplate):
    """One training run. Immutable: to change a run, create a new TrainingJob."""

    model: LabelValue | None = None
    """The logical model this run trains (lineage); set by a ModelDeployment."""
    version: LabelValue | None = None
    """The model version this run produces; empty means metadata.name."""
    trigger: Trigger | None = None
    """Why the run started; set by a ModelDeployment."""
    champion: Champion | None = None
    """The version serving when a ModelDeployment started this run (lineage); the trainer gets it
    as PERENNIAL_CHAMPION_VERSION and PERENNIAL_CHAMPION_MODEL_URI. Set by a ModelDeployment;
    absent when nothing served yet."""


class TrainingJobStatus(ApiModel):
    """What the run did, derived from its Job and pods."""

    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    phase: TrainingPhase | None = None
    """Pending, Running, Succeeded, Failed or Rejected (trained, but a validation gate failed)."""
    version: str | None = None
    """The version used: spec.version, or metadata.name when that is empty."""
    job_name: str | None = None
    """The batch/v1 Job running this run."""
    start_time: datetime | None = None
    """When the Job started."""
    completion_time: datetime | None = None
    """When the run finished."""
    duration: str | None = None
    """How long the run took (or has taken), e.g. 12m30s."""
    attempts: int | None = None
    """Pods started so far (1 + retries)."""
    metrics: dict[str, float] | None = None
    """Metrics from the trainer's termination message."""
    model_uri: str | None = None
    """The resolved output.modelUri."""
    conditions: list[Condition] | None = None
    """Succeeded (summary), Running and Validated."""
