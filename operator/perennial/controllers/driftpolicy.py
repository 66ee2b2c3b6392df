"""DriftPolicy controller: evaluate metrics in Prometheus every interval; a sustained breach asks for a retrain.

Each policy is a work-queue key that re-queues itself every ``interval`` (plus up to 10%
jitter, so a thousand policies do not query in lockstep); all policies share one async
HTTP client. Watch events (including the status this controller writes) only re-queue
the key: a policy evaluated less than ``interval`` ago waits for its turn, so events cost
no queries. When each policy was last evaluated is this controller's memory, not status:
status is written only when something a reader cares about changes, and with a heartbeat
(``perennial.domain.driftpolicy`` says exactly when), so an idle policy costs no API
writes. A replica that starts leading remembers nothing and evaluates each policy at once
(unless its status was written less than ``interval`` ago). Every evaluation sets the
policy's gauges: its metrics' values and its last evaluation time.

Prometheus is never awaited by a work-queue worker. A due policy's queries run as one
task of its own (at most one per policy; its metrics queried concurrently, each request
ending within min(``spec.prometheus.timeout``, the operator's max timeout)); when it ends
it queues the key, and the next reconcile plans from its results. So a hanging endpoint
or an expensive query delays only its own policy: the queue's workers keep reconciling
every other policy, and this one's handshake with its target, meanwhile.

Where a policy's queries go, and how each metric is read, is the ``MetricReader``'s
(``perennial.controllers.metric_reader``), shared with the canary analysis of ModelDeployments:
an unknown endpoint name is Ready=False/EndpointUnknown, a URL not allowed
Ready=False/EndpointNotAllowed; no request is sent.

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

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from perennial.adapters import metrics
from perennial.adapters.kube import DRIFT_POLICIES
from perennial.adapters.store import Key, key_of
from perennial.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.controllers.context import Cluster, Controller
from perennial.controllers.execute import post, write_status
from perennial.controllers.metric_reader import MetricReader, values_of
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

logger = logging.getLogger(__name__)


def _jittered(seconds: float) -> float:
    return seconds + random.uniform(0, 0.1 * seconds)


@dataclasses.dataclass(frozen=True)
class _Evaluation:
    """One policy's queries in flight, outside the work queue's workers."""

    generation: int | None
    """The generation whose spec is being evaluated: results of an older one are dropped."""
    url: str
    task: asyncio.Task[dict[str, MetricResult]]


class DriftPolicyController(Controller):
    kind: ClassVar[str] = "DriftPolicy"
    store: ClassVar[str] = "driftpolicies"

    def __init__(self, cluster: Cluster, reader: MetricReader) -> None:
        super().__init__(cluster)
        self.reader = reader
        self._evaluations: dict[Key, _Evaluation] = {}
        # When each policy was last evaluated, and which generation: the schedule's clock
        # (status.lastEvaluationTime is only a heartbeat).
        self._last_evaluated: dict[Key, tuple[int | None, datetime]] = {}
        cluster.driftpolicies.subscribe(self._policy_event)
        cluster.modeldeployments.subscribe(self._model_event)

    def _policy_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            namespace, name = key_of(body)
            self._cancel((namespace, name))
            self._last_evaluated.pop((namespace, name), None)
            metrics.forget_policy(namespace, name)
            return
        self.queue.add(key_of(body))

    def _model_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        # The target's status may hold an answer to a policy's request (or the target
        # came or went): its policies take a look; one not due only reads the answer.
        for key in self.cluster.driftpolicies.keys_referring_to(key_of(body)):
            self.queue.add(key)

    async def stop(self) -> None:
        for key in list(self._evaluations):
            self._cancel(key)
        self._last_evaluated.clear()  # leading again later, this replica evaluates afresh
        await super().stop()

    async def reconcile(self, key: Key) -> float | None:
        body = self.cluster.driftpolicies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._cancel(key)
            self._last_evaluated.pop(key, None)
            return None
        metadata = body["metadata"]
        spec = DriftPolicySpec.model_validate(body.get("spec") or {})
        status = DriftPolicyStatus.model_validate(body.get("status") or {})
        now = datetime.now(UTC)
        generation = metadata.get("generation")
        evaluated = self._last_evaluated.get(key)
        observed = ObservedPolicy(
            name=metadata["name"],
            namespace=metadata["namespace"],
            generation=generation,
            spec=spec,
            status=status,
            target=self._target(metadata["namespace"], spec),
            now=now,
            created=parse_time(metadata.get("creationTimestamp")),
            last_evaluation=evaluated[1] if evaluated is not None and evaluated[0] == generation else None,
        )
        if spec.suspend:
            self._cancel(key)
            await self._execute(body, status, plan_driftpolicy(observed))
            return None
        evaluation = self._evaluations.get(key)
        if evaluation is not None and not evaluation.task.done():
            # Queries in flight (their task queues the key when it ends): meanwhile only
            # the target's answer to a pending request is recorded.
            if answer_to_absorb(observed) is not None:
                await self._execute(body, status, plan_driftpolicy(dataclasses.replace(observed, evaluate=False)))
            return None
        if evaluation is not None and evaluation.generation == observed.generation:
            del self._evaluations[key]
            results = evaluation.task.result()  # a bug in the task raises here: the queue retries
            return await self._record(body, status, observed, evaluation.url, results)
        self._cancel(key)  # results of a spec edited while it was queried: evaluate the new one
        remaining = evaluation_due_in(
            spec, status, observed.generation, now, observed.last_evaluation, target_found=observed.target is not None
        )
        if remaining > 0:
            if answer_to_absorb(observed) is not None:
                await self._execute(body, status, plan_driftpolicy(dataclasses.replace(observed, evaluate=False)))
            return remaining

        target = self.reader.target(spec.prometheus)
        choice, endpoint = target.choice, target.endpoint
        if observed.target is None or endpoint is None:
            # Nothing to query (Ready says why); no request is sent.
            unusable = dataclasses.replace(observed, endpoint_problem=choice.problem)
            return await self._record(body, status, unusable, choice.url or "", {})
        url = choice.url or ""
        reading = self.reader.read(
            spec.metrics, endpoint, spec.prometheus.timeout, promoted_at=promoted_at(observed.target), now=now
        )
        task = asyncio.create_task(reading, name=f"drift-evaluation-{key}")
        self._evaluations[key] = _Evaluation(observed.generation, url, task)
        task.add_done_callback(lambda done: self._evaluated(key, done))
        return None

    def _evaluated(self, key: Key, task: asyncio.Task[dict[str, MetricResult]]) -> None:
        if not task.cancelled():
            self.queue.add(key)  # the next reconcile records the results

    async def _record(
        self,
        body: Mapping[str, Any],
        status: DriftPolicyStatus,
        observed: ObservedPolicy,
        url: str,
        results: dict[str, MetricResult],
    ) -> float | None:
        """Plan from an evaluation's results, export the values and the time, write status (if worth it)."""
        plan = plan_driftpolicy(dataclasses.replace(observed, results=results, prometheus_url=url or None))
        if results and observed.target is not None:  # evaluated, and its target still exists
            metrics.set_drift_values(
                observed.namespace, observed.name, observed.spec.target_ref.name, values_of(results)
            )
        metrics.set_drift_evaluated(observed.namespace, observed.name, observed.now.timestamp())
        await self._execute(body, status, plan)
        # Remembered once written: a write refused (409) plans again from a fresh evaluation.
        self._last_evaluated[key_of(body)] = (observed.generation, observed.now)
        return _jittered(plan.requeue_after) if plan.requeue_after is not None else None

    def _cancel(self, key: Key) -> None:
        evaluation = self._evaluations.pop(key, None)
        if evaluation is None:
            return
        if evaluation.task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                evaluation.task.result()  # retrieved, so asyncio does not log it as never retrieved
        else:
            evaluation.task.cancel()

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
