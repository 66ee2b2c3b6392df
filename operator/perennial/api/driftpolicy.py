"""DriftPolicy (`dpol`): when to retrain a ModelDeployment, from metrics in Prometheus."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from perennial.api.base import (
    LONG_TEXT,
    URI,
    ApiModel,
    Condition,
    DnsLabel,
    DnsSubdomain,
    Duration,
    MetricName,
    at_least,
    cel,
    cel_rules,
    defaulted,
    validations,
)
from perennial.api.durations import DURATION_PATTERN

PromQL = Annotated[str, Field(min_length=1, max_length=LONG_TEXT)]
DistributionTest = Literal["psi", "ks", "js", "hellinger"]


class TargetRef(ApiModel):
    """The ModelDeployment this policy watches, in the same namespace."""

    name: DnsSubdomain
    """Name of the ModelDeployment."""


MAX_PROMETHEUS_TIMEOUT = "5m"


def _timeout_rule(comparison: str, bound: str, message: str) -> dict[str, str]:
    # Checked once the format is valid (the format has its own rule and message).
    return cel(f"!self.matches(r'{DURATION_PATTERN}') || duration(self) {comparison} duration('{bound}')", message)


# One slow endpoint must not hold a policy's evaluation for long: the API refuses more
# than 5m, and the operator caps every request further (PERENNIAL_PROMETHEUS_MAX_TIMEOUT).
_TIMEOUT_BOUNDS = Field(
    json_schema_extra=validations(
        _timeout_rule(">=", "1s", "prometheus.timeout must be at least 1s"),
        _timeout_rule("<=", MAX_PROMETHEUS_TIMEOUT, f"prometheus.timeout must be at most {MAX_PROMETHEUS_TIMEOUT}"),
    )
)


class PrometheusEndpoint(ApiModel):
    """The Prometheus to query: an endpoint the operator defines (by name), or a URL; neither: the default."""

    model_config = cel_rules(
        cel(
            "!has(self.endpoint) || !has(self.url)",
            "prometheus.endpoint and prometheus.url are exclusive: name an endpoint the operator defines,"
            " or give a URL the operator allows",
            field_path=".endpoint",
        )
    )

    endpoint: DnsLabel | None = None
    """Name of a Prometheus endpoint defined in the operator's settings, e.g. thanos: its URL,
    credentials, headers and CA are the operator's, never read from this namespace. Left out (with
    no url): the operator's default endpoint. An unknown name is Ready=False/EndpointUnknown."""
    url: Annotated[str, Field(pattern=r"^https?://", max_length=URI)] | None = None
    """Base URL, e.g. http://prometheus.monitoring:9090, queried without credentials; only URLs
    the operator allows (else Ready=False/EndpointNotAllowed). Prefer endpoint."""
    timeout: Annotated[Duration, _TIMEOUT_BOUNDS] = "10s"
    """Timeout of each query, 1s-5m; the operator caps it further at its own maximum
    (PERENNIAL_PROMETHEUS_MAX_TIMEOUT, 30s by default)."""


class Baseline(ApiModel):
    """The reference distribution."""

    model_config = cel_rules(
        cel(
            "has(self.sincePromotion) != has(self.query)",
            "baseline needs exactly one of sincePromotion or query",
        )
    )

    since_promotion: Duration | None = None
    """Window right after the serving version's promotion (Prometheus @ modifier), e.g. 1h."""
    query: PromQL | None = None
    """A PromQL query for the reference buckets, e.g. with offset 7d."""


class Distribution(ApiModel):
    """A distribution test the operator computes from cumulative histogram buckets (le)."""

    test: DistributionTest
    """psi (population stability index), ks (Kolmogorov-Smirnov statistic), js (Jensen-Shannon
    divergence) or hellinger (Hellinger distance)."""
    current: PromQL
    """PromQL returning the current window's buckets, one series per le, e.g.
    sum by (le) (increase(x_bucket[1h]))."""
    baseline: Baseline
    """The reference buckets."""
    min_samples: Annotated[int, Field(ge=1)] = 100
    """Fewer observations than this in either window is NoData, not a breach."""


