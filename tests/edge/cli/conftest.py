"""Fixtures for the `burrow-edge` CLI tests: the fake admin API, and no API key or URL leaking in
from the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.edge.cli.fake_api import FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURROW_API_KEY", raising=False)
    monkeypatch.delenv("BURROW_API_URL", raising=False)
