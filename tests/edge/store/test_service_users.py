"""`edge.store.service_users` through `SQLiteStore`: service users, the tokens they own, and the
cascade that deleting or deactivating one runs, on real SQLite files."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    ConflictError,
    DeletedServiceUser,
    ServiceUser,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.sources import NOW


def test_service_user_crud(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as store:
        user = store.create_service_user("clinic-a")
        assert re.fullmatch(r"service_[A-Z2-7]{26}", user.id)
        assert user == ServiceUser(
            id=user.id,
            account_id=DEFAULT_ACCOUNT_ID,
            name="clinic-a",
            active=True,
            created_at=NOW.replace(microsecond=0),
        )
        assert store.get_service_user(user.id) == user
        other = store.create_service_user("clinic-b", active=False)
        assert other.active is False
        assert store.list_service_users() == [other, user]

        renamed = store.update_service_user(user.id, name="clinic-a2")
        assert renamed == replace(user, name="clinic-a2")
        off = store.update_service_user(user.id, active=False)
        assert off == replace(user, name="clinic-a2", active=False)
        assert store.update_service_user(user.id) == off  # nothing to change
        assert store.update_service_user(user.id, name="clinic-a2") == off  # its own name
        assert store.get_service_user(user.id) == off
        assert store.update_service_user("service_nope", active=True) is None

        deleted = store.delete_service_user(user.id)
        assert deleted == DeletedServiceUser(service_user=off, credential_ids=(), api_key_ids=())
        assert store.get_service_user(user.id) is None
        assert store.delete_service_user(user.id) is None
        assert store.list_service_users() == [other]


def test_service_user_names_are_unique_per_account(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES ('acct_two', 'two', ?)",
                ("2025-01-01T00:00:00Z",),
            )
        first = store.create_service_user("clinic-a")
        with pytest.raises(ConflictError, match="'clinic-a' already exists") as caught:
            store.create_service_user("clinic-a")
        assert first.id in str(caught.value)
        assert isinstance(caught.value, StoreError)
        elsewhere = store.create_service_user("clinic-a", account_id="acct_two")
        assert store.list_service_users(account_id="acct_two") == [elsewhere]
        assert store.list_service_users(account_id=DEFAULT_ACCOUNT_ID) == [first]

        second = store.create_service_user("clinic-b")
        with pytest.raises(ConflictError, match="'clinic-a' already exists"):
            store.update_service_user(second.id, name="clinic-a", active=False)
        assert store.get_service_user(second.id) == second  # nothing half-written
        assert len(store.list_service_users()) == 3


def test_service_user_bad_input(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="name must not be empty"):
        store.create_service_user("")
    with pytest.raises(StoreError, match="name must not be empty"):
        store.create_service_user("   ")
    with pytest.raises(StoreError, match="name is 256 bytes; the limit is 255"):
        store.create_service_user("n" * 256)
    with pytest.raises(StoreError, match="name must be a string"):
        store.create_service_user(7)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="active must be true or false"):
        store.create_service_user("x", active=1)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="acct_nobody"):
        store.create_service_user("x", account_id="acct_nobody")
    user = store.create_service_user("ok")
    with pytest.raises(StoreError, match="name must not be empty"):
        store.update_service_user(user.id, name="")
    with pytest.raises(StoreError, match="active must be true or false"):
        store.update_service_user(user.id, active="no")  # type: ignore[arg-type]
    assert store.list_service_users() == [user]


def test_inactive_owner_stops_its_credentials(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    credential, token = store.create_credential(owner_id=user.id)
    _, other_token = store.create_credential()
    store.update_service_user(user.id, active=False)
    assert store.authenticate(token) is None
    assert store.authenticate(other_token) is not None
    assert store.get_credential(credential.id) == credential  # still active itself
    store.update_service_user(user.id, active=True)
    assert store.authenticate(token) == credential


def test_a_service_user_created_inactive_owns_tokens_that_do_not_work(store: SQLiteStore) -> None:
    user = store.create_service_user("later", active=False)
    _, token = store.create_credential(owner_id=user.id)
    assert store.authenticate(token) is None


def test_deleting_a_service_user_deletes_what_it_owns(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    first, first_token = store.create_credential(owner_id=user.id)
    second, second_token = store.create_credential(owner_id=user.id)
    key, key_token = store.create_api_key(owner_id=user.id)
    kept, kept_token = store.create_credential()
    deleted = store.delete_service_user(user.id)
    assert deleted is not None
    assert deleted.credential_ids == (first.id, second.id)
    assert deleted.api_key_ids == (key.id,)
    assert store.authenticate(first_token) is None
    assert store.authenticate(second_token) is None
    assert store.authenticate_api_key(key_token) is None
    assert store.list_credentials() == [kept]
    assert store.list_api_keys() == []
    assert store.authenticate(kept_token) == kept


def test_a_deactivated_or_deleted_owner_revokes_its_credentials(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    owned, token = store.create_credential(owner_id=user.id)
    assert store.usable_credentials([owned.id]) == {owned.id}
    store.update_service_user(user.id, active=False)
    assert store.usable_credentials([owned.id]) == set()
    assert store.revoked_credential_id(token) == owned.id
    store.update_service_user(user.id, active=True)
    assert store.usable_credentials([owned.id]) == {owned.id}
    store.delete_service_user(user.id)
    assert store.revoked_credential_id(token) == owned.id
