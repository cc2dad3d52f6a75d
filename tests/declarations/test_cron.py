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
