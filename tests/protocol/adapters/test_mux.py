"""The trio adapter: MuxSession over in-memory and real transports (its streams' own behaviour
is in test_mux_stream.py)."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trustme

from protocol.adapters.mux import (
    MuxConfig,
    MuxSession,
    MuxStream,
    open_mux_session,
    read_stream_type,
    receive_exactly,
)
from protocol.adapters.tls import TLSStream
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role, SessionConfig
from protocol.wire.windows import INITIAL_WINDOW
from tests.protocol.adapters.mux_pairs import mux_pair, stream_pair
from tests.protocol.adapters.transports import StallingStream


async def test_bidirectional_bulk_and_sha256() -> None:
    with trio.fail_after(30):
        async with mux_pair() as (client, server):
            payloads = [os.urandom(n) for n in (0, 1, 4096, 3 * INITIAL_WINDOW + 17)]

            async def one(payload: bytes) -> None:
                mine = await client.open_stream()

                async def send() -> None:
                    await mine.send_all(payload)
                    await mine.send_eof()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    got = bytearray()
                    while chunk := await mine.receive_some():
                        got += chunk
                assert hashlib.sha256(got).digest() == hashlib.sha256(payload[::-1]).digest()

            async def echo_reversed() -> None:
                for _ in payloads:
                    stream = await server.accept_stream()

                    async def handle(s: MuxStream) -> None:
                        data = bytearray()
                        while chunk := await s.receive_some():
                            data += chunk
                        await s.send_all(bytes(data[::-1]))
                        await s.send_eof()

                    nursery.start_soon(handle, stream)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo_reversed)
                async with trio.open_nursery() as senders:
                    for payload in payloads:
                        senders.start_soon(one, payload)


async def test_typed_stream_type_is_read_first() -> None:
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine = await client.open_typed_stream(0xFFFFFFFF)
            await mine.send_all(b"ping")
            theirs = await server.accept_stream()
            assert await read_stream_type(theirs) == 0xFFFFFFFF
            assert await receive_exactly(theirs, 4) == b"ping"


async def test_a_write_cancelled_after_queueing_still_reaches_the_peer() -> None:
    # A small write yields once before going out (so that frames coalesce); a cancel there
    # must not strand the bytes already queued.
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine, theirs = await stream_pair(client, server)
            with trio.CancelScope() as scope:
                scope.cancel()
                await mine.send_all(b"queued")
            assert scope.cancelled_caught
            assert await receive_exactly(theirs, 6) == b"queued"


async def test_peer_goaway_and_transport_eof_fail_streams() -> None:
    with trio.fail_after(10):
        async with mux_pair() as (client, server):
            mine, _theirs = await stream_pair(client, server)
            await server.aclose(ErrorCode.NO_ERROR, "bye")
            with pytest.raises(trio.BrokenResourceError):
                while True:
                    await mine.receive_some()
            await client.closed.wait()
            assert client.goaway is not None and client.goaway.debug == b"bye"
            with pytest.raises(trio.BrokenResourceError):
                await client.open_stream()


async def test_two_acceptors_woken_by_one_stream_take_it_once() -> None:
    """Every parked acceptor is woken when a stream arrives; the first to run takes it, and the
    other parks again (it must not find the backlog emptied under it and fail), then takes the
    next stream."""
    with trio.fail_after(10):
        async with mux_pair() as (client, server), trio.open_nursery() as nursery:
            accepted: list[MuxStream] = []

            async def acceptor() -> None:
                accepted.append(await server.accept_stream())

            nursery.start_soon(acceptor)
            nursery.start_soon(acceptor)
            await trio.testing.wait_all_tasks_blocked()
            first = await client.open_stream()
            await first.send_all(b"1")
            await trio.testing.wait_all_tasks_blocked()
            assert [s.stream_id for s in accepted] == [first.stream_id]
            second = await client.open_stream()
            await second.send_all(b"2")
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(s.stream_id for s in accepted) == [first.stream_id, second.stream_id]


async def test_accept_backlog_overflow_resets_extra_streams() -> None:
    config = MuxConfig(accept_backlog=2, session=SessionConfig())
    with trio.fail_after(10):
        async with mux_pair(config) as (client, server):
            streams = [await client.open_stream() for _ in range(4)]
            for s in streams:
                await s.send_all(b"x")
            await trio.testing.wait_all_tasks_blocked()
            broken = 0
            for s in streams:
                try:
                    await s.send_all(b"y")
                    await trio.testing.wait_all_tasks_blocked()
                    await s.send_all(b"y")
                except trio.BrokenResourceError:
                    broken += 1
            assert broken == 2
            assert server.refused_streams == 2


async def _run_tcp_pair(body: Callable[[MuxSession, MuxSession], Awaitable[None]]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: trio.MemorySendChannel[trio.SocketStream]
        accepted, incoming = trio.open_memory_channel[trio.SocketStream](1)

        async def accept() -> None:
            conn = await listeners[0].accept()
            await accepted.send(conn)

        nursery.start_soon(accept)
        client_sock = await trio.open_tcp_stream("127.0.0.1", port)
        server_sock = await incoming.receive()
        async with (
            open_mux_session(client_sock, Role.CLIENT) as c,
            open_mux_session(server_sock, Role.SERVER) as s,
        ):
            await body(c, s)
        await listeners[0].aclose()


async def test_many_streams_over_real_tcp() -> None:
    async def body(client: MuxSession, server: MuxSession) -> None:
        async def echo_server() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    stream = await server.accept_stream()

                    async def echo(s: MuxStream) -> None:
                        while chunk := await s.receive_some():
                            await s.send_all(chunk)
                        await s.send_eof()

                    nursery.start_soon(echo, stream)

        async def client_one(i: int) -> None:
            payload = os.urandom(1000 * i + 1)
            s = await client.open_stream()

            async def send() -> None:
                await s.send_all(payload)
                await s.send_eof()

            async with trio.open_nursery() as n:
                n.start_soon(send)
                got = bytearray()
                while chunk := await s.receive_some():
                    got += chunk
            assert got == payload
            await s.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_server)
            async with trio.open_nursery() as clients:
                for i in range(50):
                    clients.start_soon(client_one, i)

    with trio.fail_after(30):
        await _run_tcp_pair(body)


async def test_write_to_a_peer_that_stopped_reading_times_out() -> None:
    """Small writes are shielded (no half frames); write_timeout still bounds them."""
    transport = StallingStream(budget=100)
    config = MuxConfig(write_timeout=0.5)
    with trio.fail_after(10):
        async with open_mux_session(transport, Role.CLIENT, config) as session:
            stream = await session.open_stream()
            with trio.move_on_after(0.1):  # a caller's own timeout cannot cut the shield...
                await stream.send_all(b"x" * 1000)
            # ...but the session gives up on the peer after write_timeout.
            await session.closed.wait()
            assert session.error is not None
            assert session.error.code == ErrorCode.WRITE_TIMEOUT
            assert transport.closed.is_set()


async def test_many_streams_over_tls_over_real_tcp() -> None:
    """The production transport (TLSStream over a socket), where small batches are written to
    the socket at once (`TLSStream.send_now`) and a full socket is waited for (`flush`): 50
    streams echo up to 1 MB each, concurrently, and every byte comes back in order."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mux.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def client_one(client: MuxSession, i: int) -> None:
        payload = os.urandom(20_000 * i + 1)
        s = await client.open_stream()

        async def send() -> None:
            await s.send_all(payload)
            await s.send_eof()

        async with trio.open_nursery() as n:
            n.start_soon(send)
            got = bytearray()
            while chunk := await s.receive_some():
                got += chunk
        assert got == payload
        await s.aclose()

    async def echo(s: MuxStream) -> None:
        while chunk := await s.receive_some():
            await s.send_all(chunk)
        await s.send_eof()

    with trio.fail_after(60):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            port = listener.socket.getsockname()[1]
            client_sock = await trio.open_tcp_stream("127.0.0.1", port)
            server_sock = await listener.accept()
            client_tls = TLSStream(client_sock, client_ctx, server_hostname="mux.test")
            server_tls = TLSStream(server_sock, server_ctx, server_side=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client_tls.do_handshake)
                nursery.start_soon(server_tls.do_handshake)
            assert client_tls.can_send_now() and server_tls.can_send_now()
            async with (
                open_mux_session(client_tls, Role.CLIENT) as client,
                open_mux_session(server_tls, Role.SERVER) as server,
                trio.open_nursery() as nursery,
            ):

                async def serve() -> None:
                    for _ in range(50):
                        nursery.start_soon(echo, await server.accept_stream())

                nursery.start_soon(serve)
                async with trio.open_nursery() as clients:
                    for i in range(50):
                        clients.start_soon(client_one, client, i)
