"""splice(): both directions copied, EOF passed on as a half-close, failures close both sides."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from protocol.adapters.mux import open_mux_session
from protocol.adapters.pipe import COPY_CHUNK, _SocketReader, splice
from protocol.wire.session import Role

# Big enough that each direction takes several COPY_CHUNK reads and fills socket buffers.
BULK = 3 * COPY_CHUNK + 12345


async def receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until EOF."""
    parts = []
    while chunk := await stream.receive_some():
        parts.append(bytes(chunk))
    return b"".join(parts)


async def tcp_pair(listener: trio.SocketListener) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected (client, server) pair of real loopback TCP streams."""
    sockname = listener.socket.getsockname()
    client = await trio.open_tcp_stream(sockname[0], sockname[1])
    server = await listener.accept()
    return client, server


async def test_both_directions_with_half_close_over_loopback_tcp() -> None:
    """A client that shuts down its write side still gets the whole reply (TCP half-close)."""
    request, reply = os.urandom(BULK), os.urandom(BULK + 1)
    with trio.fail_after(30):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            client, near = await tcp_pair(listener)  # the public side: client -> near
            far, upstream = await tcp_pair(listener)  # the upstream side: far -> upstream
            result: list[tuple[int, int]] = []
            got: dict[str, bytes] = {}

            async def run_splice() -> None:
                result.append(await splice(near, far))

            async def client_side() -> None:
                await client.send_all(request)
                await client.send_eof()
                got["client"] = await receive_all(client)
                await client.aclose()

            async def upstream_side() -> None:
                got["upstream"] = await receive_all(upstream)  # ends: the client's EOF came through
                await upstream.send_all(reply)  # after the EOF: the half-close kept it open
                await upstream.send_eof()
                assert await upstream.receive_some() == b""
                await upstream.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_splice)
                nursery.start_soon(client_side)
                nursery.start_soon(upstream_side)
    assert got["upstream"] == request
    assert got["client"] == reply
    assert result == [(len(request), len(reply))]


async def test_both_directions_at_once_in_memory() -> None:
    a_peer, a = trio.testing.memory_stream_pair()
    b, b_peer = trio.testing.memory_stream_pair()
    up, down = os.urandom(BULK), os.urandom(BULK // 2)
    got: dict[str, bytes] = {}
    counts: list[tuple[int, int]] = []

    async def talk(name: str, stream: trio.abc.HalfCloseableStream, payload: bytes) -> None:
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                await stream.send_all(payload)
                await stream.send_eof()

            nursery.start_soon(send)
            got[name] = await receive_all(stream)

    async def run_splice() -> None:
        counts.append(await splice(a, b))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_splice)
            nursery.start_soon(talk, "a_peer", a_peer, up)
            nursery.start_soon(talk, "b_peer", b_peer, down)
    assert got == {"a_peer": down, "b_peer": up}
    assert counts == [(len(up), len(down))]


async def test_eof_is_passed_on_while_the_other_direction_goes_on() -> None:
    a_peer, a = trio.testing.memory_stream_pair()
    b, b_peer = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice, a, b)
            await a_peer.send_all(b"last words")
            await a_peer.send_eof()
            assert await receive_all(b_peer) == b"last words"  # the EOF arrived as an EOF
            for _ in range(3):  # ...and the other direction still flows, in order
                await b_peer.send_all(b"still here")
                assert await a_peer.receive_some() == b"still here"
            await b_peer.send_eof()
            assert await a_peer.receive_some() == b""
    # splice returned on its own once both directions ended.


class _WholeCloseOnly(trio.abc.Stream):
    """A stream without half-close (like trio.SSLStream): only `aclose`."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_destination_without_half_close_is_closed_at_eof() -> None:
    a_peer, a = trio.testing.memory_stream_pair()
    inner_b, b_peer = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice, a, _WholeCloseOnly(inner_b))
            await a_peer.send_all(b"bye")
            await a_peer.send_eof()
            assert await receive_all(b_peer) == b"bye"
            # b is closed as a whole, so nothing more can come back to a_peer either.
            assert await receive_all(a_peer) == b""


async def test_a_broken_direction_closes_both_streams_without_raising() -> None:
    a_peer, a = trio.testing.memory_stream_pair()
    b, b_peer = trio.testing.memory_stream_pair()
    counts: list[tuple[int, int]] = []

    async def run_splice() -> None:
        counts.append(await splice(a, b))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_splice)
            # b's peer stops reading for good but never sends EOF: the b->a direction is still
            # blocked in receive when a->b breaks, and must be stopped too.
            await b_peer.receive_stream.aclose()
            await a_peer.send_all(b"into the void")
            assert await a_peer.receive_some() == b""  # a was closed by splice...
        with pytest.raises(trio.ClosedResourceError):  # ...and so was b, by the time it returned
            await b.send_all(b"too late")
    assert counts == [(0, 0)]


