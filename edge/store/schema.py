"""Opening a store's SQLite file: creating it, the connection, its configuration (busy timeout,
WAL, foreign keys), an integrity check, and the schema `MIGRATIONS`, applied one transaction each
up to `PRAGMA user_version`.

Theory of operation. A store file at the store's path is always a whole store: a new one is
written and migrated under a temporary name beside it, then hard-linked into place (which fails,
harmlessly, if another process linked its own first). So a 0-byte file at the path is never a
store being born: it is a store that was truncated (a full disk, a bad copy) or a file made by
hand, and opening it is refused with `EmptyStoreError` unless the caller asks for a new store,
since silently starting empty would lose every authtoken. A non-empty file must pass SQLite's
`PRAGMA quick_check` before it is used, so a damaged store stops the edge at start with one
clear error rather than failing agents one by one.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from pathlib import Path

from edge.store.errors import EmptyStoreError, StoreError
from edge.store.records import DEFAULT_ACCOUNT_ID

# How long a call waits for another process (a second edge, the CLI) holding the write lock
# before failing: long enough to ride out a migration or a burst of writes, short enough that a
# wedged writer surfaces as an error instead of a hung agent handshake.
BUSY_TIMEOUT_MS = 5000


# Each entry is one schema version: the statements that take the schema from version N to N+1,
# applied in one transaction. Append new entries; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) STRICT
        """,
        f"""
        INSERT INTO accounts (id, name, created_at)
        VALUES ('{DEFAULT_ACCOUNT_ID}', 'default', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        """,
        """
        CREATE TABLE credentials (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id),
            created_at TEXT NOT NULL,
            description TEXT NOT NULL,
            metadata TEXT NOT NULL,
            acl TEXT NOT NULL,
            token_hash BLOB NOT NULL,
            active INTEGER NOT NULL
        ) STRICT
        """,
        "CREATE INDEX credentials_by_account ON credentials (account_id)",
    ),
    (
        # Version 2: service users own credentials and API keys; events.
        """
        CREATE TABLE service_users (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id),
            name TEXT NOT NULL,
            active INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (account_id, name)
        ) STRICT
        """,
        # Deleting the owner deletes its credentials: ngrok revokes a departed principal's
        # tokens, and a credential without its owner would be nobody's to manage.
        """
        ALTER TABLE credentials
        ADD COLUMN owner_id TEXT REFERENCES service_users (id) ON DELETE CASCADE
        """,
        "CREATE INDEX credentials_by_owner ON credentials (owner_id)",
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id),
            created_at TEXT NOT NULL,
            description TEXT NOT NULL,
            metadata TEXT NOT NULL,
            owner_id TEXT REFERENCES service_users (id) ON DELETE CASCADE,
            token_hash BLOB NOT NULL
        ) STRICT
        """,
        "CREATE INDEX api_keys_by_account ON api_keys (account_id)",
        "CREATE INDEX api_keys_by_owner ON api_keys (owner_id)",
        # seq orders events (AUTOINCREMENT: never reused, so a `before_id` cursor stays put);
        # principal_id is copied out of the principal JSON for the by-principal index and is
        # deliberately not a foreign key: the audit log outlives the principals it names.
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            account_id TEXT NOT NULL REFERENCES accounts (id),
            event_type TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            principal_id TEXT,
            principal TEXT,
            object TEXT NOT NULL
        ) STRICT
        """,
        "CREATE INDEX events_by_account ON events (account_id, seq)",
        "CREATE INDEX events_by_type ON events (event_type, seq)",
        "CREATE INDEX events_by_principal ON events (principal_id, seq)",
    ),
    (
        # A deleted credential leaves its id and token hash behind, so that its token is
        # answered "revoked" (ERR_NGROK_300) rather than "invalid", and only for that token.
        """
        CREATE TABLE revoked_credentials (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL,
            token_hash BLOB NOT NULL,
            revoked_at TEXT NOT NULL
        ) STRICT
        """,
    ),
    (
        # Version 4: optional per-credential limits, NULL meaning none: how many agent sessions
        # may be live at once with the credential (ERR_NGROK_108 beyond it) and how many
        # endpoints one of those sessions may serve. Existing credentials get NULL.
        """
        ALTER TABLE credentials
        ADD COLUMN max_sessions INTEGER CHECK (max_sessions IS NULL OR max_sessions > 0)
        """,
        """
        ALTER TABLE credentials
        ADD COLUMN max_endpoints INTEGER CHECK (max_endpoints IS NULL OR max_endpoints > 0)
        """,
    ),
    (
        # Version 5: cloud endpoints, owned by the edge rather than an agent session. The URL is
        # not UNIQUE: endpoints with pooling on may one day share one, and the API decides
        # conflicts against everything online (agent endpoints included), not only this table.
        # One line and no index (an edge holds few cloud endpoints): the whole schema must fit
        # on the file's first page, so that damage to data pages reads as damage, not as "not
        # a store" (tests/edge/store/test_schema.py).
        "CREATE TABLE cloud_endpoints (id TEXT PRIMARY KEY, account_id TEXT NOT NULL"
        " REFERENCES accounts (id), created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " url TEXT NOT NULL, binding TEXT NOT NULL, pooling_enabled INTEGER NOT NULL,"
        " traffic_policy TEXT NOT NULL, description TEXT NOT NULL, metadata TEXT NOT NULL)"
        " STRICT",
    ),
)


#: Problems `PRAGMA quick_check` reports that a refusal quotes (it finds up to 100).
INTEGRITY_PROBLEMS_SHOWN = 3


