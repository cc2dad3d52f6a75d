"""Task schedules in a time zone: fire times follow the zone's clock across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.declarations.cron import check_zone
from reconciler.plan import cron_fired, next_fire


def test_fire_follows_berlin_clock_across_dst() -> None:
    # 2026-03-29: Berlin moves from UTC+1 to UTC+2; 03:00 local is 02:00 UTC before, 01:00 after.
    anchor = datetime(2026, 3, 28, 3, 0, tzinfo=UTC)
    assert next_fire("0 3 * * *", anchor, anchor, "Europe/Berlin") == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC)
    assert cron_fired("0 3 * * *", anchor, datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                      "Europe/Berlin") == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert cron_fired("0 3 * * *", anchor, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) is None


def test_unknown_zone_refused() -> None:
    with pytest.raises(ValueError, match="not a known IANA time zone"):
        check_zone("Mars/Olympus")  # located form: tests/declarations/test_rules.py
