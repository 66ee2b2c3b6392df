"""Timestamps as the Kubernetes API writes them: RFC 3339, UTC, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def truncate(moment: datetime) -> datetime:
    """``moment`` in UTC to the whole second, as the API server stores timestamps."""
    return moment.astimezone(UTC).replace(microsecond=0)
