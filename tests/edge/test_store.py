"""The SQLite store: real SQLite files in a temporary directory, no mocks."""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    MIGRATIONS,
    Credential,
    SQLiteStore,
    Store,
    StoreError,
)

NOW = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


def counting_bytes() -> Callable[[int], bytes]:
    """A deterministic random source: each call returns the next counter value, repeated."""
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return random_bytes


def test_sqlite_store_is_a_store(store: SQLiteStore) -> None:
    assert isinstance(store, Store)


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


def test_token_shape_follows_ngrok(store: SQLiteStore) -> None:
    credential, token = store.create_credential()
    assert re.fullmatch(r"cr_[A-Z2-7]{26}", credential.id)
    id_part, _, secret = token.partition("_")
    assert "cr_" + id_part == credential.id
    assert len(secret) >= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)


def test_create_returns_the_stored_credential(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as store:
        credential, _ = store.create_credential(
            description="clinic-a agent", metadata='{"site": 7}', acl=["bind:*.clinic-a.internal"]
        )
        assert credential == Credential(
            id=credential.id,
            account_id=DEFAULT_ACCOUNT_ID,
            created_at=NOW.replace(microsecond=0),
            description="clinic-a agent",
            metadata='{"site": 7}',
            acl=("bind:*.clinic-a.internal",),
            active=True,
        )
        assert store.get_credential(credential.id) == credential


def test_created_at_is_rfc3339_utc_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    east = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    with SQLiteStore.open(path, clock=lambda: east) as store:
        credential, _ = store.create_credential()
    assert credential.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert credential.created_at.utcoffset() == timedelta(0)
    with sqlite3.connect(path) as raw:
        (created_at,) = raw.execute("SELECT created_at FROM credentials").fetchone()
    assert created_at == "2025-01-02T03:04:05Z"


def test_only_a_sha256_of_the_secret_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        _, token = store.create_credential()
    secret = token.partition("_")[2]
    for file in tmp_path.glob("burrow.db*"):  # the database, and any -wal or -shm left
        assert secret.encode() not in file.read_bytes()
    with sqlite3.connect(path) as raw:
        (stored,) = raw.execute("SELECT token_hash FROM credentials").fetchone()
    assert stored == hashlib.sha256(secret.encode()).digest()


def test_injected_random_source_makes_ids_and_tokens(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", random_bytes=counting_bytes()) as store:
        credential, token = store.create_credential()
    # 16 bytes of 0x01 in base32, then 32 bytes of 0x02 in url-safe base64.
    assert credential.id == "cr_AEAQCAIBAEAQCAIBAEAQCAIBAE"
    assert token == "AEAQCAIBAEAQCAIBAEAQCAIBAE_" + "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"


def test_authenticate_accepts_the_token(store: SQLiteStore) -> None:
    credential, token = store.create_credential(acl=["bind:a.example.test"])
    assert store.authenticate(token) == credential


def test_authenticate_refuses_a_wrong_secret(store: SQLiteStore) -> None:
    credential, token = store.create_credential()
    id_part, _, secret = token.partition("_")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    assert store.authenticate(f"{id_part}_{flipped}") is None
    assert store.authenticate(f"{id_part}_{secret}x") is None
    assert store.authenticate(token) == credential


def test_authenticate_refuses_another_credentials_secret(store: SQLiteStore) -> None:
    _, first_token = store.create_credential()
    _, second_token = store.create_credential()
    swapped = first_token.partition("_")[0] + "_" + second_token.partition("_")[2]
    assert store.authenticate(swapped) is None


def test_authenticate_refuses_unknown_and_malformed(store: SQLiteStore) -> None:
    _, token = store.create_credential()
    id_part, _, secret = token.partition("_")
    unknown_id = ("A" if id_part[0] != "A" else "B") + id_part[1:]
    for bad in [
        "",
        "_",
        token + " ",
        " " + token,
        "cr_" + token,
        f"{unknown_id}_{secret}",
        f"{id_part}_{secret[:31]}",  # too short a secret
        f"{id_part.lower()}_{secret}",
        secret,
        id_part,
        token.replace("_", "-", 1),
        token + "\x00",
        "\ud800" + token,  # a lone surrogate: cannot even be encoded
        "x" * 10_000,
        token * 100,
    ]:
        assert store.authenticate(bad) is None, bad


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    # Module-scoped: Hypothesis runs a test body many times under one fixture value.
    with SQLiteStore.open(tmp_path_factory.mktemp("shared") / "burrow.db") as opened:
        opened.create_credential()
        yield opened


@given(token=st.text() | st.from_regex(r"[A-Z2-7]{26}_[A-Za-z0-9_-]{32,50}", fullmatch=True))
def test_authenticate_never_raises(shared_store: SQLiteStore, token: str) -> None:
    assert shared_store.authenticate(token) is None


def test_deleted_credential_stops_authenticating(store: SQLiteStore) -> None:
    credential, token = store.create_credential()
    assert store.delete_credential(credential.id) is True
    assert store.authenticate(token) is None
    assert store.get_credential(credential.id) is None
    assert store.delete_credential(credential.id) is False


def test_inactive_credential_does_not_authenticate(tmp_path: Path) -> None:
    # There is no API to deactivate yet; flip the column the way a future one would.
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        credential, token = store.create_credential()
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE credentials SET active = 0 WHERE id = ?", (credential.id,))
        assert store.authenticate(token) is None
        stored = store.get_credential(credential.id)
        assert stored is not None
        assert stored.active is False


def test_list_is_newest_first_and_filters_by_account(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path, clock=lambda: NOW) as store:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES ('acct_two', 'two', ?)",
                ("2025-01-01T00:00:00Z",),
            )
        first, _ = store.create_credential(description="first")
        second, _ = store.create_credential(description="second", account_id="acct_two")
        third, _ = store.create_credential(description="third")
        assert store.list_credentials() == [third, second, first]
        assert store.list_credentials(account_id=DEFAULT_ACCOUNT_ID) == [third, first]
        assert store.list_credentials(account_id="acct_two") == [second]
        assert store.list_credentials(account_id="acct_none") == []


def test_unknown_account_is_refused(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="acct_nobody"):
        store.create_credential(account_id="acct_nobody")
    assert store.list_credentials() == []


def test_field_limits(store: SQLiteStore) -> None:
    store.create_credential(description="d" * 255, metadata="m" * 4096)
    with pytest.raises(StoreError, match="description is 256 bytes; the limit is 255"):
        store.create_credential(description="d" * 256)
    with pytest.raises(StoreError, match="metadata is 4097 bytes; the limit is 4096"):
        store.create_credential(metadata="m" * 4097)
    with pytest.raises(StoreError, match="description is 256 bytes"):
        store.create_credential(description="é" * 128)  # 128 characters, 256 UTF-8 bytes
    with pytest.raises(StoreError, match="not one string"):
        store.create_credential(acl="bind:*")
    with pytest.raises(StoreError, match="rules must be strings"):
        store.create_credential(acl=[7])  # type: ignore[list-item]
    assert len(store.list_credentials()) == 1


def test_get_unknown_credential(store: SQLiteStore) -> None:
    assert store.get_credential("cr_nope") is None
    assert store.get_credential("") is None


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "burrow.db")
    _, token = store.create_credential()
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        store.list_credentials()
    with pytest.raises(StoreError, match="is closed"):
        store.authenticate(token)


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    # Two connections, as the edge and the CLI would hold: WAL lets both work.
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as edge, SQLiteStore.open(path) as cli:
        credential, token = cli.create_credential(description="from the cli")
        assert edge.authenticate(token) == credential
        assert edge.delete_credential(credential.id)
        assert cli.authenticate(token) is None


def test_calls_from_many_threads(store: SQLiteStore) -> None:
    tokens: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(20):
                credential, token = store.create_credential()
                assert store.authenticate(token) == credential
                with lock:
                    tokens.append(token)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(store.list_credentials()) == len(tokens) == 160
    assert all(store.authenticate(token) is not None for token in tokens)


async def test_usable_from_trio_through_a_thread(store: SQLiteStore) -> None:
    with trio.fail_after(10):
        credential, token = await trio.to_thread.run_sync(store.create_credential)
        assert await trio.to_thread.run_sync(store.authenticate, token) == credential
