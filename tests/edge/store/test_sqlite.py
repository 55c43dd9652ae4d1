"""`edge.store.sqlite`: `SQLiteStore`'s behaviour on real SQLite files in a temporary directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from edge.store import ConflictError, SQLiteStore, StoreError


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


def test_new_methods_on_a_closed_store_raise_store_error(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "burrow.db")
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.create_service_user("x")
    with pytest.raises(StoreError, match="is closed"):
        store.append_event("a.v0", {}, principal=None)
    with pytest.raises(StoreError, match="is closed"):
        store.authenticate_api_key("AEAQCAIBAEAQCAIBAEAQCAIBAE_" + "A" * 43)


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
