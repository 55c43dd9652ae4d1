"""`edge.store.credentials` through `SQLiteStore`: creating, authenticating, listing, updating,
revoking and deleting credentials, on real SQLite files in a temporary directory."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.store import (
    CREDENTIAL_LIMIT_MAX,
    DEFAULT_ACCOUNT_ID,
    UNSET,
    Credential,
    NotFoundError,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.sources import NOW


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


def test_get_unknown_credential(store: SQLiteStore) -> None:
    assert store.get_credential("cr_nope") is None
    assert store.get_credential("") is None


def test_credential_with_an_owner(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    credential, token = store.create_credential(owner_id=user.id, acl=["bind:*.a.internal"])
    assert credential.owner_id == user.id
    assert store.get_credential(credential.id) == credential
    assert store.authenticate(token) == credential
    unowned, _ = store.create_credential()
    assert store.list_credentials(owner_id=user.id) == [credential]
    assert store.list_credentials() == [unowned, credential]


def test_credential_owner_must_exist_in_the_account(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES ('acct_two', 'two', ?)",
                ("2025-01-01T00:00:00Z",),
            )
        with pytest.raises(NotFoundError, match="'service_nope' is not a service user"):
            store.create_credential(owner_id="service_nope")
        foreign = store.create_service_user("clinic-a", account_id="acct_two")
        with pytest.raises(NotFoundError, match="of account 'acct_default'"):
            store.create_credential(owner_id=foreign.id)
        assert store.list_credentials() == []


def test_set_credential_active(store: SQLiteStore) -> None:
    credential, token = store.create_credential()
    off = store.set_credential_active(credential.id, False)
    assert off == replace(credential, active=False)
    assert store.authenticate(token) is None
    assert store.get_credential(credential.id) == off
    on = store.set_credential_active(credential.id, True)
    assert on == credential
    assert store.authenticate(token) == credential
    assert store.set_credential_active("cr_nope", False) is None
    with pytest.raises(StoreError, match="active must be true or false"):
        store.set_credential_active(credential.id, 0)  # type: ignore[arg-type]


def test_revoked_tokens_are_told_apart_from_invalid_ones(store: SQLiteStore) -> None:
    kept, kept_token = store.create_credential()
    deleted, deleted_token = store.create_credential()
    paused, paused_token = store.create_credential()
    assert store.delete_credential(deleted.id)
    store.set_credential_active(paused.id, False)
    assert store.revoked_credential_id(deleted_token) == deleted.id
    assert store.revoked_credential_id(paused_token) == paused.id
    assert store.revoked_credential_id(kept_token) is None
    # Knowing a revoked credential's id is not enough: the secret must match too.
    forged = deleted_token.rsplit("_", 1)[0] + "_" + "A" * 43
    assert store.revoked_credential_id(forged) is None
    assert store.revoked_credential_id("garbage") is None
    assert store.usable_credentials([kept.id, deleted.id, paused.id, "cr_unknown"]) == {kept.id}


def test_usable_credentials_handles_many_ids(store: SQLiteStore) -> None:
    made = [store.create_credential()[0].id for _ in range(3)]
    asked = made + [f"cr_missing{i}" for i in range(1200)]
    assert store.usable_credentials(asked) == set(made)


def test_create_a_credential_with_limits(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as store:
        credential, token = store.create_credential(max_sessions=2, max_endpoints=10)
        assert credential == Credential(
            id=credential.id,
            account_id=DEFAULT_ACCOUNT_ID,
            created_at=NOW.replace(microsecond=0),
            description="",
            metadata="",
            acl=(),
            active=True,
            max_sessions=2,
            max_endpoints=10,
        )
        assert store.get_credential(credential.id) == credential
        assert store.authenticate(token) == credential
        assert store.list_credentials() == [credential]
        unlimited, _ = store.create_credential()
        assert (unlimited.max_sessions, unlimited.max_endpoints) == (None, None)
        edge = store.create_credential(max_sessions=CREDENTIAL_LIMIT_MAX, max_endpoints=1)[0]
        assert store.get_credential(edge.id) == edge


def test_update_credential_changes_only_what_is_given(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    credential, token = store.create_credential(
        description="box", metadata="m", acl=["bind:a.test"], owner_id=user.id, max_sessions=3
    )
    assert store.update_credential(credential.id) == credential  # nothing given, nothing changed
    described = store.update_credential(credential.id, description="front desk")
    assert described == replace(credential, description="front desk")
    everything = store.update_credential(
        credential.id,
        description="",
        metadata='{"site": 9}',
        acl=["bind:*.clinic-a.internal", "bind:b.test"],
        max_sessions=5,
        max_endpoints=2,
    )
    assert everything == replace(
        credential,
        description="",
        metadata='{"site": 9}',
        acl=("bind:*.clinic-a.internal", "bind:b.test"),
        max_sessions=5,
        max_endpoints=2,
    )
    assert store.get_credential(credential.id) == everything
    assert store.authenticate(token) == everything  # the token is untouched
    # UNSET (the default) keeps a limit; None removes it; an empty ACL is "unrestricted".
    kept = store.update_credential(credential.id, max_sessions=UNSET, max_endpoints=UNSET)
    assert kept == everything
    cleared = store.update_credential(credential.id, max_sessions=None, acl=[])
    assert cleared == replace(everything, max_sessions=None, acl=())
    assert store.get_credential(credential.id) == cleared
    assert cleared is not None and cleared.max_endpoints == 2
    off = store.update_credential(credential.id, active=False)
    assert off == replace(cleared, active=False) and store.authenticate(token) is None
    assert store.revoked_credential_id(token) == credential.id
    on = store.update_credential(credential.id, active=True)
    assert on == cleared and store.authenticate(token) == cleared
    assert store.update_credential("cr_nope", description="x") is None
    assert store.update_credential("cr_nope") is None


def test_update_credential_refuses_bad_input_and_writes_nothing(store: SQLiteStore) -> None:
    credential, _ = store.create_credential(description="box", acl=["bind:a.test"])
    with pytest.raises(StoreError, match=r"ACL rule 1 \('example.com'\)") as caught:
        store.update_credential(credential.id, description="new", acl=["example.com"])
    assert caught.value.code == "ERR_NGROK_10007"
    with pytest.raises(StoreError, match="not one string"):
        store.update_credential(credential.id, acl="bind:*")
    with pytest.raises(StoreError, match="description is 256 bytes"):
        store.update_credential(credential.id, description="d" * 256, max_sessions=1)
    with pytest.raises(StoreError, match="metadata is 4097 bytes"):
        store.update_credential(credential.id, metadata="m" * 4097)
    with pytest.raises(StoreError, match="active must be true or false"):
        store.update_credential(credential.id, active=1)  # type: ignore[arg-type]
    assert store.get_credential(credential.id) == credential
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.update_credential(credential.id, description="x")
    with pytest.raises(StoreError, match="is closed"):
        store.update_api_key("ak_x", description="x")
