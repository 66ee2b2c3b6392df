"""How fresh a model's training is: its last successful training, and how old it may grow.

The operator exports both per model (``perennial_model_last_successful_training_timestamp_seconds``
and ``perennial_model_max_training_age_seconds``); the alert ``PerennialModelStale`` fires
when the first is older than the second. The bound is ``spec.retraining.maxAge`` when set,
else two periods of ``spec.retraining.schedule``, so a model whose scheduled retrains keep
failing (or never start) is flagged after it missed one whole period and the next is due.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from functools import lru_cache

from perennial.api.durations import parse_duration
from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from perennial.domain import cron
from perennial.domain.modeldeployment import TRAINED_STATES

PERIODS = 2
# The days scanned for a schedule's longest gap between firing days: nine years, from a fixed
# start so the bound is a property of the schedule alone ("0 0 29 2 *" skips 2100: 8 years).
SCAN_START = date(2024, 1, 1)
SCAN_DAYS = 9 * 366
MINUTES_A_DAY = 24 * 60


def last_successful_training(status: ModelDeploymentStatus) -> datetime | None:
    """When the training of the newest version that trained and passed validation started.

    That is its ``createdAt`` (when its TrainingJob was created, the end of its data window);
    ``promotedAt`` stands in for records that lack it. None until a version has trained.
    """
    newest: tuple[int, datetime] | None = None
    for record in status.versions or ():
        if record.state not in TRAINED_STATES or not record.version.isdigit():
            continue
        moment = record.created_at or record.promoted_at
        if moment is not None and (newest is None or int(record.version) > newest[0]):
            newest = (int(record.version), moment)
    return newest[1] if newest is not None else None


def max_training_age(spec: ModelDeploymentSpec) -> timedelta | None:
    """``retraining.maxAge``, else two retraining periods; None while suspended, or with neither
    a maxAge nor a schedule (or a schedule that never fires)."""
    if spec.suspend:
        return None
    if spec.retraining.max_age is not None:
        return parse_duration(spec.retraining.max_age)
    schedule = spec.retraining.schedule
    if not schedule:
        return None
    return _max_age(schedule, spec.retraining.cooldown)


@lru_cache(maxsize=1024)
def _max_age(schedule: str, cooldown: str) -> timedelta | None:
    try:
        gap = longest_gap(schedule)
    except cron.InvalidScheduleError:
        return None
    # A firing within the cooldown of the last automatic retrain is skipped: when the cooldown
    # is longer than the gap, the next retrain comes up to one gap after the cooldown ends.
    held = parse_duration(cooldown)
    period = gap if gap >= held else held + gap
    return PERIODS * period


@lru_cache(maxsize=1024)
def longest_gap(schedule: str) -> timedelta:
    """The longest time between two consecutive firings of a cron schedule.

    A cron schedule fires at the same times of day on every day it fires, so the longest gap
    is the longer of the longest gap between two times of one day and the longest gap from
    a firing day's last time to the next firing day's first time: exact, and a few thousand
    date checks rather than a minute-by-minute walk. ``InvalidScheduleError`` if it never fires.
    """
    parsed = cron.parse(schedule)
    times = sorted(hour * 60 + minute for hour in parsed.hours for minute in parsed.minutes)
    within_day = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0)
    day_gap, previous = 0, None
    for offset in range(SCAN_DAYS):
        day = SCAN_START + timedelta(days=offset)
        if parsed.fires_on(day):
            if previous is not None:
                day_gap = max(day_gap, (day - previous).days)
            previous = day
    if not day_gap:
        raise cron.InvalidScheduleError(f"{schedule!r} fires on fewer than two days in {SCAN_DAYS} days")
    across_days = day_gap * MINUTES_A_DAY - (times[-1] - times[0])
    return timedelta(minutes=max(within_day, across_days))
