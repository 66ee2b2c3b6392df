from datetime import timedelta

import pytest

from perennial.api.durations import InvalidDurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta()),
        ("0s", timedelta()),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("6h", timedelta(hours=6)),
        ("1h30m", timedelta(minutes=90)),
        ("168h", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m30s500ms", timedelta(seconds=90.5)),
    ],
)
def test_parse_duration_accepts_go_durations_with_ordered_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10", "1.5h", "-5m", "5 m", "m", "10x", "1h 30m", "PT1H", "1d", "2w", "5s1h", "1h1h", "1234567s"]
)
def test_parse_duration_rejects_with_a_message_naming_the_value(text: str) -> None:
    with pytest.raises(InvalidDurationError, match=f"invalid duration {text!r}"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(), "0s"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1), "24h"),
        (timedelta(seconds=90.5), "1m30s500ms"),
    ],
)
def test_format_duration_is_canonical_and_round_trips(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(InvalidDurationError):
        format_duration(timedelta(seconds=-1))
