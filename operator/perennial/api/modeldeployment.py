"""ModelDeployment (`mdep`): a served model plus everything needed to retrain it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from perennial.api.base import (
    ENV_NAME_PATTERN,
    IMAGE_PATTERN,
    MODEL_VERSION_PATTERN,
    NAME,
    PINNED_VERSION_PATTERN,
    TEXT,
    ApiModel,
    Condition,
    DnsSubdomain,
    Duration,
    MetricName,
    StringMap,
    at_least,
    cel,
    cel_rules,
    defaulted,
    label_map_rules,
    validations,
)
from perennial.api.core import (
    EnvVar,
    LocalObjectReference,
    Probe,
    ResourceRequirements,
    Toleration,
    Volume,
    VolumeMount,
)
from perennial.api.driftpolicy import DriftMetric, DriftMetricStatus, PrometheusEndpoint
from perennial.api.schedule import CRON_PATTERN
from perennial.api.trainingjob import Champion, DatasetRecord, TrainingTemplate, Trigger, TriggerReason

RETRAIN_REQUEST_ANNOTATION = "perennial.dev/retrain-request"

ModelVersion = Annotated[str, Field(pattern=MODEL_VERSION_PATTERN, max_length=9)]

VersionState = Literal["Training", "Candidate", "Serving", "Retired", "Rejected", "Failed", "RolledBack"]
DeploymentPhase = Literal["Training", "Rolling", "Serving", "Degraded", "Failed"]
AutomaticRetrains = Literal["Active", "Suspended", "CircuitOpen", "NoImprovement"]


class Serving(ApiModel):
    """How the model is served: a Deployment and a ClusterIP Service named after the ModelDeployment."""

    image: Annotated[str, Field(max_length=TEXT, pattern=IMAGE_PATTERN)]
    """The model server's container image."""
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Number of serving pods (ignored with externalScaling)."""
    external_scaling: bool = False
    """True: something else (a HorizontalPodAutoscaler, a person) owns the Deployment's replicas;
    the operator leaves them out of what it applies, so it never fights over them."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """Container port of the server; the Service exposes it as port `http`."""
    model_uri_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN, max_length=NAME)] = "MODEL_URI"
    """Environment variable that receives the served model's URI."""
    env: Annotated[list[EnvVar], Field(max_length=128)] | None = None
    """Environment variables of the server."""
    resources: ResourceRequirements | None = None
    """CPU, memory and accelerators of each serving pod."""
    readiness_probe: Probe | None = None
    """When a serving pod takes traffic."""
    liveness_probe: Probe | None = None
    """When a serving pod is restarted."""
    service_account_name: DnsSubdomain | None = None
    """ServiceAccount of the serving pods; without one they get no API token."""
    volumes: Annotated[list[Volume], Field(max_length=32)] | None = None
    """Volumes of the serving pods (emptyDir, configMap, secret, persistentVolumeClaim), e.g. the
    claim the trainer wrote the models to, for a modelUri that is a path."""
    volume_mounts: Annotated[list[VolumeMount], Field(max_length=32)] | None = None
    """Where the volumes appear in the server's container."""
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(max_length=16)] | None = None
    """Secrets for pulling the image."""
    node_selector: StringMap | None = None
    """Node labels the serving pods require."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the serving pods tolerate."""
    pod_labels: Annotated[
        StringMap | None, Field(json_schema_extra=label_map_rules("podLabels", values_are_labels=True))
    ] = None
    """Extra labels on the serving pods."""
    pod_annotations: Annotated[
        StringMap | None, Field(json_schema_extra=label_map_rules("podAnnotations", values_are_labels=False))
    ] = None
    """Extra annotations on the serving pods."""


ImprovementGoal = Literal["Maximize", "Minimize"]


class RequireImprovement(ApiModel):
    """The challenger must beat the serving version (the champion) on one metric.

    When the trainer also reports `champion_<metric>` (the champion scored on the
    challenger's holdout, from PERENNIAL_CHAMPION_MODEL_URI), the challenger is compared
    with that number, measured on the same data; otherwise with the champion's recorded
    metric. decision.reason says which comparison was made."""

    metric: MetricName
    """Metric compared, in the direction of goal."""
    goal: ImprovementGoal = "Maximize"
    """Maximize (higher is better: auc, accuracy) or Minimize (lower is better: loss, rmse, latency)."""
    min_delta: float = 0.0
    """Least improvement over the champion, in the goal's direction (0: at least equal; a negative
    value tolerates a challenger that is slightly worse)."""


