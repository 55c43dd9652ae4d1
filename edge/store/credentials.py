"""The SQLite backend's credential rows: SQL for authtokens, their revocation tombstones, and
the queries `SQLiteStore` looks a token up with.

`SQLiteStore` calls these with its connection, inside its lock (and, for writes, inside one
`BEGIN IMMEDIATE` transaction), so each function is one short, consistent step. The store checks
values before any SQL runs: a refused value writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from edge.store.checks import _check_owner
from edge.store.errors import StoreError
from edge.store.records import Credential, Unset
from edge.store.rows import _CREDENTIAL_COLUMNS, _credential_from_row, _filters
from edge.timestamps import rfc3339

#: For `SQLiteStore._verify_token`: the credential, its token hash and its owner's `active`
#: (None without an owner) for one credential id.
AUTHENTICATE_QUERY = (
    f"SELECT {_CREDENTIAL_COLUMNS}, c.token_hash, owner.active FROM credentials AS c"
    " LEFT JOIN service_users AS owner ON owner.id = c.owner_id WHERE c.id = ?"
)
#: For `SQLiteStore._verify_token` (the id given twice): the id and token hash of a credential
#: that is inactive, whose owner is inactive, or that was deleted (a tombstone).
REVOKED_QUERY = (
    "SELECT c.id, c.token_hash, NULL FROM credentials AS c"
    " LEFT JOIN service_users AS owner ON owner.id = c.owner_id"
    " WHERE c.id = ? AND (c.active = 0 OR owner.active = 0)"
    " UNION ALL SELECT id, token_hash, NULL FROM revoked_credentials WHERE id = ?"
)
#: Ids asked about in one `usable` query: SQLite's variable limit is 999 at the least.
USABLE_CHUNK = 500


def insert(connection: sqlite3.Connection, credential: Credential, token_hash: bytes) -> None:
    """Store a new credential after checking its owner; `StoreError` if SQLite refuses it."""
    account_id = credential.account_id
    _check_owner(connection, credential.owner_id, account_id, "credential")
    try:
        connection.execute(
            "INSERT INTO credentials (id, account_id, created_at, description, metadata,"
            " acl, token_hash, active, owner_id, max_sessions, max_endpoints)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                credential.id,
                account_id,
                rfc3339(credential.created_at),
                credential.description,
                credential.metadata,
                json.dumps(list(credential.acl)),
                token_hash,
                credential.owner_id,
                credential.max_sessions,
                credential.max_endpoints,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot create a credential in account {account_id!r}: {exc}") from exc


def select(connection: sqlite3.Connection, credential_id: str) -> Credential | None:
    row = connection.execute(
        f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c WHERE c.id = ?",
        (credential_id,),
    ).fetchone()
    return None if row is None else _credential_from_row(row)


def select_all(
    connection: sqlite3.Connection, account_id: str | None, owner_id: str | None
) -> list[Credential]:
    """Newest first, filtered by the account and owner that are not None."""
    # rowid order is insertion order, which stays exact when two rows share a created_at.
    where, params = _filters(("c.account_id", account_id), ("c.owner_id", owner_id))
    rows = connection.execute(
        f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c{where} ORDER BY c.rowid DESC",
        params,
    ).fetchall()
    return [_credential_from_row(row) for row in rows]


def set_active(
    connection: sqlite3.Connection, credential_id: str, active: bool
) -> Credential | None:
    connection.execute(
        "UPDATE credentials SET active = ? WHERE id = ?", (int(active), credential_id)
    )
    return select(connection, credential_id)


def update(
    connection: sqlite3.Connection,
    credential_id: str,
    *,
    description: str | None,
    metadata: str | None,
    rules: tuple[str, ...] | None,
    active: bool | None,
    max_sessions: int | Unset | None,
    max_endpoints: int | Unset | None,
) -> Credential | None:
    """Change the fields given (None, or `UNSET` for a limit, keeps one); None if no such id."""
    current = select(connection, credential_id)
    if current is None:
        return None
    updated = replace(
        current,
        description=current.description if description is None else description,
        metadata=current.metadata if metadata is None else metadata,
        acl=current.acl if rules is None else rules,
        active=current.active if active is None else active,
        max_sessions=(current.max_sessions if isinstance(max_sessions, Unset) else max_sessions),
        max_endpoints=(
            current.max_endpoints if isinstance(max_endpoints, Unset) else max_endpoints
        ),
    )
    connection.execute(
        "UPDATE credentials SET description = ?, metadata = ?, acl = ?, active = ?,"
        " max_sessions = ?, max_endpoints = ? WHERE id = ?",
        (
            updated.description,
            updated.metadata,
            json.dumps(list(updated.acl)),
            int(updated.active),
            updated.max_sessions,
            updated.max_endpoints,
            credential_id,
        ),
    )
    return updated


def delete(connection: sqlite3.Connection, credential_id: str, now: datetime) -> bool:
    """Delete one credential, remembering it as revoked; False if there was none."""
    tombstone(connection, "WHERE id = ?", (credential_id,), now)
    cursor = connection.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
    return cursor.rowcount > 0


def usable(connection: sqlite3.Connection, credential_ids: Sequence[str]) -> set[str]:
    """Those of (at most `USABLE_CHUNK`) ids that are active with no inactive owner."""
    marks = ", ".join("?" * len(credential_ids))
    rows = connection.execute(
        "SELECT c.id FROM credentials AS c"
        " LEFT JOIN service_users AS owner ON owner.id = c.owner_id"
        f" WHERE c.id IN ({marks}) AND c.active = 1"
        " AND (owner.id IS NULL OR owner.active = 1)",
        credential_ids,
    ).fetchall()
    return {str(r[0]) for r in rows}


def tombstone(
    connection: sqlite3.Connection, where: str, params: tuple[object, ...], now: datetime
) -> None:
    """Remember the credentials about to be deleted (id and token hash) as revoked."""
    connection.execute(
        "INSERT OR REPLACE INTO revoked_credentials (id, account_id, token_hash, revoked_at)"
        f" SELECT id, account_id, token_hash, ? FROM credentials {where}",
        (rfc3339(now), *params),
    )
