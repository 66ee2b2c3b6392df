"""The DriftPolicy's reconcile as one pure function: ``plan_driftpolicy(observed) -> Plan``.

The controller does the I/O: it reads the policy and its target from the caches, queries
Prometheus (``sincePromotion`` baselines included) and hands over what each metric gave,
a value or an error. This module decides the rest: the breach clocks, the ``trigger.when``
rule, the conditions ``Ready`` and ``Drifting``, the policy's cooldown, Observe's dry run,
the Events and counters, and the retrain handshake with the target.

The handshake (controllers talk through the API, never call each other):

1. A drifting policy whose cooldown is over asks for a retrain in its own status,
   ``status.retrainRequest {id, requestedAt, detail}``; the id is the request's time
   (RFC 3339), unique per policy because evaluations are at least 10 s apart.
2. The target ModelDeployment treats an id it has not answered as a Drift trigger under
   its own rules, and answers in its status: ``status.driftRequests[]``, the latest answer
   to each policy, ``Started`` (with the TrainingJob) or ``Suppressed`` (with why).
3. The policy reads the answer from the target's status and records it (a started retrain
   is a trigger: ``lastTriggerTime`` = the request's time, ``triggerCount``,
   ``lastTrainingJob``), then clears the request. A suppressed request does not start the
   policy's cooldown, so a later evaluation asks again.

A request nobody answered yet is kept while the policy drifts and withdrawn when the rule
stops holding (or the target is gone). A target that started a run for a request withdrawn
a moment too late still answers ``Started``; that run is recorded as a trigger too, so
``triggerCount`` counts every retrain the policy caused.

When status is written (``status_worth_writing``): not at every evaluation. An evaluation
writes status only when something a reader cares about changed, compared with status as
it is in the API server (``reader_view``):

- ``observedGeneration`` (a spec edit), ``retrainRequest``, ``lastTriggerTime``,
  ``triggerCount``, ``lastTrainingJob``;
- a metric's ``breached``, ``breachedSince`` (set when its value leaves ``[min, max]``,
  cleared when it comes back or has no value), its bounds, the side of its bounds its value
  is on (below ``min``, inside, above ``max``, or no value), its ``error`` (appearing,
  clearing, or changing other than in the numbers it quotes);
- a condition's status, reason or message (other than in the numbers it quotes: the
  value in ``feature_psi=0.31 > max 0.2``, a count of observations);
- the heartbeat: ``lastEvaluationTime`` at least ``heartbeat(spec)`` = max(10 * interval,
  10m) old.

Otherwise status stays exactly as it is (no write, and no Event: every Event tells of a
written change). Whenever status is written, all of it is current: ``lastEvaluationTime``,
every metric's ``value`` and ``error`` text, and the messages with the values they quote.
So a message that quotes a value states it as of the last write (the breach's start, a
change, or the heartbeat), together with the ``metrics[].value`` written with it; the
latest value and evaluation time of every policy are the operator's metrics
(``perennial_drift_metric_value``, ``perennial_drift_policy_last_evaluation_timestamp_seconds``).
The breach clock still survives a restart: ``breachedSince`` is written when the value
leaves its bounds. The evaluation schedule does not depend on ``lastEvaluationTime``
either: the controller remembers when it last evaluated each policy
(``ObservedPolicy.last_evaluation``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from perennial.api.base import Condition
from perennial.api.driftpolicy import (
    DriftMetricStatus,
    DriftPolicySpec,
    DriftPolicyStatus,
    PrometheusEndpoint,
    RetrainRequest,
)
from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import DriftRequestAnswer, ModelDeploymentStatus
from perennial.domain import drift
from perennial.domain.conditions import condition_is_true, get_condition
from perennial.domain.plan import Plan
from perennial.domain.timeutil import format_time, parse_time, truncate

ErrorKind = Literal["NoData", "PrometheusUnreachable", "PrometheusUnauthorized", "QueryError", "NonFiniteValue"]
"""Why a metric has no value: ``NoData`` is never a problem; the others make Ready False
with that reason. ``NonFiniteValue``: Prometheus answered NaN, +Inf or -Inf.
``PrometheusUnauthorized``: the endpoint refused the credentials (HTTP 401/403)."""

DEFAULT_ENDPOINT = "default"
TARGET_NOT_FOUND = "TargetNotFound"  # Ready's reason while the target ModelDeployment does not exist
NO_PROMETHEUS = (
    "no Prometheus: name an endpoint (spec.prometheus.endpoint) or a URL (spec.prometheus.url), or give the"
    " operator a default endpoint (PERENNIAL_PROMETHEUS_URL, or an endpoint named default)"
)
# Reasons of Ready=False that are mistakes in a spec or in the operator's settings rather
# than transient faults: each change of them is also a Warning Event.
_CONFIGURATION_PROBLEMS = ("EndpointUnknown", "EndpointNotAllowed", "PrometheusUnauthorized")
_LISTED_ENDPOINTS = 20  # endpoint names a message lists at most
HEARTBEAT_INTERVALS = 10
HEARTBEAT_MINIMUM = timedelta(minutes=10)
# A number as messages quote them: 0.31, 1e-05, 250, the parts of a timestamp.
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class MetricResult:
    """What the controller got for one metric: a value, or an error kind and its message."""

    value: float | None = None
    error: ErrorKind | None = None
    message: str = ""


@dataclass(frozen=True)
class ObservedPolicy:
    """Everything one pass of a DriftPolicy reads."""

    name: str
    namespace: str
    generation: int | None
    spec: DriftPolicySpec
    status: DriftPolicyStatus
    target: ModelDeploymentStatus | None
    """The target ModelDeployment's status; None when there is no such ModelDeployment."""
    now: datetime
    evaluate: bool = True
    """True: ``results`` hold a fresh evaluation. False: only absorb the target's answer
    to the pending request (metric states, Ready and lastEvaluationTime stay as they are)."""
    results: Mapping[str, MetricResult] = field(default_factory=dict)
    """By metric name; empty when the controller could not query (no target, no Prometheus)."""
    prometheus_url: str | None = None
    """The Prometheus the controller queried (spec.prometheus.url or the operator's default)."""
    endpoint_allowed: bool = True
    """False: spec.prometheus.url is not among the endpoints the operator allows
    (``allowed_endpoint``), so nothing was queried."""
    endpoint_problem: tuple[str, str] | None = None
    """Why no endpoint could be queried, as Ready's (reason, message): ``choose_endpoint``'s problem."""
    created: datetime | None = None
    """The policy's creationTimestamp: answers to requests older than the policy belong to
    an earlier policy of the same name."""
    last_evaluation: datetime | None = None
    """When the controller last evaluated this generation of the policy, from its memory
    (status is not written at every evaluation); None: not since this replica started leading."""