class Promotion(ApiModel):
    """Which validated versions become the serving version."""

    policy: Literal["Automatic", "Manual"] = "Automatic"
    """Automatic: promote at once. Manual: wait as Candidate until pinnedVersion names it."""
    require_improvement: RequireImprovement | None = None
    """Also require the candidate to beat the serving version."""


RolloutStrategy = Literal["Rolling", "Canary"]
ANALYSIS_PLACEHOLDERS = ("{model}", "{namespace}", "{version}", "{stableVersion}")


class CanaryStep(ApiModel):
    """One step of a canary: the new version's share of the serving replicas, held for a pause."""

    weight: Annotated[int, Field(ge=1, le=100)]
    """The new version's share of serving.replicas in percent, rounded to whole replicas (at least
    one). The stable version keeps the rest, and at least one replica until the canary ends."""
    pause: Annotated[Duration, at_least("0s", "pause")]
    """How long the step holds once the new version's replicas are available; the analysis
    metrics are read throughout, and must pass at its end for the next step to start."""


class Analysis(ApiModel):
    """Online checks of a canary: metrics in Prometheus, shaped like a DriftPolicy's."""

    prometheus: PrometheusEndpoint = defaulted(PrometheusEndpoint)
    """Where to query: an endpoint the operator defines (endpoint), a URL it allows (url), or
    neither: its default."""
    interval: Annotated[Duration, at_least("5s", "analysis.interval")] = "30s"
    """How often the metrics are read during a step's pause (and once more when it ends)."""
    metrics: Annotated[
        list[DriftMetric],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra=validations(
                cel("self.all(x, self.exists_one(y, y.name == x.name))", "analysis metric names must be unique")
            ),
        ),
    ]
    """The metrics and their healthy ranges. Queries may use {model}, {namespace}, {version} (the
    canary's version) and {stableVersion} (the version serving before it), e.g.
    sum(rate(http_requests_total{model="{model}",version="{version}",code=~"5.."}[1m])). A value
    outside [min, max] for `for` aborts the canary."""


class CanaryTraffic(ApiModel):
    """How traffic reaches a canary: by its share of the pods behind the model's Service (the
    default), or by the weights of a Gateway API HTTPRoute."""

    http_route: DnsSubdomain | None = None
    """An HTTPRoute (gateway.networking.k8s.io/v1) in the model's namespace whose backendRefs to the
    Services <name>-stable and <name>-canary (created by the operator) get the weights each step
    says: the operator changes only their `weight`. The stable version then keeps every replica
    during a canary; adding this field restarts the serving pods once (to label them track=stable)."""


class Rollout(ApiModel):
    """How a new version replaces the serving one."""

    model_config = cel_rules(
        cel(
            "(has(self.strategy) && self.strategy == 'Canary')"
            " || (!has(self.steps) && !has(self.analysis) && !has(self.canary))",
            "rollout.steps, rollout.analysis and rollout.canary need rollout.strategy Canary",
            field_path=".strategy",
        ),
        cel(
            "!has(self.strategy) || self.strategy != 'Canary' || has(self.steps)",
            "rollout.strategy Canary needs steps",
            field_path=".steps",
        ),
    )

    strategy: RolloutStrategy = "Rolling"
    """Rolling: the serving Deployment rolls to the new version at once. Canary: the new version
    runs in its own Deployment beside the stable one, behind the same Service, taking the share of
    replicas each step says while the analysis watches it; then it takes every replica."""
    progress_deadline: Duration = "10m"
    """How long a rollout may take to become Available. With Canary: how long each step may take to
    get its replicas available, and how long a step may wait for analysis data after its pause."""
    auto_rollback: bool = True
    """Roll back to the previous version when the deadline passes."""
    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=20)] | None = None
    """The canary's steps, in order (strategy Canary)."""
    analysis: Analysis | None = None
    """Online metrics read during each step's pause (strategy Canary); none: each step passes when
    its pause ends."""
    canary: CanaryTraffic | None = None
    """How traffic reaches the canary (strategy Canary): by replica share unless an HTTPRoute is named."""


class Retraining(ApiModel):
    """When the model is retrained automatically."""

    schedule: Annotated[str, Field(pattern=CRON_PATTERN, max_length=128)] | None = None
    """Cron schedule in UTC (five fields, or @daily-style), e.g. "0 3 * * 0"."""
    cooldown: Duration = "1h"
    """Least time between two automatic retrains (manual requests and spec changes bypass it)."""
    on_spec_change: bool = True
    """Retrain when spec.training changes (new dataset version, new image)."""
    max_consecutive_failures: Annotated[int, Field(ge=1, le=100)] = 3
    """Circuit breaker: stop automatic retrains after this many failed or rejected runs in a row."""
    max_consecutive_not_promoted: Annotated[int, Field(ge=1, le=100)] = 3
    """Futility breaker: stop automatic (Drift, Schedule) retrains after this many of them in a row
    were validated but not better than the champion (RetrainSuppressed/NoImprovement); a manual
    request or a spec change starts counting afresh."""
    max_age: Annotated[Duration, at_least("1m", "retraining.maxAge")] | None = None
    """How old the last successful training may grow before the model counts as stale (the
    alert PerennialModelStale, metric perennial_model_max_training_age_seconds), e.g. 168h.
    Unset: two periods of schedule; no schedule either: never stale."""
    history_limit: Annotated[int, Field(ge=0, le=100)] = 5
    """Finished TrainingJobs kept, besides the one serving."""


