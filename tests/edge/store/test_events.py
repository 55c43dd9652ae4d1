"""`edge.store.events` through `SQLiteStore`: audit events appended, checked and paged newest
first, on real SQLite files in a temporary directory."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    Event,
    NotFoundError,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.sources import NOW, counting_bytes

PRINCIPAL = {
    "id": "service_X",
    "subject": "clinic-a",
    "source": "API",
    "credential": {"id": "cr_Y", "uri": ""},
}


def ticking_clock() -> Callable[[], datetime]:
    """A clock that moves one millisecond a call, from NOW."""
    ticks = itertools.count()
    return lambda: NOW + timedelta(milliseconds=next(ticks))


def test_append_and_read_an_event(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path, clock=lambda: NOW, random_bytes=counting_bytes()) as store:
        event = store.append_event(
            "agent_session_start.v0",
            {"session": {"id": "ts_1"}, "agent_ip": "203.0.113.9", "os": "linux", "n": (1, 2)},
            principal=PRINCIPAL,
        )
        assert event == Event(
            id="ev_AEAQCAIBAEAQCAIBAEAQCAIBAE",
            account_id=DEFAULT_ACCOUNT_ID,
            event_type="agent_session_start.v0",
            timestamp=NOW,  # microseconds kept
            principal=PRINCIPAL,
            object={
                "session": {"id": "ts_1"},
                "agent_ip": "203.0.113.9",
                "os": "linux",
                "n": [1, 2],  # as JSON gives it back
            },
        )
        assert store.list_events() == [event]
    with sqlite3.connect(path) as raw:
        (timestamp,) = raw.execute("SELECT timestamp FROM events").fetchone()
    assert timestamp == "2025-03-14T15:09:26.535897Z"


def test_events_list_newest_first_with_filters_and_paging(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=ticking_clock()) as store:
        other = {**PRINCIPAL, "id": "service_Z"}
        made = [
            store.append_event("agent_session_start.v0", {"i": 0}, principal=PRINCIPAL),
            store.append_event("agent_session_start.v0", {"i": 1}, principal=other),
            store.append_event("agent_session_stop.v0", {"i": 2}, principal=PRINCIPAL),
            store.append_event("tunnel_credential_created.v0", {"i": 3}, principal=None),
            store.append_event("agent_session_stop.v0", {"i": 4}, principal=other),
        ]
        newest_first = made[::-1]
        assert store.list_events() == newest_first
        assert store.list_events(limit=2) == newest_first[:2]
        assert store.list_events(limit=2, before_id=newest_first[1].id) == newest_first[2:4]
        assert store.list_events(before_id=made[0].id) == []
        assert store.list_events(event_type="agent_session_stop.v0") == [made[4], made[2]]
        assert store.list_events(principal_id="service_X") == [made[2], made[0]]
        assert store.list_events(principal_id="service_Z", event_type="agent_session_start.v0") == [
            made[1]
        ]
        assert store.list_events(event_type="agent_session_start.v0", before_id=made[1].id) == [
            made[0]
        ]
        assert store.list_events(account_id=DEFAULT_ACCOUNT_ID) == newest_first
        assert store.list_events(account_id="acct_none") == []
        assert store.list_events(event_type="nothing.v0") == []


def test_paging_walks_every_event_once_even_within_one_timestamp(tmp_path: Path) -> None:
    # Every event in the same microsecond: order must come from the sequence, not the clock.
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as store:
        made = [store.append_event("x.v0", {"i": i}, principal=None) for i in range(23)]
        seen: list[Event] = []
        page = store.list_events(limit=5)
        while page:
            seen.extend(page)
            page = store.list_events(limit=5, before_id=page[-1].id)
        assert seen == made[::-1]


def test_event_bad_input(store: SQLiteStore) -> None:
    for bad_type in [
        "",
        "Agent.v0",
        "agent_session_start",
        "a.v",
        "a b.v0",
        "a.v0\n",
        7,
        "a" * 200 + ".v0",
    ]:
        with pytest.raises(StoreError, match=r"is not of the form 'name\.v0'"):
            store.append_event(bad_type, {}, principal=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event object must be a JSON object"):
        store.append_event("a.v0", [1], principal=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event principal must be a JSON object"):
        store.append_event("a.v0", {}, principal="service_X")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event object is not JSON"):
        store.append_event("a.v0", {"when": datetime.now(UTC)}, principal=None)
    with pytest.raises(StoreError, match="event object is not JSON"):
        store.append_event("a.v0", {"x": float("nan")}, principal=None)
    with pytest.raises(StoreError, match="principal id must be a string"):
        store.append_event("a.v0", {}, principal={"id": 7})
    with pytest.raises(StoreError, match="the limit is 65536"):
        store.append_event("a.v0", {"big": "x" * 65536}, principal=None)
    with pytest.raises(StoreError, match="acct_nobody"):
        store.append_event("a.v0", {}, principal=None, account_id="acct_nobody")
    assert store.list_events() == []
    for bad_limit in [0, -1, 1001, True, 2.5]:
        with pytest.raises(StoreError, match="limit must be from 1 to 1000"):
            store.list_events(limit=bad_limit)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no event 'ev_nope'"):
        store.list_events(before_id="ev_nope")


def test_events_outlive_the_principal_they_name(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    event = store.append_event(
        "agent_session_start.v0", {}, principal={"id": user.id, "subject": user.name}
    )
    store.delete_service_user(user.id)
    assert store.list_events(principal_id=user.id) == [event]