# ---------------------------------------------------------------- helpers for the controller
def evaluation_due_in(
    spec: DriftPolicySpec,
    status: DriftPolicyStatus,
    generation: int | None,
    now: datetime,
    last_evaluation: datetime | None = None,
    *,
    target_found: bool | None = None,
) -> float:
    """Seconds until the next evaluation is due; zero or less: evaluate now.

    Every ``interval`` after the last evaluation of this generation, whatever woke the
    policy. The last evaluation is the later of ``last_evaluation`` (the controller's
    memory of this generation) and ``status.lastEvaluationTime`` when status describes
    this generation: that one is a heartbeat, possibly older than the last evaluation, so
    a replica that just started leading evaluates at once unless status was written less
    than ``interval`` ago. An edited spec (a generation not evaluated yet) is due at once,
    and so is a policy whose status is wrong about its target (``target_found``: the
    target came, as when a policy is applied with its model, or went): otherwise Ready
    would say TargetNotFound for an interval, and its correction would be a status write
    an interval later, when nothing changes any more.
    """
    if target_found is not None and target_found == _says_target_not_found(status):
        return 0.0
    last = last_evaluation
    written = status.last_evaluation_time
    if written is not None and status.observed_generation == generation:
        last = written if last is None else max(last, written)
    if last is None:
        return 0.0
    return parse_duration(spec.interval).total_seconds() - (now - last).total_seconds()


