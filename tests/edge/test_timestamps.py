"""`edge.timestamps`: RFC 3339 in UTC with `Z`, whatever zone the moment is given in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from edge.timestamps import rfc3339, rfc3339_micro

MOMENT = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def test_rfc3339_is_utc_to_the_second() -> None:
    assert rfc3339(MOMENT) == "2025-03-14T15:09:26Z"


def test_rfc3339_micro_keeps_microseconds() -> None:
    assert rfc3339_micro(MOMENT) == "2025-03-14T15:09:26.535897Z"
    assert rfc3339_micro(MOMENT.replace(microsecond=0)) == "2025-03-14T15:09:26.000000Z"


def test_another_zone_is_converted_to_utc() -> None:
    # 00:30 on the 15th in UTC+05:00 is 19:30 on the 14th in UTC: the date moves too.
    east = datetime(2025, 3, 15, 0, 30, 0, 7, tzinfo=timezone(timedelta(hours=5)))
    assert rfc3339(east) == "2025-03-14T19:30:00Z"
    assert rfc3339_micro(east) == "2025-03-14T19:30:00.000007Z"


def test_both_read_back_as_the_same_moment() -> None:
    assert datetime.fromisoformat(rfc3339_micro(MOMENT)) == MOMENT
    assert datetime.fromisoformat(rfc3339(MOMENT)) == MOMENT.replace(microsecond=0)
