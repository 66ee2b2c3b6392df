"""Cron schedules (UTC): when `spec.retraining.schedule` fires next.

Five fields — minute, hour, day-of-month, month, day-of-week — with `*`, ranges, steps,
lists and upper-case names, or a macro (@hourly, @daily, ...), as Kubernetes CronJobs
read them. As in Vixie cron, when both day fields are restricted a day matches if
either does. The CRD validates the format (``perennial.api.schedule.CRON_PATTERN``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i + 1
    for i, name in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {name: i for i, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}  # noqa: SIM905


class InvalidScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    def _day_matches(self, moment: date) -> bool:
        dom = moment.day in self.days_of_month
        dow = (moment.isoweekday() % 7) in self.days_of_week
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return dom or dow
        return dom and dow

    def fires_on(self, day: date) -> bool:
        """Whether the schedule fires at some time of ``day`` (at every one of its times of day)."""
        return day.month in self.months and self._day_matches(day)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment`` (UTC, whole minutes)."""
        candidate = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        # "0 0 29 2 *" fires once in 4 years, and once in 8 across a century like 2100.
        limit = candidate + timedelta(days=366 * 9)
        while candidate < limit:
            if candidate.month not in self.months:
                year, month = (
                    (candidate.year + 1, 1) if candidate.month == 12 else (candidate.year, candidate.month + 1)
                )
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0)
            elif not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise InvalidScheduleError("the schedule never fires")


def _values(field: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    for item in field.split(","):
        body, slash, step_text = item.partition("/")
        if slash and not step_text.isdigit():
            raise InvalidScheduleError(f"a step needs a number after '/' in {item!r}")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise InvalidScheduleError(f"step must be at least 1 in {item!r}")
        if body == "*":
            start, end = low, high
        else:
            first, dash, last = body.partition("-")
            if not first or (dash and not last):
                raise InvalidScheduleError(f"incomplete range {item!r}")
            start = names[first] if first in names else int(first)
            end = (names[last] if last in names else int(last)) if last else (high if step_text else start)
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise InvalidScheduleError(f"{item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values), field != "*"


def parse(expression: str) -> Schedule:
    fields = MACROS.get(expression.strip(), expression).split()
    if len(fields) != 5:
        raise InvalidScheduleError(f"{expression!r}: a schedule has five fields or is a macro such as @daily")
    try:
        minutes, _ = _values(fields[0], 0, 59, {})
        hours, _ = _values(fields[1], 0, 23, {})
        days_of_month, dom_restricted = _values(fields[2], 1, 31, {})
        months, _ = _values(fields[3], 1, 12, _MONTHS)
        days_of_week, dow_restricted = _values(fields[4], 0, 7, _DAYS)
    except ValueError as error:
        raise InvalidScheduleError(f"{expression!r}: {error}") from error
    if 7 in days_of_week:  # 7 is Sunday too
        days_of_week = days_of_week | {0}
    return Schedule(minutes, hours, days_of_month, months, days_of_week, dom_restricted, dow_restricted)
