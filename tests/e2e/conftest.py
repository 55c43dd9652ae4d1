from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import SHARED_PORT_RANGE, EchoServer, Edge, make_edge
from tests.e2e.upstreams import HttpUpstream


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    running = make_edge(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One edge (default config) for the tests of a module that do not need a fresh one.

    A test may use it only if it holds without the edge being fresh: no assertion that
    something is absent from the whole log (use `log_size`/`log_since` for the test's own
    lines), no counts of what the store or admin API holds, no restart or special config, and
    no fixed URL or port that another test of the module binds. Each test makes its own
    credential. Its tcp ports come from SHARED_PORT_RANGE, apart from `edge`'s.
    """
    running = make_edge(
        tmp_path_factory.mktemp("shared-edge"), port_range=SHARED_PORT_RANGE
    ).start()
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
