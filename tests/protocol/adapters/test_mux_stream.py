"""One muxado stream as a trio stream (protocol/adapters/mux_stream.py): trio's generic
half-closeable stream checks, send windows and resets, the edge of the window with small frames,
delivery straight to a sink, and what an idle stream holds."""

from __future__ import annotations

import os
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
from tests.protocol.adapters.mux_pairs import mux_pair, stream_pair


async def test_generic_half_closeable_stream() -> None:
    with trio.fail_after(30):
        async with mux_pair() as (client, server):

            async def maker() -> tuple[MuxStream, MuxStream]:
                return await stream_pair(client, server)

            async def clogged_maker() -> tuple[MuxStream, MuxStream]:
                mine, theirs = await maker()
                # Exhaust the send window both ways (check_two_way_stream flips the pair):
                # neither reader has read any of it yet.
                await mine.send_all(b"x" * client._conn.send_window(mine.stream_id))
                await theirs.send_all(b"x" * server._conn.send_window(theirs.stream_id))
                await trio.testing.wait_all_tasks_blocked()
                assert client._conn.send_window(mine.stream_id) == 0
                assert server._conn.send_window(theirs.stream_id) == 0
                return mine, theirs

            await trio.testing.check_half_closeable_stream(maker, clogged_maker)


async def test_stalled_reader_blocks_sender_at_window() -> None:
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine, _theirs = await stream_pair(client, server)
            sent = 0

            async def sender() -> None:
                nonlocal sent
                while True:
                    await mine.send_all(b"y" * 4096)
                    sent += 4096

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked()
                # The reader never reads: the sender stops at the window, not at memory.
                assert sent <= INITIAL_WINDOW
                assert client._conn.outbound_size == 0
                nursery.cancel_scope.cancel()


async def test_reset_with_a_code_reaches_the_peer() -> None:
    with trio.fail_after(30):
        async with mux_pair() as (client, server):
            mine, theirs = await stream_pair(client, server)
            theirs.reset(ErrorCode.STREAM_REFUSED)
            theirs.reset(ErrorCode.STREAM_REFUSED)  # a second reset is a no-op
            with pytest.raises(trio.BrokenResourceError) as info:
                await mine.receive_some(10)
            assert reset_code(info.value) == ErrorCode.STREAM_REFUSED
            with pytest.raises(trio.ClosedResourceError):
                await theirs.send_all(b"after reset")
            assert reset_code(ValueError("not a stream failure")) is None


# --- at the edge of the window (small frames) -----------------------------------------------
# The trio adapter at the edge of the window: a writer one byte past it never hangs.
# The sans-IO session once left a writer waiting forever when its reader stopped reading with the
# whole window unread (see `test_stop_reading_with_the_window_used_up_lets_the_writer_learn_of_it`
# in tests/protocol/wire/test_session.py). These check the same shapes through real `MuxStream`s
# over `trio.testing.memory_stream_pair`, with small frames so the window is many frames long.

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


# ----------------------------------------------------------------- deliver_to (reader → sink)


async def _parked_receiver(stream: MuxStream, got: list[bytes]) -> None:
    while chunk := await stream.receive_some():
        got.append(bytes(chunk))


async def test_a_sink_gets_the_data_while_a_receiver_waits() -> None:
    """With a task parked in receive_some and nothing unread, the reader task hands arriving
    data to the sink; the parked task sees none of it, and the credit goes back to the sender
    (two windows' worth goes through without the receiver reading a byte)."""
    with trio.fail_after(30):
        async with mux_pair() as (client, server):
            mine, theirs = await stream_pair(client, server)
            sunk: list[bytes] = []
            received: list[bytes] = []

            def sink(data: bytes) -> int:
                sunk.append(bytes(data))
                return len(data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_parked_receiver, theirs, received)
                await trio.testing.wait_all_tasks_blocked()
                theirs.deliver_to(sink)
                payload = os.urandom(2 * INITIAL_WINDOW + 1)
                await mine.send_all(payload)
                await trio.testing.wait_all_tasks_blocked()
                assert b"".join(sunk) == payload
                assert received == []
                theirs.deliver_to(None)
                await mine.send_all(b"after")
                await mine.send_eof()
            assert b"".join(received) == b"after"


async def test_what_a_sink_leaves_goes_to_the_receiver_in_order() -> None:
    """A sink that takes part of a chunk: the rest is queued for the receiver, which gets it
    before anything that arrives later."""
    with trio.fail_after(30):
        async with mux_pair() as (client, server):
            mine, theirs = await stream_pair(client, server)
            sunk: list[bytes] = []
            received: list[bytes] = []

            def sink(data: bytes) -> int:
                sunk.append(bytes(data[:2]))
                return 2

            theirs.deliver_to(sink)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_parked_receiver, theirs, received)
                await trio.testing.wait_all_tasks_blocked()
                for word in (b"first", b"second", b"third"):
                    await mine.send_all(word)
                    await trio.testing.wait_all_tasks_blocked()
                await mine.send_eof()
            assert sunk == [b"fi", b"se", b"th"]
            assert received == [b"rst", b"cond", b"ird"]


async def test_no_sink_delivery_without_a_waiting_receiver() -> None:
    """Data that arrives while nobody waits in receive_some is queued, not given to the sink:
    the task that reads it may be busy passing earlier data on."""
    with trio.fail_after(30):
        async with mux_pair() as (client, server):
            mine, theirs = await stream_pair(client, server)
            sunk: list[bytes] = []

            def sink(data: bytes) -> int:
                sunk.append(bytes(data))
                return len(data)

            theirs.deliver_to(sink)
            await mine.send_all(b"queued")
            await trio.testing.wait_all_tasks_blocked()
            assert sunk == []
            assert await theirs.receive_some() == b"queued"


async def test_an_idle_stream_holds_no_instance_dict_and_no_queue() -> None:
    """A session may hold thousands of idle streams: a stream has no instance dict, and its
    queue of unread data exists only while some data is unread."""
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine = await client.open_stream()
            await mine.send_all(b"one")
            await mine.send_all(b"two")
            theirs = await server.accept_stream()
            assert not hasattr(theirs, "__dict__")
            await trio.testing.wait_all_tasks_blocked()
            assert theirs._chunks  # unread data is queued
            assert await receive_exactly(theirs, 6) == b"onetwo"
            assert theirs._chunks is None  # all read: no queue kept
