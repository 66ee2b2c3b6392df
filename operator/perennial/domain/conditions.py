"""The one condition helper: metav1.Condition-shaped dicts, merged without churn.

A condition's ``lastTransitionTime`` changes only when its status does, so a reconcile
that finds nothing new writes nothing new (and kopf sees no status change to react to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perennial.domain.timeutil import format_time


@dataclass(frozen=True)
class ConditionState:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    desired: Iterable[ConditionState],
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions after applying ``desired``; types not in ``desired`` are kept as they were."""
    by_type = {str(c.get("type")): dict(c) for c in existing or []}
    for state in desired:
        previous = by_type.get(state.type)
        transition = format_time(now)
        if previous is not None and previous.get("status") == state.status and previous.get("lastTransitionTime"):
            transition = str(previous["lastTransitionTime"])
        condition: dict[str, Any] = {
            "type": state.type,
            "status": state.status,
            "reason": state.reason,
            "message": state.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        by_type[state.type] = condition
    return list(by_type.values())


def find_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


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
