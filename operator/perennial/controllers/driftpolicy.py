"""DriftPolicy controller: evaluate metrics in Prometheus every interval; a sustained breach asks for a retrain.

Each policy is a work-queue key that re-queues itself every ``interval`` (plus up to 10%
jitter, so a thousand policies do not query in lockstep); the queue guarantees one
evaluation in flight per policy, and all policies share one async HTTP client. Watch
events (including the status this controller writes) only re-queue the key: a policy
evaluated less than ``interval`` ago waits for its turn, so events cost no queries.

A retrain is asked for through the API (``perennial.domain.driftpolicy`` describes the
handshake): the policy writes ``status.retrainRequest``, its target ModelDeployment
answers in its own ``status.driftRequests``. A change of the target queues the policies
pointing at it, so an answer is recorded at once, without waiting for the next
evaluation and without querying Prometheus.

The episode state (breach clocks, the last trigger, the pending request) lives in status,
so a restarted operator neither forgets a breach in progress nor fires a second retrain
for one episode. This module only does I/O; ``plan_driftpolicy`` decides.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from perennial.adapters import metrics
from perennial.adapters.kube import DRIFT_POLICIES
from perennial.adapters.prometheus import PrometheusClient, PrometheusUnreachableError, QueryError
from perennial.adapters.store import Key, key_of
from perennial.api.driftpolicy import DriftMetric, DriftPolicySpec, DriftPolicyStatus
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.controllers.context import Cluster, Controller
from perennial.controllers.execute import post, write_status
from perennial.domain import drift
from perennial.domain.driftpolicy import (
    MetricResult,
    ObservedPolicy,
    answer_to_absorb,
    evaluation_due_in,
    plan_driftpolicy,
    promoted_at,
)
from perennial.domain.plan import Plan
from perennial.domain.timeutil import parse_time


def _jittered(seconds: float) -> float:
    return seconds + random.uniform(0, 0.1 * seconds)


class DriftPolicyController(Controller):
    kind: ClassVar[str] = "DriftPolicy"

    def __init__(self, cluster: Cluster, prometheus: PrometheusClient) -> None:
        super().__init__(cluster)
        self.prometheus = prometheus
        cluster.driftpolicies.subscribe(self._policy_event)
        cluster.modeldeployments.subscribe(self._model_event)

    def _policy_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            namespace, name = key_of(body)
            metrics.forget_policy(namespace, name)
            return
        self.queue.add(key_of(body))

    def _model_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        # The target's status may hold an answer to a policy's request (or the target
        # came or went): its policies take a look; one not due only reads the answer.
        for key in self.cluster.driftpolicies.keys_referring_to(key_of(body)):
            self.queue.add(key)

    async def reconcile(self, key: Key) -> float | None:
        body = self.cluster.driftpolicies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        metadata = body["metadata"]
        spec = DriftPolicySpec.model_validate(body.get("spec") or {})
        status = DriftPolicyStatus.model_validate(body.get("status") or {})
        now = datetime.now(UTC)
        observed = ObservedPolicy(
            name=metadata["name"],
            namespace=metadata["namespace"],
            generation=metadata.get("generation"),
            spec=spec,
            status=status,
            target=self._target(metadata["namespace"], spec),
            now=now,
            created=parse_time(metadata.get("creationTimestamp")),
        )
        if spec.suspend:
            await self._execute(body, status, plan_driftpolicy(observed))
            return None
        remaining = evaluation_due_in(spec, status, observed.generation, now)
        if remaining > 0:
            if answer_to_absorb(observed) is not None:
                await self._execute(body, status, plan_driftpolicy(dataclasses.replace(observed, evaluate=False)))
            return remaining

        started = time.monotonic()
        url = spec.prometheus.url or self.cluster.settings.prometheus_url
        results: dict[str, MetricResult] = {}
        if observed.target is not None and url:
            for metric in spec.metrics:
                results[metric.name] = await self._value(spec, metric, url, observed.target, now)
        plan = plan_driftpolicy(dataclasses.replace(observed, results=results, prometheus_url=url or None))
        metrics.DRIFT_EVALUATION_DURATION.observe(time.monotonic() - started)
        for name, result in results.items():
            if result.value is not None:
                metrics.set_drift_value(observed.namespace, observed.name, name, result.value)
        await self._execute(body, status, plan)
        return _jittered(plan.requeue_after) if plan.requeue_after is not None else None

    def _target(self, namespace: str, spec: DriftPolicySpec) -> ModelDeploymentStatus | None:
        body = self.cluster.modeldeployments.get((namespace, spec.target_ref.name))
        if body is None:
            return None
        return ModelDeploymentStatus.model_validate(body.get("status") or {})

    async def _execute(self, body: Mapping[str, Any], before: DriftPolicyStatus, plan: Plan[DriftPolicyStatus]) -> None:
        # Counters first, as before the handshake: whoever reads a trigger in status (a test,
        # a dashboard next to `kubectl`) finds it already counted; Events tell of a written status.
        post(self.cluster, body, (), plan.counts)
        await write_status(self.cluster, DRIFT_POLICIES, self.cluster.driftpolicies, body, before, plan.status)
        post(self.cluster, body, plan.events, ())

    async def _value(
        self, spec: DriftPolicySpec, metric: DriftMetric, url: str, target: ModelDeploymentStatus, now: datetime
    ) -> MetricResult:
        """One metric's value from Prometheus, or why there is none."""
        timeout = parse_duration(spec.prometheus.timeout).total_seconds()
        prometheus = self.prometheus
        try:
            if metric.query is not None:
                return MetricResult(
                    drift.single_value(await prometheus.query(url, metric.query, timeout_seconds=timeout))
                )
            distribution = metric.distribution
            assert distribution is not None  # the CRD requires exactly one of query/distribution
            current = drift.buckets(await prometheus.query(url, distribution.current, timeout_seconds=timeout))
            if distribution.baseline.query is not None:
                baseline_result = await prometheus.query(url, distribution.baseline.query, timeout_seconds=timeout)
            else:
                window = parse_duration(str(distribution.baseline.since_promotion))
                at = drift.baseline_time(promoted_at(target), window, now)
                baseline_result = await prometheus.query(url, distribution.current, timeout_seconds=timeout, at=at)
            baseline = drift.buckets(baseline_result)
            return MetricResult(
                drift.distribution_statistic(distribution.test, current, baseline, distribution.min_samples)
            )
        except PrometheusUnreachableError as error:
            return MetricResult(error="PrometheusUnreachable", message=str(error))
        except QueryError as error:
            return MetricResult(error="QueryError", message=str(error))
        except drift.NoDataError as error:
            return MetricResult(error="NoData", message=str(error))
        except drift.DriftDataError as error:
            return MetricResult(error="QueryError", message=str(error))
