"""Fixtures of the session tests: a real SQLite store, a hub over it, an agent's authtoken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import EdgeConfig
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def hub(store: SQLiteStore) -> EdgeHub:
    return EdgeHub(EdgeConfig(), store)


@pytest.fixture
def token(store: SQLiteStore) -> str:
    _, secret = store.create_credential(description="agent")
    return secret
