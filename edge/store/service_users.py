"""The SQLite backend's service user rows: SQL for the principals that own credentials and API
keys, and the cascade that deleting one runs.

`SQLiteStore` calls these with its connection, inside its lock (and, for writes, inside one
`BEGIN IMMEDIATE` transaction), so each function is one short, consistent step. The store checks
values before any SQL runs: a refused value writes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime

from edge.store import credentials
from edge.store.checks import _check_name_free
from edge.store.errors import StoreError
from edge.store.records import DeletedServiceUser, ServiceUser
from edge.store.rows import _SERVICE_USER_COLUMNS, _filters, _service_user_from_row
from edge.timestamps import rfc3339


def insert(connection: sqlite3.Connection, service_user: ServiceUser) -> None:
    """Store a new service user after checking its name is free in its account (`ConflictError`
    if not); `StoreError` if SQLite refuses it."""
    account_id = service_user.account_id
    _check_name_free(connection, account_id, service_user.name)
    try:
        connection.execute(
            "INSERT INTO service_users (id, account_id, name, active, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                service_user.id,
                account_id,
                service_user.name,
                int(service_user.active),
                rfc3339(service_user.created_at),
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot create a service user in account {account_id!r}: {exc}") from exc


def select(connection: sqlite3.Connection, service_user_id: str) -> ServiceUser | None:
    row = connection.execute(
        f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users WHERE id = ?",
        (service_user_id,),
    ).fetchone()
    return None if row is None else _service_user_from_row(row)


def select_all(connection: sqlite3.Connection, account_id: str | None) -> list[ServiceUser]:
    """Newest first, in one account unless `account_id` is None."""
    where, params = _filters(("account_id", account_id))
    rows = connection.execute(
        f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users{where} ORDER BY rowid DESC",
        params,
    ).fetchall()
    return [_service_user_from_row(row) for row in rows]


def update(
    connection: sqlite3.Connection,
    service_user_id: str,
    *,
    name: str | None,
    active: bool | None,
) -> ServiceUser | None:
    """Change the name and/or `active` (None keeps one); a new name must be free in the account
    (`ConflictError`). None if there is no such service user."""
    current = select(connection, service_user_id)
    if current is None:
        return None
    if name is not None and name != current.name:
        _check_name_free(connection, current.account_id, name)
    updated = replace(
        current,
        name=current.name if name is None else name,
        active=current.active if active is None else active,
    )
    connection.execute(
        "UPDATE service_users SET name = ?, active = ? WHERE id = ?",
        (updated.name, int(updated.active), service_user_id),
    )
    return updated


def delete(
    connection: sqlite3.Connection, service_user_id: str, now: datetime
) -> DeletedServiceUser | None:
    """Delete a service user and everything it owns, its credentials remembered as revoked;
    None if there is no such service user."""
    row = connection.execute(
        f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users WHERE id = ?",
        (service_user_id,),
    ).fetchone()
    if row is None:
        return None
    credential_ids = connection.execute(
        "SELECT id FROM credentials WHERE owner_id = ? ORDER BY rowid", (service_user_id,)
    ).fetchall()
    api_key_ids = connection.execute(
        "SELECT id FROM api_keys WHERE owner_id = ? ORDER BY rowid", (service_user_id,)
    ).fetchall()
    credentials.tombstone(connection, "WHERE owner_id = ?", (service_user_id,), now)
    # ON DELETE CASCADE removes the credentials and API keys in the same statement.
    connection.execute("DELETE FROM service_users WHERE id = ?", (service_user_id,))
    return DeletedServiceUser(
        service_user=_service_user_from_row(row),
        credential_ids=tuple(str(r[0]) for r in credential_ids),
        api_key_ids=tuple(str(r[0]) for r in api_key_ids),
    )
