"""Cron expressions fire when crontab would fire them: weekday 1 is Monday, 0 and 7 are
Sunday, in UTC, whatever the machine's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.declarations.fields import cron_trigger

START = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def fire_times(expression: str, count: int) -> list[datetime]:
    trigger = cron_trigger(expression)
    found: list[datetime] = []
    previous = None
    now = START
    for _ in range(count):
        fired = trigger.get_next_fire_time(previous, now)
        assert fired is not None
        found.append(fired)
        previous, now = fired, fired + timedelta(seconds=1)
    return found


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 3 * * 1", ["Mon"]),
        ("0 3 * * 0", ["Sun"]),
        ("0 3 * * 7", ["Sun"]),
        ("0 3 * * 1-5", ["Fri", "Mon", "Thu", "Tue", "Wed"]),
        ("0 3 * * 5-7", ["Fri", "Sat", "Sun"]),
        ("0 3 * * */2", ["Sat", "Sun", "Thu", "Tue"]),
        ("0 3 * * sat,SUN", ["Sat", "Sun"]),
        ("0 3 * * *", ["Fri", "Mon", "Sat", "Sun", "Thu", "Tue", "Wed"]),
    ],
)
def test_weekdays_as_crontab_reads_them(expression: str, days: list[str]) -> None:
    fired = fire_times(expression, 14)
    assert sorted({f.strftime("%a") for f in fired}) == days
    assert all((f.hour, f.minute, f.tzinfo) == (3, 0, UTC) for f in fired)


def test_minutes_and_months() -> None:
    assert [f.strftime("%H:%M") for f in fire_times("*/20 9 * * *", 3)] == [
        "09:00", "09:20", "09:40"]
    assert [f.strftime("%m-%d") for f in fire_times("0 0 1 jan,jul *", 2)] == ["01-01", "07-01"]


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "15 3 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused(expression: str) -> None:
    """APScheduler would search up to the year 9999 for it, a second at every look."""
    with pytest.raises(ValueError, match="it never fires: no month has the day it names"):
        cron_trigger(expression)


def test_the_twenty_ninth_of_february_fires_in_leap_years() -> None:
    trigger = cron_trigger("0 0 29 2 *")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, start) == datetime(2028, 2, 29, tzinfo=UTC)
