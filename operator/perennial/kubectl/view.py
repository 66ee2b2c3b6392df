"""The ``status`` and ``history`` screens: what they show, as data and as text.

``status_view`` gathers what the screen shows into a typed view; ``-o json|yaml`` prints
that view and ``render_status`` draws it, so the two never disagree. Pure functions of
the objects read and the time: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from perennial.api.base import Condition
from perennial.api.driftpolicy import DriftMetricStatus
from perennial.api.durations import InvalidDurationError, parse_duration
from perennial.api.modeldeployment import LastRetrain, ModelVersionRecord, RolloutStatus
from perennial.domain import modeldeployment as md
from perennial.domain.timeutil import format_time
from perennial.kubectl.formatting import NONE, ago, bounds, clip, metrics_text, number, span_since, table, when
from perennial.kubectl.objects import Model, Policy

RECENT_VERSIONS = 5  # versions the status screen lists; `history` lists them all
CONDITION_ORDER = ("Ready", "Progressing", "Training", "Degraded", "RetrainSuppressed")


class ViewModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RolloutView(ViewModel):
    version: str
    previous_version: str | None = None
    started_at: datetime | None = None
    progress_deadline: str | None = None
    deadline_at: datetime | None = None
    canary: str | None = None
    """A canary's progress, e.g. "step 1/2 at 25% (1 canary, 3 stable replicas), paused since ..."."""


class TrainingView(ViewModel):
    training_job: str
    version: str | None = None
    trigger: str | None = None


class PolicyView(ViewModel):
    name: str
    ready: str | None = None
    ready_reason: str | None = None
    ready_message: str | None = None
    drifting: bool | None = None
    drifting_message: str | None = None
    action: str
    when: str
    suspend: bool
    last_evaluation_time: datetime | None = None
    last_trigger_time: datetime | None = None
    trigger_count: int | None = None
    cooldown_ends_at: datetime | None = None
    """The policy's own trigger cooldown, while it lasts."""
    metrics: list[DriftMetricStatus]  # the API's own shape: -o json shows what status does


