"""The edge's durable state: accounts, service users, credentials (authtokens), API keys and
audit events, behind a small interface.

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

API keys have the same token shape and the same hashing (`ak_` ids instead of `cr_`). A service
user is the principal that owns credentials and API keys (ngrok.md §6.2): deactivating it makes
every token it owns stop authenticating, and deleting it deletes them (`ON DELETE CASCADE`), which
is how ngrok revokes a departed principal's tokens; `delete_service_user` returns the ids it took
with it so the edge can end their live sessions. Events are an append-only audit log: they keep
the principal as JSON rather than a foreign key, so they outlive what they describe, and they
page newest first on an integer sequence that never reuses a value.

A credential may carry two optional limits, `max_sessions` (live agent sessions at once) and
`max_endpoints` (endpoints per session); the store only keeps them (None: no limit), the session
code enforces them. `update_credential` changes any subset of a credential's fields: None leaves
a text field or the ACL as it is, but None is a real value for a limit ("no limit"), so the
limits default to the `UNSET` sentinel instead, and passing None removes a limit.

Operations that read before they write (a name check, an owner check, a cascade to report) run
in one `BEGIN IMMEDIATE` transaction, so nothing is half-written and two processes sharing the
file cannot interleave.

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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast

from edge.acl import AclError, parse_acl

__all__ = [
    "API_KEY_ID_PREFIX",
    "CREDENTIAL_ID_PREFIX",
    "CREDENTIAL_LIMIT_MAX",
    "DEFAULT_ACCOUNT_ID",
    "EVENT_ID_PREFIX",
    "MIGRATIONS",
    "SERVICE_USER_ID_PREFIX",
    "UNSET",
    "ApiKey",
    "ConflictError",
    "Credential",
    "DeletedServiceUser",
    "Event",
    "JsonObject",
    "NotFoundError",
    "SQLiteStore",
    "ServiceUser",
    "Store",
    "StoreError",
    "Unset",
]

CREDENTIAL_ID_PREFIX = "cr_"
API_KEY_ID_PREFIX = "ak_"
EVENT_ID_PREFIX = "ev_"
# ngrok's REST API answers `service_...` ids for service users (ngrok.md §6.2; the legacy
# `bot_...` ids belong to the old /bot_users path).
SERVICE_USER_ID_PREFIX = "service_"

# An event's object and principal: JSON objects, decoded.
JsonObject = dict[str, Any]

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
# A service user's name: ngrok's limit for short free text, like a description.
NAME_MAX_BYTES = 255
# An event's object and principal together, as JSON: audit records are small (an agent session's
# fields, with its metadata capped at 4 KiB), and a bound keeps one bad caller from bloating
# every later listing.
EVENT_MAX_BYTES = 64 * 1024
# The most events one `list_events` call returns: a page is held in memory whole; page further
# with `before_id`. (The REST API pages by 100, ngrok's limit.)
EVENT_LIST_MAX = 1000
# `event_type` as ngrok names them: `agent_session_start.v0`, `tunnel_credential_created.v0`.
_EVENT_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*\.v[0-9]+", re.ASCII)
_EVENT_TYPE_MAX_LENGTH = 128

# The largest per-credential limit (`max_sessions`, `max_endpoints`) accepted: far above anything
# one credential needs, and small enough that no arithmetic on it can surprise.
CREDENTIAL_LIMIT_MAX = 1_000_000

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
)


class Unset(Enum):
    """The type of `UNSET`: "leave this field as it is", where None already means something."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


# The default of `update_credential`'s `max_sessions` and `max_endpoints`: keep the stored value.
# (None there means "no limit", so it cannot also mean "unchanged".)
UNSET: Final = Unset.UNSET