def open_connection(path: Path, *, new_store: bool = False) -> sqlite3.Connection:
    """A configured, checked, migrated connection to the store at `path`.

    A missing file becomes a new store. A 0-byte file raises `EmptyStoreError` unless
    `new_store`, which writes a new empty store in its place (a store with data is never
    replaced). `StoreError` naming the path when the file cannot be created or opened, is not a
    SQLite database, fails SQLite's integrity check, or was written by a newer burrow-edge.
    """
    _create_if_missing(path, new_store=new_store)
    connection = _connect(path)
    try:
        _configure(connection, path)
        _check_integrity(connection, path)
        _migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _create_if_missing(path: Path, *, new_store: bool) -> None:
    """Write a new store at `path` if there is no file there (or, with `new_store`, only an
    empty one); leave a non-empty file alone."""
    try:
        size: int | None = path.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as exc:
        raise StoreError(
            f"cannot open the store at {path}: {exc}; check that its directory exists and is "
            "readable by this user"
        ) from exc
    if size is None:
        _write_new_store(path, replace=False)
    elif size == 0:
        if not new_store:
            raise EmptyStoreError(
                f"the store at {path} is empty (0 bytes): it was truncated or never written, and "
                "every authtoken and API key it held is gone; restore it from a backup"
            )
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"the store at {path} is empty but its write-ahead log {wal} is not; move both "
                "aside (or restore them from a backup) before starting a new store"
            )
        _write_new_store(path, replace=True)


def _write_new_store(path: Path, *, replace: bool) -> None:
    """Write a migrated store under a temporary name beside `path`, then put it in place:
    hard-linked (a store another process linked first wins) or, with `replace`, renamed over
    the empty file there."""
    temp = path.with_name(f"{path.name}.new-{secrets.token_hex(4)}")
    try:
        # Private from the start; SQLite gives the -wal and -shm files the same mode.
        os.close(os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        connection = sqlite3.connect(temp, isolation_level=None)
        try:
            _migrate(connection, temp)
        finally:
            connection.close()
        if replace:
            os.replace(temp, path)
        else:
            _link_into_place(temp, path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot create the store at {path}: {exc}; check that its directory exists and is "
            "writable by this user"
        ) from exc
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _link_into_place(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process created the store first: open that one
    except OSError:
        # A file system without hard links: create the file exclusively and copy the store in
        # (a concurrent first open may then see it empty or partly written, and refuse it).
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(descriptor, "wb") as out:
            out.write(temp.read_bytes())


def _connect(path: Path) -> sqlite3.Connection:
    try:
        # The file exists (`_create_if_missing`): open it without creating one, so that a file
        # removed meanwhile is an error rather than a new empty store.
        os.close(os.open(path, os.O_RDWR))
        # isolation_level=None: no implicit transactions; `_migrate` opens its own.
        return sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot open the store at {path}: {exc}; check that its directory exists and is "
            "writable by this user"
        ) from exc


def _configure(connection: sqlite3.Connection, path: Path) -> None:
    try:
        # First, so that every statement below waits for a busy file instead of failing (two
        # processes opening one new file race to switch it to WAL).
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The first read of the file: this is where a file that is not SQLite fails.
        connection.execute("PRAGMA schema_version").fetchone()
        # WAL lets readers (the CLI, a status page) run while the edge writes.
        _switch_to_wal(connection)
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise StoreError(f"{path} could not be opened: {exc}") from exc
        raise _locked_error(path, exc) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a Burrow store (SQLite says: {exc}); move the file aside or point "
            "burrow-edge at another data directory"
        ) from exc


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def _locked_error(path: Path, exc: sqlite3.Error) -> StoreError:
    return StoreError(
        f"{path} stayed locked by another process for {BUSY_TIMEOUT_MS / 1000:g}s "
        f"(SQLite says: {exc}); try again, or check what else holds it"
    )


def _check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    """`StoreError` in one line if SQLite's `PRAGMA quick_check` finds damaged pages (it reads
    every page, in time linear in the file's size, without the slower index cross-checks of
    `integrity_check`)."""
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _is_locked(exc):
            raise _locked_error(path, exc) from exc
        problems = str(exc)  # damage bad enough that the check itself cannot go on
    else:
        if rows == [("ok",)]:
            return
        # Each problem may span lines ("*** in database main ***\nPage 3: ..."): one line each.
        shown = rows[:INTEGRITY_PROBLEMS_SHOWN]
        problems = "; ".join(" ".join(str(row[0]).split()) for row in shown)
        if len(rows) > INTEGRITY_PROBLEMS_SHOWN:
            problems += f"; and {len(rows) - INTEGRITY_PROBLEMS_SHOWN} more"
    raise StoreError(
        f"the store at {path} is damaged (SQLite's quick_check: {problems}); restore it from a "
        "backup, or move it and its -wal file aside to start a new empty store"
    )


def _switch_to_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out other openers. SQLite reports "locked" at once,
    without its busy handler, when two connections race to change a new file's journal mode,
    so this retries for up to BUSY_TIMEOUT_MS."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    while _apply_next_migration(connection, path):
        pass


def _apply_next_migration(connection: sqlite3.Connection, path: Path) -> bool:
    """Apply the first missing migration in its own transaction; False if none is missing."""
    try:
        # IMMEDIATE takes the write lock before reading the version, so two processes opening
        # the same new file cannot both apply the same migration.
        connection.execute("BEGIN IMMEDIATE")
        version = _schema_version(connection, path)
        if version < len(MIGRATIONS):
            for statement in MIGRATIONS[version]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1}")
        connection.execute("COMMIT")
    except BaseException as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot migrate the store at {path}: {exc}") from exc
        raise
    return version < len(MIGRATIONS)


def _schema_version(connection: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; `StoreError` if it is newer than this code knows."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the store at {path} has schema version {version}, but this burrow-edge knows only "
            f"versions up to {len(MIGRATIONS)}; upgrade burrow-edge to the release that wrote it"
        )
    return version
