"""A model's last successful training and how old it may grow (PerennialModelStale)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.domain import cron
from perennial.domain.freshness import last_successful_training, longest_gap, max_training_age

DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("0 3 * * 0", 7 * DAY),  # weekly
        ("@daily", DAY),
        ("@hourly", HOUR),
        ("* * * * *", MINUTE),
        ("0 3 * * 1,5", 4 * DAY),  # Friday to Monday is the longer gap
        ("*/5 9-17 * * 1-5", 2 * DAY + 15 * HOUR + 5 * MINUTE),  # Friday 17:55 to Monday 09:00
        ("* 3 * * *", 23 * HOUR + MINUTE),  # 03:59 to 03:00 the next day
        ("0 0 31 * *", 61 * DAY),  # August 31 to October 31
        ("*/5 * 1 * *", 30 * DAY + 5 * MINUTE),  # January 1 23:55 to February 1 00:00
        ("*/5 * * 1-6 *", 184 * DAY + 5 * MINUTE),  # June 30 23:55 to January 1
        ("0 0 29 2 *", 4 * 366 * DAY - 3 * DAY),  # leap days
    ],
)
def test_longest_gap_between_two_firings(schedule: str, gap: timedelta) -> None:
    assert longest_gap(schedule) == gap


def test_longest_gap_agrees_with_the_firings_themselves() -> None:
    for schedule in ("0 3 * * 1,5", "*/20 8-9 * * 2", "0 12 1,15 * *"):
        parsed = cron.parse(schedule)
        moment, longest = datetime(2024, 1, 1, tzinfo=UTC), timedelta(0)
        for _ in range(400):
            later = parsed.next_after(moment)
            longest, moment = max(longest, later - moment), later
        assert longest_gap(schedule) == longest, schedule


def test_a_schedule_that_never_fires_has_no_gap() -> None:
    with pytest.raises(cron.InvalidScheduleError):
        longest_gap("0 0 31 2 *")


def spec(**retraining: Any) -> ModelDeploymentSpec:
    suspend = retraining.pop("suspend", False)
    return ModelDeploymentSpec.model_validate(
        {
            "training": {"image": "trainer", "output": {"modelUri": "s3://m/{version}"}},
            "serving": {"image": "server"},
            "retraining": retraining,
            "suspend": suspend,
        }
    )


@pytest.mark.parametrize(
    ("retraining", "age"),
    [
        ({"schedule": "0 3 * * 0"}, 14 * DAY),  # two weeks
        ({"schedule": "@daily", "cooldown": "6h"}, 2 * DAY),  # the cooldown ends before the next firing
        ({"schedule": "*/10 * * * *"}, 2 * (HOUR + 10 * MINUTE)),  # firings in the 1h cooldown are skipped
        ({"schedule": "@hourly", "cooldown": "0s"}, 2 * HOUR),
        ({}, None),  # no schedule: nothing says how often it should train
        ({"schedule": "@daily", "suspend": True}, None),  # suspended: no automatic retrains, by intent
        ({"schedule": "0 0 31 2 *"}, None),  # never fires (RetrainSuppressed says so)
        ({"maxAge": "36h"}, 36 * HOUR),  # said outright: no schedule needed
        ({"schedule": "0 3 * * 0", "maxAge": "3h"}, 3 * HOUR),  # ...and it wins over the schedule
        ({"maxAge": "36h", "suspend": True}, None),
    ],
)
def test_max_training_age_is_two_retraining_periods(retraining: dict[str, Any], age: timedelta | None) -> None:
    assert max_training_age(spec(**retraining)) == age


def test_last_successful_training_is_the_newest_trained_version() -> None:
    def at(day: int) -> str:
        return f"2026-11-{day:02d}T03:00:00Z"

    status = ModelDeploymentStatus.model_validate(
        {
            "versions": [
                {"version": "1", "state": "Retired", "createdAt": at(1)},
                {"version": "2", "state": "Serving", "createdAt": at(8), "promotedAt": at(9)},
                {"version": "10", "state": "RolledBack", "createdAt": at(15)},  # numbers, not strings, compare
                {"version": "9", "state": "Candidate", "createdAt": at(14)},
                {"version": "11", "state": "Failed", "createdAt": at(22)},
                {"version": "12", "state": "Rejected", "createdAt": at(23)},
                {"version": "13", "state": "Training", "createdAt": at(24)},
            ]
        }
    )
    assert last_successful_training(status) == datetime(2026, 11, 15, 3, tzinfo=UTC)
    assert last_successful_training(ModelDeploymentStatus()) is None
    failed_only = ModelDeploymentStatus.model_validate({"versions": [{"version": "1", "state": "Failed"}]})
    assert last_successful_training(failed_only) is None
