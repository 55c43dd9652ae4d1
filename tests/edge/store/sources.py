"""Deterministic stand-ins for the store's injected clock and random source."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

NOW = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def counting_bytes() -> Callable[[int], bytes]:
    """A deterministic random source: each call returns the next counter value, repeated."""
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return random_bytes
