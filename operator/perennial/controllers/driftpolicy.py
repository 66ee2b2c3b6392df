"""DriftPolicy controller: evaluate metrics in Prometheus every interval; a sustained breach retrains.

Each policy is a work-queue key that re-queues itself every ``interval`` (plus up to 10%
jitter, so a thousand policies do not query in lockstep); the queue guarantees one
evaluation in flight per policy, and all policies share one async HTTP client. Watch
events (including the status this controller writes) only re-queue the key: a policy
evaluated less than ``interval`` ago waits for its turn, so events cost no queries.

The episode state (breach clocks, the last trigger) lives in status, so a restarted
operator neither forgets a breach in progress nor fires a second retrain for one episode.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from perennial.adapters import metrics
from perennial.adapters.kube import DRIFT_POLICIES
from perennial.adapters.prometheus import PrometheusUnreachableError, QueryError
from perennial.adapters.store import Key, key_of
from perennial.api.base import GROUP, VERSION
from perennial.api.driftpolicy import DriftMetric, DriftPolicySpec
from perennial.api.durations import parse_duration
from perennial.controllers.modeldeployment import TargetNotFoundError, request_retrain
from perennial.controllers.runtime import Runtime, runtime_of
from perennial.domain import drift
from perennial.domain.conditions import ConditionState, find_condition, merge_conditions, merge_patch
from perennial.domain.modeldeployment import DRIFT, Trigger
from perennial.domain.timeutil import format_time, parse_time

KIND = "DriftPolicy"
logger = logging.getLogger(__name__)


@kopf.on.event(GROUP, VERSION, "driftpolicies")
async def driftpolicy_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.driftpolicies.apply_event(event.get("type"), body)
    if event.get("type") == "DELETED":
        metrics.forget_policy(body["metadata"]["namespace"], body["metadata"]["name"])
        return
    runtime.driftpolicy_queue.add(key_of(body))


async def reconcile(runtime: Runtime, key: Key) -> float | None:
    return await metrics.measured_reconcile(KIND, _reconcile(runtime, key))


def _jittered(seconds: float) -> float:
    return seconds + random.uniform(0, 0.1 * seconds)


async def _reconcile(runtime: Runtime, key: Key) -> float | None:
    body = runtime.driftpolicies.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    metadata = body["metadata"]
    spec = DriftPolicySpec.model_validate(body.get("spec") or {})
    status: dict[str, Any] = body.get("status") or {}  # the cache hands out a private copy
    before = copy.deepcopy(status)
    now = datetime.now(UTC)
    generation = metadata.get("generation")
    interval = parse_duration(spec.interval).total_seconds()
    if spec.suspend:
        _set(status, now, generation, "Drifting", "False", "Suspended", "spec.suspend is true: not evaluating")
        status["observedGeneration"] = generation
        await _write(runtime, body, before, status)
        return None
    last = parse_time(status.get("lastEvaluationTime"))
    if last is not None and status.get("observedGeneration") == generation:
        remaining = interval - (now - last).total_seconds()
        if remaining > 0:
            return remaining

    evaluation = Evaluation(runtime, body, spec, status, now)
    started = time.monotonic()
    await evaluation.run()
    metrics.DRIFT_EVALUATION_DURATION.observe(time.monotonic() - started)
    status["lastEvaluationTime"] = format_time(now)
    status["observedGeneration"] = generation
    await _write(runtime, body, before, status)
    for type_, reason, message in evaluation.events:
        runtime.events.record(body, type_, reason, message)
    return _jittered(interval)


def _set(
    status: dict[str, Any], now: datetime, generation: int | None, type_: str, value: str, reason: str, message: str
) -> None:
    status["conditions"] = merge_conditions(
        status.get("conditions"), [ConditionState(type_, value, reason, message)], now=now, generation=generation
    )


async def _write(runtime: Runtime, body: Mapping[str, Any], before: Mapping[str, Any], status: dict[str, Any]) -> None:
    if status == before:
        return
    metadata = body["metadata"]
    updated = await runtime.client.patch_status(
        DRIFT_POLICIES, metadata["namespace"], metadata["name"], merge_patch(before, status), resource_version=None
    )
    runtime.driftpolicies.put(updated)


class Evaluation:
    """One evaluation of one policy: metrics, breach clocks, the drift rule, the trigger."""

    def __init__(
        self, runtime: Runtime, body: Mapping[str, Any], spec: DriftPolicySpec, status: dict[str, Any], now: datetime
    ) -> None:
        self.runtime = runtime
        self.body = body
        self.spec = spec
        self.status = status
        self.now = now
        self.namespace = body["metadata"]["namespace"]
        self.name = body["metadata"]["name"]
        self.generation = body["metadata"].get("generation")
        self.events: list[tuple[str, str, str]] = []
        self.ready_problem: tuple[str, str] | None = None

    def condition(self, type_: str, value: str, reason: str, message: str) -> None:
        _set(self.status, self.now, self.generation, type_, value, reason, message)

    def problem(self, reason: str, message: str) -> None:
        if self.ready_problem is None:
            self.ready_problem = (reason, message)

    async def run(self) -> None:
        target = self.runtime.modeldeployments.get((self.namespace, self.spec.target_ref.name))
        url = self.spec.prometheus.url or self.runtime.settings.prometheus_url
        previous = {m.get("name"): m for m in self.status.get("metrics") or []}
        if target is None:
            self.problem("TargetNotFound", f"ModelDeployment {self.spec.target_ref.name} not found in {self.namespace}")
        if not url:
            self.problem(
                "PrometheusUnreachable",
                "no Prometheus URL: set spec.prometheus.url or the operator's PERENNIAL_PROMETHEUS_URL",
            )
        states: list[drift.MetricState] = []
        for metric in self.spec.metrics:
            value, error = None, None
            if target is not None and url:
                value, error = await self._value(metric, url, target)
            elif self.ready_problem is not None:
                error = self.ready_problem[1]
            bounds = drift.Bounds(metric.min, metric.max, parse_duration(metric.for_))
            since = parse_time((previous.get(metric.name) or {}).get("breachedSince"))
            state = drift.next_metric_state(metric.name, bounds, value, error, since, self.now)
            if state.breached and not (previous.get(metric.name) or {}).get("breached"):
                metrics.DRIFT_BREACHES.inc()
                self.events.append(("Warning", "MetricBreached", f"{state.detail} for {metric.for_}"))
            if value is not None:
                metrics.set_drift_value(self.namespace, self.name, metric.name, value)
            states.append(state)
        metrics.DRIFT_EVALUATIONS.labels(result="error" if self.ready_problem else "success").inc()
        self.status["metrics"] = [_metric_status(s) for s in states]
        if self.ready_problem is not None:
            self.condition("Ready", "False", *self.ready_problem)
        else:
            self.condition("Ready", "True", "Evaluated", f"{len(states)} metric(s) evaluated")
        await self._apply_rule(states, target)

    async def _value(self, metric: DriftMetric, url: str, target: Mapping[str, Any]) -> tuple[float | None, str | None]:
        timeout = parse_duration(self.spec.prometheus.timeout).total_seconds()
        prometheus = self.runtime.prometheus
        try:
            if metric.query is not None:
                return drift.single_value(await prometheus.query(url, metric.query, timeout_seconds=timeout)), None
            distribution = metric.distribution
            assert distribution is not None  # the CRD requires exactly one of query/distribution
            current = drift.buckets(await prometheus.query(url, distribution.current, timeout_seconds=timeout))
            if distribution.baseline.query is not None:
                baseline_result = await prometheus.query(url, distribution.baseline.query, timeout_seconds=timeout)
            else:
                window = parse_duration(str(distribution.baseline.since_promotion))
                at = drift.baseline_time(_promoted_at(target), window, self.now)
                baseline_result = await prometheus.query(url, distribution.current, timeout_seconds=timeout, at=at)
            baseline = drift.buckets(baseline_result)
            return drift.distribution_statistic(distribution.test, current, baseline, distribution.min_samples), None
        except PrometheusUnreachableError as error:
            self.problem("PrometheusUnreachable", str(error))
            return None, f"Prometheus unreachable: {error}"
        except QueryError as error:
            self.problem("QueryError", f"{metric.name}: {error}")
            return None, str(error)
        except drift.NoDataError as error:
            return None, str(error)
        except drift.DriftDataError as error:
            self.problem("QueryError", f"{metric.name}: {error}")
            return None, str(error)

    async def _apply_rule(self, states: list[drift.MetricState], target: Mapping[str, Any] | None) -> None:
        was_drifting = (find_condition(self.status.get("conditions"), "Drifting") or {}).get("status") == "True"
        is_drifting = drift.drifting(states, self.spec.trigger.when)
        breached = [s for s in states if s.breached]
        detail = "; ".join(s.detail for s in breached)
        if not is_drifting:
            if was_drifting:
                self.events.append(("Normal", "DriftRecovered", "metrics are back within bounds"))
            reason = "NoData" if all(s.value is None for s in states) else "WithinBounds"
            self.condition(
                "Drifting", "False", reason, "no sustained breach" if reason == "WithinBounds" else "no metric has data"
            )
            return
        message = f"{self.spec.trigger.when}: {detail}"
        last_trigger = parse_time(self.status.get("lastTriggerTime"))
        cooldown = parse_duration(self.spec.trigger.cooldown)
        if target is None:
            self.condition("Drifting", "True", "MetricsBreached", message)
            return
        if not drift.may_trigger(last_trigger, cooldown, self.now):
            assert last_trigger is not None
            until = format_time(last_trigger + cooldown)
            self.condition("Drifting", "True", "MetricsBreached", f"{message}; policy cooldown until {until}")
            return
        if self.spec.trigger.action == "Observe":
            self._triggered(None)
            metrics.DRIFT_TRIGGERS.labels(action="Observe", result="Observed").inc()
            self.events.append(
                ("Normal", "WouldRetrain", f"Observe: would retrain {self.spec.target_ref.name} ({detail})")
            )
            self.condition("Drifting", "True", "MetricsBreached", f"{message}; action Observe: no retrain")
            return
        trigger = Trigger(DRIFT, source=self.name, detail=detail)
        try:
            outcome = await request_retrain(self.runtime, self.namespace, self.spec.target_ref.name, trigger)
        except TargetNotFoundError as error:
            self.condition("Ready", "False", "TargetNotFound", str(error))
            self.condition("Drifting", "True", "MetricsBreached", message)
            return
        if outcome.started:
            self._triggered(outcome.training_job)
            metrics.DRIFT_TRIGGERS.labels(action="Retrain", result="Started").inc()
            self.events.append(
                (
                    "Normal",
                    "RetrainTriggered",
                    f"retraining {self.spec.target_ref.name}: {outcome.training_job} ({detail})",
                )
            )
            self.condition("Drifting", "True", "MetricsBreached", f"{message}; started {outcome.training_job}")
        else:
            metrics.DRIFT_TRIGGERS.labels(action="Retrain", result="Suppressed").inc()
            suppressed = f"{message}; the target suppressed the retrain ({outcome.suppression}: {outcome.message})"
            previous = find_condition(self.status.get("conditions"), "Drifting") or {}
            if previous.get("message") != suppressed:
                self.events.append(("Normal", "RetrainSuppressed", suppressed))
            self.condition("Drifting", "True", "MetricsBreached", suppressed)

    def _triggered(self, training_job: str | None) -> None:
        self.status["lastTriggerTime"] = format_time(self.now)
        self.status["triggerCount"] = int(self.status.get("triggerCount") or 0) + 1
        if training_job:
            self.status["lastTrainingJob"] = training_job


def _promoted_at(target: Mapping[str, Any]) -> datetime | None:
    status = target.get("status") or {}
    serving = status.get("servingVersion")
    record = next((r for r in status.get("versions") or [] if r.get("version") == serving), None)
    return parse_time(record.get("promotedAt")) if record else None


def _metric_status(state: drift.MetricState) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": state.name, "breached": state.breached}
    optional = {
        "value": state.value,
        "min": state.bounds.min,
        "max": state.bounds.max,
        "breachedSince": format_time(state.breached_since) if state.breached_since else None,
        "error": state.error,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    return entry
