"""Heartbeats over an in-memory mux pair, on trio's autojump clock (no real waiting)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from protocol.adapters.heartbeat import (
    BEAT_SIZE,
    HeartbeatTimeout,
    answer_heartbeats,
    send_heartbeats,
)
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.rpc.messages import StreamType
from protocol.wire.session import Role
from tests.protocol.adapters.transports import StallingStream

Responder = Callable[[MuxStream], Awaitable[None]]


@asynccontextmanager
async def beating_pair(responder: Responder) -> AsyncIterator[MuxSession]:
    """A client session whose server peer runs `responder` on each heartbeat stream."""
    left, right = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(left, Role.CLIENT) as client,
        open_mux_session(right, Role.SERVER) as server,
        trio.open_nursery() as nursery,
    ):

        async def accept() -> None:
            while True:
                try:
                    stream = await server.accept_stream()
                except trio.BrokenResourceError:
                    return
                assert await read_stream_type(stream) == StreamType.HEARTBEAT
                nursery.start_soon(responder, stream)

        nursery.start_soon(accept)
        yield client
        nursery.cancel_scope.cancel()


def counting_beats() -> Callable[[int], bytes]:
    """A random source that makes each beat different and predictable."""
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


async def test_echo_round_trip_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    rtts: list[float] = []
    with trio.fail_after(60):
        async with beating_pair(answer_heartbeats) as client:
            with trio.move_on_after(10.5):
                await send_heartbeats(
                    client,
                    interval=1.0,
                    tolerance=2.0,
                    on_rtt=rtts.append,
                    random_bytes=counting_beats(),
                )
    assert len(rtts) == 11  # beats at t = 0, 1, ..., 10, all answered
    assert all(0 <= rtt < 0.01 for rtt in rtts)


async def test_a_slow_echo_reports_its_rtt_and_keeps_the_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The next beat goes out `interval` after the previous one was sent, not after its echo."""
    received_at: list[float] = []
    rtts: list[float] = []

    async def slow_echo(stream: MuxStream) -> None:
        while beat := await stream.receive_some(BEAT_SIZE):
            received_at.append(trio.current_time())
            await trio.sleep(0.4)
            await stream.send_all(beat)

    with trio.fail_after(60):
        async with beating_pair(slow_echo) as client:
            start = trio.current_time()
            with trio.move_on_after(3.5):
                await send_heartbeats(client, interval=1.0, tolerance=2.0, on_rtt=rtts.append)
    assert [round(t - start, 3) for t in received_at] == [0.0, 1.0, 2.0, 3.0]
    assert [round(rtt, 3) for rtt in rtts] == [0.4, 0.4, 0.4, 0.4]


async def test_no_echo_within_interval_plus_tolerance_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mute(stream: MuxStream) -> None:
        await trio.sleep_forever()  # reads nothing, answers nothing, keeps the stream open

    with trio.fail_after(60):
        async with beating_pair(mute) as client:
            start = trio.current_time()
            with pytest.raises(HeartbeatTimeout, match="no heartbeat reply within 3s"):
                await send_heartbeats(client, interval=1.0, tolerance=2.0)
            assert trio.current_time() - start == pytest.approx(3.0)


async def test_a_late_echo_after_good_ones_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rtts: list[float] = []

    async def tiring(stream: MuxStream) -> None:
        for _ in range(2):
            await stream.send_all(await stream.receive_some(BEAT_SIZE))
        await trio.sleep_forever()

    with trio.fail_after(60):
        async with beating_pair(tiring) as client:
            start = trio.current_time()
            with pytest.raises(HeartbeatTimeout):
                await send_heartbeats(client, interval=1.0, tolerance=0.5, on_rtt=rtts.append)
            assert trio.current_time() - start == pytest.approx(3.5)  # third beat at 2, +1.5
    assert len(rtts) == 2


async def test_a_wrong_echo_is_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def liar(stream: MuxStream) -> None:
        await stream.receive_some(BEAT_SIZE)
        await stream.send_all(b"\x00" * BEAT_SIZE)

    with trio.fail_after(60):
        async with beating_pair(liar) as client:
            with pytest.raises(HeartbeatTimeout, match="did not match"):
                await send_heartbeats(
                    client, interval=1.0, tolerance=2.0, random_bytes=lambda n: b"\xff" * n
                )


async def test_a_session_that_ends_stops_the_beat_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The session's own failure is reported by the session, not as a heartbeat timeout."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with (
            open_mux_session(left, Role.CLIENT) as client,
            open_mux_session(right, Role.SERVER) as server,
            trio.open_nursery() as nursery,
        ):

            async def answer_twice_then_hang_up() -> None:
                stream = await server.accept_stream()
                await read_stream_type(stream)
                for _ in range(2):
                    await stream.send_all(await stream.receive_some(BEAT_SIZE))
                await server.aclose()

            nursery.start_soon(answer_twice_then_hang_up)
            rtts: list[float] = []
            await send_heartbeats(client, interval=1.0, tolerance=2.0, on_rtt=rtts.append)
            assert len(rtts) == 2


async def test_a_closed_session_cannot_beat_and_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with (
            open_mux_session(left, Role.CLIENT) as client,
            open_mux_session(right, Role.SERVER),
        ):
            await client.aclose()
            await send_heartbeats(client, interval=1.0, tolerance=2.0)  # returns, no raise


async def test_heartbeat_times_out_when_the_peer_goes_silent() -> None:
    """The peer takes every byte but never answers: no echo within interval + tolerance
    (on the real clock: the timeout does not depend on the autojump clock)."""
    transport = StallingStream(budget=None)
    with trio.fail_after(10):
        async with open_mux_session(transport, Role.CLIENT) as session:
            started = trio.current_time()
            with pytest.raises(HeartbeatTimeout):
                await send_heartbeats(session, interval=0.2, tolerance=0.3)
            assert trio.current_time() - started < 2


async def test_answer_heartbeats_echoes_each_beat_and_returns_at_eof() -> None:
    mine, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_heartbeats, theirs)
            for beat in (b"\x01\x02\x03\x04", b"abcd", b"\xff" * BEAT_SIZE):
                await mine.send_all(beat)
                assert await mine.receive_some() == beat
            await mine.send_eof()
        # The nursery exited: answer_heartbeats returned quietly at EOF.


async def test_answer_heartbeats_returns_quietly_on_a_partial_beat() -> None:
    mine, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_heartbeats, theirs)
            await mine.send_all(b"ab")  # half a beat, then the peer is gone
            await mine.send_eof()
        # The nursery exited: it returned without raising. It leaves closing to its caller.
        await theirs.aclose()
        assert await mine.receive_some() == b""  # nothing was echoed for half a beat
