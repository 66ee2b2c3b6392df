"""``why``: what keeps a ModelDeployment from retraining, and from promoting, in words.

The rules are the operator's (``perennial.domain.modeldeployment``: suspend, the circuit
and futility breakers, the cooldown, one training at a time, pins and Manual promotion);
the evidence is what the operator wrote in status and conditions. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

from perennial.api.base import Condition
from perennial.api.modeldeployment import RETRAIN_REQUEST_ANNOTATION, ModelVersionRecord
from perennial.domain import modeldeployment as md
from perennial.kubectl.formatting import ago, bounds, clip, number, when
from perennial.kubectl.objects import Model, Policy
from perennial.kubectl.view import ViewModel, cooldown_end, policy_cooldown_end


class Verdict(ViewModel):
    state: str
    """Retraining: Blocked, Training, Cooldown, Pending, Due or Idle. Promotion: Rolling,
    Pinned, Degraded, Training, Manual, NotPromoted, UpToDate or NoVersion."""
    summary: str
    reasons: list[str]
    hints: list[str]


class Explanation(ViewModel):
    name: str
    namespace: str
    retraining: Verdict
    promotion: Verdict


def _condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def _is_true(conditions: list[Condition] | None, type_: str) -> bool:
    condition = _condition(conditions, type_)
    return condition is not None and condition.status == "True"


def _run(record: ModelVersionRecord | None) -> str:
    if record is None:
        return "a training"
    return f"version {record.version}" + (f" (TrainingJob {record.training_job})" if record.training_job else "")


# ---------------------------------------------------------------- retraining
def _blockers(model: Model) -> list[str]:
    """Rules that stop every automatic retrain (Drift, Schedule; suspend also spec changes)."""
    spec, status, name = model.spec, model.status, model.name
    reasons = []
    if spec.suspend:
        reasons.append(
            "spec.suspend is true: automatic retrains (Drift, Schedule, spec changes) are paused;"
            f" a manual retrain still runs. Resume with: kubectl perennial resume {name}"
        )
    if md.circuit_open(spec, status):
        failed = [r for r in model.versions if r.state in ("Failed", "Rejected")]
        last = failed[-1] if failed else None
        evidence = ""
        if last is not None and last.decision is not None and last.decision.reason:
            evidence = f" The last one, version {last.version}: {last.decision.reason}."
        reasons.append(
            f"The circuit breaker is open: {status.consecutive_failures or 0} runs in a row failed or were"
            f" rejected (retraining.maxConsecutiveFailures {spec.retraining.max_consecutive_failures})."
            f"{evidence} Automatic retrains stop until a manual retrain or a spec change succeeds:"
            f" fix the cause, then kubectl perennial retrain {name}"
        )
    if md.futile(spec, status):
        streak = md.not_promoted_streak(status)
        runs = ", ".join(f"version {r.version}" for r in streak) or "the last automatic runs"
        reasons.append(
            f"The futility breaker is open (NoImprovement): {status.consecutive_not_promoted or 0} automatic"
            f" runs in a row ({runs}) were validated but did not beat the serving version"
            f" (retraining.maxConsecutiveNotPromoted {spec.retraining.max_consecutive_not_promoted})."
            f" Automatic retrains stop until a manual retrain or a spec change (new data, a new trainer)"
        )
    return reasons


def _policy_reason(model: Model, policy: Policy, now: datetime) -> str:
    status = policy.status
    label = f"DriftPolicy {policy.name}"
    if policy.spec.suspend:
        return f"{label} is suspended (spec.suspend): it does not evaluate"
    ready = _condition(status.conditions, "Ready")
    if ready is not None and ready.status == "False":
        return f"{label} cannot evaluate its metrics ({ready.reason}): {ready.message}"
    drifting = _condition(status.conditions, "Drifting")
    observe = policy.spec.trigger.action == "Observe"
    if drifting is None or drifting.status == "Unknown":
        return f"{label} has not evaluated its metrics yet"
    if drifting.status != "True":
        in_bounds = [
            f"{m.name} {number(m.value)} within {bounds(m.min, m.max)}"
            for m in status.metrics or []
            if m.value is not None and not m.breached
        ]
        missing = [f"{m.name} has no value ({m.error})" for m in status.metrics or [] if m.value is None and m.error]
        text = f"{label} is not drifting"
        details = "; ".join(in_bounds + missing)
        return text + (f": {details}" if details else "")
    text = f"{label} is drifting" + (f": {drifting.message}" if drifting.message else "")
    if observe:
        return text + "; it only observes (trigger.action Observe): it never asks for a retrain"
    ends = policy_cooldown_end(policy, now)
    if ends is not None:
        text += (
            f"; it asked {status.trigger_count or 0}x, and its own trigger.cooldown"
            f" ({policy.spec.trigger.cooldown}) holds the next request until {when(ends, now)}"
        )
    answer = next((a for a in model.status.drift_requests or [] if a.policy == policy.name), None)
    if answer is not None and answer.result == "Suppressed":
        text += f"; {model.name} held its last request back ({answer.reason}): {answer.message or ''}".rstrip(": ")
    return text


def _pending_request(model: Model) -> str | None:
    request = model.annotations.get(RETRAIN_REQUEST_ANNOTATION)
    if not request or md.request_identity(request) == model.status.handled_retrain_request:
        return None
    text = f"A manual retrain request ({RETRAIN_REQUEST_ANNOTATION}={clip(request, 80)}) is waiting"
    if model.status.active_training_job:
        return text + f": it starts when {model.status.active_training_job} finishes"
    return (
        text + ": the operator has not acted on it yet (is the operator running, and does it watch"
        f" namespace {model.namespace}?)"
    )


def explain_retraining(model: Model, policies: list[Policy], now: datetime) -> Verdict:
    spec, status, name = model.spec, model.status, model.name
    blockers = _blockers(model)
    reasons = list(blockers)
    state = "Blocked" if blockers else ""
    active = status.active_training_job
    if active:
        record = next((r for r in model.versions if r.training_job == active), None)
        reasons.append(f"{_run(record)} is training now: a model trains one version at a time, so triggers wait")
        state = state or "Training"
    ends = cooldown_end(model, now)
    if ends is not None:
        last = status.last_automatic_retrain
        reasons.append(
            f"In cooldown until {when(ends, now)}: retraining.cooldown ({spec.retraining.cooldown}) counts from"
            f" the last Drift or Schedule retrain{f', {ago(last, now)}' if last else ''}; manual retrains and"
            " spec changes bypass it"
        )
        state = state or "Cooldown"
    pending = _pending_request(model)
    if pending:
        reasons.append(pending)
        state = state or "Pending"
    suppressed = _condition(status.conditions, "RetrainSuppressed")
    if suppressed is not None and suppressed.status == "True":
        reasons.append(f"The operator last held a trigger back ({suppressed.reason}): {suppressed.message}")
    triggers = [_policy_reason(model, p, now) for p in policies]
    if not policies:
        triggers.append(f"No DriftPolicy targets {name}: drift does not retrain it")
    if spec.retraining.schedule:
        nxt = f": next at {when(status.next_scheduled_retrain, now)}" if status.next_scheduled_retrain else ""
        triggers.append(f"Schedule {spec.retraining.schedule!r} (UTC){nxt}")
    else:
        triggers.append("No schedule (spec.retraining.schedule is not set)")
    reasons += triggers
    drifting = [
        p
        for p in policies
        if not p.spec.suspend
        and p.spec.trigger.action == "Retrain"
        and _is_true(p.status.conditions, "Drifting")
        and policy_cooldown_end(p, now) is None
    ]
    if not state:
        state = "Due" if drifting else "Idle"
    hints = []
    if spec.suspend:
        hints.append(f"kubectl perennial resume {name}")
    if state in ("Blocked", "Cooldown", "Idle", "Due") and not active:
        hints.append(f"kubectl perennial retrain {name} --reason '...'")
    summaries = {
        "Blocked": "Automatic retrains are blocked",
        "Training": "A training is running",
        "Cooldown": "Automatic retrains wait for the cooldown",
        "Pending": "A manual retrain request waits for the operator",
        "Due": "A DriftPolicy asks for a retrain and nothing holds it back: the operator should start one shortly",
        "Idle": "Nothing asks for a retrain now",
    }
    return Verdict(state=state, summary=summaries[state], reasons=reasons, hints=hints)


# ---------------------------------------------------------------- promotion
def _latest(model: Model) -> ModelVersionRecord | None:
    versions = model.versions
    return versions[-1] if versions else None


def _record_reason(record: ModelVersionRecord, model: Model) -> str | None:
    decision = record.decision
    why = f": {decision.reason}" if decision is not None and decision.reason else ""
    v = f"Version {record.version}"
    if record.state == "Training":
        return f"{v} is still training" + (f" (TrainingJob {record.training_job})" if record.training_job else "")
    if record.state == "Failed":
        return f"{v} failed to train{why}"
    if record.state == "Rejected":
        return f"{v} was rejected by its validation gates (spec.training.validation){why}"
    if record.state == "RolledBack":
        rollback = record.rollback
        if rollback is not None and rollback.reason in ("AnalysisFailed", "AnalysisNoData") and rollback.message:
            return (
                f"{v} was rolled back ({rollback.reason}): {rollback.message}; the operator does not roll it out again"
            )
        return (
            f"{v} was rolled back: it was not Available within rollout.progressDeadline"
            f" ({model.spec.rollout.progress_deadline}); the operator does not roll it out again"
        )
    if record.state == "Candidate" and decision is not None and decision.result == "NotPromoted":
        return f"{v} was validated but not promoted{why}"
    if record.state == "Candidate":
        return f"{v} is a validated Candidate waiting to be promoted{why}"
    return None


def explain_promotion(model: Model, now: datetime) -> Verdict:
    spec, status, name = model.spec, model.status, model.name
    reasons: list[str] = []
    hints: list[str] = []
    state = ""
    rollout = status.rollout
    if rollout is not None:
        started = f", started {when(rollout.started_at, now)}" if rollout.started_at else ""
        replacing = f", replacing version {rollout.previous_version}" if rollout.previous_version else ""
        reasons.append(
            f"Version {rollout.version} is rolling out{replacing}{started}; rollout.progressDeadline"
            f" {spec.rollout.progress_deadline}"
        )
        progressing = _condition(status.conditions, "Progressing")
        if rollout.strategy == "Canary" and progressing is not None and progressing.message:
            reasons.append(f"Canary ({progressing.reason}): {progressing.message}")
            if rollout.stage == "Step":
                hints.append(f"kubectl perennial promote {name} {rollout.version}   # skip the steps left")
        state = "Rolling"
    pinned = model.pinned_version
    if pinned:
        reasons.append(
            f"spec.pinnedVersion is {pinned}: the pin decides what serves, and validated versions wait as Candidate"
        )
        hints += [f"kubectl perennial unpin {name}", f"kubectl perennial promote {name} VERSION"]
        state = state or "Pinned"
    degraded = _condition(status.conditions, "Degraded")
    if degraded is not None and degraded.status == "True":
        reasons.append(f"Degraded ({degraded.reason}): {degraded.message}")
        state = state or "Degraded"
    latest = _latest(model)
    candidates = [r.version for r in model.versions if r.state == "Candidate"]
    if latest is not None and latest.state == "Training":
        reasons.append(_record_reason(latest, model) or "")
        state = state or "Training"
    if spec.promotion.policy == "Manual" and not pinned:
        waiting = f" Candidates now: {', '.join(candidates)}" if candidates else ""
        reasons.append(
            "promotion.policy is Manual: validated versions wait as Candidate until you promote one." + waiting
        )
        if candidates:
            hints.append(f"kubectl perennial promote {name} {candidates[-1]}")
            state = state or "Manual"
    decided = [r for r in model.versions if r.state != "Training"]
    last = decided[-1] if decided else None
    if last is not None and last.version != status.serving_version:
        reason = _record_reason(last, model)
        if reason:
            reasons.append(reason)
            state = state or "NotPromoted"
    ready = _condition(status.conditions, "Ready")
    if ready is not None and ready.status == "False" and ready.message:
        reasons.append(f"Not ready ({ready.reason}): {ready.message}")
    if not state:
        if status.serving_version and (latest is None or latest.version == status.serving_version):
            state = "UpToDate"
            reasons.append(f"Version {status.serving_version}, the latest, serves: nothing waits for promotion")
        elif status.serving_version:
            state = "UpToDate"
            reasons.append(f"Version {status.serving_version} serves; no newer version waits for promotion")
        else:
            state = "NoVersion"
            reasons.append("No version has been trained and validated yet")
    improvement = spec.promotion.require_improvement
    if improvement is not None and state == "NotPromoted":
        reasons.append(
            f"promotion.requireImprovement: a new version must {improvement.goal.lower()} {improvement.metric}"
            f" by at least minDelta {number(improvement.min_delta)} over the serving version"
        )
    summaries = {
        "Rolling": "A rollout is in progress",
        "Pinned": "Promotion is held by a pin",
        "Degraded": "Serving is degraded",
        "Training": "The newest version is still training",
        "Manual": "Promotion is Manual: a Candidate waits for you",
        "NotPromoted": "The newest version was not promoted",
        "UpToDate": "The newest version serves",
        "NoVersion": "Nothing to promote yet",
    }
    reasons = [r for r in reasons if r]
    return Verdict(state=state, summary=summaries[state], reasons=reasons, hints=hints)


def explain(model: Model, policies: list[Policy], now: datetime) -> Explanation:
    return Explanation(
        name=model.name,
        namespace=model.namespace,
        retraining=explain_retraining(model, policies, now),
        promotion=explain_promotion(model, now),
    )


def render_explanation(explanation: Explanation) -> str:
    lines = []
    for title, verdict in (("Retraining", explanation.retraining), ("Promotion", explanation.promotion)):
        lines.append(f"{title}: {verdict.state}")
        lines.append(f"  {verdict.summary}.")
        for reason in verdict.reasons:
            lines.append(f"  - {reason}")
        for hint in verdict.hints:
            lines.append(f"  > {hint}")
        lines.append("")
    return "\n".join(lines)
