"""DriftPolicy controller: evaluate metrics in Prometheus every interval; a sustained breach asks for a retrain.

Each policy is a work-queue key that re-queues itself every ``interval`` (plus up to 10%
jitter, so a thousand policies do not query in lockstep); all policies share one async
HTTP client. Watch events (including the status this controller writes) only re-queue
the key: a policy evaluated less than ``interval`` ago waits for its turn, so events cost
no queries.

Prometheus is never awaited by a work-queue worker. A due policy's queries run as one
task of its own (at most one per policy; its metrics queried concurrently, each request
ending within min(``spec.prometheus.timeout``, the operator's max timeout)); when it ends
it queues the key, and the next reconcile plans from its results. So a hanging endpoint
or an expensive query delays only its own policy: the queue's workers keep reconciling
every other policy, and this one's handshake with its target, meanwhile.

Where a policy's queries go is ``choose_endpoint``'s decision: a named endpoint of the
operator's settings (``spec.prometheus.endpoint``, else the endpoint ``default``), whose
credentials, headers and TLS context the client sends, or a raw ``spec.prometheus.url``
the operator allows, sent without credentials. An unknown name is Ready=False/
EndpointUnknown, a URL not allowed Ready=False/EndpointNotAllowed; no request is sent.
The operator never reads a Secret of a user's namespace for this: credentials come only
from its own endpoints file, which the leader reads again within
``ENDPOINTS_RELOAD_SECONDS`` of a change (a mounted Secret is updated in place; an invalid
new version is logged and the endpoints loaded before stay in use).

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
import math
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from perennial.adapters import metrics
from perennial.adapters.kube import DRIFT_POLICIES
from perennial.adapters.prometheus import (
    PrometheusClient,
    PrometheusTimeoutError,
    PrometheusUnauthorizedError,
    PrometheusUnreachableError,
    QueryError,
)
from perennial.adapters.store import Key, key_of
from perennial.api.driftpolicy import DriftMetric, DriftPolicySpec, DriftPolicyStatus
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.controllers.context import Cluster, Controller
from perennial.controllers.execute import post, write_status
from perennial.domain import drift
from perennial.domain.driftpolicy import (
    EndpointCatalog,
    MetricResult,
    ObservedPolicy,
    answer_to_absorb,
    choose_endpoint,
    evaluation_due_in,
    plan_driftpolicy,
    promoted_at,
)
from perennial.domain.plan import Plan
from perennial.domain.timeutil import parse_time
from perennial.settings import (
    EndpointSettings,
    InvalidSettingsError,
    endpoint_warnings,
    prometheus_endpoints,
    read_endpoints_file,
)

logger = logging.getLogger(__name__)

ENDPOINTS_RELOAD_SECONDS = 10.0
"""How often the leader looks for a changed endpoints file (the kubelet takes up to a
minute or so to update a mounted Secret; reading a small file costs nothing)."""


def _jittered(seconds: float) -> float:
    return seconds + random.uniform(0, 0.1 * seconds)


def _raised(answer: dict[str, Any] | BaseException) -> dict[str, Any]:
    if isinstance(answer, BaseException):
        raise answer
    return answer


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

    def __init__(self, cluster: Cluster, prometheus: PrometheusClient) -> None:
        super().__init__(cluster)
        self.prometheus = prometheus
        self._evaluations: dict[Key, _Evaluation] = {}
        self._endpoints: dict[str, EndpointSettings] = {}
        self._catalog = EndpointCatalog()
        self._endpoints_text: str | None = None  # the endpoints file's text in use
        self._refused_text: str | None = None  # its last text refused, not parsed again
        self._refused_message = ""  # why, logged once
        self._reloading: asyncio.Task[None] | None = None
        self._logged_endpoints = ""
        self._use_endpoints(cluster.settings.prometheus_endpoints)
        cluster.driftpolicies.subscribe(self._policy_event)
        cluster.modeldeployments.subscribe(self._model_event)

    def _policy_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            namespace, name = key_of(body)
            self._cancel((namespace, name))
            metrics.forget_policy(namespace, name)
            return
        self.queue.add(key_of(body))

    def _model_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        # The target's status may hold an answer to a policy's request (or the target
        # came or went): its policies take a look; one not due only reads the answer.
        for key in self.cluster.driftpolicies.keys_referring_to(key_of(body)):
            self.queue.add(key)

    def start(self) -> None:
        if self.cluster.settings.prometheus_endpoints_file:
            self.reload_endpoints()  # what changed while this replica was not leading
            self._reloading = asyncio.create_task(self._reload_endpoints_loop(), name="prometheus-endpoints-reload")
        super().start()

    async def stop(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
            self._reloading = None
        for key in list(self._evaluations):
            self._cancel(key)
        await super().stop()

    # ------------------------------------------------------------ the operator's endpoints
    def _use_endpoints(self, endpoints: Sequence[EndpointSettings]) -> None:
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._catalog = EndpointCatalog(
            named={endpoint.name: endpoint.url for endpoint in endpoints},
            allowed_urls=self.cluster.settings.allowed_prometheus_urls,
        )
        # Names, URLs and which kinds of credentials: never a credential. Once per change.
        summary = "; ".join(endpoint.summary() for endpoint in endpoints)
        if summary != self._logged_endpoints:
            self._logged_endpoints = summary
            if endpoints:
                logger.info("Prometheus endpoints: %s", summary)
            for warning in endpoint_warnings(endpoints):
                logger.warning("%s", warning)

    def reload_endpoints(self) -> bool:
        """Read the endpoints file again; True if a changed, valid file is now in use.

        A file that cannot be read or is invalid leaves the endpoints in use as they are,
        and is logged once (an ERROR naming the endpoint and field, never a value).
        """
        settings = self.cluster.settings
        path = settings.prometheus_endpoints_file
        try:
            text = read_endpoints_file(path)
        except InvalidSettingsError as error:
            self._refuse(None, str(error))
            return False
        if text == self._endpoints_text:
            self._refused_text, self._refused_message = None, ""  # back to what is in use
            return False
        if text == self._refused_text:
            return False
        try:
            endpoints = prometheus_endpoints(text, path, settings.prometheus_url)
        except InvalidSettingsError as error:
            self._refuse(text, str(error))
            return False
        if self._endpoints_text is not None:
            logger.info("the Prometheus endpoints file %s changed: reloaded", path)
        self._endpoints_text, self._refused_text, self._refused_message = text, None, ""
        self._use_endpoints(endpoints)
        return True

    def _refuse(self, text: str | None, message: str) -> None:
        self._refused_text = text
        if message != self._refused_message:
            self._refused_message = message
            logger.error("the Prometheus endpoints file is not used: %s; the endpoints loaded before stay", message)

    async def _reload_endpoints_loop(self) -> None:
        while True:
            await asyncio.sleep(ENDPOINTS_RELOAD_SECONDS)
            try:
                self.reload_endpoints()
            except Exception:
                # A bug here must not end the reloading for good; the endpoints in use stay.
                logger.exception("reading the Prometheus endpoints file failed")

    async def reconcile(self, key: Key) -> float | None:
        body = self.cluster.driftpolicies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._cancel(key)
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
        remaining = evaluation_due_in(spec, status, observed.generation, now)
        if remaining > 0:
            if answer_to_absorb(observed) is not None:
                await self._execute(body, status, plan_driftpolicy(dataclasses.replace(observed, evaluate=False)))
            return remaining

        choice = choose_endpoint(spec.prometheus, self._catalog)
        endpoint = self._endpoints.get(choice.endpoint) if choice.endpoint else choice.url
        if observed.target is None or choice.problem is not None or endpoint is None:
            # Nothing to query (Ready says why); no request is sent.
            unusable = dataclasses.replace(observed, endpoint_problem=choice.problem)
            return await self._record(body, status, unusable, choice.url or "", {})
        url = choice.url or ""
        task = asyncio.create_task(self._evaluate(spec, endpoint, observed.target, now), name=f"drift-evaluation-{key}")
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
        """Plan from an evaluation's results, export the values, write status."""
        plan = plan_driftpolicy(dataclasses.replace(observed, results=results, prometheus_url=url or None))
        if results and observed.target is not None:  # evaluated, and its target still exists
            values = {
                name: result.value if result.value is not None and math.isfinite(result.value) else None
                for name, result in results.items()
            }
            metrics.set_drift_values(observed.namespace, observed.name, observed.spec.target_ref.name, values)
        await self._execute(body, status, plan)
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

    async def _evaluate(
        self, spec: DriftPolicySpec, endpoint: str | EndpointSettings, target: ModelDeploymentStatus, now: datetime
    ) -> dict[str, MetricResult]:
        """Every metric's value or error, queried concurrently: one evaluation lasts about one timeout."""
        started = time.monotonic()
        values = await asyncio.gather(*(self._value(spec, metric, endpoint, target, now) for metric in spec.metrics))
        metrics.DRIFT_EVALUATION_DURATION.observe(time.monotonic() - started)
        return {metric.name: value for metric, value in zip(spec.metrics, values, strict=True)}

    def _timeout(self, spec: DriftPolicySpec, endpoint: str | EndpointSettings) -> tuple[float, str]:
        """Seconds one request may take, and what to say when it took longer."""
        asked = parse_duration(spec.prometheus.timeout).total_seconds()
        cap = self.cluster.settings.prometheus_max_timeout_seconds
        capped_by = "the operator's PERENNIAL_PROMETHEUS_MAX_TIMEOUT"
        named = endpoint if isinstance(endpoint, EndpointSettings) else None
        if named is not None and named.timeout_seconds is not None and named.timeout_seconds < cap:
            cap, capped_by = named.timeout_seconds, f"the timeout of endpoint {named.name}"
        if asked <= cap:
            return asked, f"spec.prometheus.timeout {spec.prometheus.timeout}"
        return cap, f"spec.prometheus.timeout {spec.prometheus.timeout}, capped at {cap:g}s by {capped_by}"

    async def _value(
        self,
        spec: DriftPolicySpec,
        metric: DriftMetric,
        endpoint: str | EndpointSettings,
        target: ModelDeploymentStatus,
        now: datetime,
    ) -> MetricResult:
        """One metric's value from Prometheus, or why there is none."""
        timeout, timeout_text = self._timeout(spec, endpoint)
        cap = self.cluster.settings.prometheus_max_response_bytes
        prometheus = self.prometheus

        async def query(expression: str, at: datetime | None = None) -> dict[str, Any]:
            return await prometheus.query(endpoint, expression, timeout_seconds=timeout, at=at, max_response_bytes=cap)

        try:
            if metric.query is not None:
                return MetricResult(drift.single_value(await query(metric.query)))
            distribution = metric.distribution
            assert distribution is not None  # the CRD requires exactly one of query/distribution
            if distribution.baseline.query is not None:
                baseline_query = query(distribution.baseline.query)
            else:
                window = parse_duration(str(distribution.baseline.since_promotion))
                baseline_query = query(distribution.current, drift.baseline_time(promoted_at(target), window, now))
            # Both windows at once; the current window's error, if any, is the one told.
            answers = await asyncio.gather(query(distribution.current), baseline_query, return_exceptions=True)
            current_result, baseline_result = (_raised(answer) for answer in answers)
            current = drift.buckets(current_result, "current")
            baseline = drift.buckets(baseline_result, "baseline")
            return MetricResult(
                drift.distribution_statistic(distribution.test, current, baseline, distribution.min_samples)
            )
        except PrometheusTimeoutError as error:
            return MetricResult(error="PrometheusUnreachable", message=f"{error} ({timeout_text})")
        except PrometheusUnauthorizedError as error:
            return MetricResult(error="PrometheusUnauthorized", message=str(error))
        except PrometheusUnreachableError as error:
            return MetricResult(error="PrometheusUnreachable", message=str(error))
        except QueryError as error:
            return MetricResult(error="QueryError", message=str(error))
        except drift.NoDataError as error:
            return MetricResult(error="NoData", message=str(error))
        except drift.NonFiniteValueError as error:
            return MetricResult(error="NonFiniteValue", message=str(error))
        except drift.DriftDataError as error:
            return MetricResult(error="QueryError", message=str(error))
