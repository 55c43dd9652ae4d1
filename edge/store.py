"""The edge's durable state: accounts and credentials (authtokens), behind a small interface.

Theory of operation. `Store` names the operations the edge needs; `SQLiteStore` is the one
backend today (standard-library `sqlite3`, one file in the edge's data directory, no server to
run). A PostgreSQL backend for a multi-node edge would implement the same `Store`.

The schema evolves through `MIGRATIONS`, a list of SQL statement groups. The number of groups
applied is kept in SQLite's `PRAGMA user_version`; opening a store applies the missing groups, one
transaction each, so a crash mid-upgrade leaves the file at the last complete version. A file
whose version is newer than this code knows is refused rather than guessed at.

Tokens follow ngrok's shape, `<credential id without "cr_">_<secret>`: the id half finds the row,
the secret half proves possession. Only a SHA-256 of the secret is stored, and it is compared
with `hmac.compare_digest`. The secret is 256 bits from the injected random source, so a fast hash
is the right choice: a slow password hash (scrypt, argon2) defends low-entropy human passwords
against guessing, which cannot work against 256 random bits, and would only make every agent
connection cost tens of milliseconds of CPU.

Every call is a short local SQLite call, so the API is synchronous. The trio code calls it through
`trio.to_thread.run_sync`; one connection opened with `check_same_thread=False` and guarded by a
`threading.Lock` makes that safe from any thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "CREDENTIAL_ID_PREFIX",
    "DEFAULT_ACCOUNT_ID",
    "MIGRATIONS",
    "Credential",
    "SQLiteStore",
    "Store",
    "StoreError",
]

CREDENTIAL_ID_PREFIX = "cr_"

# The account the first migration creates. Credentials always name their account, so a second
# account is only a row away; this one exists so that a fresh edge works without setup.
DEFAULT_ACCOUNT_ID = "acct_default"

# 16 random bytes in base32 without padding: 26 characters of [A-Z2-7], 128 bits. The alphabet has
# no "_", so the first "_" in a token always ends the id half.
_ID_RANDOM_BYTES = 16
_ID_LENGTH = 26
# 32 random bytes in url-safe base64 without padding: 43 characters, 256 bits of secret.
_SECRET_RANDOM_BYTES = 32
# The shortest secret `authenticate` will hash (ours are 43); shorter ones are malformed.
_SECRET_MIN_LENGTH = 32
# The longest token `authenticate` will look at: ours are 70 characters, and a bound keeps a
# hostile multi-megabyte "token" from costing a regex scan and a hash.
_TOKEN_MAX_LENGTH = 512
_TOKEN_RE = re.compile(
    rf"(?P<id>[A-Z2-7]{{{_ID_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{{_SECRET_MIN_LENGTH},}})"
)

# ngrok's documented limits for a credential's free-text fields (reference/ngrok.md §6.4).
DESCRIPTION_MAX_BYTES = 255
METADATA_MAX_BYTES = 4096
# A bound on ACL rules per credential: an ACL is checked on every bind, and a few hundred rules
# is already far more than a person can review.
ACL_MAX_RULES = 1024

# How long a call waits for another process (a second edge, the CLI) holding the write lock
# before failing: long enough to ride out a migration or a burst of writes, short enough that a
# wedged writer surfaces as an error instead of a hung agent handshake.
BUSY_TIMEOUT_MS = 5000

# The SHA-256 that `authenticate` compares against when the credential id is unknown, so that
# unknown ids and wrong secrets cost the same work.
_DUMMY_HASH = bytes(hashlib.sha256().digest_size)


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
)


class StoreError(Exception):
    """The store cannot be opened or used, or a value cannot be stored; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Credential:
    """An authtoken's stored record. The token itself is never stored; see `create_credential`."""

    id: str
    account_id: str
    created_at: datetime  # timezone-aware UTC, whole seconds (RFC 3339 `...Z` in the store)
    description: str
    metadata: str
    acl: tuple[str, ...]
    active: bool


