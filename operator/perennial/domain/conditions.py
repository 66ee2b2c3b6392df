"""The one condition helper: typed metav1.Condition-shaped conditions, set without churn.

A condition's ``lastTransitionTime`` changes only when its status does, so a reconcile
that finds nothing new writes nothing new (and kopf sees no status change to react to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from perennial.api.base import Condition, ConditionStatus
from perennial.domain.text import shorten
from perennial.domain.timeutil import truncate

MESSAGE_LIMIT = 32768  # metav1.Condition's message


@dataclass(frozen=True)
class ConditionState:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def set_condition(conditions: list[Condition], state: ConditionState, *, now: datetime, generation: int | None) -> bool:
    """Set ``state`` in ``conditions`` (in place); True when its status, reason or message changed.

    ``lastTransitionTime`` moves only when the status does; ``observedGeneration`` follows
    the object's generation.
    """
    # Messages quote API servers, Prometheus and people: bounded to what the schema holds.
    state = replace(state, message=shorten(state.message, MESSAGE_LIMIT))
    previous = get_condition(conditions, state.type)
    if previous is None:
        conditions.append(
            Condition(
                type=state.type,
                status=state.status,
                reason=state.reason,
                message=state.message,
                last_transition_time=truncate(now),
                observed_generation=generation,
            )
        )
        return True
    changed = (previous.status, previous.reason, previous.message) != (state.status, state.reason, state.message)
    if previous.status != state.status or previous.last_transition_time is None:
        previous.last_transition_time = truncate(now)
    previous.status = state.status
    previous.reason = state.reason
    previous.message = state.message
    previous.observed_generation = generation
    return changed


def get_condition(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def condition_is_true(conditions: Iterable[Condition] | None, type_: str) -> bool:
    condition = get_condition(conditions, type_)
    return condition is not None and condition.status == "True"


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``before`` into ``after``.

    Removed keys become ``null`` (a merge patch cannot delete them otherwise); nested
    objects are diffed recursively; lists and scalars are replaced whole.
    """
    patch: dict[str, Any] = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif value != old or key not in before:
            patch[key] = value
    return patch
