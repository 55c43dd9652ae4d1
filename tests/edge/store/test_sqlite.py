"""`edge.store.sqlite`: `SQLiteStore`'s behaviour on real SQLite files in a temporary directory."""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from edge.store import (
    CREDENTIAL_LIMIT_MAX,
    DEFAULT_ACCOUNT_ID,
    UNSET,
    ApiKey,
    ConflictError,
    Credential,
    DeletedServiceUser,
    Event,
    NotFoundError,
    ServiceUser,
    SQLiteStore,
    StoreError,
)
from tests.edge.store.sources import NOW, counting_bytes

PRINCIPAL = {
    "id": "service_X",
    "subject": "clinic-a",
    "source": "API",
    "credential": {"id": "cr_Y", "uri": ""},
}


def ticking_clock() -> Callable[[], datetime]:
    """A clock that moves one millisecond a call, from NOW."""
    ticks = itertools.count()
    return lambda: NOW + timedelta(milliseconds=next(ticks))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    # Module-scoped: Hypothesis runs a test body many times under one fixture value.
    with SQLiteStore.open(tmp_path_factory.mktemp("shared") / "burrow.db") as opened:
        opened.create_credential()
        yield opened


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


def test_two_stores_share_service_users_and_events(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as edge, SQLiteStore.open(path) as cli:
        user = cli.create_service_user("clinic-a")
        credential, token = cli.create_credential(owner_id=user.id)
        assert edge.authenticate(token) == credential
        with pytest.raises(ConflictError):
            edge.create_service_user("clinic-a")
        edge.update_service_user(user.id, active=False)
        assert cli.authenticate(token) is None
        event = edge.append_event("agent_session_start.v0", {"x": 1}, principal=None)
        assert cli.list_events() == [event]


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


def test_append_and_read_an_event(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path, clock=lambda: NOW, random_bytes=counting_bytes()) as store:
        event = store.append_event(
            "agent_session_start.v0",
            {"session": {"id": "ts_1"}, "agent_ip": "203.0.113.9", "os": "linux", "n": (1, 2)},
            principal=PRINCIPAL,
        )
        assert event == Event(
            id="ev_AEAQCAIBAEAQCAIBAEAQCAIBAE",
            account_id=DEFAULT_ACCOUNT_ID,
            event_type="agent_session_start.v0",
            timestamp=NOW,  # microseconds kept
            principal=PRINCIPAL,
            object={
                "session": {"id": "ts_1"},
                "agent_ip": "203.0.113.9",
                "os": "linux",
                "n": [1, 2],  # as JSON gives it back
            },
        )
        assert store.list_events() == [event]
    with sqlite3.connect(path) as raw:
        (timestamp,) = raw.execute("SELECT timestamp FROM events").fetchone()
    assert timestamp == "2025-03-14T15:09:26.535897Z"


def test_events_list_newest_first_with_filters_and_paging(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=ticking_clock()) as store:
        other = {**PRINCIPAL, "id": "service_Z"}
        made = [
            store.append_event("agent_session_start.v0", {"i": 0}, principal=PRINCIPAL),
            store.append_event("agent_session_start.v0", {"i": 1}, principal=other),
            store.append_event("agent_session_stop.v0", {"i": 2}, principal=PRINCIPAL),
            store.append_event("tunnel_credential_created.v0", {"i": 3}, principal=None),
            store.append_event("agent_session_stop.v0", {"i": 4}, principal=other),
        ]
        newest_first = made[::-1]
        assert store.list_events() == newest_first
        assert store.list_events(limit=2) == newest_first[:2]
        assert store.list_events(limit=2, before_id=newest_first[1].id) == newest_first[2:4]
        assert store.list_events(before_id=made[0].id) == []
        assert store.list_events(event_type="agent_session_stop.v0") == [made[4], made[2]]
        assert store.list_events(principal_id="service_X") == [made[2], made[0]]
        assert store.list_events(principal_id="service_Z", event_type="agent_session_start.v0") == [
            made[1]
        ]
        assert store.list_events(event_type="agent_session_start.v0", before_id=made[1].id) == [
            made[0]
        ]
        assert store.list_events(account_id=DEFAULT_ACCOUNT_ID) == newest_first
        assert store.list_events(account_id="acct_none") == []
        assert store.list_events(event_type="nothing.v0") == []


def test_paging_walks_every_event_once_even_within_one_timestamp(tmp_path: Path) -> None:
    # Every event in the same microsecond: order must come from the sequence, not the clock.
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as store:
        made = [store.append_event("x.v0", {"i": i}, principal=None) for i in range(23)]
        seen: list[Event] = []
        page = store.list_events(limit=5)
        while page:
            seen.extend(page)
            page = store.list_events(limit=5, before_id=page[-1].id)
        assert seen == made[::-1]


def test_event_bad_input(store: SQLiteStore) -> None:
    for bad_type in [
        "",
        "Agent.v0",
        "agent_session_start",
        "a.v",
        "a b.v0",
        "a.v0\n",
        7,
        "a" * 200 + ".v0",
    ]:
        with pytest.raises(StoreError, match=r"is not of the form 'name\.v0'"):
            store.append_event(bad_type, {}, principal=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event object must be a JSON object"):
        store.append_event("a.v0", [1], principal=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event principal must be a JSON object"):
        store.append_event("a.v0", {}, principal="service_X")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="event object is not JSON"):
        store.append_event("a.v0", {"when": datetime.now(UTC)}, principal=None)
    with pytest.raises(StoreError, match="event object is not JSON"):
        store.append_event("a.v0", {"x": float("nan")}, principal=None)
    with pytest.raises(StoreError, match="principal id must be a string"):
        store.append_event("a.v0", {}, principal={"id": 7})
    with pytest.raises(StoreError, match="the limit is 65536"):
        store.append_event("a.v0", {"big": "x" * 65536}, principal=None)
    with pytest.raises(StoreError, match="acct_nobody"):
        store.append_event("a.v0", {}, principal=None, account_id="acct_nobody")
    assert store.list_events() == []
    for bad_limit in [0, -1, 1001, True, 2.5]:
        with pytest.raises(StoreError, match="limit must be from 1 to 1000"):
            store.list_events(limit=bad_limit)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no event 'ev_nope'"):
        store.list_events(before_id="ev_nope")


def test_events_outlive_the_principal_they_name(store: SQLiteStore) -> None:
    user = store.create_service_user("clinic-a")
    event = store.append_event(
        "agent_session_start.v0", {}, principal={"id": user.id, "subject": user.name}
    )
    store.delete_service_user(user.id)
    assert store.list_events(principal_id=user.id) == [event]


def test_new_methods_on_a_closed_store_raise_store_error(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "burrow.db")
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.create_service_user("x")
    with pytest.raises(StoreError, match="is closed"):
        store.append_event("a.v0", {}, principal=None)
    with pytest.raises(StoreError, match="is closed"):
        store.authenticate_api_key("AEAQCAIBAEAQCAIBAEAQCAIBAE_" + "A" * 43)


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


def test_observe_latency_sees_every_call_failed_ones_too(tmp_path: Path) -> None:
    """The edge's store latency metric: one observation per call, in seconds."""
    seen: list[float] = []
    store = SQLiteStore.open(tmp_path / "burrow.db")
    store.observe_latency(seen.append)
    store.create_credential(description="x")
    store.list_credentials()
    assert len(seen) == 2
    assert all(0 <= seconds < 5 for seconds in seen)
    store.observe_latency(None)
    store.list_credentials()
    assert len(seen) == 2
    store.observe_latency(seen.append)
    store.close()
    with pytest.raises(StoreError):
        store.list_credentials()
    assert len(seen) == 3