class ConditionView(ViewModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None
    summary: str
    """The condition in plain words."""


class StatusView(ViewModel):
    name: str
    namespace: str
    phase: str | None = None
    serving_version: str | None = None
    serving_model_uri: str | None = None
    url: str | None = None
    """The Service's URL inside the cluster."""
    latest_version: str | None = None
    latest_state: str | None = None
    pinned_version: str | None = None
    suspend: bool
    promotion_policy: str
    automatic_retrains: str
    automatic_retrains_reason: str
    replicas: int | None = None
    ready_replicas: int | None = None
    rollout: RolloutView | None = None
    training: TrainingView | None = None
    last_retrain: LastRetrain | None = None
    next_scheduled_retrain: datetime | None = None
    cooldown_ends_at: datetime | None = None
    """The end of retraining.cooldown, while it holds automatic retrains back."""
    generation: int | None = None
    observed_generation: int | None = None
    drift_policies: list[PolicyView]
    drift_policies_error: str | None = None
    """Why the DriftPolicies could not be read (say, no RBAC to list them)."""
    recent_versions: list[dict[str, Any]]
    conditions: list[ConditionView]


# ---------------------------------------------------------------- building the views
def automatic_retrains(model: Model) -> tuple[str, str]:
    """The automaticRetrains state and what it means, in words.

    Derived by the operator's own rule from the spec and status read, so a pause shows at
    once, before the operator has written its next status.
    """
    spec, status = model.spec, model.status
    state = md.automatic_retrains(spec, status)
    if state == "Suspended":
        return state, "spec.suspend is true: Drift, Schedule and spec-change retrains are paused"
    if state == "CircuitOpen":
        failures = status.consecutive_failures or 0
        return state, (
            f"{failures} runs in a row failed or were rejected (retraining.maxConsecutiveFailures"
            f" {spec.retraining.max_consecutive_failures}): automatic retrains stop until a manual"
            " retrain or a spec change succeeds"
        )
    if state == "NoImprovement":
        streak = status.consecutive_not_promoted or 0
        return state, (
            f"{streak} automatic runs in a row did not beat the serving version"
            f" (retraining.maxConsecutiveNotPromoted {spec.retraining.max_consecutive_not_promoted}):"
            " automatic retrains stop until a manual retrain or a spec change"
        )
    return state, "Drift and Schedule triggers may start a training"


def cooldown_end(model: Model, now: datetime) -> datetime | None:
    """When retraining.cooldown stops holding automatic retrains back; None when it does not now."""
    ends = md.cooldown_ends(model.spec, model.status)
    return ends if ends is not None and ends > now else None


def policy_cooldown_end(policy: Policy, now: datetime) -> datetime | None:
    last = policy.status.last_trigger_time
    if last is None:
        return None
    try:
        ends = last + parse_duration(policy.spec.trigger.cooldown)
    except InvalidDurationError:
        return None
    return ends if ends > now else None


def _condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def policy_view(policy: Policy, now: datetime) -> PolicyView:
    status = policy.status
    ready = _condition(status.conditions, "Ready")
    drifting = _condition(status.conditions, "Drifting")
    return PolicyView(
        name=policy.name,
        ready=ready.status if ready else None,
        ready_reason=(ready.reason or None) if ready else None,
        ready_message=(ready.message or None) if ready else None,
        drifting=None if drifting is None or drifting.status == "Unknown" else drifting.status == "True",
        drifting_message=(drifting.message or None) if drifting else None,
        action=policy.spec.trigger.action,
        when=policy.spec.trigger.when,
        suspend=policy.spec.suspend,
        last_evaluation_time=status.last_evaluation_time,
        last_trigger_time=status.last_trigger_time,
        trigger_count=status.trigger_count,
        cooldown_ends_at=policy_cooldown_end(policy, now),
        metrics=_policy_metrics(policy),
    )


def _policy_metrics(policy: Policy) -> list[DriftMetricStatus]:
    """Every metric of the spec, with its last evaluation when there is one."""
    evaluated = {m.name: m for m in policy.status.metrics or []}
    metrics = []
    for metric in policy.spec.metrics:
        known = evaluated.pop(metric.name, None) or DriftMetricStatus(name=metric.name)
        # The bounds are the spec's: an evaluation that failed may not have recorded them.
        metrics.append(known.model_copy(update={"min": metric.min, "max": metric.max}))
    return metrics


def condition_summary(condition: Condition) -> str:
    """A condition in plain words."""
    true = condition.status == "True"
    detail = condition.message or condition.reason
    known_false = {
        "Ready": "Not ready",
        "Progressing": "No rollout in progress",
        "Training": "Not training",
        "Degraded": "Not degraded",
        "RetrainSuppressed": "Retrains not suppressed",
    }
    known_true = {
        "Ready": "Ready",
        "Progressing": "Rolling out",
        "Training": "Training",
        "Degraded": "Degraded",
        "RetrainSuppressed": "Retrains suppressed",
    }
    if condition.status == "Unknown":
        return f"{condition.type} unknown" + (f": {detail}" if detail else "")
    words = (known_true if true else known_false).get(condition.type)
    if words is None:
        return f"{condition.type} {condition.status}" + (f": {detail}" if detail else "")
    bad = (condition.type == "Ready" and not true) or (condition.type in ("Degraded", "RetrainSuppressed") and true)
    quiet_reasons = {"AsExpected", "Stable", "Idle"}
    if not bad and condition.reason in quiet_reasons:
        return words
    if bad and condition.reason:
        return (
            f"{words} ({condition.reason}): {condition.message}"
            if condition.message
            else f"{words} ({condition.reason})"
        )
    return f"{words}: {detail}" if detail else words


def _conditions(model: Model) -> list[ConditionView]:
    conditions = list(model.status.conditions or [])
    order = {t: i for i, t in enumerate(CONDITION_ORDER)}
    conditions.sort(key=lambda c: (order.get(c.type, len(order)), c.type))
    return [
        ConditionView(
            type=c.type,
            status=c.status,
            reason=c.reason or None,
            message=c.message or None,
            last_transition_time=c.last_transition_time,
            summary=condition_summary(c),
        )
        for c in conditions
    ]


def _rollout(model: Model) -> RolloutView | None:
    rollout = model.status.rollout
    if rollout is None:
        return None
    deadline = model.spec.rollout.progress_deadline
    deadline_at = None
    if rollout.started_at is not None:
        try:
            deadline_at = rollout.started_at + parse_duration(deadline)
        except InvalidDurationError:
            deadline_at = None
    return RolloutView(
        version=rollout.version,
        previous_version=rollout.previous_version,
        started_at=rollout.started_at,
        progress_deadline=deadline,
        deadline_at=None if rollout.strategy == "Canary" else deadline_at,
        canary=_canary(rollout),
    )


def _canary(rollout: RolloutStatus) -> str | None:
    if rollout.strategy != "Canary":
        return None
    if rollout.stage == "Promote":
        return "canary passed: the serving Deployment rolls to it"
    text = f"canary step {rollout.step}/{rollout.steps} at {rollout.weight}%"
    if rollout.canary_replicas is not None and rollout.stable_replicas is not None:
        text += f" ({rollout.canary_replicas} canary, {rollout.stable_replicas} stable replicas)"
    if rollout.pause_started_at is None:
        return text + ", waiting for its replicas"
    values = ", ".join(f"{m.name}={'none' if m.value is None else number(m.value)}" for m in rollout.analysis or [])
    return text + f", paused since {format_time(rollout.pause_started_at)}" + (f"; analysis {values}" if values else "")


def _training(model: Model) -> TrainingView | None:
    active = model.status.active_training_job
    if not active:
        return None
    record = next((r for r in model.versions if r.training_job == active), None)
    return TrainingView(
        training_job=active,
        version=record.version if record else None,
        trigger=record.trigger.reason if record and record.trigger else None,
    )


def status_view(
    model: Model, policies: list[Policy], now: datetime, *, policies_error: str | None = None
) -> StatusView:
    status = model.status
    versions = model.versions
    latest = versions[-1] if versions else None
    state, reason = automatic_retrains(model)
    last = status.last_retrain
    return StatusView(
        name=model.name,
        namespace=model.namespace,
        phase=status.phase,
        serving_version=status.serving_version,
        serving_model_uri=status.serving_model_uri,
        url=status.url,
        latest_version=latest.version if latest else status.latest_version,
        latest_state=latest.state if latest else None,
        pinned_version=model.pinned_version,
        suspend=model.spec.suspend,
        promotion_policy=model.spec.promotion.policy,
        automatic_retrains=state,
        automatic_retrains_reason=reason,
        replicas=status.replicas,
        ready_replicas=status.ready_replicas,
        rollout=_rollout(model),
        training=_training(model),
        last_retrain=last,
        next_scheduled_retrain=status.next_scheduled_retrain,
        cooldown_ends_at=cooldown_end(model, now),
        generation=model.generation,
        observed_generation=status.observed_generation,
        drift_policies=[policy_view(p, now) for p in policies],
        drift_policies_error=policies_error,
        recent_versions=[r.to_api() for r in reversed(versions[-RECENT_VERSIONS:])],
        conditions=_conditions(model),
    )


def key_metrics(model: Model) -> list[str]:
    """The metrics the spec compares or gates on, most telling first."""
    names = []
    improvement = model.spec.promotion.require_improvement
    if improvement is not None:
        names.append(improvement.metric)
    names += [rule.metric for rule in model.spec.training.validation or [] if rule.metric not in names]
    return names


# ---------------------------------------------------------------- text
def _trigger(record: ModelVersionRecord, limit: int = 40) -> str:
    trigger = record.trigger
    if trigger is None:
        return NONE
    if trigger.source and trigger.source != trigger.reason:
        return f"{trigger.reason} ({clip(trigger.source, limit)})"
    return trigger.reason


def _decision(record: ModelVersionRecord) -> str:
    decision = record.decision
    if decision is None or not decision.result:
        return NONE
    return f"{decision.result}: {decision.reason}" if decision.reason else decision.result


def _dataset(record: ModelVersionRecord) -> str:
    """``uri @version (24h to <end>)``: where the data was, its version and its window."""
    dataset = record.dataset
    if dataset is None:
        return NONE
    parts = []
    if dataset.uri:
        parts.append(dataset.uri)
    if dataset.version:
        parts.append(f"@{dataset.version}")
    if dataset.window and dataset.window_end is not None:
        parts.append(f"({dataset.window} to {format_time(dataset.window_end)})")
    elif dataset.window_start is not None and dataset.window_end is not None:
        parts.append(f"({format_time(dataset.window_start)} to {format_time(dataset.window_end)})")
    elif dataset.window:
        parts.append(f"({dataset.window})")
    return " ".join(parts) or NONE


def _replicas(view: StatusView) -> str:
    if view.replicas is None:
        return NONE
    return f"{view.ready_replicas or 0}/{view.replicas} ready"


def _version_line(version: str | None, state: str | None, extra: str = "") -> str:
    if not version:
        return "none"
    text = f"version {version}" + (f" ({state})" if state else "")
    return text + (f"  {extra}" if extra else "")


def render_status(view: StatusView, now: datetime) -> str:
    lines = [
        f"Name:              {view.name}",
        f"Namespace:         {view.namespace}",
        f"Phase:             {view.phase or 'Unknown (not reconciled yet)'}",
        f"Serving:           {_version_line(view.serving_version, None, view.serving_model_uri or '')}",
        f"Latest:            {_version_line(view.latest_version, view.latest_state)}",
    ]
    if view.url:
        lines.insert(4, f"URL:               {view.url}")
    if view.pinned_version:
        lines.append(f"Pinned:            version {view.pinned_version} (spec.pinnedVersion; promotion waits)")
    lines.append(f"Promotion:         {view.promotion_policy}")
    lines.append(f"Replicas:          {_replicas(view)}")
    if view.rollout is not None:
        rollout = view.rollout
        text = f"version {rollout.version}"
        if rollout.previous_version:
            text += f" replacing {rollout.previous_version}"
        if rollout.started_at is not None:
            text += f", started {ago(rollout.started_at, now)}"
        if rollout.deadline_at is not None:
            text += f", progressDeadline {rollout.progress_deadline} ({ago(rollout.deadline_at, now)})"
        if rollout.canary is not None:
            text += f"; {rollout.canary}"
        lines.append(f"Rollout:           {text}")
    else:
        lines.append("Rollout:           none in progress")
    if view.training is not None:
        training = view.training
        details = ", ".join(
            x for x in (f"version {training.version}" if training.version else "", training.trigger or "") if x
        )
        lines.append(f"Training:          {training.training_job}" + (f" ({details})" if details else ""))
    else:
        lines.append("Training:          none running")
    retrains = view.automatic_retrains
    lines.append(
        f"Auto retrains:     {retrains}" + ("" if retrains == "Active" else f": {view.automatic_retrains_reason}")
    )
    if view.last_retrain is not None and view.last_retrain.reason:
        last = view.last_retrain
        source = f" from {clip(last.source, 60)}" if last.source and last.source != last.reason else ""
        lines.append(f"Last retrain:      {last.reason}{source}, {ago(last.time, now)}")
    if view.next_scheduled_retrain is not None:
        lines.append(f"Next scheduled:    {when(view.next_scheduled_retrain, now)}")
    if view.cooldown_ends_at is not None:
        lines.append(f"Cooldown until:    {when(view.cooldown_ends_at, now)}")
    if (
        view.generation is not None
        and view.observed_generation is not None
        and view.observed_generation < view.generation
    ):
        lines.append(
            f"Note:              the operator has not acted on the latest spec yet"
            f" (generation {view.generation}, observed {view.observed_generation})"
        )

    lines += ["", "Drift policies:"]
    if view.drift_policies_error:
        lines.append(f"  (not shown: {view.drift_policies_error})")
    elif not view.drift_policies:
        lines.append(f"  none targets {view.name}")
    for policy in view.drift_policies:
        lines += _render_policy(policy, now)

    lines += ["", "Recent versions:"]
    records = [ModelVersionRecord.model_validate(r) for r in view.recent_versions]
    if records:
        rows = [[r.version, r.state or NONE, _trigger(r, 24), _decision(r)] for r in records]
        lines += table(["VERSION", "STATE", "TRIGGER", "DECISION"], rows, indent="  ")
    else:
        lines.append("  none yet")

    lines += ["", "Conditions:"]
    if view.conditions:
        for condition in view.conditions:
            since = (
                f"  (for {span_since(condition.last_transition_time, now)})" if condition.last_transition_time else ""
            )
            lines.append(f"  {condition.summary}{since}")
    else:
        lines.append("  none yet: the operator has not reconciled this ModelDeployment")
    return "\n".join(lines) + "\n"


def _render_policy(policy: PolicyView, now: datetime) -> list[str]:
    if policy.suspend:
        state = "Suspended"
    elif policy.ready == "False":
        state = f"Not ready ({policy.ready_reason}): {policy.ready_message or ''}".rstrip(": ")
    elif policy.drifting:
        state = "Drifting"
    elif policy.drifting is False:
        state = "Ready, not drifting"
    else:
        state = "Not evaluated yet"
    action = "Retrain" if policy.action == "Retrain" else "Observe (dry run)"
    facts = [f"action {action}", f"when {policy.when}"]
    if policy.last_evaluation_time is not None:
        # Status is written on a change or a heartbeat, not at each evaluation (api.md).
        facts.append(f"status as of {ago(policy.last_evaluation_time, now)}")
    if policy.trigger_count:
        facts.append(f"triggered {policy.trigger_count}x, last {ago(policy.last_trigger_time, now)}")
    if policy.cooldown_ends_at is not None:
        facts.append(f"trigger cooldown until {when(policy.cooldown_ends_at, now)}")
    lines = [f"  {policy.name}: {state}", f"    {', '.join(facts)}"]
    rows = []
    for metric in policy.metrics:
        value = number(metric.value) if metric.value is not None else (metric.error or "no value yet")
        breached = NONE if metric.breached is None else ("yes" if metric.breached else "no")
        if metric.breached and metric.breached_since is not None:
            breached += f" (since {ago(metric.breached_since, now)})"
        rows.append([metric.name, value, bounds(metric.min, metric.max), breached])
    lines += table(["METRIC", "VALUE", "BOUNDS", "BREACHED"], rows, indent="    ")
    return lines


# ---------------------------------------------------------------- history
def history_document(model: Model) -> dict[str, Any]:
    """``history -o json|yaml``: the lineage as the status records it, oldest first."""
    return {
        "name": model.name,
        "namespace": model.namespace,
        "servingVersion": model.status.serving_version,
        "pinnedVersion": model.pinned_version,
        "versions": [r.to_api() for r in model.versions],
    }


def render_history(model: Model) -> str:
    versions = model.versions
    if not versions:
        return f"modeldeployment {model.name} has no versions yet\n"
    first = key_metrics(model)
    rows = []
    for record in versions:
        marker = " *" if record.version == model.status.serving_version else ""
        rows.append(
            [
                record.version + marker,
                record.state or NONE,
                _trigger(record),
                _dataset(record),
                metrics_text(record.metrics, first),
                _decision(record),
            ]
        )
    lines = table(["VERSION", "STATE", "TRIGGER", "DATA", "METRICS", "DECISION"], rows)
    lines.append("")
    lines.append("* serving")
    return "\n".join(lines) + "\n"
