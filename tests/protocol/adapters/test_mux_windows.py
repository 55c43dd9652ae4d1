"""The trio adapter at the edge of the window: a writer one byte past it never hangs.

The sans-IO session once left a writer waiting forever when its reader stopped reading with the
whole window unread (see `test_stop_reading_with_the_window_used_up_lets_the_writer_learn_of_it`
in tests/protocol/wire/test_session.py). These check the same shapes through real `MuxStream`s
over `trio.testing.memory_stream_pair`, with small frames so the window is many frames long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from protocol.adapters.mux import (
    MuxConfig,
    MuxSession,
    MuxStream,
    open_mux_session,
    receive_exactly,
    reset_code,
)
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role, SessionConfig
from protocol.wire.windows import INITIAL_WINDOW

SMALL_FRAMES = MuxConfig(session=SessionConfig(max_send_frame=64))
# A period-251 pattern, so a lost, duplicated or reordered frame shows.
PAYLOAD = bytes(i % 251 for i in range(INITIAL_WINDOW + 1))


@asynccontextmanager
async def small_frame_pair() -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    left, right = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(left, Role.CLIENT, SMALL_FRAMES) as client,
        open_mux_session(right, Role.SERVER, SMALL_FRAMES) as server,
    ):
        yield client, server


async def writer_and_reader(server: MuxSession, client: MuxSession) -> tuple[MuxStream, MuxStream]:
    """A stream the server opened and the client accepted (its type prefix already read)."""
    mine = await server.open_typed_stream(7)
    theirs = await client.accept_stream()
    assert await receive_exactly(theirs, 4) == b"\x00\x00\x00\x07"
    return mine, theirs


async def test_window_plus_one_byte_arrives_whole() -> None:
    with trio.fail_after(30):
        async with small_frame_pair() as (client, server):
            mine, theirs = await writer_and_reader(server, client)
            got = b""

            async def read_all() -> None:
                nonlocal got
                got = await receive_exactly(theirs, len(PAYLOAD))
                assert await theirs.receive_some() == b""

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                await mine.send_all(PAYLOAD)
                await mine.send_eof()
            assert got == PAYLOAD


async def test_reader_closing_with_the_window_unread_fails_the_writer() -> None:
    with trio.fail_after(30):
        async with small_frame_pair() as (client, server):
            mine, theirs = await writer_and_reader(server, client)
            failure: list[BaseException] = []

            async def write_all() -> None:
                try:
                    await mine.send_all(PAYLOAD)
                except trio.BrokenResourceError as exc:
                    failure.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_all)
                # wait until the writer has used the whole window and is parked on the last byte
                while server._conn.send_window(mine.stream_id) != 0:
                    await trio.testing.wait_all_tasks_blocked()
                await trio.testing.wait_all_tasks_blocked()
                await theirs.aclose()  # nothing of it was read
            assert len(failure) == 1
            assert reset_code(failure[0]) == ErrorCode.STREAM_CLOSED
            assert server.open_stream_count == client.open_stream_count == 0


async def test_reader_closing_after_reading_a_window_fails_the_writer() -> None:
    with trio.fail_after(30):
        async with small_frame_pair() as (client, server):
            mine, theirs = await writer_and_reader(server, client)
            failure: list[BaseException] = []

            async def write_all() -> None:
                try:
                    await mine.send_all(PAYLOAD * 3)
                except trio.BrokenResourceError as exc:
                    failure.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_all)
                assert await receive_exactly(theirs, INITIAL_WINDOW) == PAYLOAD[:INITIAL_WINDOW]
                await trio.testing.wait_all_tasks_blocked()
                await theirs.aclose()
            assert len(failure) == 1
            assert reset_code(failure[0]) == ErrorCode.STREAM_CLOSED
            with pytest.raises(trio.ClosedResourceError):
                await theirs.receive_some()
