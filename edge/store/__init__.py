"""The edge's durable state: accounts, service users, credentials (authtokens), API keys, cloud
endpoints and audit events, behind a small interface.

Theory of operation. `Store` names the operations the edge needs; `SQLiteStore` is the one
backend today (standard-library `sqlite3`, one file in the edge's data directory, no server to
run). A PostgreSQL backend for a multi-node edge would implement the same `Store`.

The schema evolves through `MIGRATIONS`, a list of SQL statement groups. The number of groups
applied is kept in SQLite's `PRAGMA user_version`; opening a store applies the missing groups, one
transaction each, so a crash mid-upgrade leaves the file at the last complete version. A file
whose version is newer than this code knows is refused rather than guessed at, and so are a
0-byte file (a truncated store: starting empty would lose every token, so only an explicit
`new_store=True` does) and a file that fails SQLite's `PRAGMA quick_check` (damaged pages).

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

Layout. `edge.store` re-exports the public names below; the code lives in one module per concern:

    records.py   the frozen dataclasses (Credential, ServiceUser, ApiKey, CloudEndpoint, Event,
                 DeletedServiceUser), UNSET, DEFAULT_ACCOUNT_ID and the limits on stored values
    errors.py    StoreError, NotFoundError, ConflictError, EmptyStoreError
    tokens.py    id prefixes, the token shape, hashing a secret
    schema.py    MIGRATIONS; creating the file, opening and configuring the connection (busy
                 timeout, WAL), checking its integrity and migrating it
    base.py      Store, the interface
    sqlite.py    SQLiteStore, the SQLite backend: the lock, transactions, ids, token checks
    rows.py      the SQLite backend's column lists, row decoding, timestamp text, WHERE filters
    credentials.py      the SQLite backend's credential rows (SQL, tombstones, token lookups)
    service_users.py    the SQLite backend's service user rows (SQL, the delete cascade)
    api_keys.py         the SQLite backend's API key rows (SQL, the token lookup)
    cloud_endpoints.py  the SQLite backend's cloud endpoint rows (checks, SQL, decoding)
    events.py           the SQLite backend's audit events (checks, encoding, SQL, paging)
    checks.py    the checks a value passes before the SQLite backend stores it
"""

from __future__ import annotations

from edge.store.base import Store
from edge.store.errors import ConflictError, EmptyStoreError, NotFoundError, StoreError
from edge.store.records import (
    ACL_MAX_RULES,
    CREDENTIAL_LIMIT_MAX,
    DEFAULT_ACCOUNT_ID,
    DESCRIPTION_MAX_BYTES,
    ENDPOINT_BINDINGS,
    ENDPOINT_URL_MAX_BYTES,
    EVENT_LIST_MAX,
    EVENT_MAX_BYTES,
    METADATA_MAX_BYTES,
    NAME_MAX_BYTES,
    TRAFFIC_POLICY_MAX_BYTES,
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
from edge.store.schema import BUSY_TIMEOUT_MS, MIGRATIONS
from edge.store.sqlite import SQLiteStore
from edge.store.tokens import (
    API_KEY_ID_PREFIX,
    CREDENTIAL_ID_PREFIX,
    ENDPOINT_ID_PREFIX,
    EVENT_ID_PREFIX,
    SERVICE_USER_ID_PREFIX,
)

__all__ = [
    "ACL_MAX_RULES",
    "API_KEY_ID_PREFIX",
    "BUSY_TIMEOUT_MS",
    "CREDENTIAL_ID_PREFIX",
    "CREDENTIAL_LIMIT_MAX",
    "DEFAULT_ACCOUNT_ID",
    "DESCRIPTION_MAX_BYTES",
    "ENDPOINT_BINDINGS",
    "ENDPOINT_ID_PREFIX",
    "ENDPOINT_URL_MAX_BYTES",
    "EVENT_ID_PREFIX",
    "EVENT_LIST_MAX",
    "EVENT_MAX_BYTES",
    "METADATA_MAX_BYTES",
    "MIGRATIONS",
    "NAME_MAX_BYTES",
    "SERVICE_USER_ID_PREFIX",
    "TRAFFIC_POLICY_MAX_BYTES",
    "UNSET",
    "ApiKey",
    "CloudEndpoint",
    "ConflictError",
    "Credential",
    "DeletedServiceUser",
    "EmptyStoreError",
    "Event",
    "JsonObject",
    "NotFoundError",
    "SQLiteStore",
    "ServiceUser",
    "Store",
    "StoreError",
    "Unset",
]