class DriftMetric(ApiModel):
    """One metric and its healthy range."""

    model_config = cel_rules(
        cel(
            "has(self.query) != has(self.distribution)",
            "a metric needs exactly one of query or distribution",
            field_path=".query",
        ),
        cel("has(self.min) || has(self.max)", "a metric needs min, max or both", field_path=".name"),
        cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must not exceed max",
            field_path=".min",
        ),
    )

    name: MetricName
    """Name of the metric in status, Events and the operator's metrics."""
    query: PromQL | None = None
    """PromQL that yields one number (a scalar or a one-sample vector)."""
    distribution: Distribution | None = None
    """A distribution test instead of a plain value."""
    min: float | None = None
    """Lowest healthy value."""
    max: float | None = None
    """Highest healthy value."""
    for_: Annotated[Duration, Field(alias="for")] = "0s"
    """How long the value must stay outside [min, max] to count as a breach."""


class DriftTrigger(ApiModel):
    """What a breach does."""

    when: Literal["AnyMetric", "AllMetrics"] = "AnyMetric"
    """Drifting when any metric, or all metrics, breach."""
    action: Literal["Retrain", "Observe"] = "Retrain"
    """Retrain the target, or only record what would have happened (dry run)."""
    cooldown: Duration = "6h"
    """Least time between two retrains this policy asks for."""


class DriftPolicySpec(ApiModel):
    """Metrics in Prometheus with bounds; a sustained breach retrains the target."""

    target_ref: TargetRef
    """The ModelDeployment to retrain."""
    prometheus: PrometheusEndpoint = defaulted(PrometheusEndpoint)
    """Where to query: an endpoint the operator defines (endpoint), a URL it allows (url), or neither: its default."""
    interval: Annotated[Duration, at_least("10s", "interval")] = "1m"
    """How often the metrics are evaluated."""
    metrics: Annotated[
        list[DriftMetric],
        Field(
            min_length=1,
            max_length=32,
            json_schema_extra=validations(
                cel("self.all(x, self.exists_one(y, y.name == x.name))", "metric names must be unique")
            ),
        ),
    ]
    """The metrics and their bounds."""
    trigger: DriftTrigger = defaulted(DriftTrigger)
    """When the policy counts as drifting and what it does then."""
    suspend: bool = False
    """Stop evaluating while true."""


class DriftMetricStatus(ApiModel):
    """One metric as of the last status write."""

    name: str
    """The metric."""
    value: float | None = None
    """Its value when status was last written (absent when there was no data or an error). Status is
    written when the value crosses a bound, when anything else here changes, and with the heartbeat
    (see lastEvaluationTime), not at every evaluation: the latest value is the operator's metric
    perennial_drift_metric_value."""
    min: float | None = None
    """Its lower bound."""
    max: float | None = None
    """Its upper bound."""
    breached: bool | None = None
    """Outside [min, max] for at least `for`."""
    breached_since: datetime | None = None
    """When it left [min, max]."""
    error: str | None = None
    """Why there is no value (NoData, a query error). A new error, or one that ends, is written at
    once; a change only in the numbers it quotes (a count of observations) waits for the next write."""


class RetrainRequest(ApiModel):
    """A retrain this policy asks its target for; the target answers in its status.driftRequests."""

    id: str
    """Identifies the request (the time it was made); the target's answer names it."""
    requested_at: datetime | None = None
    """When the policy asked."""
    detail: str | None = None
    """The breach that asked, e.g. "feature_psi=0.31 > max 0.2"."""


class DriftPolicyStatus(ApiModel):
    """The evaluation state, written by the operator."""

    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    last_evaluation_time: datetime | None = None
    """When the metrics were evaluated for the last status write: a heartbeat, not every evaluation.
    Status is written when something a reader cares about changes (observedGeneration, a metric's
    value crossing a bound, breached, breachedSince or error, a condition, retrainRequest, a trigger)
    and otherwise at the first evaluation at least max(10 x interval, 10m) after this time. The time
    of every evaluation is the operator's metric perennial_drift_policy_last_evaluation_timestamp_seconds."""
    metrics: list[DriftMetricStatus] | None = None
    """Each metric as of the last status write."""
    last_trigger_time: datetime | None = None
    """When the policy last asked for a retrain (or, with Observe, would have)."""
    trigger_count: int | None = None
    """How many times it did."""
    last_training_job: str | None = None
    """The TrainingJob its last trigger started."""
    retrain_request: RetrainRequest | None = None
    """A retrain asked of the target and not answered yet."""
    conditions: list[Condition] | None = None
    """Ready and Drifting."""
