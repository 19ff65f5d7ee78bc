"""Wake-up times: local wall times, DST gaps and repeats, and the schedules made from them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from pms_connector.wakeups import parse_at, schedule_at, schedule_name, wake_instant

MADRID, NEW_YORK = ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("zone", "local", "expected"), [
    (MADRID, "2026-07-01T07:00:00", "2026-07-01T05:00:00"),        # summer, UTC+2
    (MADRID, "2026-03-29T02:30:00", "2026-03-29T01:30:00"),        # spring gap: the wall clock after the jump (03:30)
    (MADRID, "2026-10-25T02:30:00", "2026-10-25T00:30:00"),        # autumn repeat: the first 02:30 (UTC+2)
    (NEW_YORK, "2026-03-08T02:30:00", "2026-03-08T07:30:00"),      # spring gap in New York -> 03:30 EDT
    (NEW_YORK, "2026-11-01T01:30:00", "2026-11-01T05:30:00"),      # the first 01:30 (EDT)
])
def test_wake_instants_follow_the_property_zone(zone: ZoneInfo, local: str, expected: str) -> None:
    assert wake_instant(local, zone) == utc(expected)


def test_schedules_use_the_property_zone_except_in_dst_transition_hours() -> None:
    assert schedule_at(utc("2026-07-01T04:50:00"), MADRID) == ("at(2026-07-01T06:50:00)", "Europe/Madrid")
    # 00:30 UTC on the autumn day is the first 02:30 in Madrid, a wall time that happens twice: UTC is exact.
    assert schedule_at(utc("2026-10-25T00:30:00"), MADRID) == ("at(2026-10-25T00:30:00)", "UTC")
    assert schedule_at(utc("2026-10-25T01:30:00"), MADRID) == ("at(2026-10-25T01:30:00)", "UTC")  # the second
    assert schedule_at(utc("2026-11-01T06:20:00"), NEW_YORK) == ("at(2026-11-01T06:20:00)", "UTC")
    assert schedule_at(utc("2026-11-01T07:20:45"), NEW_YORK) == ("at(2026-11-01T02:20:00)", "America/New_York")


def test_the_local_scheduler_skips_gap_times_and_runs_repeated_ones_once_as_documented() -> None:
    assert parse_at("at(2026-03-29T02:30:00)", "Europe/Madrid") is None          # does not exist: skipped
    assert parse_at("at(2026-10-25T02:30:00)", "Europe/Madrid") == utc("2026-10-25T00:30:00")  # first only
    assert parse_at("at(2026-03-08T02:15:00)", "America/New_York") is None
    assert parse_at("at(2026-07-01T06:50:00)", "Europe/Madrid") == utc("2026-07-01T04:50:00")
    with pytest.raises(ValueError, match="not a one-time"):
        parse_at("rate(1 minute)", "UTC")
    with pytest.raises(ValueError, match="day is out of range"):
        parse_at("at(2026-02-30T07:00:00)", "UTC")
    with pytest.raises(ZoneInfoNotFoundError):
        parse_at("at(2026-07-01T07:00:00)", "Mars/Olympus")


@pytest.mark.parametrize(("zone", "day"), [(MADRID, "2026-03-29"), (MADRID, "2026-10-25"),
                                         (NEW_YORK, "2026-03-08"), (NEW_YORK, "2026-11-01")])
def test_every_instant_around_a_dst_change_is_scheduled_to_fire_at_that_instant(zone: ZoneInfo, day: str) -> None:
    """Round trip through what the Scheduler does with the expression: never skipped, never an hour off."""
    from datetime import timedelta

    start = utc(f"{day}T00:00:00")
    for step in range(0, 12 * 60, 7):
        instant = start + timedelta(minutes=step, seconds=13)
        expression, timezone = schedule_at(instant, zone)
        assert parse_at(expression, timezone) == instant.replace(second=0), (instant, expression, timezone)


def test_schedule_names_are_stable_distinct_and_valid() -> None:
    import re

    name = schedule_name("demo-hotel", "12345", "at_risk")
    assert name == schedule_name("demo-hotel", "12345", "at_risk")
    assert name != schedule_name("demo-hotel", "12346", "at_risk") != schedule_name("demo-hotel", "12345", "result")
    long = schedule_name("a" * 63, "x" * 500, "result")
    for candidate in (name, long, schedule_name("h", "uid with spaces/and:colons", "result")):
        assert re.fullmatch(r"[0-9a-zA-Z_.-]{1,64}", candidate), candidate
