from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import EchoServer, Edge, make_edge
from tests.e2e.upstreams import HttpUpstream


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


@pytest.fixture
def upstream() -> Iterator[HttpUpstream]:
    """An HTTP/1.1 upstream (tests/e2e/upstreams.py) on a free loopback port."""
    server = HttpUpstream()
    try:
        yield server
    finally:
        server.close()