class StoreError(Exception):
    """The store cannot be opened or used, or a value cannot be stored; the message says why.

    `code` is an ngrok error code when one applies (an ACL that does not parse), else None.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(StoreError):
    """An id given as a reference (an owner, a paging cursor) names nothing."""


class ConflictError(StoreError):
    """A value that must be unique is taken (a service user's name within its account)."""


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
    owner_id: str | None = None  # the owning service user; None for the account itself
    # Optional limits; None means none. Live agent sessions authenticated with this credential
    # at once (one more is refused with ERR_NGROK_108), and endpoints per such session.
    max_sessions: int | None = None
    max_endpoints: int | None = None


@dataclass(frozen=True, kw_only=True)
class ServiceUser:
    """A principal that owns credentials and API keys and cannot log in (ngrok.md §6.2)."""

    id: str
    account_id: str
    name: str  # unique within the account
    active: bool
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class DeletedServiceUser:
    """What `delete_service_user` removed: the user and the ids of the tokens it owned."""

    service_user: ServiceUser
    credential_ids: tuple[str, ...]
    api_key_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """An admin API key's stored record. The token is never stored; see `create_api_key`."""

    id: str
    account_id: str
    created_at: datetime
    description: str
    metadata: str
    owner_id: str | None


@dataclass(frozen=True, kw_only=True)
class Event:
    """One audit event, in ngrok's envelope (ngrok.md §6.5)."""

    id: str
    account_id: str
    event_type: str
    timestamp: datetime  # timezone-aware UTC, microseconds kept
    principal: JsonObject | None
    object: JsonObject


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
        owner_id: str | None = None,
        max_sessions: int | None = None,
        max_endpoints: int | None = None,
    ) -> tuple[Credential, str]:
        """Create an active credential and return it with its token.

        The token is returned only here; the store keeps just a hash of its secret. Raises
        `StoreError` for an over-long field, an ACL that does not parse (with `code`
        ERR_NGROK_10007), a limit that is not None or a whole number from 1 to
        `CREDENTIAL_LIMIT_MAX`, or an unknown account, and `NotFoundError` for an owner that is
        not a service user of that account.
        """

    @abstractmethod
    def authenticate(self, token: str) -> Credential | None:
        """Return the active credential that `token` belongs to, or None.

        None covers every refusal: a malformed token, an unknown id, a wrong secret, an inactive
        credential, an inactive owning service user. Never raises for any string.
        """

    @abstractmethod
    def set_credential_active(self, credential_id: str, active: bool) -> Credential | None:
        """Activate or deactivate a credential; return it as now stored, or None if unknown."""

    @abstractmethod
    def update_credential(
        self,
        credential_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
        active: bool | None = None,
        max_sessions: int | Unset | None = UNSET,
        max_endpoints: int | Unset | None = UNSET,
    ) -> Credential | None:
        """Change some of a credential's fields in one transaction; return it as now stored, or
        None if unknown.

        `description`, `metadata`, `acl` and `active`: None leaves the field as it is (an empty
        `acl` makes the credential unrestricted). `max_sessions` and `max_endpoints`: `UNSET`
        (the default) leaves the limit as it is, None removes it, a number sets it. Refuses what
        `create_credential` refuses, with the same `StoreError`s, and writes nothing then.
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
    def revoked_credential_id(self, token: str) -> str | None:
        """The id of the credential `token` belonged to, if that credential was deleted or
        deactivated (or its owner deactivated); None otherwise. Never raises for any string."""

    @abstractmethod
    def usable_credentials(self, credential_ids: Collection[str]) -> set[str]:
        """Of `credential_ids`, those that can still authenticate (exist, active, and owned by
        an active service user or by none). One query: the edge polls it for live sessions."""

    @abstractmethod
    def create_service_user(
        self, name: str, *, active: bool = True, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> ServiceUser:
        """Create a service user. `ConflictError` if the account already has one by that name;
        `StoreError` for an empty or over-long name or an unknown account."""

    @abstractmethod
    def get_service_user(self, service_user_id: str) -> ServiceUser | None:
        """Return the service user with this id, or None."""

    @abstractmethod
    def list_service_users(self, *, account_id: str | None = None) -> list[ServiceUser]:
        """Return the service users (of one account, or of all), newest first."""

    @abstractmethod
    def update_service_user(
        self, service_user_id: str, *, name: str | None = None, active: bool | None = None
    ) -> ServiceUser | None:
        """Rename and/or (de)activate a service user; None if unknown. Deactivating it stops
        every token it owns from authenticating. `ConflictError` for a name already taken."""

    @abstractmethod
    def delete_service_user(self, service_user_id: str) -> DeletedServiceUser | None:
        """Delete a service user and every credential and API key it owns; None if unknown."""

    @abstractmethod
    def create_api_key(
        self,
        *,
        description: str = "",
        metadata: str = "",
        owner_id: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[ApiKey, str]:
        """Create an API key and return it with its token (shown only here, stored as a hash).
        Errors as for `create_credential`."""

    @abstractmethod
    def authenticate_api_key(self, token: str) -> ApiKey | None:
        """Return the API key that `token` belongs to, or None (as `authenticate` does, and
        None too when its owning service user is inactive). Never raises for any string."""

    @abstractmethod
    def update_api_key(
        self,
        api_key_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
    ) -> ApiKey | None:
        """Change an API key's description and/or metadata (None: leave it); return it as now
        stored, or None if unknown. `StoreError` for an over-long field."""

    @abstractmethod
    def get_api_key(self, api_key_id: str) -> ApiKey | None:
        """Return the API key with this id, or None."""

    @abstractmethod
    def list_api_keys(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[ApiKey]:
        """Return the API keys (filtered by account and/or owner), newest first."""

    @abstractmethod
    def delete_api_key(self, api_key_id: str) -> bool:
        """Delete an API key; its token stops authenticating. False if it did not exist."""

    @abstractmethod
    def append_event(
        self,
        event_type: str,
        object: JsonObject,
        *,
        principal: JsonObject | None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Event:
        """Record an event, stamped now, and return it as stored (JSON round-tripped).

        `principal` is ngrok's `{id, subject, source, credential}` or None; its `id` feeds
        `list_events(principal_id=...)`. `StoreError` for a malformed type, a value that is not
        JSON, or more than `EVENT_MAX_BYTES`.
        """

    @abstractmethod
    def list_events(
        self,
        *,
        limit: int = 100,
        before_id: str | None = None,
        event_type: str | None = None,
        principal_id: str | None = None,
        account_id: str | None = None,
    ) -> list[Event]:
        """Return up to `limit` events, newest first, optionally only those older than
        `before_id` (a stable cursor: pass the last id of one page to get the next) and of one
        type, principal or account. `NotFoundError` for an unknown `before_id`; `StoreError`
        for a limit outside 1..EVENT_LIST_MAX."""

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
        owner_id: str | None = None,
        max_sessions: int | None = None,
        max_endpoints: int | None = None,
    ) -> tuple[Credential, str]:
        _check_text("credential description", description, DESCRIPTION_MAX_BYTES)
        _check_text("credential metadata", metadata, METADATA_MAX_BYTES)
        rules = _check_acl(acl)
        _check_limit("credential max_sessions", max_sessions)
        _check_limit("credential max_endpoints", max_endpoints)
        id_part, secret = self._new_token()
        credential = Credential(
            id=CREDENTIAL_ID_PREFIX + id_part,
            account_id=account_id,
            created_at=self._now(),
            description=description,
            metadata=metadata,
            acl=rules,
            active=True,
            owner_id=owner_id,
            max_sessions=max_sessions,
            max_endpoints=max_endpoints,
        )
        with self._transaction() as connection:
            _check_owner(connection, owner_id, account_id, "credential")
            try:
                connection.execute(
                    "INSERT INTO credentials (id, account_id, created_at, description, metadata,"
                    " acl, token_hash, active, owner_id, max_sessions, max_endpoints)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    (
                        credential.id,
                        account_id,
                        _rfc3339(credential.created_at),
                        description,
                        metadata,
                        json.dumps(list(rules)),
                        _hash_secret(secret),
                        owner_id,
                        max_sessions,
                        max_endpoints,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"cannot create a credential in account {account_id!r}: {exc}"
                ) from exc
        return credential, f"{id_part}_{secret}"

    def authenticate(self, token: str) -> Credential | None:
        row = self._verify_token(
            token,
            CREDENTIAL_ID_PREFIX,
            f"SELECT {_CREDENTIAL_COLUMNS}, c.token_hash, owner.active FROM credentials AS c"
            " LEFT JOIN service_users AS owner ON owner.id = c.owner_id WHERE c.id = ?",
        )
        if row is None:
            return None
        credential = _credential_from_row(row[:-2])
        owner_active = row[-1] is None or bool(row[-1])
        return credential if credential.active and owner_active else None

    def set_credential_active(self, credential_id: str, active: bool) -> Credential | None:
        if not isinstance(active, bool):
            raise StoreError(f"credential active must be true or false, not {active!r}")
        with self._transaction() as connection:
            connection.execute(
                "UPDATE credentials SET active = ? WHERE id = ?", (int(active), credential_id)
            )
            row = connection.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c WHERE c.id = ?",
                (credential_id,),
            ).fetchone()
        return None if row is None else _credential_from_row(row)

    def update_credential(
        self,
        credential_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
        active: bool | None = None,
        max_sessions: int | Unset | None = UNSET,
        max_endpoints: int | Unset | None = UNSET,
    ) -> Credential | None:
        if description is not None:
            _check_text("credential description", description, DESCRIPTION_MAX_BYTES)
        if metadata is not None:
            _check_text("credential metadata", metadata, METADATA_MAX_BYTES)
        rules = None if acl is None else _check_acl(acl)
        if active is not None and not isinstance(active, bool):
            raise StoreError(f"credential active must be true or false, not {active!r}")
        if not isinstance(max_sessions, Unset):
            _check_limit("credential max_sessions", max_sessions)
        if not isinstance(max_endpoints, Unset):
            _check_limit("credential max_endpoints", max_endpoints)
        with self._transaction() as connection:
            row = connection.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c WHERE c.id = ?",
                (credential_id,),
            ).fetchone()
            if row is None:
                return None
            current = _credential_from_row(row)
            updated = replace(
                current,
                description=current.description if description is None else description,
                metadata=current.metadata if metadata is None else metadata,
                acl=current.acl if rules is None else rules,
                active=current.active if active is None else active,
                max_sessions=(
                    current.max_sessions if isinstance(max_sessions, Unset) else max_sessions
                ),
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

    def get_credential(self, credential_id: str) -> Credential | None:
        with self._locked() as connection:
            row = connection.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c WHERE c.id = ?",
                (credential_id,),
            ).fetchone()
        return None if row is None else _credential_from_row(row)

    def list_credentials(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[Credential]:
        # rowid order is insertion order, which stays exact when two rows share a created_at.
        where, params = _filters(("c.account_id", account_id), ("c.owner_id", owner_id))
        with self._locked() as connection:
            rows = connection.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials AS c{where} ORDER BY c.rowid DESC",
                params,
            ).fetchall()
        return [_credential_from_row(row) for row in rows]

    def delete_credential(self, credential_id: str) -> bool:
        with self._transaction() as connection:
            _tombstone(connection, "WHERE id = ?", (credential_id,), self._now())
            cursor = connection.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
        return cursor.rowcount > 0

    def revoked_credential_id(self, token: str) -> str | None:
        row = self._verify_token(
            token,
            CREDENTIAL_ID_PREFIX,
            "SELECT c.id, c.token_hash, NULL FROM credentials AS c"
            " LEFT JOIN service_users AS owner ON owner.id = c.owner_id"
            " WHERE c.id = ? AND (c.active = 0 OR owner.active = 0)"
            " UNION ALL SELECT id, token_hash, NULL FROM revoked_credentials WHERE id = ?",
            repeat=2,
        )
        return None if row is None else str(row[0])

    def usable_credentials(self, credential_ids: Collection[str]) -> set[str]:
        ids = list(set(credential_ids))
        usable: set[str] = set()
        for start in range(0, len(ids), 500):  # SQLite's variable limit is 999 at the least
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            with self._locked() as connection:
                rows = connection.execute(
                    "SELECT c.id FROM credentials AS c"
                    " LEFT JOIN service_users AS owner ON owner.id = c.owner_id"
                    f" WHERE c.id IN ({marks}) AND c.active = 1"
                    " AND (owner.id IS NULL OR owner.active = 1)",
                    chunk,
                ).fetchall()
            usable.update(str(r[0]) for r in rows)
        return usable

    # --- service users -------------------------------------------------------------------------

    def create_service_user(
        self, name: str, *, active: bool = True, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> ServiceUser:
        _check_name(name)
        if not isinstance(active, bool):
            raise StoreError(f"service user active must be true or false, not {active!r}")
        service_user = ServiceUser(
            id=SERVICE_USER_ID_PREFIX + self._new_id(),
            account_id=account_id,
            name=name,
            active=active,
            created_at=self._now(),
        )
        with self._transaction() as connection:
            _check_name_free(connection, account_id, name)
            try:
                connection.execute(
                    "INSERT INTO service_users (id, account_id, name, active, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        service_user.id,
                        account_id,
                        name,
                        int(active),
                        _rfc3339(service_user.created_at),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"cannot create a service user in account {account_id!r}: {exc}"
                ) from exc
        return service_user

    def get_service_user(self, service_user_id: str) -> ServiceUser | None:
        with self._locked() as connection:
            row = connection.execute(
                f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users WHERE id = ?",
                (service_user_id,),
            ).fetchone()
        return None if row is None else _service_user_from_row(row)

    def list_service_users(self, *, account_id: str | None = None) -> list[ServiceUser]:
        where, params = _filters(("account_id", account_id))
        with self._locked() as connection:
            rows = connection.execute(
                f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users{where} ORDER BY rowid DESC",
                params,
            ).fetchall()
        return [_service_user_from_row(row) for row in rows]

    def update_service_user(
        self, service_user_id: str, *, name: str | None = None, active: bool | None = None
    ) -> ServiceUser | None:
        if name is not None:
            _check_name(name)
        if active is not None and not isinstance(active, bool):
            raise StoreError(f"service user active must be true or false, not {active!r}")
        with self._transaction() as connection:
            row = connection.execute(
                f"SELECT {_SERVICE_USER_COLUMNS} FROM service_users WHERE id = ?",
                (service_user_id,),
            ).fetchone()
            if row is None:
                return None
            current = _service_user_from_row(row)
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

    def delete_service_user(self, service_user_id: str) -> DeletedServiceUser | None:
        with self._transaction() as connection:
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
            _tombstone(connection, "WHERE owner_id = ?", (service_user_id,), self._now())
            # ON DELETE CASCADE removes the credentials and API keys in the same statement.
            connection.execute("DELETE FROM service_users WHERE id = ?", (service_user_id,))
        return DeletedServiceUser(
            service_user=_service_user_from_row(row),
            credential_ids=tuple(str(r[0]) for r in credential_ids),
            api_key_ids=tuple(str(r[0]) for r in api_key_ids),
        )

    # --- API keys ------------------------------------------------------------------------------

    def create_api_key(
        self,
        *,
        description: str = "",
        metadata: str = "",
        owner_id: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[ApiKey, str]:
        _check_text("API key description", description, DESCRIPTION_MAX_BYTES)
        _check_text("API key metadata", metadata, METADATA_MAX_BYTES)
        id_part, secret = self._new_token()
        api_key = ApiKey(
            id=API_KEY_ID_PREFIX + id_part,
            account_id=account_id,
            created_at=self._now(),
            description=description,
            metadata=metadata,
            owner_id=owner_id,
        )
        with self._transaction() as connection:
            _check_owner(connection, owner_id, account_id, "API key")
            try:
                connection.execute(
                    "INSERT INTO api_keys (id, account_id, created_at, description, metadata,"
                    " owner_id, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        api_key.id,
                        account_id,
                        _rfc3339(api_key.created_at),
                        description,
                        metadata,
                        owner_id,
                        _hash_secret(secret),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"cannot create an API key in account {account_id!r}: {exc}"
                ) from exc
        return api_key, f"{id_part}_{secret}"

    def authenticate_api_key(self, token: str) -> ApiKey | None:
        row = self._verify_token(
            token,
            API_KEY_ID_PREFIX,
            f"SELECT {_API_KEY_COLUMNS}, k.token_hash, owner.active FROM api_keys AS k"
            " LEFT JOIN service_users AS owner ON owner.id = k.owner_id WHERE k.id = ?",
        )
        if row is None or (row[-1] is not None and not row[-1]):
            return None
        return _api_key_from_row(row[:-2])

    def update_api_key(
        self,
        api_key_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
    ) -> ApiKey | None:
        if description is not None:
            _check_text("API key description", description, DESCRIPTION_MAX_BYTES)
        if metadata is not None:
            _check_text("API key metadata", metadata, METADATA_MAX_BYTES)
        with self._transaction() as connection:
            row = connection.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys AS k WHERE k.id = ?", (api_key_id,)
            ).fetchone()
            if row is None:
                return None
            current = _api_key_from_row(row)
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

    def get_api_key(self, api_key_id: str) -> ApiKey | None:
        with self._locked() as connection:
            row = connection.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys AS k WHERE k.id = ?", (api_key_id,)
            ).fetchone()
        return None if row is None else _api_key_from_row(row)

    def list_api_keys(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[ApiKey]:
        where, params = _filters(("k.account_id", account_id), ("k.owner_id", owner_id))
        with self._locked() as connection:
            rows = connection.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys AS k{where} ORDER BY k.rowid DESC",
                params,
            ).fetchall()
        return [_api_key_from_row(row) for row in rows]

    def delete_api_key(self, api_key_id: str) -> bool:
        with self._locked() as connection:
            cursor = connection.execute("DELETE FROM api_keys WHERE id = ?", (api_key_id,))
        return cursor.rowcount > 0

    # --- events --------------------------------------------------------------------------------

    def append_event(
        self,
        event_type: str,
        object: JsonObject,  # ngrok's field name; shadows the builtin only here
        *,
        principal: JsonObject | None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Event:
        if not isinstance(event_type, str) or not (
            len(event_type) <= _EVENT_TYPE_MAX_LENGTH and _EVENT_TYPE_RE.fullmatch(event_type)
        ):
            raise StoreError(
                f"event type {event_type!r} is not of the form 'name.v0' (lower-case letters, "
                "digits and '_', then a version), e.g. 'agent_session_start.v0'"
            )
        object_json = _event_json("object", object)
        principal_json = None if principal is None else _event_json("principal", principal)
        size = len(object_json) + len(principal_json or "")
        if size > EVENT_MAX_BYTES:
            raise StoreError(
                f"event {event_type} is {size} bytes of JSON; the limit is {EVENT_MAX_BYTES}"
            )
        principal_id = None if principal is None else principal.get("id")
        if principal_id is not None and not isinstance(principal_id, str):
            raise StoreError(f"event principal id must be a string, not {principal_id!r}")
        event = Event(
            id=EVENT_ID_PREFIX + self._new_id(),
            account_id=account_id,
            event_type=event_type,
            timestamp=self._clock().astimezone(UTC),
            principal=None if principal_json is None else json.loads(principal_json),
            object=json.loads(object_json),
        )
        with self._locked() as connection:
            try:
                connection.execute(
                    "INSERT INTO events (id, account_id, event_type, timestamp, principal_id,"
                    " principal, object) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        account_id,
                        event_type,
                        _rfc3339_micro(event.timestamp),
                        principal_id,
                        principal_json,
                        object_json,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"cannot record an event in account {account_id!r}: {exc}"
                ) from exc
        return event

    def list_events(
        self,
        *,
        limit: int = 100,
        before_id: str | None = None,
        event_type: str | None = None,
        principal_id: str | None = None,
        account_id: str | None = None,
    ) -> list[Event]:
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= EVENT_LIST_MAX
        ):
            raise StoreError(f"event limit must be from 1 to {EVENT_LIST_MAX}, not {limit!r}")
        where, params = _filters(
            ("event_type", event_type), ("principal_id", principal_id), ("account_id", account_id)
        )
        with self._locked() as connection:
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

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """`_locked`, inside one `BEGIN IMMEDIATE` transaction: committed if the block returns,
        rolled back if it raises (a `StoreError` from a check included)."""
        with self._locked() as connection:
            # IMMEDIATE takes the write lock up front, so a check made in the block still holds
            # when the write lands, even against another process on the same file.
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreError(f"the store at {self._path} refused a write: {exc}") from exc
                raise

    def _now(self) -> datetime:
        """The injected clock's time in UTC, to whole seconds, as ngrok reports `created_at`."""
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _new_id(self) -> str:
        """The random half of an id: 26 base32 characters (no "_", see `_TOKEN_RE`)."""
        return base64.b32encode(self._random_bytes(_ID_RANDOM_BYTES)).decode("ascii").rstrip("=")

    def _new_token(self) -> tuple[str, str]:
        """A fresh (id half, secret half) for a credential or API key token."""
        id_part = self._new_id()
        secret = base64.urlsafe_b64encode(self._random_bytes(_SECRET_RANDOM_BYTES))
        return id_part, secret.decode("ascii").rstrip("=")

    def _verify_token(
        self, token: str, prefix: str, query: str, *, repeat: int = 1
    ) -> tuple[object, ...] | None:
        """The row `query` finds for the token's id (the row's second-last column being the
        stored hash) if the token's secret matches it, else None. Never raises for any string;
        an unknown id costs the same hash and comparison as a wrong secret."""
        if not isinstance(token, str) or len(token) > _TOKEN_MAX_LENGTH:
            return None
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        offered = _hash_secret(match["secret"])
        with self._locked() as connection:
            row = connection.execute(query, (prefix + match["id"],) * repeat).fetchone()
        stored = bytes(row[-2]) if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(offered, stored) or row is None:
            return None
        return tuple(row)


