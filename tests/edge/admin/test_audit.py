"""Who an admin API call acts as (`edge.admin.audit`): the principal of the audit event it
records, in a real SQLite store and events file, and the name an agent is told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.admin.audit import WHO_DESCRIPTION_MAX, record, who_asks
from edge.admin.calls import Call, Request
from edge.events import EventLog
from edge.store import ApiKey, SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


def call_with(key: ApiKey) -> Call:
    request = Request(
        method="POST",
        target="/service_users",
        headers=(),
        body=b"",
        remote="192.0.2.1",
        base_url="http://127.0.0.1:4041",
    )
    return Call(request=request, key=key, path="/service_users", ids=(), query={})


def test_the_principal_is_the_keys_owner_with_the_key_as_credential(
    store: SQLiteStore, tmp_path: Path
) -> None:
    user = store.create_service_user("deploy bot")
    key, _ = store.create_api_key(description="ci key", owner_id=user.id)
    events = EventLog(store, tmp_path / "events.jsonl")
    record(events, call_with(key), "service_user_updated.v0", {"id": user.id})
    (event,) = store.list_events()
    assert event.event_type == "service_user_updated.v0"
    assert event.object == {"id": user.id}
    assert event.principal == {
        "id": user.id,
        "subject": "ci key",
        "source": "API",
        "credential": {"id": key.id, "uri": f"/api_keys/{key.id}"},
    }
    (line,) = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(line)["principal"] == event.principal


def test_a_key_without_owner_or_description_is_its_own_principal(
    store: SQLiteStore, tmp_path: Path
) -> None:
    key, _ = store.create_api_key()
    record(EventLog(store, None), call_with(key), "api_key_created.v0", {"id": key.id})
    (event,) = store.list_events()
    assert event.principal is not None
    assert (event.principal["id"], event.principal["subject"]) == (key.id, key.id)


def test_who_asks_names_the_key_and_a_printable_bounded_description(store: SQLiteStore) -> None:
    plain, _ = store.create_api_key()
    assert who_asks(plain) == f"the admin API, key {plain.id}"
    noisy, _ = store.create_api_key(description="ops\x1b[31m laptop" + "x" * 200)
    told = who_asks(noisy)
    assert told.startswith(f"the admin API, key {noisy.id} (ops[31m laptop")
    described = told.removeprefix(f"the admin API, key {noisy.id} (").removesuffix(")")
    assert len(described) == WHO_DESCRIPTION_MAX
    assert all(c.isprintable() for c in told)
