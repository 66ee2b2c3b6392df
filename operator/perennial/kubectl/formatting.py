"""Small text helpers of the screens: ages, numbers, bounds and aligned tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from perennial.domain.text import shorten
from perennial.domain.timeutil import format_time

NONE = "-"


def span(delta: timedelta) -> str:
    """A coarse duration, as kubectl prints ages: 45s, 12m, 3h20m, 2d4h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return NONE
    if moment > now:
        return f"in {span(moment - now)}"
    return f"{span(now - moment)} ago"


def span_since(moment: datetime, now: datetime) -> str:
    return span(now - moment)


def when(moment: datetime | None, now: datetime) -> str:
    """A timestamp and how far it is from now: ``2026-11-20T03:00:00Z (in 5h)``."""
    if moment is None:
        return NONE
    return f"{format_time(moment)} ({ago(moment, now)})"


def number(value: float | None) -> str:
    if value is None:
        return NONE
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def bounds(minimum: float | None, maximum: float | None) -> str:
    """The healthy range in the API's one vocabulary: ``>= 0.85``, ``<= 0.2`` or ``[0.85, 0.95]``."""
    if minimum is not None and maximum is not None:
        return f"[{number(minimum)}, {number(maximum)}]"
    if minimum is not None:
        return f">= {number(minimum)}"
    if maximum is not None:
        return f"<= {number(maximum)}"
    return NONE


def metrics_text(metrics: Mapping[str, float] | None, first: Sequence[str] = (), limit: int = 3) -> str:
    """``auc=0.934 loss=0.21``: the metrics named in ``first`` (the ones the spec gates or
    compares on), then the others by name, at most ``limit`` and a count of the rest."""
    if not metrics:
        return NONE
    names = [n for n in first if n in metrics]
    names += sorted(n for n in metrics if n not in names)
    shown = " ".join(f"{n}={number(metrics[n])}" for n in names[:limit])
    rest = len(names) - limit
    return shown + (f" (+{rest})" if rest > 0 else "")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Columns aligned like kubectl's (three spaces apart); the last column is never padded."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append((indent + "   ".join([*cells, str(row[-1])])).rstrip())
    return lines


def clip(text: str | None, limit: int) -> str:
    return shorten(text, limit) if text else NONE
