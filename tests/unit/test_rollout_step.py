"""The rollout state machine: complete, wait, roll back or stuck."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec, RolloutStatus
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


def rollout(started_minutes_ago: float, previous: str | None = "1") -> RolloutStatus:
    """A rollout of version 2 as status records it (camelCase on the wire)."""
    state = {"version": "2", "startedAt": (NOW - timedelta(minutes=started_minutes_ago)).isoformat()}
    if previous:
        state["previousVersion"] = previous
    return RolloutStatus.model_validate(state)


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


NOT_AVAILABLE = md.DeploymentHealth(replicas=3, ready_replicas=0, available=False, rolled_out=False)


@pytest.mark.parametrize(
    ("deployed", "health", "minutes_ago", "auto_rollback", "previous", "action", "seconds_left"),
    [
        # docs/concepts.md, "The loop", 3. Serving: the new version Available everywhere -> it serves.
        pytest.param("2", DONE, 1, True, "1", md.COMPLETE, None, id="rolled-out"),
        pytest.param("2", DONE, 30, False, None, md.COMPLETE, None, id="rolled-out-late-without-rollback"),
        # Not yet: wait, and look again at the deadline.
        pytest.param("2", ROLLING, 0, True, "1", md.WAIT, 600.0, id="just-started"),
        pytest.param("2", NOT_AVAILABLE, 10, True, "1", md.WAIT, 0.0, id="at-the-deadline"),
        pytest.param(None, NOT_AVAILABLE, 5, True, "1", md.WAIT, 300.0, id="no-deployment-yet"),
        pytest.param("1", DONE, 5, True, "1", md.WAIT, 300.0, id="template-not-updated-yet"),
        # Not Available within progressDeadline: autoRollback goes back to the previous version.
        pytest.param("2", NOT_AVAILABLE, 11, True, "1", md.ROLL_BACK, None, id="late-rolls-back"),
        pytest.param("1", DONE, 11, True, "1", md.ROLL_BACK, None, id="late-and-never-updated"),
        # ... or, without autoRollback or a previous version, it is stuck (Degraded RolloutStuck).
        pytest.param("2", NOT_AVAILABLE, 11, False, "1", md.STUCK, None, id="late-without-auto-rollback"),
        pytest.param("2", NOT_AVAILABLE, 11, True, None, md.STUCK, None, id="late-first-version"),
    ],
)
def test_rollout_rules(
    deployed: str | None,
    health: md.DeploymentHealth,
    minutes_ago: float,
    auto_rollback: bool,
    previous: str | None,
    action: str,
    seconds_left: float | None,
) -> None:
    step = md.rollout_step(rollout(minutes_ago, previous), spec(autoRollback=auto_rollback), deployed, health, NOW)

    assert step == md.RolloutStep(action, seconds_left)
