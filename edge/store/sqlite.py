"""`SQLiteStore`: the `Store` on one SQLite file, one connection guarded by a lock.

The store is the shell around the SQL: it checks values, makes ids, secrets and timestamps,
verifies tokens, and holds the lock (and, for writes that read first, one transaction) around
each call. The SQL for each kind of record is a module of its own: `edge.store.credentials`,
`service_users`, `api_keys`, `cloud_endpoints` and `events`.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from edge.store import api_keys as _api_keys
from edge.store import cloud_endpoints as _cloud
from edge.store import credentials as _credentials
from edge.store import events as _events
from edge.store import service_users as _service_users
from edge.store.base import Store
from edge.store.checks import _check_acl, _check_limit, _check_name, _check_text
from edge.store.errors import StoreError
from edge.store.records import (
    DEFAULT_ACCOUNT_ID,
    DESCRIPTION_MAX_BYTES,
    METADATA_MAX_BYTES,
    UNSET,
    ApiKey,
    CloudEndpoint,
    Credential,
    DeletedServiceUser,
    Event,
    JsonObject,
    ServiceUser,
    Unset,
)
from edge.store.rows import _api_key_from_row, _credential_from_row
from edge.store.schema import open_connection
from edge.store.tokens import (
    _DUMMY_HASH,
    _ID_RANDOM_BYTES,
    _SECRET_RANDOM_BYTES,
    _TOKEN_MAX_LENGTH,
    _TOKEN_RE,
    API_KEY_ID_PREFIX,
    CREDENTIAL_ID_PREFIX,
    ENDPOINT_ID_PREFIX,
    EVENT_ID_PREFIX,
    SERVICE_USER_ID_PREFIX,
    _hash_secret,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        self._observe: Callable[[float], None] | None = None

    def observe_latency(self, observe: Callable[[float], None] | None) -> None:
        """Call `observe(seconds)` after every store call (lock wait included), as the edge's
        store latency metric does; None stops it. `observe` must not raise."""
        self._observe = observe

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        new_store: bool = False,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: Callable[[], datetime] = _utc_now,
    ) -> SQLiteStore:
        """Open the store at `path`: create it (mode 0600) if there is no file, check its
        integrity, migrate its schema.

        Raises `EmptyStoreError` for a 0-byte file unless `new_store` (which starts a new empty
        store in its place), and `StoreError` naming the path when the file cannot be opened, is
        not a SQLite database, is damaged, or was written by a newer burrow-edge
        (`edge.store.schema.open_connection`).
        """
        connection = open_connection(path, new_store=new_store)
        return cls(connection, path=path, random_bytes=random_bytes, clock=clock)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        with self._locked() as connection:
            row = connection.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    # --- credentials (SQL in edge.store.credentials) --------------------------------------------

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
            _credentials.insert(connection, credential, _hash_secret(secret))
        return credential, f"{id_part}_{secret}"

    def authenticate(self, token: str) -> Credential | None:
        row = self._verify_token(token, CREDENTIAL_ID_PREFIX, _credentials.AUTHENTICATE_QUERY)
        if row is None:
            return None
        credential = _credential_from_row(row[:-2])
        owner_active = row[-1] is None or bool(row[-1])
        return credential if credential.active and owner_active else None

    def set_credential_active(self, credential_id: str, active: bool) -> Credential | None:
        if not isinstance(active, bool):
            raise StoreError(f"credential active must be true or false, not {active!r}")
        with self._transaction() as connection:
            return _credentials.set_active(connection, credential_id, active)

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
            return _credentials.update(
                connection,
                credential_id,
                description=description,
                metadata=metadata,
                rules=rules,
                active=active,
                max_sessions=max_sessions,
                max_endpoints=max_endpoints,
            )

    def get_credential(self, credential_id: str) -> Credential | None:
        with self._locked() as connection:
            return _credentials.select(connection, credential_id)

    def list_credentials(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[Credential]:
        with self._locked() as connection:
            return _credentials.select_all(connection, account_id, owner_id)

    def delete_credential(self, credential_id: str) -> bool:
        with self._transaction() as connection:
            return _credentials.delete(connection, credential_id, self._now())

    def revoked_credential_id(self, token: str) -> str | None:
        row = self._verify_token(token, CREDENTIAL_ID_PREFIX, _credentials.REVOKED_QUERY, repeat=2)
        return None if row is None else str(row[0])

    def usable_credentials(self, credential_ids: Collection[str]) -> set[str]:
        ids = list(set(credential_ids))
        usable: set[str] = set()
        for start in range(0, len(ids), _credentials.USABLE_CHUNK):
            chunk = ids[start : start + _credentials.USABLE_CHUNK]
            with self._locked() as connection:
                found = _credentials.usable(connection, chunk)
            usable.update(found)
        return usable

    # --- service users (SQL in edge.store.service_users) ----------------------------------------

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
            _service_users.insert(connection, service_user)
        return service_user

    def get_service_user(self, service_user_id: str) -> ServiceUser | None:
        with self._locked() as connection:
            return _service_users.select(connection, service_user_id)

    def list_service_users(self, *, account_id: str | None = None) -> list[ServiceUser]:
        with self._locked() as connection:
            return _service_users.select_all(connection, account_id)

    def update_service_user(
        self, service_user_id: str, *, name: str | None = None, active: bool | None = None
    ) -> ServiceUser | None:
        if name is not None:
            _check_name(name)
        if active is not None and not isinstance(active, bool):
            raise StoreError(f"service user active must be true or false, not {active!r}")
        with self._transaction() as connection:
            return _service_users.update(connection, service_user_id, name=name, active=active)

    def delete_service_user(self, service_user_id: str) -> DeletedServiceUser | None:
        with self._transaction() as connection:
            return _service_users.delete(connection, service_user_id, self._now())

    # --- API keys (SQL in edge.store.api_keys) -------------------------------------------------

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
            _api_keys.insert(connection, api_key, _hash_secret(secret))
        return api_key, f"{id_part}_{secret}"

    def authenticate_api_key(self, token: str) -> ApiKey | None:
        row = self._verify_token(token, API_KEY_ID_PREFIX, _api_keys.AUTHENTICATE_QUERY)
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
            return _api_keys.update(
                connection, api_key_id, description=description, metadata=metadata
            )

    def get_api_key(self, api_key_id: str) -> ApiKey | None:
        with self._locked() as connection:
            return _api_keys.select(connection, api_key_id)

    def list_api_keys(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[ApiKey]:
        with self._locked() as connection:
            return _api_keys.select_all(connection, account_id, owner_id)

    def delete_api_key(self, api_key_id: str) -> bool:
        with self._locked() as connection:
            return _api_keys.delete(connection, api_key_id)

    # --- cloud endpoints (SQL in edge.store.cloud_endpoints) ----------------------------------

    def create_cloud_endpoint(
        self,
        *,
        url: str,
        traffic_policy: str,
        binding: str = "public",
        pooling_enabled: bool = False,
        description: str = "",
        metadata: str = "",
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> CloudEndpoint:
        _cloud.check_fields(
            url=url,
            binding=binding,
            pooling_enabled=pooling_enabled,
            traffic_policy=traffic_policy,
            description=description,
            metadata=metadata,
        )
        now = self._now()
        endpoint = CloudEndpoint(
            id=ENDPOINT_ID_PREFIX + self._new_id(),
            account_id=account_id,
            created_at=now,
            updated_at=now,
            url=url,
            binding=binding,
            pooling_enabled=pooling_enabled,
            traffic_policy=traffic_policy,
            description=description,
            metadata=metadata,
        )
        with self._transaction() as connection:
            _cloud.insert(connection, endpoint)
        return endpoint

    def get_cloud_endpoint(self, endpoint_id: str) -> CloudEndpoint | None:
        with self._locked() as connection:
            return _cloud.select(connection, endpoint_id)

    def list_cloud_endpoints(self, *, account_id: str | None = None) -> list[CloudEndpoint]:
        with self._locked() as connection:
            return _cloud.select_all(connection, account_id)

    def update_cloud_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        traffic_policy: str | None = None,
        binding: str | None = None,
        pooling_enabled: bool | None = None,
        description: str | None = None,
        metadata: str | None = None,
    ) -> CloudEndpoint | None:
        _cloud.check_fields(
            url=url,
            binding=binding,
            pooling_enabled=pooling_enabled,
            traffic_policy=traffic_policy,
            description=description,
            metadata=metadata,
        )
        with self._transaction() as connection:
            return _cloud.update(
                connection,
                endpoint_id,
                now=self._now(),
                url=url,
                binding=binding,
                pooling_enabled=pooling_enabled,
                traffic_policy=traffic_policy,
                description=description,
                metadata=metadata,
            )

    def delete_cloud_endpoint(self, endpoint_id: str) -> CloudEndpoint | None:
        with self._transaction() as connection:
            return _cloud.delete(connection, endpoint_id)

    # --- events (SQL in edge.store.events) ------------------------------------------------------

    def append_event(
        self,
        event_type: str,
        object: JsonObject,  # ngrok's field name; shadows the builtin only here
        *,
        principal: JsonObject | None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Event:
        object_json, principal_json, principal_id = _events.encode(event_type, object, principal)
        event = Event(
            id=EVENT_ID_PREFIX + self._new_id(),
            account_id=account_id,
            event_type=event_type,
            timestamp=self._clock().astimezone(UTC),
            principal=None if principal_json is None else json.loads(principal_json),
            object=json.loads(object_json),
        )
        with self._locked() as connection:
            _events.insert(
                connection,
                event,
                principal_id=principal_id,
                principal_json=principal_json,
                object_json=object_json,
            )
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
        _events.check_limit(limit)
        with self._locked() as connection:
            return _events.select_page(
                connection,
                limit=limit,
                before_id=before_id,
                event_type=event_type,
                principal_id=principal_id,
                account_id=account_id,
            )

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
        started = time.perf_counter()
        try:
            with self._lock:
                if self._closed:
                    raise StoreError(f"the store at {self._path} is closed")
                try:
                    yield self._connection
                except sqlite3.IntegrityError:
                    raise
                except sqlite3.Error as exc:
                    raise StoreError(f"the store at {self._path} failed: {exc}") from exc
        finally:
            if self._observe is not None:
                self._observe(time.perf_counter() - started)

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
