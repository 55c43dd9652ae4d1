"""Fixtures of the admin API's route tests: a real SQLite store in a temp dir, the stand-in
for the running edge, and a client with an API key (tests/edge/admin/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.admin.auth import FailedAuthLimiter
from edge.admin.routes import AdminApi
from edge.events import EventLog
from edge.store import SQLiteStore
from tests.edge.admin.harness import Client, FakeLive


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def live(store: SQLiteStore) -> FakeLive:
    return FakeLive(store)


@pytest.fixture
def client(store: SQLiteStore, live: FakeLive, tmp_path: Path) -> Client:
    api = AdminApi(
        store,
        live,
        EventLog(store, tmp_path / "events.jsonl"),
        limiter=FailedAuthLimiter(burst=3, refill_seconds=10),
    )
    _, token = store.create_api_key(description="test key")
    return Client(api, token)
