"""Durations in the Go/Prometheus form every Perennial field uses: ``30s``, ``10m``, ``1h30m``.

The CRD schemas validate the format at apply time; this module turns the strings into
``timedelta`` for the controllers and back into the canonical string for status.
"""

from __future__ import annotations

import re
from datetime import timedelta

# Units largest first; a duration names each at most once, in this order, so that Go's
# time.ParseDuration, CEL's duration() and Prometheus all read it the same way.
_UNITS = {
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_PART = re.compile(r"([0-9]+)(ms|h|m|s)")
_N = "[0-9]{1,6}"
# Also the `pattern` the CRD schemas use, so the API server and the operator agree.
DURATION_PATTERN = rf"^(0|{_N}h({_N}m)?({_N}s)?({_N}ms)?|{_N}m({_N}s)?({_N}ms)?|{_N}s({_N}ms)?|{_N}ms)$"
DURATION_HELP = "must be a duration such as 30s, 10m, 6h or 1h30m (units h, m, s, ms, largest first)"
_DURATION = re.compile(DURATION_PATTERN)


class InvalidDurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``-style text; raise InvalidDurationError naming the text on anything else."""
    if not _DURATION.match(text):
        raise InvalidDurationError(f"invalid duration {text!r}: {DURATION_HELP}")
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
