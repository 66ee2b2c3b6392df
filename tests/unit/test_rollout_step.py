"""The rollout state machine: complete, wait, roll back or stuck."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec
from perennial.domain import modeldeployment as md

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def spec(**rollout: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "training": {"image": "t:1", "output": {"modelUri": "s3://m/{version}"}},
            "serving": {"image": "s:1"},
            "rollout": {"progressDeadline": "10m", **rollout},
        }
    )


def rollout(started_minutes_ago: float, previous: str | None = "1") -> dict[str, Any]:
    state = {"version": "2", "startedAt": (NOW - timedelta(minutes=started_minutes_ago)).isoformat()}
    if previous:
        state["previousVersion"] = previous
    return state


DONE = md.DeploymentHealth(replicas=3, ready_replicas=3, available=True, rolled_out=True)
ROLLING = md.DeploymentHealth(replicas=3, ready_replicas=3, available=True, rolled_out=False)


def test_complete_once_the_new_version_runs_everywhere() -> None:
    assert md.rollout_step(rollout(1), spec(), "2", DONE, NOW).action == md.COMPLETE


def test_a_rolled_out_deployment_of_another_version_is_not_completion() -> None:
    # The Deployment still shows the previous template (the update has not landed yet).
    assert md.rollout_step(rollout(1), spec(), "1", DONE, NOW).action == md.WAIT


def test_waits_and_says_how_long_until_the_deadline() -> None:
    step = md.rollout_step(rollout(4), spec(), "2", ROLLING, NOW)
    assert step.action == md.WAIT
    assert step.seconds_left == pytest.approx(360)


def test_past_the_deadline_rolls_back_to_the_previous_version() -> None:
    assert md.rollout_step(rollout(11), spec(), "2", ROLLING, NOW).action == md.ROLL_BACK


def test_without_auto_rollback_a_late_rollout_is_stuck() -> None:
    assert md.rollout_step(rollout(11), spec(autoRollback=False), "2", ROLLING, NOW).action == md.STUCK


def test_the_first_version_has_nothing_to_roll_back_to() -> None:
    assert md.rollout_step(rollout(11, previous=None), spec(), "2", ROLLING, NOW).action == md.STUCK


def test_completion_wins_even_after_the_deadline() -> None:
    # Available late is still available: no rollback of a version that made it.
    assert md.rollout_step(rollout(30), spec(), "2", DONE, NOW).action == md.COMPLETE
