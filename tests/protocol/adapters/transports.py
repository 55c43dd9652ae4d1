"""Hand-made trio transports for the adapter tests: peers that misbehave in one exact way."""

from __future__ import annotations

import trio


class StallingStream(trio.abc.Stream):
    """A transport that accepts `budget` bytes and then never takes another (a peer that
    stopped reading: its TCP window is full), and never sends a byte. `budget=None` takes every
    byte: a peer gone silent."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.closed = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.budget is not None:
            if len(data) > self.budget:
                await trio.sleep_forever()
            self.budget -= len(data)
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.closed.wait()
        raise trio.ClosedResourceError

    async def aclose(self) -> None:
        self.closed.set()
        await trio.lowlevel.checkpoint()