def _says_target_not_found(status: DriftPolicyStatus) -> bool:
    ready = next((c for c in status.conditions or [] if c.type == "Ready"), None)
    return ready is not None and ready.reason == TARGET_NOT_FOUND


def heartbeat(spec: DriftPolicySpec) -> timedelta:
    """How old ``status.lastEvaluationTime`` grows before an evaluation that changes nothing
    else writes status anyway: max(10 * interval, 10m)."""
    return max(HEARTBEAT_INTERVALS * parse_duration(spec.interval), HEARTBEAT_MINIMUM)


def steady(text: str) -> str:
    """``text`` with every number it quotes replaced by ``#``: messages and errors that differ
    only in a value, a count or a time say the same thing to a reader."""
    return _NUMBER.sub("#", text)


def reader_view(status: DriftPolicyStatus) -> dict[str, Any]:
    """What of ``status`` a reader cares about: two statuses with the same view need no write.

    All of status but ``lastEvaluationTime``; of each metric's ``value``, only the side of
    its bounds it lies on; errors and condition messages up to the numbers they quote.
    """
    view = status.to_api()
    view.pop("lastEvaluationTime", None)
    for entry, metric in zip(view.get("metrics") or [], status.metrics or [], strict=True):
        entry["value"] = _side(metric)
        if "error" in entry:
            entry["error"] = steady(entry["error"])
    for condition in view.get("conditions") or []:
        condition["message"] = steady(condition.get("message", ""))
    return view


def _side(metric: DriftMetricStatus) -> str | None:
    """Where a metric's value lies: below min, inside [min, max], above max; None: no value."""
    value = metric.value
    if value is None:
        return None
    if metric.min is not None and value < metric.min:
        return "below"
    if metric.max is not None and value > metric.max:
        return "above"
    return "inside"


def status_worth_writing(before: DriftPolicyStatus, after: DriftPolicyStatus, spec: DriftPolicySpec) -> bool:
    """Whether an evaluation's new status ``after`` is written over ``before``.

    Yes when the reader's view changed (``reader_view``), or for the heartbeat: the
    status's ``lastEvaluationTime`` is ``heartbeat(spec)`` older than the evaluation's.
    """
    last, now = before.last_evaluation_time, after.last_evaluation_time
    if last is None or now is None or now - last >= heartbeat(spec):
        return True
    return reader_view(before) != reader_view(after)


def allowed_endpoint(url: str, allowed: Iterable[str]) -> str | None:
    """The entry of ``allowed`` that ``url`` names, or None: the policy may not query it.

    Base URLs are compared as scheme, host, port and path, so a trailing slash, the case
    of scheme and host, and a default port written out or not make no difference; any
    other difference (another path, a user-info part, a query) is another endpoint. The
    controller then queries the allowlist's own spelling, never the policy's: no two URL
    parsers can disagree about where a request goes.
    """
    wanted = _endpoint(url)
    if wanted is None:
        return None
    return next((entry for entry in allowed if _endpoint(entry) == wanted), None)


