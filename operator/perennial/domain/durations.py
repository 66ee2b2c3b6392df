"""Durations in the Go/Prometheus form every Perennial field uses: ``30s``, ``10m``, ``1h30m``.

The CRD schemas validate the format at apply time; this module turns the strings into
``timedelta`` for the controllers and back into the canonical string for status.
"""

from __future__ import annotations

import re
from datetime import timedelta

# Units in the order Go's time.ParseDuration and Prometheus accept them, largest first.
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_PART = re.compile(r"(\d+)(ms|w|d|h|m|s)")
# Also the `pattern` the CRD schemas use, so the API server and the operator agree.
DURATION_PATTERN = r"^(0|(\d+(ms|w|d|h|m|s))+)$"
_DURATION = re.compile(DURATION_PATTERN)


class InvalidDurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``-style text; raise InvalidDurationError naming the text on anything else."""
    if not _DURATION.match(text):
        raise InvalidDurationError(
            f"invalid duration {text!r}: use a number with a unit (ms, s, m, h, d, w), e.g. 30s, 10m, 1h30m"
        )
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += int(amount) * _UNITS[unit]
    return total


def format_duration(value: timedelta) -> str:
    """The shortest canonical form: ``timedelta(minutes=90)`` -> ``1h30m``; zero -> ``0s``."""
    milliseconds = round(value.total_seconds() * 1000)
    if milliseconds < 0:
        raise InvalidDurationError(f"negative duration {value}")
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit in ("h", "m", "s", "ms"):
        size = round(_UNITS[unit].total_seconds() * 1000)
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
