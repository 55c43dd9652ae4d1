"""`edge.store.api_keys` through `SQLiteStore`: API keys created, authenticated, updated and
deleted, on real SQLite files in a temporary directory."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    ApiKey,
    NotFoundError,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.sources import NOW


def test_api_key_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path, clock=lambda: NOW) as store:
        user = store.create_service_user("automation")
        key, token = store.create_api_key(
            description="ci", metadata='{"team": "ops"}', owner_id=user.id
        )
        assert re.fullmatch(r"ak_[A-Z2-7]{26}", key.id)
        assert key == ApiKey(
            id=key.id,
            account_id=DEFAULT_ACCOUNT_ID,
            created_at=NOW.replace(microsecond=0),
            description="ci",
            metadata='{"team": "ops"}',
            owner_id=user.id,
        )
        assert "ak_" + token.partition("_")[0] == key.id
        assert store.authenticate_api_key(token) == key
        assert store.authenticate(token) is None  # an API key is not an authtoken
        assert store.get_api_key(key.id) == key
        plain, plain_token = store.create_api_key()
        assert plain.owner_id is None
        assert store.list_api_keys() == [plain, key]
        assert store.list_api_keys(owner_id=user.id) == [key]
        assert store.list_api_keys(account_id="acct_none") == []

        store.update_service_user(user.id, active=False)
        assert store.authenticate_api_key(token) is None
        store.update_service_user(user.id, active=True)

        assert store.delete_api_key(key.id) is True
        assert store.authenticate_api_key(token) is None
        assert store.get_api_key(key.id) is None
        assert store.delete_api_key(key.id) is False
        assert store.authenticate_api_key(plain_token) == plain
    with sqlite3.connect(path) as raw:
        (stored,) = raw.execute("SELECT token_hash FROM api_keys").fetchone()
    assert stored == hashlib.sha256(plain_token.partition("_")[2].encode()).digest()
    for file in tmp_path.glob("burrow.db*"):
        assert plain_token.partition("_")[2].encode() not in file.read_bytes()


def test_api_key_bad_input(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="API key description is 256 bytes"):
        store.create_api_key(description="d" * 256)
    with pytest.raises(StoreError, match="API key metadata is 4097 bytes"):
        store.create_api_key(metadata="m" * 4097)
    with pytest.raises(NotFoundError, match="service_nope"):
        store.create_api_key(owner_id="service_nope")
    with pytest.raises(StoreError, match="acct_nobody"):
        store.create_api_key(account_id="acct_nobody")
    assert store.list_api_keys() == []


def test_authenticate_api_key_refuses_credentials_and_junk(store: SQLiteStore) -> None:
    _, credential_token = store.create_credential()
    _, key_token = store.create_api_key()
    id_part, _, secret = key_token.partition("_")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in [
        "",
        credential_token,
        f"{id_part}_{flipped}",
        "ak_" + key_token,
        "\ud800",
        "x" * 9999,
    ]:
        assert store.authenticate_api_key(bad) is None, bad


@given(token=st.text() | st.from_regex(r"[A-Z2-7]{26}_[A-Za-z0-9_-]{32,50}", fullmatch=True))
def test_authenticate_api_key_never_raises(shared_store: SQLiteStore, token: str) -> None:
    assert shared_store.authenticate_api_key(token) is None


def test_update_api_key(store: SQLiteStore) -> None:
    user = store.create_service_user("automation")
    key, token = store.create_api_key(description="ci", metadata="m", owner_id=user.id)
    assert store.update_api_key(key.id) == key
    renamed = store.update_api_key(key.id, description="deploys")
    assert renamed == replace(key, description="deploys")
    both = store.update_api_key(key.id, description="", metadata='{"team": "ops"}')
    assert both == replace(key, description="", metadata='{"team": "ops"}')
    assert store.get_api_key(key.id) == both
    assert store.authenticate_api_key(token) == both
    assert store.update_api_key("ak_nope", description="x") is None
    with pytest.raises(StoreError, match="API key description is 256 bytes"):
        store.update_api_key(key.id, description="d" * 256)
    with pytest.raises(StoreError, match="API key metadata is 4097 bytes"):
        store.update_api_key(key.id, description="kept?", metadata="m" * 4097)
    assert store.get_api_key(key.id) == both
