"""Canary rollouts: replica shares, the analysis verdict, and the step machine's pure parts.

A canary runs the new version in its own Deployment (``<model>-canary``) beside the
serving one, both behind the model's one Service, so traffic follows the share of ready
replicas with no mesh. Each step gives the canary ``weight`` percent of
``serving.replicas`` (rounded, at least one); the stable version gives up only as many
replicas as the canary has available, and keeps at least one until the canary ends, so
the number of available serving replicas never drops below ``serving.replicas`` and a
``{stableVersion}`` query always has a population to compare with.

A step's pause starts once its canary replicas are available; the analysis metrics are
read every ``analysis.interval`` during the pause and once more when it ends. A metric
outside its bounds for its ``for`` aborts at once (AnalysisFailed); at the end of the
pause every metric must have a value inside its bounds, read at or after the end, or the
step holds (AnalysisInconclusive) until ``progressDeadline`` has passed since the pause
ended, then aborts (AnalysisNoData; AnalysisFailed if a value is out of bounds then).
Every moment that matters lives in ``status.rollout``, so a restarted operator resumes a
step where it was: the pause neither starts again nor is skipped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeGuard

from perennial.api.driftpolicy import DriftMetricStatus
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import CanaryStep, ModelDeploymentSpec, RolloutStatus
from perennial.domain import drift
from perennial.domain.driftpolicy import MetricResult

CANARY_SUFFIX = "-canary"
TRACK_LABEL = "perennial.dev/track"
"""On a canary's Deployment and pods: ``canary`` (the serving Deployment's pods have none,
so adding the strategy to a model restarts nothing)."""
CANARY_TRACK = "canary"
STABLE_TRACK = "stable"
"""On the serving Deployment's pods when the canary's traffic goes through an HTTPRoute."""


def canary_name(model: str) -> str:
    return f"{model}{CANARY_SUFFIX}"


def canary_replicas(total: int, weight: int) -> int:
    """``weight`` percent of ``total`` replicas, rounded half up, at least one and at most ``total``."""
    share = math.floor(total * weight / 100 + 0.5)
    return max(1, min(total, share))


def stable_replicas(total: int, canary: int, canary_available: int) -> int:
    """The stable version's replicas: ``total`` less the canary replicas already available
    (never below one while there is a canary, unless the model is scaled to zero)."""
    shifted = min(canary, max(0, canary_available))
    return max(total - shifted, 1 if total >= 1 else 0)


def max_unavailable(spec: ModelDeploymentSpec) -> int:
    """The serving Deployment's maxUnavailable: with strategy Canary, the most replicas a step
    takes from the stable version (at most all but one); otherwise none.

    Those replicas are served by the canary's pods meanwhile, so the serving Deployment stays
    Available (and the model Ready) with that many fewer pods: when it shrinks for a step,
    grows back after an abort, and rolls to the new version at the end. A constant of the
    spec, not of the moment: the Deployment is not rewritten as pods come and go.
    """
    steps = spec.rollout.steps if spec.rollout.strategy == "Canary" else None
    total = spec.serving.replicas
    if not steps or total < 1 or http_route(spec):
        return 0  # with an HTTPRoute the stable version keeps every replica: nothing is lent
    return min(max(canary_replicas(total, step.weight) for step in steps), total - 1)


# ---------------------------------------------------------------- traffic by an HTTPRoute
def http_route(spec: ModelDeploymentSpec) -> str | None:
    """The HTTPRoute whose weights steer the canary's traffic, if the spec names one."""
    traffic = spec.rollout.canary if spec.rollout.strategy == "Canary" else None
    return traffic.http_route if traffic is not None else None


def stable_service_name(model: str) -> str:
    return f"{model}-stable"


def canary_service_name(model: str) -> str:
    return f"{model}{CANARY_SUFFIX}"


