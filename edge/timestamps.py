"""Timestamps as the edge writes them: RFC 3339 in UTC with `Z`, as ngrok's API and events do."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """To the second, as ngrok writes `created_at`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    """With microseconds, for event timestamps (events may share a second)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