class ModelDeploymentSpec(ApiModel):
    """A served model and its continuous-training loop."""

    model_config = cel_rules(
        cel(
            "!has(self.rollout) || !has(self.rollout.strategy) || self.rollout.strategy != 'Canary'"
            " || !has(self.serving.externalScaling) || !self.serving.externalScaling",
            "rollout.strategy Canary shares serving.replicas between two versions, so the operator must own"
            " the replicas: it does not work with serving.externalScaling",
            field_path=".rollout.strategy",
        )
    )

    training: TrainingTemplate
    """Template of every TrainingJob this ModelDeployment creates."""
    serving: Serving
    """The serving Deployment and Service."""
    promotion: Promotion = defaulted(Promotion)
    """Which validated versions are promoted."""
    rollout: Rollout = defaulted(Rollout)
    """How versions roll out and back."""
    retraining: Retraining = defaulted(Retraining)
    """When to retrain automatically."""
    pinned_version: Annotated[str, Field(pattern=PINNED_VERSION_PATTERN, max_length=9)] | None = None
    """Serve exactly this version from status.versions (manual rollback, GitOps pin, Manual promotion)."""
    suspend: bool = False
    """No automatic retrains while true; serving continues."""


class LastRetrain(ApiModel):
    """The most recent retrain."""

    time: datetime | None = None
    """When it started."""
    reason: TriggerReason | None = None
    """Initial, SpecChange, Schedule, Drift or Manual."""
    source: str | None = None
    """What asked for it."""


class PromotionDecision(ApiModel):
    """Why a version was or was not promoted."""

    result: Literal["Promoted", "Candidate", "NotPromoted", "Pinned"] | None = None
    """The outcome."""
    reason: str | None = None
    """The evidence, e.g. "auc 0.941 >= champion 0.934 + minDelta 0 (both on this run's holdout)"."""
    compared_to: str | None = None
    """The serving version it was compared with."""


RollbackReason = Literal["ProgressDeadlineExceeded", "AnalysisFailed", "AnalysisNoData"]


class RollbackRecord(ApiModel):
    """Why a version's rollout was rolled back (its canary aborted)."""

    time: datetime | None = None
    """When."""
    reason: RollbackReason | None = None
    """ProgressDeadlineExceeded (not available in time), AnalysisFailed (a metric breached) or
    AnalysisNoData (no analysis data by progressDeadline after a pause)."""
    message: str | None = None
    """What happened, with the values that breached."""
    analysis: list[DriftMetricStatus] | None = None
    """The analysis metrics when it was rolled back."""


class ModelVersionRecord(ApiModel):
    """One version's lineage."""

    version: str
    """The version number, as a string of digits."""
    training_job: str | None = None
    """The TrainingJob that produced it."""
    state: VersionState | None = None
    """Training, Candidate, Serving, Retired, Rejected, Failed or RolledBack."""
    model_uri: str | None = None
    """Where the model is."""
    metrics: dict[str, float] | None = None
    """The trainer's metrics."""
    dataset: DatasetRecord | None = None
    """The data it was trained on, as its TrainingJob resolved it (placeholders filled in, the
    window's start and end)."""
    champion: Champion | None = None
    """The version serving when it was triggered, whose model URI its trainer got
    (PERENNIAL_CHAMPION_MODEL_URI)."""
    image: str | None = None
    """The trainer image."""
    image_id: str | None = None
    """The trainer image's digest, when the pod status reports one."""
    hyperparameters: dict[str, str] | None = None
    """Its hyperparameters."""
    trigger: Trigger | None = None
    """Why it was trained."""
    created_at: datetime | None = None
    """When its TrainingJob was created."""
    promoted_at: datetime | None = None
    """When it became the serving version."""
    decision: PromotionDecision | None = None
    """The promotion decision and its evidence."""
    rollback: RollbackRecord | None = None
    """Why its rollout was rolled back (state RolledBack)."""


CanaryStage = Literal["Step", "Promote"]


