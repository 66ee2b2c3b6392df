"""The one reconcile shape every kind shares: observe -> pure ``plan`` -> execute.

A plan says everything a reconcile is going to do, decided by a pure function of what was
observed (the object, its children from the caches, now): the status to write (a typed
status model), the children to converge, the objects to create once or delete, the Events
to post, the counters to bump, and when to look again. Controllers execute plans and
record what happened; they decide nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, cast

from perennial.api.base import ApiModel, Condition, ConditionStatus
from perennial.domain.conditions import ConditionState, set_condition

StatusT = TypeVar("StatusT", bound=ApiModel)


class _WithConditions(Protocol):
    conditions: list[Condition] | None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the reconciled object."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Count:
    """One increment of an operator counter, by name (``perennial.adapters.metrics.COUNTERS``)."""

    metric: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildRef:
    """A child the plan deletes: its kind's plural (``trainingjobs``) and its name."""

    plural: str
    name: str


@dataclass
class Plan(Generic[StatusT]):
    """What one reconcile does. Built by the domain, executed by a controller."""

    status: StatusT
    now: datetime
    generation: int | None
    apply: list[dict[str, Any]] = field(default_factory=list)
    """Desired children: created when absent, server-side applied when they differ."""
    create: list[dict[str, Any]] = field(default_factory=list)
    """Objects created once and never changed by the operator (TrainingJobs)."""
    delete: list[ChildRef] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    """Objects Perennial does not own, written back whole with the resourceVersion they were read
    at, after changing only what Perennial may (a Gateway API HTTPRoute's backend weights)."""
    events: list[Event] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)
    requeue_after: float | None = None
    """Seconds until the object wants another look (a deadline, a schedule), or None."""

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def count(self, metric: str, **labels: str) -> None:
        self.counts.append(Count(metric, labels))

    def later(self, seconds: float | None) -> None:
        """Look again in ``seconds`` (the earliest of every ask wins)."""
        if seconds is not None:
            seconds = max(0.0, seconds)
            self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    @property
    def conditions(self) -> list[Condition]:
        """The status's conditions (every Perennial status has them), created on first use."""
        status = cast(_WithConditions, self.status)
        if status.conditions is None:
            status.conditions = []
        return status.conditions

    def condition(
        self,
        type_: str,
        status: ConditionStatus,
        reason: str,
        message: str = "",
        *,
        event: str | None = None,
    ) -> bool:
        """Set a condition; when it changed (status, reason or message), post ``event`` (Normal|Warning).

        The one "set a condition, and tell people only when it changed" helper: a pass that
        finds nothing new posts nothing new.
        """
        changed = set_condition(
            self.conditions, ConditionState(type_, status, reason, message), now=self.now, generation=self.generation
        )
        if changed and event is not None:
            self.event(event, reason, message)
        return changed
