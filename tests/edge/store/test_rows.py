"""`edge.store.rows`: SQLite rows to records, and `WHERE` filters built from the given values."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from edge.store import ApiKey, Credential, Event, ServiceUser
from edge.store.rows import (
    _api_key_from_row,
    _credential_from_row,
    _event_from_row,
    _filters,
    _service_user_from_row,
)


def test_filters_skip_the_values_not_given() -> None:
    assert _filters(("account_id", None), ("owner_id", None)) == ("", ())
    assert _filters(("account_id", "acct_a"), ("owner_id", None)) == (
        " WHERE account_id = ?",
        ("acct_a",),
    )
    assert _filters(("account_id", "acct_a"), ("owner_id", "service_b")) == (
        " WHERE account_id = ? AND owner_id = ?",
        ("acct_a", "service_b"),
    )


def test_filters_select_the_rows_sqlite_finds() -> None:
    # Values go in as parameters, never into the SQL text: a quote in one is just a value.
    with sqlite3.connect(":memory:") as raw:
        raw.execute("CREATE TABLE t (a TEXT, b TEXT)")
        raw.executemany("INSERT INTO t VALUES (?, ?)", [("x", "1"), ("x", "2"), ("y'", "1")])
        clause, params = _filters(("a", "x"), ("b", None))
        assert raw.execute(f"SELECT b FROM t{clause} ORDER BY b", params).fetchall() == [
            ("1",),
            ("2",),
        ]
        clause, params = _filters(("a", "y'"), ("b", "1"))
        assert raw.execute(f"SELECT a FROM t{clause}", params).fetchall() == [("y'",)]


def test_a_credential_row_decodes() -> None:
    row = (
        "cr_A",
        "acct_default",
        "2025-01-02T03:04:05Z",
        "box",
        '{"site": 7}',
        '["bind:a.test", "bind:*.b.test"]',
        1,
        None,
        3,
        None,
    )
    assert _credential_from_row(row) == Credential(
        id="cr_A",
        account_id="acct_default",
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        description="box",
        metadata='{"site": 7}',
        acl=("bind:a.test", "bind:*.b.test"),
        active=True,
        owner_id=None,
        max_sessions=3,
        max_endpoints=None,
    )
    owned = _credential_from_row((*row[:6], 0, "service_A", None, 5))
    assert (owned.active, owned.owner_id, owned.max_sessions, owned.max_endpoints) == (
        False,
        "service_A",
        None,
        5,
    )


def test_service_user_and_api_key_rows_decode() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _service_user_from_row(
        ("service_A", "acct_default", "clinic-a", 0, "2025-01-02T03:04:05Z")
    ) == ServiceUser(
        id="service_A", account_id="acct_default", name="clinic-a", active=False, created_at=when
    )
    assert _api_key_from_row(
        ("ak_A", "acct_default", "2025-01-02T03:04:05Z", "ci", "", "service_A")
    ) == ApiKey(
        id="ak_A",
        account_id="acct_default",
        created_at=when,
        description="ci",
        metadata="",
        owner_id="service_A",
    )


def test_an_event_row_decodes_with_microseconds_and_json() -> None:
    row = (
        "ev_A",
        "acct_default",
        "agent_session_start.v0",
        "2025-03-14T15:09:26.535897Z",
        '{"id":"service_X"}',
        '{"n":[1,2]}',
    )
    assert _event_from_row(row) == Event(
        id="ev_A",
        account_id="acct_default",
        event_type="agent_session_start.v0",
        timestamp=datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC),
        principal={"id": "service_X"},
        object={"n": [1, 2]},
    )
    assert _event_from_row((*row[:4], None, "{}")).principal is None
