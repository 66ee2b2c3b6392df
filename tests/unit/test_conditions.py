"""The one condition helper: lastTransitionTime moves only when status does; changes are reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from perennial.api.base import Condition
from perennial.api.modeldeployment import ModelDeploymentStatus
from perennial.domain.conditions import ConditionState, condition_is_true, get_condition, set_condition
from perennial.domain.plan import Plan

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
NOW_TEXT = "2026-01-01T12:00:00Z"
EARLIER_TEXT = "2025-12-31T08:00:00Z"


def stored(type_: str, status: str, reason: str = "Before", *, generation: int | None = 1) -> Condition:
    """A condition as it sits in a stored status."""
    wire: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} was {status}",
        "lastTransitionTime": EARLIER_TEXT,
    }
    if generation is not None:
        wire["observedGeneration"] = generation
    return Condition.model_validate(wire)


def wire(conditions: list[Condition]) -> list[dict[str, Any]]:
    return [c.to_api() for c in conditions]


# ---------------------------------------------------------------- set_condition
def test_a_new_condition_is_added_with_now_as_its_transition_time_and_reported_as_a_change() -> None:
    conditions: list[Condition] = []

    changed = set_condition(conditions, ConditionState("Ready", "True", "Serving", "all good"), now=NOW, generation=3)

    assert changed is True
    assert wire(conditions) == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Serving",
            "message": "all good",
            "lastTransitionTime": NOW_TEXT,
            "observedGeneration": 3,
        }
    ]


def test_message_defaults_to_empty() -> None:
    conditions: list[Condition] = []
    set_condition(conditions, ConditionState("Ready", "Unknown", "Starting"), now=NOW, generation=1)

    assert conditions[0].message == ""


def test_same_status_keeps_the_transition_time_but_takes_the_new_reason_and_message() -> None:
    conditions = [stored("Running", "True", "PodsRunning")]

    changed = set_condition(
        conditions, ConditionState("Running", "True", "AllPodsRunning", "4 of 4 running"), now=LATER, generation=1
    )

    assert changed is True
    assert wire(conditions) == [
        {
            "type": "Running",
            "status": "True",
            "reason": "AllPodsRunning",
            "message": "4 of 4 running",
            "lastTransitionTime": EARLIER_TEXT,
            "observedGeneration": 1,
        }
    ]


@pytest.mark.parametrize(
    ("before", "after"), [("True", "False"), ("False", "True"), ("Unknown", "True"), ("True", "Unknown")]
)
def test_status_change_moves_the_transition_time_to_now(before: str, after: Any) -> None:
    conditions = [stored("Ready", before)]

    assert set_condition(conditions, ConditionState("Ready", after, "Changed"), now=NOW, generation=1) is True
    assert conditions[0].status == after
    assert conditions[0].to_api()["lastTransitionTime"] == NOW_TEXT


def test_same_status_without_a_stored_transition_time_gets_now() -> None:
    conditions = [Condition(type="Ready", status="True", reason="Serving")]

    set_condition(conditions, ConditionState("Ready", "True", "Serving"), now=NOW, generation=1)

    assert conditions[0].to_api()["lastTransitionTime"] == NOW_TEXT


def test_other_types_are_kept_as_they_were_and_order_is_kept() -> None:
    degraded = stored("Degraded", "True", "RolloutFailed")
    conditions = [stored("Ready", "False"), degraded]
    before = degraded.to_api()

    set_condition(conditions, ConditionState("Ready", "True", "Serving"), now=NOW, generation=2)
    set_condition(conditions, ConditionState("Progressing", "False", "Stable"), now=NOW, generation=2)

    assert [c.type for c in conditions] == ["Ready", "Degraded", "Progressing"]
    assert conditions[1].to_api() == before
    assert conditions[0].observed_generation == 2


def test_without_a_generation_no_observed_generation_is_written() -> None:
    conditions = [stored("Ready", "True", generation=None)]

    set_condition(conditions, ConditionState("Ready", "True", "Serving"), now=NOW, generation=None)

    assert "observedGeneration" not in conditions[0].to_api()


def test_setting_the_same_state_twice_is_a_fixed_point_and_no_change() -> None:
    conditions: list[Condition] = []
    set_condition(conditions, ConditionState("Succeeded", "Unknown", "Running", "not yet"), now=NOW, generation=1)
    first = wire(conditions)

    changed = set_condition(
        conditions, ConditionState("Succeeded", "Unknown", "Running", "not yet"), now=LATER, generation=1
    )

    assert changed is False
    assert wire(conditions) == first


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["microseconds", "utc+2"],
)
def test_transition_time_is_rfc3339_utc_whole_seconds(now: datetime) -> None:
    conditions: list[Condition] = []
    set_condition(conditions, ConditionState("Ready", "True", "Serving"), now=now, generation=1)

    assert conditions[0].to_api()["lastTransitionTime"] == NOW_TEXT


# ---------------------------------------------------------------- get_condition / condition_is_true
def test_get_condition_returns_the_condition_of_that_type() -> None:
    conditions = [stored("Ready", "True"), stored("Degraded", "False")]

    assert get_condition(conditions, "Degraded") is conditions[1]


@pytest.mark.parametrize("conditions", [None, [], [stored("Ready", "True")]])
def test_get_condition_returns_none_when_absent(conditions: list[Condition] | None) -> None:
    assert get_condition(conditions, "Degraded") is None


@pytest.mark.parametrize(("status", "expected"), [("True", True), ("False", False), ("Unknown", False)])
def test_condition_is_true_only_for_status_true(status: str, expected: bool) -> None:
    assert condition_is_true([stored("Degraded", "False"), stored("Ready", status)], "Ready") is expected


@pytest.mark.parametrize("conditions", [None, [], [stored("Degraded", "True")]])
def test_condition_is_true_is_false_for_a_missing_condition(conditions: list[Condition] | None) -> None:
    assert condition_is_true(conditions, "Ready") is False


# ---------------------------------------------------------------- Plan.condition: Events only on change
def test_plan_condition_posts_its_event_only_when_the_condition_changed() -> None:
    plan = Plan(status=ModelDeploymentStatus(), now=NOW, generation=1)

    plan.condition("Degraded", "True", "RolledBack", "v2 rolled back", event="Warning")
    plan.condition("Degraded", "True", "RolledBack", "v2 rolled back", event="Warning")
    plan.condition("Degraded", "True", "RolledBack", "v3 rolled back", event="Warning")

    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "RolledBack", "v2 rolled back"),
        ("Warning", "RolledBack", "v3 rolled back"),
    ]