class RolloutStatus(ApiModel):
    """A rollout in progress."""

    version: str
    """The version being rolled out."""
    previous_version: str | None = None
    """The version it replaces; the one a rollback returns to."""
    started_at: datetime | None = None
    """When it started; rollout.progressDeadline counts from here (Rolling)."""
    strategy: RolloutStrategy | None = None
    """Rolling or Canary (the strategy when it started)."""
    stage: CanaryStage | None = None
    """Canary only. Step: the new version takes the current step's share beside the stable one.
    Promote: the steps passed; the serving Deployment rolls to the new version."""
    step: int | None = None
    """Canary: the current step, from 1."""
    steps: int | None = None
    """Canary: how many steps there are."""
    weight: int | None = None
    """Canary: the new version's share of the serving replicas (or of the HTTPRoute's traffic) in
    percent; while promoting, the share of the last step it passed."""
    canary_replicas: int | None = None
    """Canary: replicas of the new version."""
    stable_replicas: int | None = None
    """Canary: replicas of the stable version."""
    step_started_at: datetime | None = None
    """Canary: when the current step (or the promotion) started; its progressDeadline counts from here."""
    pause_started_at: datetime | None = None
    """Canary: when the current step's replicas were available and its pause began."""
    last_analysis_time: datetime | None = None
    """Canary: when the analysis metrics were last read."""
    analysis: list[DriftMetricStatus] | None = None
    """Canary: the last value of each analysis metric in this step."""


class DriftRequestAnswer(ApiModel):
    """The answer to a DriftPolicy's retrain request (the policy reads it back)."""

    policy: str
    """The DriftPolicy that asked."""
    id: str
    """The request answered (the policy's status.retrainRequest.id)."""
    result: Literal["Started", "Suppressed"]
    """Started: a training runs for it. Suppressed: this model's rules held it back."""
    training_job: str | None = None
    """The TrainingJob started for it."""
    reason: str | None = None
    """Why it was suppressed: Cooldown, TrainingInProgress, CircuitOpen, NoImprovement, Suspended, or
    TrainingJobRefused (the API server refused the TrainingJob; the message says why)."""
    message: str | None = None
    """The answer in words."""
    answered_at: datetime | None = None
    """When it was answered."""


class ModelDeploymentStatus(ApiModel):
    """The loop's state, derived by the operator."""

    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    phase: DeploymentPhase | None = None
    """Training, Rolling, Serving, Degraded or Failed."""
    serving_version: str | None = None
    """The version the Deployment serves."""
    serving_model_uri: str | None = None
    """That version's model URI."""
    latest_version: str | None = None
    """The newest version allocated."""
    active_training_job: str | None = None
    """The TrainingJob running now, if any."""
    replicas: int | None = None
    """Serving pods desired."""
    ready_replicas: int | None = None
    """Serving pods ready."""
    ready: str | None = None
    """readyReplicas/replicas, for kubectl get."""
    url: str | None = None
    """Where the model is served inside the cluster: the URL of its Service,
    http://<name>.<namespace>.svc:<spec.serving.port>. Set once a version serves (the
    Service exists from then on)."""
    last_retrain: LastRetrain | None = None
    """The most recent retrain."""
    next_scheduled_retrain: datetime | None = None
    """When spec.retraining.schedule fires next."""
    handled_retrain_request: str | None = None
    """The last perennial.dev/retrain-request value acted on."""
    versions: list[ModelVersionRecord] | None = None
    """Lineage, one entry a version."""
    conditions: list[Condition] | None = None
    """Ready, Training, Progressing, Degraded and RetrainSuppressed."""
    rollout: RolloutStatus | None = None
    """The rollout in progress, if any."""
    last_rolled_back: str | None = None
    """The version last rolled back (a pin to it is not retried until the pin changes)."""
    consecutive_failures: int | None = None
    """Failed or rejected runs in a row (the circuit opens at retraining.maxConsecutiveFailures)."""
    consecutive_not_promoted: int | None = None
    """Automatic runs in a row validated but not better than the champion (the futility breaker
    stops automatic retrains at retraining.maxConsecutiveNotPromoted)."""
    automatic_retrains: AutomaticRetrains | None = None
    """Whether Drift and Schedule triggers may start a training: Active, Suspended (spec.suspend),
    CircuitOpen (runs keep failing) or NoImprovement (runs keep not beating the champion)."""
    training_spec_hash: str | None = None
    """Identity of the spec.training the last run used (a change is a SpecChange trigger)."""
    last_automatic_retrain: datetime | None = None
    """When the last automatic (Drift or Schedule) retrain started; retraining.cooldown counts from here."""
    drift_requests: list[DriftRequestAnswer] | None = None
    """The last answer to each DriftPolicy that asked for a retrain."""