class Store(ABC):
    """The operations the edge needs from its durable state.

    Implementations are synchronous and safe to call from several threads at once.
    """

    @abstractmethod
    def create_credential(
        self,
        *,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] = (),
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[Credential, str]:
        """Create an active credential and return it with its token.

        The token is returned only here; the store keeps just a hash of its secret. Raises
        `StoreError` for an over-long field, a non-string ACL rule or an unknown account.
        """

    @abstractmethod
    def authenticate(self, token: str) -> Credential | None:
        """Return the active credential that `token` belongs to, or None.

        None covers every refusal: a malformed token, an unknown id, a wrong secret, an inactive
        credential. Never raises for any string.
        """

    @abstractmethod
    def get_credential(self, credential_id: str) -> Credential | None:
        """Return the credential with this id, or None if there is none."""

    @abstractmethod
    def list_credentials(self, *, account_id: str | None = None) -> list[Credential]:
        """Return the credentials (of one account, or of all), newest first."""

    @abstractmethod
    def delete_credential(self, credential_id: str) -> bool:
        """Delete a credential; its token stops authenticating. False if it did not exist."""

    @abstractmethod
    def close(self) -> None:
        """Release the store. Idempotent; any later call raises `StoreError`."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_secret(secret: str) -> bytes:
    # A fast hash is right here: the secret is 256 random bits (see the module docstring).
    return hashlib.sha256(secret.encode("ascii")).digest()


class SQLiteStore(Store):
    """`Store` on one SQLite file. Build it with `SQLiteStore.open(path)`."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        path: Path,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Wrap an open, migrated connection. Prefer `SQLiteStore.open`, which makes one."""
        self._connection = connection
        self._path = path
        self._random_bytes = random_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: Callable[[], datetime] = _utc_now,
    ) -> SQLiteStore:
        """Open the store at `path`, creating the file (mode 0600) and migrating its schema.

        Raises `StoreError` naming the path when the file cannot be opened, is not a SQLite
        database, or was written by a newer burrow-edge.
        """
        connection = _connect(path)
        try:
            _configure(connection, path)
            _migrate(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path=path, random_bytes=random_bytes, clock=clock)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        with self._locked() as connection:
            row = connection.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def create_credential(
        self,
        *,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] = (),
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[Credential, str]:
        _check_text("description", description, DESCRIPTION_MAX_BYTES)
        _check_text("metadata", metadata, METADATA_MAX_BYTES)
        rules = _check_acl(acl)
        id_part = base64.b32encode(self._random_bytes(_ID_RANDOM_BYTES)).decode("ascii")
        id_part = id_part.rstrip("=")
        secret = base64.urlsafe_b64encode(self._random_bytes(_SECRET_RANDOM_BYTES)).decode("ascii")
        secret = secret.rstrip("=")
        credential = Credential(
            id=CREDENTIAL_ID_PREFIX + id_part,
            account_id=account_id,
            created_at=self._clock().astimezone(UTC).replace(microsecond=0),
            description=description,
            metadata=metadata,
            acl=rules,
            active=True,
        )
        with self._locked() as connection:
            try:
                connection.execute(
                    "INSERT INTO credentials"
                    " (id, account_id, created_at, description, metadata, acl, token_hash, active)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (
                        credential.id,
                        account_id,
                        _rfc3339(credential.created_at),
                        description,
                        metadata,
                        json.dumps(list(rules)),
                        _hash_secret(secret),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"cannot create a credential in account {account_id!r}: {exc}"
                ) from exc
        return credential, f"{id_part}_{secret}"

    def authenticate(self, token: str) -> Credential | None:
        if not isinstance(token, str) or len(token) > _TOKEN_MAX_LENGTH:
            return None
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        offered = _hash_secret(match["secret"])
        with self._locked() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS}, token_hash FROM credentials WHERE id = ?",
                (CREDENTIAL_ID_PREFIX + match["id"],),
            ).fetchone()
        stored = bytes(row[-1]) if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(offered, stored) or row is None:
            return None
        credential = _credential_from_row(row[:-1])
        return credential if credential.active else None

    def get_credential(self, credential_id: str) -> Credential | None:
        with self._locked() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM credentials WHERE id = ?", (credential_id,)
            ).fetchone()
        return None if row is None else _credential_from_row(row)

    def list_credentials(self, *, account_id: str | None = None) -> list[Credential]:
        # rowid order is insertion order, which stays exact when two rows share a created_at.
        with self._locked() as connection:
            if account_id is None:
                rows = connection.execute(
                    f"SELECT {_COLUMNS} FROM credentials ORDER BY rowid DESC"
                ).fetchall()
            else:
                rows = connection.execute(
                    f"SELECT {_COLUMNS} FROM credentials WHERE account_id = ? ORDER BY rowid DESC",
                    (account_id,),
                ).fetchall()
        return [_credential_from_row(row) for row in rows]

    def delete_credential(self, credential_id: str) -> bool:
        with self._locked() as connection:
            cursor = connection.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one call; turn SQLite failures other than constraints into
        `StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store at {self._path} is closed")
            try:
                yield self._connection
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StoreError(f"the store at {self._path} failed: {exc}") from exc


_COLUMNS = "id, account_id, created_at, description, metadata, acl, active"


def _credential_from_row(row: Sequence[object]) -> Credential:
    id_, account_id, created_at, description, metadata, acl, active = row
    return Credential(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        description=str(description),
        metadata=str(metadata),
        acl=tuple(str(rule) for rule in json.loads(str(acl))),
        active=bool(active),
    )


def _check_text(field: str, value: str, max_bytes: int) -> None:
    if not isinstance(value, str):
        raise StoreError(f"credential {field} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StoreError(f"credential {field} is not valid Unicode text: {exc}") from exc
    if size > max_bytes:
        raise StoreError(f"credential {field} is {size} bytes; the limit is {max_bytes} bytes")


def _check_acl(acl: Sequence[str]) -> tuple[str, ...]:
    if isinstance(acl, str):
        raise StoreError("credential acl must be a list of rules, not one string")
    rules = tuple(acl)
    if len(rules) > ACL_MAX_RULES:
        raise StoreError(f"credential acl has {len(rules)} rules; the limit is {ACL_MAX_RULES}")
    for rule in rules:
        if not isinstance(rule, str):
            raise StoreError(f"credential acl rules must be strings, not {type(rule).__name__}")
        _check_text("acl rule", rule, DESCRIPTION_MAX_BYTES)
    return rules


def _connect(path: Path) -> sqlite3.Connection:
    try:
        # Create the file ourselves so that it starts private (an empty file is a valid empty
        # SQLite database); SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
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
        # The first read of the file: this is where a file that is not SQLite fails.
        connection.execute("PRAGMA schema_version").fetchone()
        # WAL lets readers (the CLI, a status page) run while the edge writes.
        connection.execute("PRAGMA journal_mode = WAL").fetchone()
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a Burrow store (SQLite says: {exc}); move the file aside or point "
            "burrow-edge at another data directory"
        ) from exc


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
