"""What the write commands change, as JSON merge patches, and the rules that refuse them.

Every write is what a person would do with ``kubectl patch`` or ``kubectl annotate``: a
field of ``spec`` (``suspend``, ``pinnedVersion``) or the retrain-request annotation. The
operator never writes a user's spec; these are the user's own changes, so a GitOps tool
sees them as drift from Git. Pure: the command layer sends the patches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from perennial.api.modeldeployment import RETRAIN_REQUEST_ANNOTATION, ModelVersionRecord
from perennial.domain import modeldeployment as md
from perennial.kubectl.errors import RefusedError
from perennial.kubectl.objects import Model

VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
REASON_LIMIT = 512  # the request is copied into lineage (trigger.source); keep it readable


@dataclass(frozen=True)
class Change:
    patch: dict[str, Any]
    """A JSON merge patch of the ModelDeployment; empty: nothing to change."""
    changed: list[str] = field(default_factory=list)
    """Each field changed, ``path: old -> new``."""
    message: str = ""
    """What the change means, in one or two sentences."""
    guarded: bool = False
    """Derived from status: send it only if the object is still the one read (resourceVersion)."""

    @property
    def noop(self) -> bool:
        return not self.patch


def _show(value: object) -> str:
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"'


def _spec_change(field_name: str, old: object, new: object, message: str, guarded: bool) -> Change:
    return Change(
        patch={"spec": {field_name: new}},
        changed=[f"spec.{field_name}: {_show(old)} -> {_show(new)}"],
        message=message,
        guarded=guarded,
    )


# ---------------------------------------------------------------- pause, resume
def set_suspend(model: Model, suspend: bool) -> Change:
    name = model.name
    if model.spec.suspend == suspend:
        state = "paused (spec.suspend is true)" if suspend else "not paused (spec.suspend is false)"
        return Change({}, message=f"modeldeployment {name} is already {state}: nothing to change")
    if suspend:
        message = (
            f"paused automatic retrains of {name}: Drift, Schedule and spec changes no longer start a training;"
            " the serving version keeps serving and a manual retrain still runs"
        )
    else:
        message = f"resumed automatic retrains of {name}"
        if md.circuit_open(model.spec, model.status):
            message += " (the circuit breaker is still open: kubectl perennial why " + name + ")"
    return _spec_change("suspend", model.spec.suspend, suspend, message, guarded=False)


# ---------------------------------------------------------------- pins
def unpin(model: Model) -> Change:
    pinned = model.spec.pinned_version
    if pinned is None:
        return Change({}, message=f"modeldeployment {model.name} is not pinned: nothing to change")
    return Change(
        patch={"spec": {"pinnedVersion": None}},  # null removes the field in a merge patch
        changed=[f"spec.pinnedVersion: {_show(pinned)} -> (unset)"],
        message=(
            f"unpinned {model.name}: promotion (promotion.policy {model.spec.promotion.policy}) chooses what"
            " serves again; the version serving now keeps serving until a newer one is promoted"
        ),
    )


def _versions_list(model: Model) -> str:
    versions = [r.version for r in model.versions]
    return ", ".join(versions) if versions else "none yet"


def promotable(model: Model, version: str) -> ModelVersionRecord:
    """The version's record if it can serve; else ``RefusedError`` saying why."""
    name = model.name
    if not VERSION.match(version):
        raise RefusedError(f'"{version}" is not a version: versions are whole numbers such as 3')
    record = model.record(version)
    if record is None:
        raise RefusedError(
            f"modeldeployment {name} has no version {version} (its versions: {_versions_list(model)});"
            f" see kubectl perennial history {name}"
        )
    reason = f": {record.decision.reason}" if record.decision and record.decision.reason else ""
    if record.state == "Training":
        raise RefusedError(f"version {version} of {name} is still training: promote it once it is a Candidate")
    if record.state in ("Failed", "Rejected"):
        raise RefusedError(
            f"version {version} of {name} was {record.state}{reason}; only a trained and validated version can serve"
        )
    if record.state not in md.TRAINED_STATES or not record.model_uri:
        raise RefusedError(f"version {version} of {name} has no trained model to serve (state {record.state})")
    if record.state == "RolledBack" and model.status.last_rolled_back == version:
        raise RefusedError(
            f"version {version} of {name} was rolled back (not Available within rollout.progressDeadline"
            f" {model.spec.rollout.progress_deadline}); the operator does not roll it out again"
        )
    return record


def promote(model: Model, version: str) -> Change:
    promotable(model, version)
    name = model.name
    if model.spec.pinned_version == version:
        return Change({}, message=f"modeldeployment {name} is already pinned to version {version}: nothing to change")
    if version == model.status.serving_version and model.status.rollout is None:
        message = (
            f"pinned {name} to version {version}, which already serves: new versions now wait as Candidate"
            f" until you promote one or unpin"
        )
    else:
        message = f"pinned {name} to version {version}: the operator rolls it out"
        if model.status.serving_version:
            message += f" (replacing version {model.status.serving_version})"
    return _spec_change("pinnedVersion", model.spec.pinned_version, version, message, guarded=True)


