"""`edge.store.schema`: opening a file, migrating it one transaction per version, refusing what
it cannot use; real SQLite files in a temporary directory, including a version 1 file an older
release wrote."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import pytest

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    MIGRATIONS,
    EmptyStoreError,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.fixtures.make_v1 import CREDENTIALS as V1_CREDENTIALS
from tests.edge.store.fixtures.make_v1 import write_v1_store

V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1.db"


def test_open_creates_a_private_file_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        accounts = raw.execute("SELECT id FROM accounts").fetchall()
    assert accounts == [(DEFAULT_ACCOUNT_ID,)]


def test_reopening_keeps_data_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        credential, token = store.create_credential(description="clinic-a")
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.authenticate(token) == credential
        assert store.list_credentials() == [credential]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    SQLiteStore.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="upgrade burrow-edge") as caught:
        SQLiteStore.open(path)
    assert str(path) in str(caught.value)
    assert f"schema version {len(MIGRATIONS) + 1}" in str(caught.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    path.write_bytes(b"this is not a database, it is a grocery list\n" * 100)
    with pytest.raises(StoreError, match="is not a Burrow store") as caught:
        SQLiteStore.open(path)
    assert str(path) in str(caught.value)


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "burrow.db"
    with pytest.raises(StoreError, match="check that its directory exists") as caught:
        SQLiteStore.open(path)
    assert str(path) in str(caught.value)


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    # A table the first migration wants to create already exists: the migration fails, and its
    # transaction is rolled back as a whole (the accounts table and the version stay untouched).
    path = tmp_path / "burrow.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE credentials (x INTEGER)")
    with pytest.raises(StoreError, match="cannot migrate"):
        SQLiteStore.open(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "accounts" not in tables


def test_a_version_1_store_upgrades_and_keeps_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    shutil.copyfile(V1_FIXTURE, path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS) >= 2
        listed = store.list_credentials()
        assert [c.id for c in listed] == [c["id"] for c in reversed(V1_CREDENTIALS)]
        for old in V1_CREDENTIALS:
            credential = store.get_credential(old["id"])
            assert credential is not None
            assert credential.owner_id is None
            assert credential.max_sessions is None and credential.max_endpoints is None
            assert credential.acl == tuple(old["acl"])
            assert credential.created_at == datetime.fromisoformat(old["created_at"])
            expected = credential if old["active"] else None
            assert store.authenticate(old["token"]) == expected
        # The new tables work on the upgraded file.
        user = store.create_service_user("clinic-a")
        owned, token = store.create_credential(owner_id=user.id)
        assert store.authenticate(token) == owned
    with SQLiteStore.open(path) as store:  # and a second open applies nothing
        assert store.schema_version == len(MIGRATIONS)
        assert len(store.list_credentials()) == len(V1_CREDENTIALS) + 1


def test_the_v1_fixture_is_what_its_script_writes(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    write_v1_store(path)

    def dump(file: Path) -> list[object]:
        with sqlite3.connect(file) as raw:
            schema = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            rows = raw.execute("SELECT * FROM credentials ORDER BY rowid")
            version = raw.execute("PRAGMA user_version").fetchone()
            return [schema.fetchall(), rows.fetchall(), version]

    assert dump(path) == dump(V1_FIXTURE)


def test_migration_2_alone_is_one_transaction(tmp_path: Path) -> None:
    # Version 1 present, and a table migration 2 wants already there: version 2 fails whole,
    # the file stays a working version 1 store.
    path = tmp_path / "burrow.db"
    shutil.copyfile(V1_FIXTURE, path)
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE events (x INTEGER)")
    with pytest.raises(StoreError, match="cannot migrate"):
        SQLiteStore.open(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in raw.execute("PRAGMA table_info(credentials)")}
    assert "service_users" not in tables
    assert "owner_id" not in columns


def test_a_newer_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    shutil.copyfile(V1_FIXTURE, path)
    SQLiteStore.open(path).close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError) as caught:
        SQLiteStore.open(path)
    assert str(caught.value) == (
        f"the store at {path} has schema version {newer}, but this burrow-edge knows only "
        f"versions up to {len(MIGRATIONS)}; upgrade burrow-edge to the release that wrote it"
    )
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == newer
        assert len(raw.execute("SELECT id FROM credentials").fetchall()) == len(V1_CREDENTIALS)


def test_concurrent_opens_of_a_new_file_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    stores: list[SQLiteStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(SQLiteStore.open(path))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert errors == []
        assert {store.schema_version for store in stores} == {len(MIGRATIONS)}
        stores[0].create_service_user("once")
        assert [u.name for u in stores[-1].list_service_users()] == ["once"]
    finally:
        for store in stores:
            store.close()


def write_v3_store(path: Path) -> dict[str, str]:
    """A store at schema version 3 (the release before per-credential limits), written with the
    released migrations and rows inserted as version 3 inserted them; returns the tokens."""
    fill = itertools.count(1)

    def token(prefix: str) -> tuple[str, str, bytes]:
        id_part = base64.b32encode(bytes([next(fill)]) * 16).decode("ascii").rstrip("=")
        secret = base64.urlsafe_b64encode(bytes([next(fill)]) * 32).decode("ascii").rstrip("=")
        return prefix + id_part, f"{id_part}_{secret}", hashlib.sha256(secret.encode()).digest()

    owned_id, owned_token, owned_hash = token("cr_")
    plain_id, plain_token, plain_hash = token("cr_")
    gone_id, gone_token, gone_hash = token("cr_")
    key_id, key_token, key_hash = token("ak_")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        for statement in itertools.chain.from_iterable(MIGRATIONS[:3]):
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 3")
        connection.execute(
            "INSERT INTO service_users (id, account_id, name, active, created_at)"
            " VALUES ('service_A', 'acct_default', 'clinic-a', 1, '2025-01-02T03:04:05Z')"
        )
        for id_, hash_, owner in (
            (owned_id, owned_hash, "service_A"),
            (plain_id, plain_hash, None),
        ):
            connection.execute(
                "INSERT INTO credentials (id, account_id, created_at, description, metadata,"
                " acl, token_hash, active, owner_id)"
                " VALUES (?, 'acct_default', '2025-01-02T03:04:06Z', 'v3', '', ?, ?, 1, ?)",
                (id_, json.dumps(["bind:*.clinic-a.internal"]), hash_, owner),
            )
        connection.execute(
            "INSERT INTO revoked_credentials (id, account_id, token_hash, revoked_at)"
            " VALUES (?, 'acct_default', ?, '2025-01-02T03:04:07Z')",
            (gone_id, gone_hash),
        )
        connection.execute(
            "INSERT INTO api_keys (id, account_id, created_at, description, metadata, owner_id,"
            " token_hash) VALUES (?, 'acct_default', '2025-01-02T03:04:08Z', 'ops', '', NULL, ?)",
            (key_id, key_hash),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return {"owned": owned_token, "plain": plain_token, "gone": gone_token, "key": key_token}


def test_a_version_3_store_upgrades_to_limits_and_keeps_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    tokens = write_v3_store(path)
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS) == 5
        for name in ("owned", "plain"):
            credential = store.authenticate(tokens[name])
            assert credential is not None and credential.description == "v3"
            assert credential.acl == ("bind:*.clinic-a.internal",)
            assert (credential.max_sessions, credential.max_endpoints) == (None, None)
        owned = store.authenticate(tokens["owned"])
        assert owned is not None and owned.owner_id == "service_A"
        assert store.revoked_credential_id(tokens["gone"]) is not None
        assert store.authenticate_api_key(tokens["key"]) is not None
        # The new columns work on the upgraded file.
        limited = store.update_credential(owned.id, max_sessions=2, max_endpoints=5)
        assert limited is not None and store.authenticate(tokens["owned"]) == limited
        fresh, fresh_token = store.create_credential(max_sessions=1)
        assert store.authenticate(fresh_token) == fresh and fresh.max_sessions == 1
    with SQLiteStore.open(path) as store:  # and a second open applies nothing
        assert store.schema_version == len(MIGRATIONS)
        assert store.authenticate(tokens["owned"]) == limited


def test_migration_4_alone_is_one_transaction(tmp_path: Path) -> None:
    # Version 3 present, and the second column migration 4 adds already there: version 4 fails
    # whole (the first column is not left behind), the file stays a working version 3 store.
    path = tmp_path / "burrow.db"
    write_v3_store(path)
    with sqlite3.connect(path) as raw:
        raw.execute("ALTER TABLE credentials ADD COLUMN max_endpoints INTEGER")
    with pytest.raises(StoreError, match="cannot migrate"):
        SQLiteStore.open(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
        columns = {row[1] for row in raw.execute("PRAGMA table_info(credentials)")}
    assert "max_sessions" not in columns


def test_the_file_refuses_a_limit_below_one(store: SQLiteStore) -> None:
    credential, _ = store.create_credential()
    with sqlite3.connect(store.path) as raw:
        for column in ("max_sessions", "max_endpoints"):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                raw.execute(f"UPDATE credentials SET {column} = 0 WHERE id = ?", (credential.id,))
    assert store.get_credential(credential.id) == credential


def test_a_store_locked_by_another_process_gets_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from edge.store import schema

    path = tmp_path / "burrow.db"
    SQLiteStore.open(path).close()
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")  # a rollback journal: EXCLUSIVE blocks reads
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            SQLiteStore.open(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    SQLiteStore.open(path).close()  # and it opens again once released


# ------------------------------------------------------------------------- damaged stores

PAGE = 4096  # SQLite's default page size, which every Burrow store uses


def _store_with_data(path: Path) -> str:
    """A closed store of a few dozen pages (credentials and events); returns one token."""
    with SQLiteStore.open(path) as store:
        _, token = store.create_credential(description="kept")
        for _ in range(30):
            store.create_credential(description="x" * 200)
        for n in range(200):
            store.append_event("test_event.v0", {"n": n, "pad": "y" * 300}, principal=None)
    return token


def test_an_empty_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    path.write_bytes(b"")
    with pytest.raises(EmptyStoreError) as caught:
        SQLiteStore.open(path)
    message = str(caught.value)
    assert message == (
        f"the store at {path} is empty (0 bytes): it was truncated or never written, and every "
        "authtoken and API key it held is gone; restore it from a backup"
    )
    assert path.read_bytes() == b""  # nothing was written: a backup can still be put there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burrow.db"]


def test_an_empty_file_becomes_a_new_store_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    path.write_bytes(b"")
    with SQLiteStore.open(path, new_store=True) as store:
        assert store.schema_version == len(MIGRATIONS)
        _, token = store.create_credential()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with SQLiteStore.open(path) as store:  # a store now: no flag needed
        assert store.authenticate(token) is not None


def test_new_store_never_replaces_a_store_with_data(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    token = _store_with_data(path)
    with SQLiteStore.open(path, new_store=True) as store:
        assert store.authenticate(token) is not None
        assert len(store.list_credentials()) == 31


def test_an_empty_file_with_a_write_ahead_log_is_refused_even_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    path.write_bytes(b"")
    wal = tmp_path / "burrow.db-wal"
    wal.write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 28)  # a WAL header: frames may follow
    with pytest.raises(StoreError, match="move both aside") as caught:
        SQLiteStore.open(path, new_store=True)
    assert str(wal) in str(caught.value)
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    "pages",
    [
        pytest.param(lambda count: [2], id="one-page"),  # quick_check lists the bad page
        pytest.param(lambda count: range(2, count, 3), id="every-third-page"),  # it gives up
    ],
)
def test_damaged_pages_fail_the_integrity_check_in_one_line(
    tmp_path: Path, pages: Callable[[int], Iterable[int]]
) -> None:
    path = tmp_path / "burrow.db"
    _store_with_data(path)
    data = bytearray(path.read_bytes())
    count = len(data) // PAGE
    assert count > 20
    for page in pages(count):  # page 0 (the header and schema) stays intact
        data[page * PAGE : (page + 1) * PAGE] = b"\xa5" * PAGE
    path.write_bytes(data)
    with pytest.raises(StoreError) as caught:
        SQLiteStore.open(path)
    message = str(caught.value)
    assert message.startswith(f"the store at {path} is damaged (SQLite's quick_check: ")
    assert message.endswith(
        "); restore it from a backup, or move it and its -wal file aside to start a new empty store"
    )
    assert "\n" not in message
    assert path.read_bytes() == data  # left as it was, for whoever tries to recover it


def test_a_new_store_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    SQLiteStore.open(path).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burrow.db"]


def test_without_hard_links_a_new_store_is_copied_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.store import schema

    def no_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as on a file system without them

    monkeypatch.setattr(schema.os, "link", no_links)
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burrow.db"]


def test_an_older_store_upgrades_to_cloud_endpoints_and_keeps_its_tokens(tmp_path: Path) -> None:
    """Version 5 adds the cloud endpoints table: a version-3 file gains it (through 4) without
    losing a token, and cloud endpoints written there survive a reopen."""
    path = tmp_path / "burrow.db"
    tokens = write_v3_store(path)
    with SQLiteStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS) == 5
        assert store.list_cloud_endpoints() == []
        created = store.create_cloud_endpoint(
            url="https://api.acme.example", traffic_policy="on_http_request: []"
        )
        assert store.authenticate(tokens["plain"]) is not None
    with SQLiteStore.open(path) as store:
        assert store.list_cloud_endpoints() == [created]
        assert store.authenticate_api_key(tokens["key"]) is not None
