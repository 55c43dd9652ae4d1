"""The store tests' fixtures: a real SQLite store in the test's temporary directory, and one
shared by a whole test module (for Hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    # Module-scoped: Hypothesis runs a test body many times under one fixture value.
    with SQLiteStore.open(tmp_path_factory.mktemp("shared") / "burrow.db") as opened:
        opened.create_credential()
        yield opened
