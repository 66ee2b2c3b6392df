"""Cron schedules (UTC): parsing and the next firing, against hand-computed datetimes.

Anchor: 2026-11-26 is a Thursday, so 2026-11-27 is a Friday, 2026-11-29 a Sunday and
2026-11-30 a Monday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from perennial.domain.cron import InvalidScheduleError, parse

# ---------------------------------------------------------------- helpers
THURSDAY = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)  # Thursday 10:30 UTC


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def next_after(expression: str, moment: datetime) -> datetime:
    return parse(expression).next_after(moment)


# ---------------------------------------------------------------- next firing
NEXT_FIRINGS = [
    # (expression, after, expected first firing strictly after)
    pytest.param("* * * * *", THURSDAY, at(2026, 11, 26, 10, 31), id="every-minute-strictly-after"),
    pytest.param("* * * * *", at(2026, 11, 26, 10, 30, 45), at(2026, 11, 26, 10, 31), id="seconds-dropped"),
    pytest.param("0 * * * *", at(2026, 11, 26, 11), at(2026, 11, 26, 12), id="exact-firing-is-not-after-itself"),
    pytest.param("30 10 * * *", THURSDAY, at(2026, 11, 27, 10, 30), id="same-minute-moves-to-tomorrow"),
    pytest.param("30 10 * * *", at(2026, 11, 26, 10, 29, 59), at(2026, 11, 26, 10, 30), id="one-second-before"),
    pytest.param("*/15 * * * *", THURSDAY, at(2026, 11, 26, 10, 45), id="step-minutes"),
    pytest.param("*/15 * * * *", at(2026, 11, 26, 10, 50), at(2026, 11, 26, 11, 0), id="step-minutes-next-hour"),
    pytest.param("10-50/20 * * * *", THURSDAY, at(2026, 11, 26, 10, 50), id="stepped-range"),
    pytest.param("10-50/20 * * * *", at(2026, 11, 26, 10, 50), at(2026, 11, 26, 11, 10), id="stepped-range-wraps"),
    pytest.param("0 0-23/2 * * *", THURSDAY, at(2026, 11, 26, 12), id="stepped-hours"),
    pytest.param("0 9,17 * * *", THURSDAY, at(2026, 11, 26, 17), id="hour-list"),
    pytest.param("0 9,17 * * *", at(2026, 11, 26, 17), at(2026, 11, 27, 9), id="hour-list-next-day"),
    pytest.param("30 2 * * MON-FRI", THURSDAY, at(2026, 11, 27, 2, 30), id="weekdays-friday"),
    pytest.param("30 2 * * MON-FRI", at(2026, 11, 27, 10), at(2026, 11, 30, 2, 30), id="weekdays-skip-weekend"),
    pytest.param("0 3 * * 0", THURSDAY, at(2026, 11, 29, 3), id="sunday-as-0"),
    pytest.param("0 3 * * 7", THURSDAY, at(2026, 11, 29, 3), id="sunday-as-7"),
    pytest.param("0 3 * * SUN", THURSDAY, at(2026, 11, 29, 3), id="sunday-by-name"),
    pytest.param("0 0 * * MON", THURSDAY, at(2026, 11, 30), id="only-day-of-week-restricted"),
    pytest.param("0 9 * JAN,JUL *", THURSDAY, at(2027, 1, 1, 9), id="month-names-year-rollover"),
    pytest.param("0 9 1 JUL *", THURSDAY, at(2027, 7, 1, 9), id="single-month-name"),
    pytest.param("0 0 1 * *", THURSDAY, at(2026, 12, 1), id="first-of-month"),
    pytest.param("0 0 1 * *", at(2026, 12, 15), at(2027, 1, 1), id="first-of-month-year-rollover"),
    pytest.param("59 23 31 12 *", at(2026, 12, 31, 23, 59), at(2027, 12, 31, 23, 59), id="new-years-eve-next-year"),
    pytest.param("0 0 31 * *", THURSDAY, at(2026, 12, 31), id="31st"),
    pytest.param("0 0 31 * *", at(2027, 1, 31, 1), at(2027, 3, 31), id="31st-skips-february"),
    pytest.param("0 0 29 2 *", THURSDAY, at(2028, 2, 29), id="feb-29-next-leap-year"),
    pytest.param("0 0 29 2 *", at(2028, 2, 29), at(2032, 2, 29), id="feb-29-after-a-leap-day"),
    # Vixie: both day fields restricted -> a day matches if either does.
    pytest.param("0 0 13 * FRI", THURSDAY, at(2026, 11, 27), id="either-day-field-friday"),
    pytest.param("0 0 13 * FRI", at(2026, 12, 12), at(2026, 12, 13), id="either-day-field-13th-a-sunday"),
    pytest.param("0 12 1 * MON", THURSDAY, at(2026, 11, 30, 12), id="either-day-field-monday"),
    pytest.param("0 12 1 * MON", at(2026, 11, 30, 12), at(2026, 12, 1, 12), id="either-day-field-1st-a-tuesday"),
    # Macros.
    pytest.param("@hourly", THURSDAY, at(2026, 11, 26, 11), id="@hourly"),
    pytest.param("@daily", THURSDAY, at(2026, 11, 27), id="@daily"),
    pytest.param("@midnight", THURSDAY, at(2026, 11, 27), id="@midnight"),
    pytest.param("@weekly", THURSDAY, at(2026, 11, 29), id="@weekly-sunday"),
    pytest.param("@monthly", THURSDAY, at(2026, 12, 1), id="@monthly"),
    pytest.param("@yearly", THURSDAY, at(2027, 1, 1), id="@yearly"),
    pytest.param("@annually", THURSDAY, at(2027, 1, 1), id="@annually"),
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT_FIRINGS)
def test_next_firing(expression: str, after: datetime, expected: datetime) -> None:
    assert next_after(expression, after) == expected


def test_next_firing_is_utc_for_an_aware_moment_in_another_zone() -> None:
    half_past_noon_in_utc_plus_2 = datetime(2026, 11, 26, 12, 30, tzinfo=timezone(timedelta(hours=2)))  # 10:30 UTC

    firing = next_after("0 11 * * *", half_past_noon_in_utc_plus_2)

    assert firing == at(2026, 11, 26, 11)
    assert firing.utcoffset() == timedelta(0)


def test_next_firing_is_a_whole_minute() -> None:
    firing = next_after("*/5 * * * *", datetime(2026, 11, 26, 10, 31, 59, 999_999, tzinfo=UTC))

    assert (firing.second, firing.microsecond) == (0, 0)
    assert firing == at(2026, 11, 26, 10, 35)


def test_feb_29_schedule_crosses_a_century_that_is_not_a_leap_year() -> None:
    assert next_after("0 0 29 2 *", at(2097, 1, 1)) == at(2104, 2, 29)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_date_that_never_exists_never_fires(expression: str) -> None:
    schedule = parse(expression)

    with pytest.raises(InvalidScheduleError):
        schedule.next_after(THURSDAY)


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        pytest.param("*/15 * * * *", "minutes", {0, 15, 30, 45}, id="minute-step"),
        pytest.param("10-50/20 * * * *", "minutes", {10, 30, 50}, id="minute-stepped-range"),
        pytest.param("1,2,5-7 * * * *", "minutes", {1, 2, 5, 6, 7}, id="minute-list-with-range"),
        pytest.param("0 0-23/2 * * *", "hours", set(range(0, 24, 2)), id="hour-stepped-range"),
        pytest.param("0 0 * JAN,JUL *", "months", {1, 7}, id="month-names"),
        pytest.param("0 0 * JAN-MAR *", "months", {1, 2, 3}, id="month-name-range"),
        pytest.param("0 0 * * MON-FRI", "days_of_week", {1, 2, 3, 4, 5}, id="weekday-names"),
        pytest.param("0 0 * * 7", "days_of_week", {0, 7}, id="7-is-sunday"),
        pytest.param("0 0 * * SAT,SUN", "days_of_week", {6, 0}, id="weekend-names"),
    ],
)
def test_parse_fields(expression: str, field: str, expected: set[int]) -> None:
    assert getattr(parse(expression), field) == frozenset(expected)


@pytest.mark.parametrize(
    ("expression", "day_of_month_restricted", "day_of_week_restricted"),
    [
        ("0 0 * * *", False, False),
        ("0 0 13 * *", True, False),
        ("0 0 * * FRI", False, True),
        ("0 0 13 * FRI", True, True),
    ],
)
def test_parse_records_which_day_fields_are_restricted(
    expression: str, day_of_month_restricted: bool, day_of_week_restricted: bool
) -> None:
    schedule = parse(expression)

    assert schedule.day_of_month_restricted is day_of_month_restricted
    assert schedule.day_of_week_restricted is day_of_week_restricted


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_macros_are_their_five_field_forms(macro: str, expanded: str) -> None:
    assert parse(macro) == parse(expanded)


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("", id="empty"),
        pytest.param("* * * *", id="four-fields"),
        pytest.param("* * * * * *", id="six-fields"),
        pytest.param("every day", id="prose"),
        pytest.param("@fortnightly", id="unknown-macro"),
        pytest.param("61 * * * *", id="minute-61"),
        pytest.param("60 * * * *", id="minute-60"),
        pytest.param("* 24 * * *", id="hour-24"),
        pytest.param("* * 0 * *", id="day-of-month-0"),
        pytest.param("* * 32 * *", id="day-of-month-32"),
        pytest.param("* * * 0 *", id="month-0"),
        pytest.param("* * * 13 *", id="month-13"),
        pytest.param("* * * * 8", id="day-of-week-8"),
        pytest.param("*/0 * * * *", id="step-0"),
        pytest.param("5-1 * * * *", id="reversed-range"),
        pytest.param("0 0 * * FRI-MON", id="reversed-name-range"),
        pytest.param("0 3 * * sun", id="lower-case-name"),
        pytest.param("JAN * * * *", id="name-in-wrong-field"),
        pytest.param("a b c d e", id="garbage"),
    ],
)
def test_invalid_expressions_raise(expression: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse(expression)


def test_invalid_schedule_error_names_the_expression() -> None:
    with pytest.raises(InvalidScheduleError, match="61"):
        parse("61 * * * *")


@pytest.mark.parametrize("expression", ["1- * * * *", "5/ * * * *"])
def test_dangling_range_or_step_is_invalid(expression: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse(expression)
