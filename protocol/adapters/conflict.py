"""Detect two tasks using one side of a stream at once (trio promises BusyResourceError)."""

from __future__ import annotations

from types import TracebackType

import trio


class ConflictDetector:
    """A context manager that raises `trio.BusyResourceError(message)` when entered twice."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held = False