# ---------------------------------------------------------------- rollback
def previous_serving_version(model: Model) -> tuple[ModelVersionRecord, str]:
    """The version a rollback returns to, and why that one.

    During a rollout, the version still serving (rolling back cancels the rollout).
    Otherwise the version that served before the current one: the latest promoted of the
    Retired versions, before the current version's promotion.
    """
    name, status = model.name, model.status
    serving = status.serving_version
    rollout = status.rollout
    if rollout is not None:
        record = model.record(serving)
        if record is None:
            raise RefusedError(
                f"version {rollout.version} of {name} is the first to roll out: nothing served before it"
            )
        return record, f"cancels the rollout of version {rollout.version}; version {serving} still serves"
    if not serving:
        raise RefusedError(f"nothing serves {name} yet: there is no version to roll back from")
    current = model.record(serving)
    since = current.promoted_at if current is not None else None
    earlier = [
        r
        for r in model.versions
        if r.version != serving
        and r.state == "Retired"
        and r.model_uri
        and r.promoted_at is not None
        and (since is None or r.promoted_at <= since)
    ]
    if not earlier:
        raise RefusedError(
            f"no version served {name} before version {serving} that is still in its history"
            f" (retraining.historyLimit {model.spec.retraining.history_limit}); pin one by hand with"
            f" kubectl perennial promote {name} VERSION"
        )
    previous = max(earlier, key=lambda r: (r.promoted_at or datetime.min.replace(tzinfo=UTC), int(r.version)))
    return previous, f"version {previous.version} served before version {serving}"


def rollback(model: Model) -> Change:
    record, why = previous_serving_version(model)
    name, version = model.name, record.version
    if model.spec.pinned_version == version:
        return Change({}, message=f"modeldeployment {name} is already pinned to version {version}: nothing to change")
    message = f"rolled {name} back to version {version} ({why}) by pinning it; new versions wait as Candidate"
    message += f" until you unpin (kubectl perennial unpin {name})"
    return _spec_change("pinnedVersion", model.spec.pinned_version, version, message, guarded=True)


# ---------------------------------------------------------------- retrain
def retrain_request(now: datetime, reason: str = "") -> str:
    """A request value no earlier one had: the time to the microsecond, and the reason."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reason = " ".join(reason.split())
    return f"{stamp} {reason}" if reason else stamp


def retrain(model: Model, now: datetime, reason: str = "") -> Change:
    if len(reason) > REASON_LIMIT:
        raise RefusedError(f"--reason is {len(reason)} characters long; at most {REASON_LIMIT}")
    name, status = model.name, model.status
    old = model.annotations.get(RETRAIN_REQUEST_ANNOTATION)
    value = retrain_request(now, reason)
    notes = []
    if status.active_training_job:
        notes.append(f"a training is running ({status.active_training_job}): this one starts when it finishes")
    if old and md.request_identity(old) != status.handled_retrain_request:
        notes.append(f'the previous request "{old}" was not acted on yet: one training answers both')
    if model.spec.suspend:
        notes.append("spec.suspend is true, but a manual retrain still runs")
    if md.circuit_open(model.spec, status):
        notes.append("the circuit breaker is open: a manual retrain still runs, and closes it if it succeeds")
    message = f"requested a retrain of {name}" + (f" ({'; '.join(notes)})" if notes else "")
    message += f"; follow it with kubectl perennial status {name} -w"
    return Change(
        patch={"metadata": {"annotations": {RETRAIN_REQUEST_ANNOTATION: value}}},
        changed=[f"metadata.annotations[{RETRAIN_REQUEST_ANNOTATION}]: {_show(old)} -> {_show(value)}"],
        message=message,
    )


# ---------------------------------------------------------------- GitOps
# Marks GitOps tools leave on what they apply: (where, key, the tool).
_GITOPS_MARKS = (
    ("annotations", "argocd.argoproj.io/tracking-id", "Argo CD"),
    ("labels", "app.kubernetes.io/instance", "Argo CD"),
    ("labels", "kustomize.toolkit.fluxcd.io/name", "Flux"),
    ("labels", "helm.toolkit.fluxcd.io/name", "Flux"),
)


def gitops_tool(model: Model) -> str | None:
    """The GitOps tool that seems to manage the object, from the marks it leaves; None if none."""
    for where, key, tool in _GITOPS_MARKS:
        if key in (model.annotations if where == "annotations" else model.labels):
            return tool
    return None


def gitops_note(model: Model) -> str:
    tool = gitops_tool(model)
    managed = f"{model.name} looks managed by {tool}" if tool else f"if Argo CD or Flux manages {model.name}"
    return (
        f"Note: this changed the live object only (field manager kubectl-perennial); {managed}:"
        " make the same change in Git, or the next sync may undo it."
    )
