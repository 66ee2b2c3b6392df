"""Cron schedules (UTC) for `spec.retraining.schedule`: the format the CRD validates."""

from __future__ import annotations


def _field(number: str, names: str = "") -> str:
    """One cron field: `*`, a value or range (with names), an optional /step, comma lists."""
    value = f"({number}{'|' + names if names else ''})"
    item = rf"(\*|{value}(-{value})?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


_MINUTE = _field("[0-5]?[0-9]")
_HOUR = _field("[01]?[0-9]|2[0-3]")
_DAY_OF_MONTH = _field("0?[1-9]|[12][0-9]|3[01]")
_MONTH = _field("0?[1-9]|1[0-2]", "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC")
_DAY_OF_WEEK = _field("[0-7]", "SUN|MON|TUE|WED|THU|FRI|SAT")
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

# Five fields as in Kubernetes CronJobs (minute hour day-of-month month day-of-week),
# or one of the macros; names are upper case.
CRON_PATTERN = rf"^(({'|'.join(MACROS)})|{_MINUTE} +{_HOUR} +{_DAY_OF_MONTH} +{_MONTH} +{_DAY_OF_WEEK})$"

CRON_HELP = (
    'must be a cron schedule in UTC: five fields "minute hour day-of-month month day-of-week"'
    ' such as "0 3 * * 0" (names in upper case: MON, JAN), or @hourly, @daily, @weekly, @monthly, @yearly'
)
