"""The SQLite backend's API key rows: SQL for the admin API's keys and the query
`SQLiteStore` looks a key up with.

`SQLiteStore` calls these with its connection, inside its lock (and, for writes, inside one
`BEGIN IMMEDIATE` transaction), so each function is one short, consistent step. The store checks
values before any SQL runs: a refused value writes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from edge.store.checks import _check_owner
from edge.store.errors import StoreError
from edge.store.records import ApiKey
from edge.store.rows import _API_KEY_COLUMNS, _api_key_from_row, _filters
from edge.timestamps import rfc3339

#: For `SQLiteStore._verify_token`: the API key, its token hash and its owner's `active` (None
#: without an owner) for one API key id.
AUTHENTICATE_QUERY = (
    f"SELECT {_API_KEY_COLUMNS}, k.token_hash, owner.active FROM api_keys AS k"
    " LEFT JOIN service_users AS owner ON owner.id = k.owner_id WHERE k.id = ?"
)


def insert(connection: sqlite3.Connection, api_key: ApiKey, token_hash: bytes) -> None:
    """Store a new API key after checking its owner; `StoreError` if SQLite refuses it."""
    account_id = api_key.account_id
    _check_owner(connection, api_key.owner_id, account_id, "API key")
    try:
        connection.execute(
            "INSERT INTO api_keys (id, account_id, created_at, description, metadata,"
            " owner_id, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                api_key.id,
                account_id,
                rfc3339(api_key.created_at),
                api_key.description,
                api_key.metadata,
                api_key.owner_id,
                token_hash,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot create an API key in account {account_id!r}: {exc}") from exc


def select(connection: sqlite3.Connection, api_key_id: str) -> ApiKey | None:
    row = connection.execute(
        f"SELECT {_API_KEY_COLUMNS} FROM api_keys AS k WHERE k.id = ?", (api_key_id,)
    ).fetchone()
    return None if row is None else _api_key_from_row(row)


def select_all(
    connection: sqlite3.Connection, account_id: str | None, owner_id: str | None
) -> list[ApiKey]:
    """Newest first, filtered by the account and owner that are not None."""
    where, params = _filters(("k.account_id", account_id), ("k.owner_id", owner_id))
    rows = connection.execute(
        f"SELECT {_API_KEY_COLUMNS} FROM api_keys AS k{where} ORDER BY k.rowid DESC",
        params,
    ).fetchall()
    return [_api_key_from_row(row) for row in rows]


def update(
    connection: sqlite3.Connection,
    api_key_id: str,
    *,
    description: str | None,
    metadata: str | None,
) -> ApiKey | None:
    """Change the description and/or metadata (None keeps one); None if no such id."""
    current = select(connection, api_key_id)
    if current is None:
        return None
    updated = replace(
        current,
        description=current.description if description is None else description,
        metadata=current.metadata if metadata is None else metadata,
    )
    connection.execute(
        "UPDATE api_keys SET description = ?, metadata = ? WHERE id = ?",
        (updated.description, updated.metadata, api_key_id),
    )
    return updated


def delete(connection: sqlite3.Connection, api_key_id: str) -> bool:
    """Delete one API key; False if there was none."""
    cursor = connection.execute("DELETE FROM api_keys WHERE id = ?", (api_key_id,))
    return cursor.rowcount > 0