def _tombstone(
    connection: sqlite3.Connection, where: str, params: tuple[object, ...], now: datetime
) -> None:
    """Remember the credentials about to be deleted (id and token hash) as revoked."""
    connection.execute(
        "INSERT OR REPLACE INTO revoked_credentials (id, account_id, token_hash, revoked_at)"
        f" SELECT id, account_id, token_hash, ? FROM credentials {where}",
        (_rfc3339(now), *params),
    )


_CREDENTIAL_COLUMNS = (
    "c.id, c.account_id, c.created_at, c.description, c.metadata, c.acl, c.active, c.owner_id,"
    " c.max_sessions, c.max_endpoints"
)
_SERVICE_USER_COLUMNS = "id, account_id, name, active, created_at"
_API_KEY_COLUMNS = "k.id, k.account_id, k.created_at, k.description, k.metadata, k.owner_id"
_EVENT_COLUMNS = "id, account_id, event_type, timestamp, principal, object"


def _credential_from_row(row: Sequence[object]) -> Credential:
    (
        id_,
        account_id,
        created_at,
        description,
        metadata,
        acl,
        active,
        owner_id,
        max_sessions,
        max_endpoints,
    ) = row
    return Credential(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        description=str(description),
        metadata=str(metadata),
        acl=tuple(str(rule) for rule in json.loads(str(acl))),
        active=bool(active),
        owner_id=None if owner_id is None else str(owner_id),
        max_sessions=None if max_sessions is None else int(cast(int, max_sessions)),
        max_endpoints=None if max_endpoints is None else int(cast(int, max_endpoints)),
    )


