import re

import pytest

from perennial.api.schedule import CRON_PATTERN

CRON = re.compile(CRON_PATTERN)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * * 0",
        "*/15 * * * *",
        "0 0 1 * *",
        "30 2 * * MON-FRI",
        "0 9,17 * JAN,JUL *",
        "5 4 * * 7",
        "0 0-23/2 * * *",
        "@daily",
        "@hourly",
        "@weekly",
        "0  3 * * 0",
    ],
)
def test_accepts_kubernetes_cronjob_schedules(schedule: str) -> None:
    assert CRON.match(schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "* * *",
        "* * * * * *",
        "every day",
        "@fortnightly",
        "",
        "0 3 * * sun",
        "*/ * * * *",
    ],
)
def test_rejects_what_a_cron_parser_would(schedule: str) -> None:
    assert not CRON.match(schedule)