def _endpoint(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # an invalid port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.query or parts.fragment:
        return None
    default_port = 443 if scheme == "https" else 80
    return scheme, parts.hostname.rstrip("."), port or default_port, parts.path.rstrip("/")


@dataclass(frozen=True)
class EndpointCatalog:
    """Where the operator's settings let policies query: names and URLs only, never credentials."""

    named: Mapping[str, str] = field(default_factory=dict)
    """Endpoint name -> base URL: the operator's named endpoints (``default`` among them when
    there is a default: PERENNIAL_PROMETHEUS_URL or an endpoint named so)."""
    allowed_urls: tuple[str, ...] = ()
    """Base URLs a raw spec.prometheus.url may name (PERENNIAL_PROMETHEUS_ALLOWED_URLS, else
    PERENNIAL_PROMETHEUS_URL); the named endpoints' URLs are allowed too."""


@dataclass(frozen=True)
class EndpointChoice:
    """Where a policy's queries go: a named endpoint, a raw URL, or nowhere (``problem`` says why)."""

    url: str | None = None
    """The base URL queried (for a raw URL: the allowlist's own spelling of it)."""
    endpoint: str | None = None
    """The named endpoint queried (its credentials and TLS go with each request); None for a raw URL."""
    problem: tuple[str, str] | None = None
    """Ready's (reason, message) when nothing may be queried."""


def choose_endpoint(prometheus: PrometheusEndpoint, catalog: EndpointCatalog) -> EndpointChoice:
    """Resolve ``spec.prometheus``: ``endpoint`` by name, else a ``url`` the operator allows, else the default.

    A name the operator does not define is EndpointUnknown; a URL outside the allowlist
    (and not a named endpoint's) is EndpointNotAllowed: no request either way. A raw URL is
    queried without any endpoint's credentials, even when it is a named endpoint's URL:
    credentials only go where a policy names their endpoint.
    """
    if prometheus.endpoint:
        url = catalog.named.get(prometheus.endpoint)
        if url is None:
            return EndpointChoice(problem=("EndpointUnknown", endpoint_unknown(prometheus.endpoint, catalog.named)))
        return EndpointChoice(url, prometheus.endpoint)
    if prometheus.url:
        permitted = allowed_endpoint(prometheus.url, (*catalog.allowed_urls, *catalog.named.values()))
        if permitted is None:
            return EndpointChoice(prometheus.url, problem=("EndpointNotAllowed", endpoint_not_allowed(prometheus.url)))
        return EndpointChoice(permitted)
    default = catalog.named.get(DEFAULT_ENDPOINT)
    if default is None:
        return EndpointChoice(problem=("PrometheusUnreachable", NO_PROMETHEUS))
    return EndpointChoice(default, DEFAULT_ENDPOINT)


def endpoint_unknown(name: str, named: Iterable[str]) -> str:
    """The message of Ready=False/EndpointUnknown: the names there are (names are no secret)."""
    names = sorted(named)
    if not names:
        known = "the operator defines no endpoints"
    else:
        more = f" and {len(names) - _LISTED_ENDPOINTS} more" if len(names) > _LISTED_ENDPOINTS else ""
        known = f"the operator defines {', '.join(names[:_LISTED_ENDPOINTS])}{more}"
    return (
        f"spec.prometheus.endpoint {name} is not a Prometheus endpoint the operator defines ({known}), so nothing"
        " was queried: name one of those, leave spec.prometheus.endpoint out for the default, or ask the"
        " operator's administrators to define it (chart value prometheus.endpoints,"
        " PERENNIAL_PROMETHEUS_ENDPOINTS_FILE)"
    )


def endpoint_not_allowed(url: str) -> str:
    """The message of Ready=False/EndpointNotAllowed."""
    return (
        f"spec.prometheus.url {url} is not a Prometheus endpoint the operator allows, so nothing was"
        " queried: leave spec.prometheus.url empty for the operator's default Prometheus, or ask the"
        " operator's administrators to add it (chart value prometheus.allowedUrls,"
        " PERENNIAL_PROMETHEUS_ALLOWED_URLS)"
    )


def promoted_at(target: ModelDeploymentStatus) -> datetime | None:
    """When the target's serving version was promoted (the anchor of ``sincePromotion``)."""
    record = next((r for r in target.versions or [] if r.version == target.serving_version), None)
    return record.promoted_at if record is not None else None


def answer_to_absorb(observed: ObservedPolicy) -> DriftRequestAnswer | None:
    """The target's answer this policy has not recorded yet, if there is one.

    Either the answer to the pending request (same id), or a ``Started`` answer to a
    request withdrawn after the target had acted on it (newer than the last trigger and
    than the policy itself).
    """
    answer = _latest_answer(observed)
    if answer is None:
        return None
    pending = observed.status.retrain_request
    if pending is not None and answer.id == pending.id:
        return answer
    if answer.result != "Started":
        return None
    asked = _request_time(answer.id)
    if asked is None:
        return None
    last = observed.status.last_trigger_time
    if last is not None and asked <= last:
        return None
    if observed.created is not None and asked < truncate(observed.created):
        return None
    return answer


def _latest_answer(observed: ObservedPolicy) -> DriftRequestAnswer | None:
    if observed.target is None:
        return None
    return next((a for a in observed.target.drift_requests or [] if a.policy == observed.name), None)


def _request_time(request_id: str) -> datetime | None:
    try:
        return parse_time(request_id)
    except ValueError:
        return None


# ---------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Answered:
    """An answer recorded in this pass: what it adds to the Drifting message."""

    suffix: str
    suppressed: bool


@dataclass
class _Pass:
    observed: ObservedPolicy
    plan: Plan[DriftPolicyStatus]

    @property
    def spec(self) -> DriftPolicySpec:
        return self.observed.spec

    @property
    def status(self) -> DriftPolicyStatus:
        return self.plan.status

    @property
    def conditions(self) -> list[Condition]:
        return self.plan.conditions

    @property
    def target_name(self) -> str:
        return self.spec.target_ref.name


def plan_driftpolicy(observed: ObservedPolicy) -> Plan[DriftPolicyStatus]:
    """One pass of a DriftPolicy: suspended, absorbing an answer, or a full evaluation."""
    plan = Plan(observed.status.model_copy(deep=True), truncate(observed.now), observed.generation)
    work = _Pass(observed, plan)
    answered = _absorb_answer(work)
    if observed.spec.suspend:
        _withdraw(work)
        work.plan.condition("Drifting", "False", "Suspended", "spec.suspend is true: not evaluating")
        work.status.observed_generation = observed.generation
        return plan
    if not observed.evaluate:
        if answered is not None:
            _answer_condition(work, _states_from_status(work), answered)
        plan.later(
            evaluation_due_in(
                observed.spec,
                observed.status,
                observed.generation,
                observed.now,
                observed.last_evaluation,
                target_found=observed.target is not None,
            )
        )
        return plan
    states = _evaluate(work)
    _apply_rule(work, states, answered)
    work.status.last_evaluation_time = plan.now
    work.status.observed_generation = observed.generation
    plan.later(parse_duration(observed.spec.interval).total_seconds())
    if not status_worth_writing(observed.status, plan.status, observed.spec):
        # Nothing a reader cares about changed: status stays as written (the values and
        # the evaluation time are the operator's metrics), and no Event tells of a change.
        plan.status = observed.status.model_copy(deep=True)
        plan.events.clear()
    return plan


# ---------------------------------------------------------------- the answer
def _absorb_answer(work: _Pass) -> _Answered | None:
    """Record the target's answer to this policy's request, and clear the request."""
    answer = answer_to_absorb(work.observed)
    if answer is None:
        return None
    status, plan = work.status, work.plan
    pending = status.retrain_request
    if pending is not None and answer.id == pending.id:
        status.retrain_request = None
        if answer.result == "Suppressed":
            plan.count("drift_triggers", action="Retrain", result="Suppressed")
            return _Answered(_suppressed_suffix(answer), suppressed=True)
        _started(work, pending.requested_at or _request_time(pending.id), answer.training_job, pending.detail)
        return _Answered(f"; started {_job(answer.training_job)}", suppressed=False)
    # A Started answer to a request withdrawn too late: the run is this policy's trigger.
    _started(work, _request_time(answer.id), answer.training_job, None)
    if pending is not None and not _cooldown_over(work, pending.requested_at or _request_time(pending.id)):
        status.retrain_request = None  # asked again within the cooldown of the run just learnt of
    return _Answered(f"; started {_job(answer.training_job)}", suppressed=False)


def _started(work: _Pass, asked: datetime | None, training_job: str | None, detail: str | None) -> None:
    status, plan = work.status, work.plan
    status.last_trigger_time = asked or plan.now
    status.trigger_count = (status.trigger_count or 0) + 1
    if training_job:
        status.last_training_job = training_job
    plan.count("drift_triggers", action="Retrain", result="Started")
    because = f" ({detail})" if detail else ""
    plan.event("Normal", "RetrainTriggered", f"retraining {work.target_name}: {_job(training_job)}{because}")


def _job(training_job: str | None) -> str:
    return training_job or "a TrainingJob"


def _suppressed_suffix(answer: DriftRequestAnswer) -> str:
    return f"; the target suppressed the retrain ({answer.reason}: {answer.message})"


def _answer_condition(work: _Pass, states: Sequence[drift.MetricState], answered: _Answered) -> None:
    """Drifting says what the target answered; a new suppression is also an Event."""
    if drift.drifting(states, work.spec.trigger.when):
        message = _breach(work, states) + answered.suffix
        before = get_condition(work.conditions, "Drifting")
        told = before is not None and before.status == "True" and steady(before.message) == steady(message)
        work.plan.condition("Drifting", "True", "MetricsBreached", message)
        if answered.suppressed and not told:  # the same suppression, up to the value quoted, is told once
            work.plan.event("Normal", "RetrainSuppressed", message)
    elif answered.suppressed:
        work.plan.event("Normal", "RetrainSuppressed", answered.suffix.removeprefix("; "))


def _withdraw(work: _Pass) -> None:
    work.status.retrain_request = None


# ---------------------------------------------------------------- evaluation
def _evaluate(work: _Pass) -> list[drift.MetricState]:
    """The metrics' new states (breach clocks), ``status.metrics`` and ``Ready``."""
    observed, plan = work.observed, work.plan
    problem: tuple[str, str] | None = None
    queried = (
        observed.target is not None
        and bool(observed.prometheus_url)
        and observed.endpoint_allowed
        and observed.endpoint_problem is None
    )
    if observed.target is None:
        problem = (TARGET_NOT_FOUND, f"ModelDeployment {work.target_name} not found in {observed.namespace}")
    elif observed.endpoint_problem is not None:
        problem = observed.endpoint_problem
    elif not observed.prometheus_url:
        problem = ("PrometheusUnreachable", NO_PROMETHEUS)
    elif not observed.endpoint_allowed:
        problem = ("EndpointNotAllowed", endpoint_not_allowed(observed.prometheus_url))
    previous = {m.name: m for m in work.status.metrics or []}
    states: list[drift.MetricState] = []
    for metric in work.spec.metrics:
        if queried:
            result = _finite(observed.results.get(metric.name))
            value, error = result.value, _metric_error(result)
            problem = problem or _problem(metric.name, result)
        else:
            assert problem is not None
            value, error = None, problem[1]
        before = previous.get(metric.name)
        bounds = drift.Bounds(metric.min, metric.max, parse_duration(metric.for_))
        since = before.breached_since if before is not None else None
        state = drift.next_metric_state(metric.name, bounds, value, error, since, plan.now)
        if state.breached and not (before is not None and before.breached):
            plan.count("drift_breaches")
            plan.event("Warning", "MetricBreached", f"{state.detail} for {metric.for_}")
        states.append(state)
    plan.count("drift_evaluations", result="error" if problem else "success")
    work.status.metrics = [metric_status(s) for s in states]
    if problem is not None:
        reason, message = problem
        event = "Warning" if reason in _CONFIGURATION_PROBLEMS else None
        work.plan.condition("Ready", "False", reason, message, event=event)
    else:
        work.plan.condition("Ready", "True", "Evaluated", f"{len(states)} metric(s) evaluated")
    return states


def _finite(result: MetricResult | None) -> MetricResult:
    """The controller's result; a value that is not a finite number becomes NonFiniteValue."""
    if result is None:
        return MetricResult(error="NoData", message="NoData: not queried")
    if result.value is not None and not math.isfinite(result.value):
        return MetricResult(
            error="NonFiniteValue", message=f"the value is {drift.non_finite_text(result.value)}, not a finite number"
        )
    return result


def _metric_error(result: MetricResult) -> str | None:
    if result.error == "PrometheusUnreachable":
        return f"Prometheus unreachable: {result.message}"
    return result.message if result.error is not None else None


def _problem(name: str, result: MetricResult) -> tuple[str, str] | None:
    """What a metric's error makes of Ready (NoData is no problem)."""
    if result.error in ("PrometheusUnreachable", "PrometheusUnauthorized"):
        return result.error, result.message
    if result.error in ("QueryError", "NonFiniteValue"):
        return result.error, f"{name}: {result.message}"
    return None


def metric_status(state: drift.MetricState) -> DriftMetricStatus:
    """A metric's state as status shows it (a DriftPolicy's metrics, a canary's analysis)."""
    return DriftMetricStatus(
        name=state.name,
        value=state.value,
        min=state.bounds.min,
        max=state.bounds.max,
        breached=state.breached,
        breached_since=state.breached_since,
        error=state.error,
    )


def _states_from_status(work: _Pass) -> list[drift.MetricState]:
    """The metric states of the last evaluation, as status recorded them."""
    fors = {m.name: parse_duration(m.for_) for m in work.spec.metrics}
    return [
        drift.MetricState(
            m.name,
            m.value,
            drift.Bounds(m.min, m.max, fors.get(m.name, parse_duration("0s"))),
            bool(m.breached),
            m.breached_since,
            m.error,
        )
        for m in work.status.metrics or []
    ]


# ---------------------------------------------------------------- the rule and the trigger
def _breach(work: _Pass, states: Sequence[drift.MetricState]) -> str:
    return f"{work.spec.trigger.when}: {_detail(states)}"


def _detail(states: Sequence[drift.MetricState]) -> str:
    return "; ".join(s.detail for s in states if s.breached)


def _cooldown_over(work: _Pass, at: datetime | None) -> bool:
    cooldown = parse_duration(work.spec.trigger.cooldown)
    return drift.may_trigger(work.status.last_trigger_time, cooldown, at or work.plan.now)


def _apply_rule(work: _Pass, states: Sequence[drift.MetricState], answered: _Answered | None) -> None:
    spec, status, plan = work.spec, work.status, work.plan
    was_drifting = condition_is_true(work.conditions, "Drifting")
    if not drift.drifting(states, spec.trigger.when):
        _withdraw(work)  # the rule no longer holds: nothing to ask for
        if answered is not None:
            _answer_condition(work, states, answered)
        if was_drifting:
            plan.event("Normal", "DriftRecovered", "metrics are back within bounds")
        if all(s.value is None for s in states):
            work.plan.condition("Drifting", "False", "NoData", "no metric has data")
        else:
            work.plan.condition("Drifting", "False", "WithinBounds", "no sustained breach")
        return
    breach = _breach(work, states)
    if work.observed.target is None:
        _withdraw(work)  # Ready says TargetNotFound
        work.plan.condition("Drifting", "True", "MetricsBreached", breach)
        return
    if answered is not None:
        _answer_condition(work, states, answered)
        return
    if status.retrain_request is not None:
        if spec.trigger.action == "Retrain":
            work.plan.condition("Drifting", "True", "MetricsBreached", _asked(work, breach))
            return
        _withdraw(work)  # the action changed to Observe while the target had not answered
    if not _cooldown_over(work, plan.now):
        assert status.last_trigger_time is not None
        until = format_time(status.last_trigger_time + parse_duration(spec.trigger.cooldown))
        work.plan.condition("Drifting", "True", "MetricsBreached", f"{breach}; policy cooldown until {until}")
        return
    detail = _detail(states)
    if spec.trigger.action == "Observe":
        status.last_trigger_time = plan.now
        status.trigger_count = (status.trigger_count or 0) + 1
        plan.count("drift_triggers", action="Observe", result="Observed")
        plan.event("Normal", "WouldRetrain", f"Observe: would retrain {work.target_name} ({detail})")
        work.plan.condition("Drifting", "True", "MetricsBreached", f"{breach}; action Observe: no retrain")
        return
    status.retrain_request = RetrainRequest(id=format_time(plan.now), requested_at=plan.now, detail=detail)
    work.plan.condition("Drifting", "True", "MetricsBreached", _asked(work, breach))


def _asked(work: _Pass, breach: str) -> str:
    """Drifting's message while a request waits for its answer.

    Asking again after a suppression keeps the suppression as the message while the
    breach is unchanged: the target most likely answers the same, and a message that
    flipped between "asked" and "suppressed" would post RetrainSuppressed at every
    evaluation. ``status.retrainRequest`` shows that a request is pending.
    """
    previous = get_condition(work.conditions, "Drifting")
    last = _latest_answer(work.observed)
    if previous is not None and previous.status == "True" and last is not None and last.result == "Suppressed":
        kept = breach + _suppressed_suffix(last)
        if steady(previous.message) == steady(kept):  # the value quoted may have moved since
            return kept
    return f"{breach}; asked {work.target_name} to retrain"