def _service_user_from_row(row: Sequence[object]) -> ServiceUser:
    id_, account_id, name, active, created_at = row
    return ServiceUser(
        id=str(id_),
        account_id=str(account_id),
        name=str(name),
        active=bool(active),
        created_at=datetime.fromisoformat(str(created_at)),
    )


def _api_key_from_row(row: Sequence[object]) -> ApiKey:
    id_, account_id, created_at, description, metadata, owner_id = row
    return ApiKey(
        id=str(id_),
        account_id=str(account_id),
        created_at=datetime.fromisoformat(str(created_at)),
        description=str(description),
        metadata=str(metadata),
        owner_id=None if owner_id is None else str(owner_id),
    )


def _event_from_row(row: Sequence[object]) -> Event:
    id_, account_id, event_type, timestamp, principal, object_ = row
    return Event(
        id=str(id_),
        account_id=str(account_id),
        event_type=str(event_type),
        timestamp=datetime.fromisoformat(str(timestamp)),
        principal=None if principal is None else json.loads(str(principal)),
        object=json.loads(str(object_)),
    )


def _filters(*pairs: tuple[str, str | None]) -> tuple[str, tuple[str, ...]]:
    """A `WHERE` clause (with a leading space, or "") and its parameters for the given
    `(column, value)` pairs, skipping those whose value is None. Columns are code, not input."""
    used = [(column, value) for column, value in pairs if value is not None]
    if not used:
        return "", ()
    clause = " WHERE " + " AND ".join(f"{column} = ?" for column, _ in used)
    return clause, tuple(value for _, value in used)


