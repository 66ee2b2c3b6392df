"""Condition merging without churn: lastTransitionTime moves only when status does."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from perennial.domain.conditions import ConditionState, find_condition, is_true, merge_conditions

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
NOW_TEXT = "2026-01-01T12:00:00Z"
LATER_TEXT = "2026-01-01T12:05:00Z"
EARLIER_TEXT = "2025-12-31T08:00:00Z"


def stored(
    type_: str, status: str, reason: str = "Before", *, at: str = EARLIER_TEXT, generation: int | None = 1
) -> dict[str, Any]:
    """A condition as it sits in a stored status."""
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} was {status}",
        "lastTransitionTime": at,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


# ---------------------------------------------------------------- merge_conditions
@pytest.mark.parametrize("existing", [None, []])
def test_new_condition_is_added_with_now_as_its_transition_time(existing: list[dict[str, Any]] | None) -> None:
    merged = merge_conditions(existing, [ConditionState("Ready", "True", "Serving", "all good")], now=NOW, generation=3)

    assert merged == [
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
    merged = merge_conditions(None, [ConditionState("Ready", "Unknown", "Starting")], now=NOW, generation=1)

    assert merged[0]["message"] == ""


def test_same_status_keeps_the_transition_time_but_takes_the_new_reason_and_message() -> None:
    merged = merge_conditions(
        [stored("Running", "True", "PodsRunning")],
        [ConditionState("Running", "True", "AllPodsRunning", "4 of 4 running")],
        now=LATER,
        generation=1,
    )

    assert merged == [
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
def test_status_change_moves_the_transition_time_to_now(before: str, after: str) -> None:
    merged = merge_conditions(
        [stored("Ready", before)], [ConditionState("Ready", after, "Changed")], now=NOW, generation=1
    )

    assert merged[0]["status"] == after
    assert merged[0]["lastTransitionTime"] == NOW_TEXT


def test_same_status_without_a_stored_transition_time_gets_now() -> None:
    previous = stored("Ready", "True")
    del previous["lastTransitionTime"]

    merged = merge_conditions([previous], [ConditionState("Ready", "True", "Serving")], now=NOW, generation=1)

    assert merged[0]["lastTransitionTime"] == NOW_TEXT


def test_types_not_in_desired_are_kept_as_they_were() -> None:
    degraded = stored("Degraded", "True", "RolloutFailed", generation=1)

    merged = merge_conditions(
        [degraded, stored("Ready", "False")], [ConditionState("Ready", "True", "Serving")], now=NOW, generation=2
    )

    assert by_type(merged)["Degraded"] == degraded
    assert by_type(merged)["Ready"]["observedGeneration"] == 2


def test_existing_order_is_kept_and_new_types_come_last() -> None:
    merged = merge_conditions(
        [stored("Ready", "True"), stored("Training", "False")],
        [ConditionState("Degraded", "False", "Healthy"), ConditionState("Ready", "True", "Serving")],
        now=NOW,
        generation=1,
    )

    assert [c["type"] for c in merged] == ["Ready", "Training", "Degraded"]


def test_observed_generation_is_set_on_every_desired_condition() -> None:
    merged = merge_conditions(
        [stored("Ready", "True", generation=1)],
        [ConditionState("Ready", "True", "Serving"), ConditionState("Progressing", "False", "Idle")],
        now=NOW,
        generation=7,
    )

    assert [c["observedGeneration"] for c in merged] == [7, 7]


def test_without_a_generation_no_observed_generation_is_written() -> None:
    merged = merge_conditions(
        [stored("Ready", "True", generation=4)], [ConditionState("Ready", "True", "Serving")], now=NOW, generation=None
    )

    assert "observedGeneration" not in merged[0]


def test_merging_the_same_desired_state_twice_is_a_fixed_point() -> None:
    desired = [ConditionState("Succeeded", "Unknown", "Running"), ConditionState("Running", "True", "PodsRunning")]
    first = merge_conditions(None, desired, now=NOW, generation=1)

    assert merge_conditions(first, desired, now=LATER, generation=1) == first


def test_merging_does_not_modify_the_stored_conditions() -> None:
    existing = [stored("Ready", "False"), stored("Degraded", "True")]
    snapshot = copy.deepcopy(existing)

    merge_conditions(existing, [ConditionState("Ready", "True", "Serving")], now=NOW, generation=2)

    assert existing == snapshot


def test_last_desired_state_of_a_type_wins() -> None:
    merged = merge_conditions(
        None,
        [ConditionState("Ready", "False", "First"), ConditionState("Ready", "True", "Second")],
        now=NOW,
        generation=1,
    )

    assert len(merged) == 1
    assert (merged[0]["status"], merged[0]["reason"]) == ("True", "Second")


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["microseconds", "utc+2"],
)
def test_transition_time_is_rfc3339_utc_whole_seconds(now: datetime) -> None:
    merged = merge_conditions(None, [ConditionState("Ready", "True", "Serving")], now=now, generation=1)

    assert merged[0]["lastTransitionTime"] == NOW_TEXT


# ---------------------------------------------------------------- find_condition / is_true
def test_find_condition_returns_the_condition_of_that_type() -> None:
    conditions = [stored("Ready", "True"), stored("Degraded", "False")]

    assert find_condition(conditions, "Degraded") == conditions[1]


@pytest.mark.parametrize("conditions", [None, [], [stored("Ready", "True")]])
def test_find_condition_returns_none_when_absent(conditions: list[dict[str, Any]] | None) -> None:
    assert find_condition(conditions, "Degraded") is None


@pytest.mark.parametrize(("status", "expected"), [("True", True), ("False", False), ("Unknown", False)])
def test_is_true_only_for_status_true(status: str, expected: bool) -> None:
    assert is_true([stored("Degraded", "False"), stored("Ready", status)], "Ready") is expected


@pytest.mark.parametrize("conditions", [None, [], [stored("Degraded", "True")]])
def test_is_true_is_false_for_a_missing_condition(conditions: list[dict[str, Any]] | None) -> None:
    assert is_true(conditions, "Ready") is False
