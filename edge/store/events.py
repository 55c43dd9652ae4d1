"""The SQLite backend's audit events: checking and encoding an event, and the SQL that appends
one and pages through them newest first.

`SQLiteStore` calls the SQL functions with its connection, inside its lock. `encode` and
`check_limit` run before any SQL: a refused value writes nothing.
"""

from __future__ import annotations

import sqlite3

from edge.store.checks import _event_json
from edge.store.errors import NotFoundError, StoreError
from edge.store.records import (
    _EVENT_TYPE_MAX_LENGTH,
    _EVENT_TYPE_RE,
    EVENT_LIST_MAX,
    EVENT_MAX_BYTES,
    Event,
    JsonObject,
)
from edge.store.rows import _EVENT_COLUMNS, _event_from_row, _filters
from edge.timestamps import rfc3339_micro


def encode(
    event_type: str, event_object: JsonObject, principal: JsonObject | None
) -> tuple[str, str | None, str | None]:
    """`(object JSON, principal JSON, principal id)` for an event, or `StoreError` saying what
    is wrong: the type's form, JSON that is not an object or not JSON, the size, the id."""
    if not isinstance(event_type, str) or not (
        len(event_type) <= _EVENT_TYPE_MAX_LENGTH and _EVENT_TYPE_RE.fullmatch(event_type)
    ):
        raise StoreError(
            f"event type {event_type!r} is not of the form 'name.v0' (lower-case letters, "
            "digits and '_', then a version), e.g. 'agent_session_start.v0'"
        )
    object_json = _event_json("object", event_object)
    principal_json = None if principal is None else _event_json("principal", principal)
    size = len(object_json) + len(principal_json or "")
    if size > EVENT_MAX_BYTES:
        raise StoreError(
            f"event {event_type} is {size} bytes of JSON; the limit is {EVENT_MAX_BYTES}"
        )
    principal_id = None if principal is None else principal.get("id")
    if principal_id is not None and not isinstance(principal_id, str):
        raise StoreError(f"event principal id must be a string, not {principal_id!r}")
    return object_json, principal_json, principal_id


def insert(
    connection: sqlite3.Connection,
    event: Event,
    *,
    principal_id: str | None,
    principal_json: str | None,
    object_json: str,
) -> None:
    """Append one event (the JSON from `encode`); `StoreError` if SQLite refuses it."""
    try:
        connection.execute(
            "INSERT INTO events (id, account_id, event_type, timestamp, principal_id,"
            " principal, object) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.id,
                event.account_id,
                event.event_type,
                rfc3339_micro(event.timestamp),
                principal_id,
                principal_json,
                object_json,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot record an event in account {event.account_id!r}: {exc}") from exc


def check_limit(limit: int) -> None:
    """`StoreError` unless `limit` is a whole number from 1 to `EVENT_LIST_MAX`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= EVENT_LIST_MAX:
        raise StoreError(f"event limit must be from 1 to {EVENT_LIST_MAX}, not {limit!r}")


def select_page(
    connection: sqlite3.Connection,
    *,
    limit: int,
    before_id: str | None,
    event_type: str | None,
    principal_id: str | None,
    account_id: str | None,
) -> list[Event]:
    """Up to `limit` events, newest first, older than `before_id` if given (`NotFoundError` if
    there is no such event), filtered by the other arguments that are not None."""
    where, params = _filters(
        ("event_type", event_type), ("principal_id", principal_id), ("account_id", account_id)
    )
    if before_id is not None:
        cursor_row = connection.execute(
            "SELECT seq FROM events WHERE id = ?", (before_id,)
        ).fetchone()
        if cursor_row is None:
            raise NotFoundError(f"no event {before_id!r} to list events before")
        where += (" AND" if where else " WHERE") + " seq < ?"
        params = (*params, cursor_row[0])
    rows = connection.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY seq DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_event_from_row(row) for row in rows]
