"""In-memory pairs of muxado sessions, and a stream open between them, for the adapter tests
(test_mux.py, test_mux_stream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from protocol.adapters.mux import MuxConfig, MuxSession, MuxStream, open_mux_session
from protocol.wire.session import Role


@asynccontextmanager
async def mux_pair(config: MuxConfig | None = None) -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    left, right = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(left, Role.CLIENT, config) as client,
        open_mux_session(right, Role.SERVER, config) as server,
    ):
        yield client, server


async def stream_pair(client: MuxSession, server: MuxSession) -> tuple[MuxStream, MuxStream]:
    mine = await client.open_stream()
    await mine.send_all(b"!")  # muxado opens lazily: the first byte carries SYN
    theirs = await server.accept_stream()
    assert await theirs.receive_some(1) == b"!"
    return mine, theirs