def route_weights(rollout: RolloutStatus | None) -> tuple[int, int]:
    """(stable, canary) weights: the canary's share while it runs (kept while the serving
    Deployment rolls to it at the end), else everything to the stable Service."""
    if is_canary(rollout) and rollout.weight is not None:
        return 100 - rollout.weight, rollout.weight
    return 100, 0


@dataclass(frozen=True)
class RouteUpdate:
    body: dict[str, Any] | None
    """The route with the weights set; None when it has them already (or cannot have them)."""
    problem: str | None = None
    """Why the weights cannot be set (the route lacks the backendRefs)."""


def weighted_route(route: Mapping[str, Any], model: str, weights: tuple[int, int]) -> RouteUpdate:
    """``route`` with the weights of its backendRefs to the model's stable and canary Services
    set to ``weights``; every other field (matches, filters, other backends) as it was."""
    namespace = str((route.get("metadata") or {}).get("namespace") or "")
    wanted = {stable_service_name(model): weights[0], canary_service_name(model): weights[1]}
    updated = copy.deepcopy(dict(route))
    found: set[str] = set()
    changed = False
    for rule in (updated.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            name = ref.get("name")
            ours = (
                name in wanted
                and (ref.get("kind") or "Service") == "Service"
                and (ref.get("group") or "") == ""
                and (ref.get("namespace") or namespace) == namespace
            )
            if not ours:
                continue
            found.add(name)
            if ref.get("weight", 1) != wanted[name]:
                ref["weight"] = wanted[name]
                changed = True
    missing = sorted(set(wanted) - found)
    if missing:
        route_name = (route.get("metadata") or {}).get("name")
        return RouteUpdate(
            None,
            f"HTTPRoute {route_name} has no backendRef to the Service {' nor '.join(missing)}: add both"
            f" {stable_service_name(model)} and {canary_service_name(model)} (port: spec.serving.port) to a rule",
        )
    return RouteUpdate(updated if changed else None)


def expand(query: str, *, model: str, namespace: str, version: str, stable_version: str) -> str:
    """Fill an analysis query's placeholders; PromQL's own braces (label matchers) stay."""
    for placeholder, value in (
        ("{model}", model),
        ("{namespace}", namespace),
        ("{version}", version),
        ("{stableVersion}", stable_version),
    ):
        query = query.replace(placeholder, value)
    return query


def is_canary(rollout: RolloutStatus | None) -> TypeGuard[RolloutStatus]:
    return rollout is not None and rollout.strategy == "Canary"


def current_step(spec: ModelDeploymentSpec, rollout: RolloutStatus) -> CanaryStep | None:
    """The step ``rollout`` is at, or None when the steps are done (or the spec no longer has
    them: the strategy or the steps changed under a canary, which then promotes)."""
    steps = spec.rollout.steps if spec.rollout.strategy == "Canary" else None
    if rollout.stage != "Step" or not steps or rollout.step is None or not 1 <= rollout.step <= len(steps):
        return None
    return steps[rollout.step - 1]


def pause_ends(step: CanaryStep, rollout: RolloutStatus) -> datetime | None:
    started = rollout.pause_started_at
    return started + parse_duration(step.pause) if started is not None else None


def analysis_due(spec: ModelDeploymentSpec, rollout: RolloutStatus | None, now: datetime) -> bool:
    """Whether the controller should read the analysis metrics before this pass: in a
    step's pause, every ``analysis.interval``, and once at (or after) the pause's end."""
    analysis = spec.rollout.analysis
    if rollout is None or not is_canary(rollout) or analysis is None:
        return False
    step = current_step(spec, rollout)
    ends = pause_ends(step, rollout) if step is not None else None
    if ends is None:
        return False
    last = rollout.last_analysis_time
    if last is None or last < ends <= now:
        return True
    return now - last >= parse_duration(analysis.interval)


def next_analysis_in(spec: ModelDeploymentSpec, rollout: RolloutStatus, now: datetime) -> float | None:
    """Seconds until the analysis is due again (the plan's next look)."""
    analysis = spec.rollout.analysis
    step = current_step(spec, rollout)
    ends = pause_ends(step, rollout) if step is not None else None
    if analysis is None or ends is None:
        return None
    last = rollout.last_analysis_time
    if last is None:
        return 0.0
    due = last + parse_duration(analysis.interval)
    if last < ends:
        due = min(due, ends)
    return max(0.0, (due - now).total_seconds())


@dataclass(frozen=True)
class AnalysisReading:
    """The analysis metrics read for one step of one version's canary."""

    version: str
    step: int
    time: datetime
    results: Mapping[str, MetricResult]


def analysis_states(
    spec: ModelDeploymentSpec, previous: Sequence[DriftMetricStatus], reading: AnalysisReading
) -> list[drift.MetricState]:
    """The metrics' new states from a reading: the DriftPolicy's breach clocks, per metric."""
    analysis = spec.rollout.analysis
    assert analysis is not None
    before = {m.name: m for m in previous}
    states = []
    for metric in analysis.metrics:
        result = reading.results.get(metric.name) or MetricResult(error="NoData", message="not read")
        value = result.value if result.value is not None and math.isfinite(result.value) else None
        error = None
        if value is None:
            error = result.message or (result.error or "NoData")
            if result.value is not None:
                error = f"the value is {drift.non_finite_text(result.value)}, not a finite number"
        bounds = drift.Bounds(metric.min, metric.max, parse_duration(metric.for_))
        since = before[metric.name].breached_since if metric.name in before else None
        states.append(drift.next_metric_state(metric.name, bounds, value, error, since, reading.time))
    return states


Verdict = Literal["Passed", "Failed", "Inconclusive"]


@dataclass(frozen=True)
class StepVerdict:
    result: Verdict
    message: str


def verdict(statuses: Sequence[DriftMetricStatus], *, final: bool) -> StepVerdict:
    """What the last reading says of a step.

    Failed: a metric breached (outside its bounds for its ``for``), or, when ``final``
    (the step's deadline has come), is outside its bounds at all. Passed: every metric has
    a value within its bounds. Inconclusive otherwise: a metric without data or with an
    error, or outside its bounds for less than its ``for``.
    """
    breached = [m for m in statuses if m.breached]
    if final:
        breached += [m for m in statuses if not m.breached and _outside(m)]
    if breached:
        return StepVerdict("Failed", "; ".join(_breach_text(m) for m in breached))
    waiting = [m for m in statuses if m.value is None or _outside(m)]
    if waiting:
        return StepVerdict("Inconclusive", "; ".join(_waiting_text(m) for m in waiting))
    return StepVerdict("Passed", ", ".join(f"{m.name}={_number(m.value)}" for m in statuses))


def _outside(metric: DriftMetricStatus) -> bool:
    value = metric.value
    if value is None:
        return False
    return (metric.min is not None and value < metric.min) or (metric.max is not None and value > metric.max)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _breach_text(metric: DriftMetricStatus) -> str:
    bound = f"> max {_number(metric.max)}" if metric.max is not None and (metric.value or 0) > metric.max else ""
    if not bound and metric.min is not None:
        bound = f"< min {_number(metric.min)}"
    return f"{metric.name}={_number(metric.value)} {bound}".rstrip()


def _waiting_text(metric: DriftMetricStatus) -> str:
    if metric.value is None:
        return f"{metric.name}: {metric.error or 'NoData'}"
    return f"{_breach_text(metric)} for less than its `for`"


def step_deadline(spec: ModelDeploymentSpec, rollout: RolloutStatus) -> datetime | None:
    """When the current step (or the promotion) gives up waiting for available replicas."""
    started = rollout.step_started_at
    return started + parse_duration(spec.rollout.progress_deadline) if started is not None else None


def analysis_deadline(spec: ModelDeploymentSpec, ends: datetime) -> datetime:
    """When a step whose pause ended at ``ends`` stops waiting for conclusive analysis."""
    return ends + parse_duration(spec.rollout.progress_deadline)


def seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())
