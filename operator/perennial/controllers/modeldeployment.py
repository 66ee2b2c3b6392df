"""ModelDeployment controller: executes the plans of ``perennial.domain.modeldeployment_plan``.

Fed by the caches of ModelDeployments and of what they own (TrainingJobs, the serving
Deployment and Service; child events batched, for up to a second under load) and of DriftPolicies (a
pending retrain request is answered at once). One reconcile per object at a time:
observe, plan, then create the TrainingJob the plan allocated, converge the serving
children, delete old TrainingJobs, write status, post Events.

Versions are allocated by the plan after a LIST of the model's TrainingJobs (the cache
may lag) and created under deterministic names, so racing triggers never make two
TrainingJobs for one version; the TrainingJob carries what its trigger consumed, so a
crash before the status write loses and repeats nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from perennial.adapters import logs, metrics
from perennial.adapters.kube import DEPLOYMENTS, HTTP_ROUTES, MODEL_DEPLOYMENTS, TRAINING_JOBS, ApiError, Resource
from perennial.adapters.store import Key, key_of
from perennial.api.driftpolicy import DriftPolicyStatus
from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.controllers.context import (
    CHILD_EVENT_BATCH_SECONDS,
    CHILD_EVENT_QUIET_SECONDS,
    Cluster,
    Controller,
    owner_key,
)
from perennial.controllers.execute import converge_child, create_child, delete_child, post, write_status
from perennial.controllers.metric_reader import MetricReader
from perennial.domain import canary, freshness
from perennial.domain import modeldeployment as md
from perennial.domain.conditions import condition_is_true
from perennial.domain.driftpolicy import MetricResult, promoted_at
from perennial.domain.labels import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL
from perennial.domain.modeldeployment_plan import (
    CHILD_REFUSED,
    NAME_CONFLICT,
    ROUTE_RETRY_SECONDS,
    ObservedModel,
    plan_modeldeployment,
    record_child_outcomes,
)
from perennial.domain.plan import Plan
from perennial.domain.timeutil import truncate

KIND = "ModelDeployment"
logger = logging.getLogger(__name__)
# Names found taken (or refused) before a version could be allocated: each costs a re-plan.
MAX_ALLOCATION_ATTEMPTS = 5


# What a plan may delete: TrainingJobs beyond historyLimit, a finished canary's Deployment.
DELETABLE: dict[str, Resource] = {TRAINING_JOBS.plural: TRAINING_JOBS, DEPLOYMENTS.plural: DEPLOYMENTS}


class AllocationError(RuntimeError):
    """Every candidate TrainingJob name was taken; the work queue retries with backoff."""


class ModelDeploymentController(Controller):
    kind = KIND
    store = "modeldeployments"

    def __init__(self, cluster: Cluster, reader: MetricReader) -> None:
        super().__init__(cluster)
        self.reader = reader
        cluster.modeldeployments.subscribe(self._model_event)
        for children in (cluster.trainingjobs, cluster.deployments, cluster.services):
            children.subscribe(self._child_event)
        cluster.driftpolicies.subscribe(self._policy_event)

    def _model_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            metrics.forget_model(body["metadata"]["namespace"], body["metadata"]["name"])
            return
        self.queue.add(key_of(body))

    def _child_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = owner_key(body, KIND)
        if key is not None:
            self.queue.add_batched(key, quiet=CHILD_EVENT_QUIET_SECONDS, batch=CHILD_EVENT_BATCH_SECONDS)

    def _policy_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
        if target and (body.get("status") or {}).get("retrainRequest"):
            self.queue.add((body["metadata"]["namespace"], str(target)))

    # ------------------------------------------------------------ observe
    async def _list_runs(self, ref: md.ModelRef) -> dict[str, md.Run]:
        """The model's TrainingJobs from the API server itself, recorded in the cache."""
        selector = f"{MODEL_LABEL}={ref.name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        listed = await self.cluster.client.list(TRAINING_JOBS, ref.namespace, selector)
        for body in listed:
            self.cluster.trainingjobs.put(body)
        return md.own_runs(listed, ref)

    def _drift_requests(self, key: Key) -> list[md.DriftRequest]:
        requests = []
        for body in self.cluster.driftpolicies.referring_to(key):
            request = DriftPolicyStatus.model_validate(body.get("status") or {}).retrain_request
            if request is not None:
                requests.append(md.DriftRequest(body["metadata"]["name"], request.id, request.detail or ""))
        return requests

    # ------------------------------------------------------------ reconcile
    async def reconcile(self, key: Key) -> float | None:
        body = self.cluster.modeldeployments.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        metadata = body["metadata"]
        ref = md.ModelRef(metadata["name"], metadata["namespace"], metadata["uid"], metadata.get("generation"))
        try:
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            logger.error("spec the CRD should have refused: %s", error, extra=logs.about(body))
            return None
        before = ModelDeploymentStatus.model_validate(body.get("status") or {})
        analysis = await self._read_analysis(ref, spec, before)
        route, route_problem = await self._read_route(ref, spec)
        plan = await self._plan_and_allocate(body, ref, spec, before, analysis, route, route_problem)

        problems = []
        for desired in plan.apply:
            outcome = await converge_child(self.cluster, ref.uid, desired)
            if outcome.result == "conflict":
                problems.append((NAME_CONFLICT, outcome.message))
            elif outcome.result == "refused":
                problems.append((CHILD_REFUSED, outcome.message))
        record_child_outcomes(plan, problems)
        for route_body in plan.update:
            await self._update_route(ref, route_body, plan)
        for child in plan.delete:
            await delete_child(self.cluster, DELETABLE[child.plural], ref.namespace, child.name)
        await write_status(self.cluster, MODEL_DEPLOYMENTS, self.cluster.modeldeployments, body, before, plan.status)
        post(self.cluster, body, plan.events, plan.counts)
        self._export(ref, spec, plan)
        return plan.requeue_after

    async def _read_analysis(
        self, ref: md.ModelRef, spec: ModelDeploymentSpec, status: ModelDeploymentStatus
    ) -> canary.AnalysisReading | None:
        """A canary's analysis metrics, when they are due (awaited: a canary is rare and each
        request is bounded by the timeout; an unusable endpoint is every metric's error)."""
        now = truncate(datetime.now(UTC))
        rollout, analysis = status.rollout, spec.rollout.analysis
        if rollout is None or analysis is None or rollout.step is None or not canary.analysis_due(spec, rollout, now):
            return None
        target = self.reader.target(analysis.prometheus)
        if target.endpoint is None:
            reason, message = target.choice.problem or ("PrometheusUnreachable", "no Prometheus endpoint")
            problem = MetricResult(error="QueryError", message=f"{reason}: {message}")
            return canary.AnalysisReading(
                rollout.version, rollout.step, now, {m.name: problem for m in analysis.metrics}
            )
        stable = rollout.previous_version or ""

        def expand(query: str) -> str:
            return canary.expand(
                query, model=ref.name, namespace=ref.namespace, version=rollout.version, stable_version=stable
            )

        results = await self.reader.read(
            analysis.metrics,
            target.endpoint,
            analysis.prometheus.timeout,
            promoted_at=promoted_at(status),  # the stable version's: sincePromotion baselines
            now=now,
            expand=expand,
        )
        return canary.AnalysisReading(rollout.version, rollout.step, now, results)

    async def _read_route(
        self, ref: md.ModelRef, spec: ModelDeploymentSpec
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The HTTPRoute a canary's traffic goes through (not watched: routes are the user's and
        Gateway API may not be installed), or why it cannot be read."""
        name = canary.http_route(spec)
        if not name:
            return None, None
        try:
            return await self.cluster.client.get(HTTP_ROUTES, ref.namespace, name), None
        except ApiError as error:
            if error.status in (403, 404):
                return None, f"HTTPRoute {name} cannot be read ({error.status} {error.reason}): {error.message}"
            raise

    async def _update_route(
        self, ref: md.ModelRef, route: Mapping[str, Any], plan: Plan[ModelDeploymentStatus]
    ) -> None:
        """Write the route back with the plan's weights, unless someone changed it since it was read."""
        try:
            await self.cluster.client.replace(HTTP_ROUTES, ref.namespace, route["metadata"]["name"], route)
        except ApiError as error:
            if error.status not in (403, 404, 409, 422):
                raise
            # Changed meanwhile (409) or refused: the next look reads it again and says why.
            logger.warning("HTTPRoute %s not updated: %s", route["metadata"]["name"], error, extra=logs.about(route))
            plan.later(ROUTE_RETRY_SECONDS)

    async def _plan_and_allocate(
        self,
        body: Mapping[str, Any],
        ref: md.ModelRef,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        analysis: canary.AnalysisReading | None,
        route: dict[str, Any] | None = None,
        route_problem: str | None = None,
    ) -> Plan[ModelDeploymentStatus]:
        """Plan; when the plan starts a training, list first, then create its TrainingJob.

        A name found taken (another writer, a foreign object) or a TrainingJob the API
        server refuses is observed and planned again: the plan, not this loop, decides.
        """
        runs = md.own_runs(self.cluster.trainingjobs.owned_by(ref.uid), ref)
        listed = False
        if any(r.state == "Training" and r.version not in runs for r in status.versions or []):
            runs, listed = await self._list_runs(ref), True  # recorded runs the cache lacks: gone, or lagging?
        taken: set[str] = set()
        refused: str | None = None
        for _ in range(MAX_ALLOCATION_ATTEMPTS):
            observed = ObservedModel(
                ref=ref,
                spec=spec,
                annotations=body["metadata"].get("annotations") or {},
                status=status,
                runs=runs,
                runs_listed=listed,
                deployment=self.cluster.deployments.get((ref.namespace, ref.name)),
                canary=self.cluster.deployments.get((ref.namespace, canary.canary_name(ref.name))),
                analysis=analysis,
                route=route,
                route_problem=route_problem,
                drift_requests=self._drift_requests((ref.namespace, ref.name)),
                now=datetime.now(UTC),
                taken_names=frozenset(taken),
                refused_training=refused,
            )
            plan = plan_modeldeployment(observed)
            if not plan.create:
                return plan
            if not listed:
                runs, listed = await self._list_runs(ref), True
                continue
            outcome = await create_child(self.cluster, ref.uid, plan.create[0])
            if outcome.result == "created":
                return plan
            if outcome.result == "refused":
                refused = outcome.message
            else:
                taken.add(outcome.name)
                runs = await self._list_runs(ref)
        raise AllocationError(f"could not allocate a version after {MAX_ALLOCATION_ATTEMPTS} attempts")

    def _export(self, ref: md.ModelRef, spec: ModelDeploymentSpec, plan: Plan[ModelDeploymentStatus]) -> None:
        if self.cluster.modeldeployments.get((ref.namespace, ref.name)) is None:
            return  # deleted while this reconcile ran: its series are gone and stay gone
        status = plan.status
        last_training = freshness.last_successful_training(status)
        max_age = freshness.max_training_age(spec)
        metrics.export_model(
            ref.namespace,
            ref.name,
            ready=condition_is_true(status.conditions, "Ready"),
            automatic_retrains=status.automatic_retrains,
            serving_version=status.serving_version,
            last_training=last_training.timestamp() if last_training is not None else None,
            max_training_age=max_age.total_seconds() if max_age is not None else None,
            canary_weight=(status.rollout.weight or 0) if canary.is_canary(status.rollout) else 0,
            counts=plan.counts,
        )
