"""Standard 5-field cron expressions, evaluated by APScheduler 3's CronTrigger.

Two differences between crontab and APScheduler 3 would make a schedule fire on other days
than its author meant, so they are settled here, once, for validation and scheduling alike:

- APScheduler 3 numbers weekdays from Monday = 0; crontab from Sunday = 0 (and 7). The
  day-of-week field is rewritten to day names, which both read the same way.
- crontab fires when day-of-month OR day-of-week matches (when both are restricted);
  APScheduler fires only when both match. Expressions restricting both are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

_PROBE_START = datetime(2024, 1, 1, tzinfo=UTC)
_PROBE_END = datetime(2032, 12, 31, 23, 59, tzinfo=UTC)
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = "minute hour day-of-month month day-of-week"


def _weekday(token: str) -> int:
    """A crontab weekday as 0-7 (0 and 7 are Sunday), from a number or a name."""
    lowered = token.lower()
    if lowered in _DAY_NAMES:
        return _DAY_NAMES.index(lowered)
    if lowered.isdigit() and int(lowered) <= 7:
        return int(lowered)
    raise ValueError(
        f"day of week {token!r} is not 0-7 (0 and 7 are Sunday) or a name from sun to sat"
    )


def _weekdays(field: str) -> set[int]:
    """The days (0 = Sunday … 6 = Saturday) a crontab day-of-week field selects."""
    days: set[int] = set()
    for item in field.split(","):
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{item!r}: the step after '/' must be a positive number")
            step = int(step_text)
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _weekday(first), _weekday(last)
            if low > high:
                raise ValueError(f"{span!r} runs backwards: write the earlier day first")
        else:
            low = _weekday(span)
            high = 6 if slash else low
        days.update(day % 7 for day in range(low, high + 1, step))
    return days


@lru_cache(maxsize=4096)
def cron_trigger(expression: str, zone: str = "UTC") -> CronTrigger:
    """The trigger that fires on a crontab expression, in the IANA time zone `zone` (UTC
    unless a declaration names one: a daemon's local time zone must not change when a
    declaration runs). Raises ValueError with a message for the user."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"it has {len(fields)} fields; a cron expression has 5: {_FIELDS}")
    minute, hour, day, month, day_of_week = fields
    if day != "*" and day_of_week != "*":
        raise ValueError(
            "it restricts both day-of-month and day-of-week; cron would run when either "
            "matches, which is rarely what is meant: restrict only one of them"
        )
    if day_of_week != "*":
        days = _weekdays(day_of_week)
        # Monday-first order: the order APScheduler names them in.
        day_of_week = ",".join(_DAY_NAMES[d] for d in sorted(days, key=lambda d: (d - 1) % 7))
    fields_of = {"minute": minute, "hour": hour, "day": day, "month": month,
                 "day_of_week": day_of_week}
    # A schedule that never fires (`0 0 31 2 *`) sends APScheduler searching to the year
    # 9999, a second of work at every look: refused. Nine years from a leap year hold every
    # day a valid schedule can name.
    probe = CronTrigger(**fields_of, timezone="UTC", start_date=_PROBE_START, end_date=_PROBE_END)
    if probe.get_next_fire_time(None, _PROBE_START) is None:
        raise ValueError("it never fires: no month has the day it names")
    return CronTrigger(**fields_of, timezone=zone)


def check_zone(value: str) -> str:
    """`value` when it names an IANA time zone, or ValueError saying it does not."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
        raise ValueError(f"{shown} is not a known IANA time zone, e.g. Europe/Berlin or UTC"
                         ) from None
    return value


def check_cron(value: str) -> str:
    """`value` normalised to single spaces, or ValueError naming what is wrong."""
    normalised = " ".join(value.split())
    try:
        cron_trigger(normalised)
    except ValueError as err:
        shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
        reason = str(err) if len(str(err)) <= 200 else str(err)[:199] + "…"
        raise ValueError(f"{shown} is not a valid cron expression: {reason}") from None
    return normalised