def _rfc3339_micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_text(field: str, value: str, max_bytes: int) -> None:
    if not isinstance(value, str):
        raise StoreError(f"{field} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StoreError(f"{field} is not valid Unicode text: {exc}") from exc
    if size > max_bytes:
        raise StoreError(f"{field} is {size} bytes; the limit is {max_bytes} bytes")


def _check_acl(acl: Sequence[str]) -> tuple[str, ...]:
    if isinstance(acl, str):
        raise StoreError("credential acl must be a list of rules, not one string")
    rules = tuple(acl)
    if len(rules) > ACL_MAX_RULES:
        raise StoreError(f"credential acl has {len(rules)} rules; the limit is {ACL_MAX_RULES}")
    for rule in rules:
        if not isinstance(rule, str):
            raise StoreError(f"credential acl rules must be strings, not {type(rule).__name__}")
        _check_text("credential acl rule", rule, DESCRIPTION_MAX_BYTES)
    try:
        parse_acl(rules)
    except AclError as exc:
        raise StoreError(f"credential acl: {exc.message}", code=exc.code) from exc
    return rules


def _check_limit(field: str, value: int | None) -> None:
    """Refuse a per-credential limit that is not None or a whole number in 1..CREDENTIAL_LIMIT_MAX
    (0 is refused rather than read as "none" or "nothing": say None for no limit)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(
            f"{field} must be a whole number or None (no limit), not {type(value).__name__}"
        )
    if not 1 <= value <= CREDENTIAL_LIMIT_MAX:
        raise StoreError(
            f"{field} must be from 1 to {CREDENTIAL_LIMIT_MAX} (or None for no limit), not {value}"
        )


def _check_name(name: str) -> None:
    _check_text("service user name", name, NAME_MAX_BYTES)
    if not name.strip():
        raise StoreError("service user name must not be empty")


def _check_name_free(connection: sqlite3.Connection, account_id: str, name: str) -> None:
    taken = connection.execute(
        "SELECT id FROM service_users WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if taken is not None:
        raise ConflictError(
            f"a service user named {name!r} already exists in account {account_id!r} "
            f"({taken[0]}); choose another name"
        )


def _check_owner(
    connection: sqlite3.Connection, owner_id: str | None, account_id: str, what: str
) -> None:
    """Refuse an `owner_id` that is not a service user of `account_id`."""
    if owner_id is None:
        return
    if not isinstance(owner_id, str):
        raise StoreError(f"{what} owner_id must be a string, not {type(owner_id).__name__}")
    row = connection.execute(
        "SELECT 1 FROM service_users WHERE id = ? AND account_id = ?", (owner_id, account_id)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"cannot create the {what}: owner {owner_id!r} is not a service user of account "
            f"{account_id!r}; create it first, or list them with `service-user list`"
        )


def _event_json(field: str, value: JsonObject) -> str:
    if not isinstance(value, dict):
        raise StoreError(
            f"event {field} must be a JSON object (a dict), not {type(value).__name__}"
        )
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"event {field} is not JSON: {exc}") from exc


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
        # First, so that every statement below waits for a busy file instead of failing (two
        # processes opening one new file race to switch it to WAL).
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The first read of the file: this is where a file that is not SQLite fails.
        connection.execute("PRAGMA schema_version").fetchone()
        # WAL lets readers (the CLI, a status page) run while the edge writes.
        _switch_to_wal(connection)
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise StoreError(f"{path} could not be opened: {exc}") from exc
        raise StoreError(
            f"{path} stayed locked by another process for {BUSY_TIMEOUT_MS / 1000:g}s "
            f"(SQLite says: {exc}); try again, or check what else holds it"
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a Burrow store (SQLite says: {exc}); move the file aside or point "
            "burrow-edge at another data directory"
        ) from exc


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
