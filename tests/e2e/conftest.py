from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import EchoServer, Edge, make_edge


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    running = make_edge(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()