async def test_cancellation_propagates_and_closes_both() -> None:
    a_peer, a = trio.testing.memory_stream_pair()
    b, b_peer = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        with trio.move_on_after(0.05) as scope:
            await splice(a, b)
        assert scope.cancelled_caught  # the cancel reached the caller's scope, not swallowed
        assert await a_peer.receive_some() == b""
        assert await b_peer.receive_some() == b""


async def test_mux_stream_to_socket_small_messages_and_bulk_arrive_whole() -> None:
    """A MuxStream spliced to a TCP socket (the agent's proxy stream to its upstream): the mux
    reader writes small messages to the socket itself, bulk that fills the socket falls back to
    the copy task, and neither reorders nor loses a byte; the counts include both paths."""
    bulk = os.urandom(BULK)
    reply = os.urandom(BULK + 7)
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with (
            listener,
            open_mux_session(left, Role.CLIENT) as client,
            open_mux_session(right, Role.SERVER) as server,
        ):
            mine = await client.open_stream()
            await mine.send_all(b"!")
            theirs = await server.accept_stream()
            assert await theirs.receive_some(1) == b"!"
            near, upstream = await tcp_pair(listener)
            result: list[tuple[int, int]] = []

            async def run_splice() -> None:
                result.append(await splice(theirs, near))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_splice)
                for i in range(50):  # ping-pong: each message goes out alone
                    message = b"ping %d" % i
                    await mine.send_all(message)
                    got = b""
                    while len(got) < len(message):
                        got += await upstream.receive_some()
                    assert got == message
                    await upstream.send_all(b"pong %d" % i)
                    got = b""
                    while len(got) < len(b"pong %d" % i):
                        got += await mine.receive_some()
                    assert got == b"pong %d" % i

                async def upstream_side() -> None:
                    assert await receive_all(upstream) == bulk
                    await upstream.send_all(reply)
                    await upstream.send_eof()

                nursery.start_soon(upstream_side)
                await mine.send_all(bulk)
                await mine.send_eof()
                assert await receive_all(mine) == reply
                await mine.aclose()
            await upstream.aclose()
    sent = sum(len(b"ping %d" % i) for i in range(50)) + len(bulk)
    answered = sum(len(b"pong %d" % i) for i in range(50)) + len(reply)
    assert result == [(sent, answered)]


# ---- reading a plain socket: wait first after a short read, read at once after a full one ----


async def test_a_socket_read_after_a_short_one_waits_for_readability_first() -> None:
    """After a read that came back short the socket is most likely drained, so the next read
    waits for readability first (a checkpoint) instead of meeting EAGAIN; after a full read
    it reads at once, without a checkpoint, as a bulk transfer wants."""
    with trio.fail_after(10):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            writer, source = await tcp_pair(listener)
            reader = _SocketReader(source)
            await writer.send_all(b"a" * 250)
            assert await reader.receive(100) == b"a" * 100  # full
            with trio.testing.assert_no_checkpoints():
                assert await reader.receive(100) == b"a" * 100  # full again: read at once
            assert await reader.receive(100) == b"a" * 50  # short: drained
            await writer.send_all(b"b" * 10)  # on loopback it is readable at once
            with trio.testing.assert_checkpoints():
                assert await reader.receive(100) == b"b" * 10
            await writer.send_eof()
            assert await reader.receive(100) == b""
            await writer.aclose()
            await source.aclose()


async def test_a_socket_read_waiting_for_data_can_be_cancelled_or_closed() -> None:
    """A read waiting for data: cancelled, it loses nothing (the data sent afterwards is read
    next); its socket closed under it, it raises ClosedResourceError."""
    with trio.fail_after(10):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            writer, source = await tcp_pair(listener)
            reader = _SocketReader(source)
            with trio.move_on_after(0.05) as scope:
                await reader.receive(100)
            assert scope.cancelled_caught
            await writer.send_all(b"after")
            assert await reader.receive(100) == b"after"
            errors: list[BaseException] = []

            async def blocked() -> None:
                try:
                    await reader.receive(100)
                except trio.ClosedResourceError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocked)
                await trio.testing.wait_all_tasks_blocked()
                await source.aclose()
            assert len(errors) == 1
            await writer.aclose()


async def test_an_idle_splice_runs_one_child_task() -> None:
    """Thousands of idle connections each sit in a splice: one direction runs in the caller's
    task, so a splice adds one task, not two."""
    with trio.fail_after(10):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            client, near = await tcp_pair(listener)
            far, upstream = await tcp_pair(listener)
            before = trio.lowlevel.current_statistics().tasks_living
            async with trio.open_nursery() as nursery:
                nursery.start_soon(splice, near, far)
                await trio.testing.wait_all_tasks_blocked()
                assert trio.lowlevel.current_statistics().tasks_living == before + 2
                await client.send_eof()
                await upstream.send_eof()
            assert await client.receive_some() == b""
            await client.aclose()
            await upstream.aclose()
