"""TLSStream: trio's generic stream checks, interop with trio.SSLStream, errors and EOF."""

from __future__ import annotations

import hashlib
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from protocol.adapters.tls import TLSStream
from tests.protocol.adapters.tls_pairs import (
    HOSTNAME,
    OTHER_CERT,
    AnyStream,
    client_context,
    handshake_both,
    server_context,
    tls_pair,
)


@pytest.fixture(params=["tls13", "tls12"])
def client_ctx(request: pytest.FixtureRequest) -> ssl.SSLContext:
    return client_context(request.param)


# ---- trio's generic stream conformance checks ---------------------------------------


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_check_two_way_stream(client_ctx: ssl.SSLContext, https_compatible: bool) -> None:
    async def stream_maker() -> tuple[TLSStream[AnyStream], TLSStream[AnyStream]]:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        return tls_pair(
            client_ctx, client_transport, server_transport, https_compatible=https_compatible
        )

    async def clogged_stream_maker() -> tuple[TLSStream[AnyStream], TLSStream[AnyStream]]:
        client_transport, server_transport = trio.testing.lockstep_stream_pair()
        client, server = tls_pair(client_ctx, client_transport, server_transport)
        # As in trio's test_SSLStream_generic: a handshake started inside receive_some
        # would itself block on the clogged transport, so do it up front.
        await handshake_both(client, server)
        return client, server

    with trio.fail_after(30):
        await trio.testing.check_two_way_stream(stream_maker, clogged_stream_maker)


# ---- behaviour over in-memory transports --------------------------------------------


async def test_cancelled_receive_loses_nothing(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(b"a" * 50_000)
        assert await server.receive_some(10) == b"a" * 10
        with trio.CancelScope() as scope:
            scope.cancel()
            await server.receive_some()
        assert scope.cancelled_caught
        rest = b""
        while len(rest) < 49_990:
            rest += await server.receive_some()
        assert rest == b"a" * 49_990


async def test_large_send_is_sliced(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = TLSStream(
        client_transport, client_ctx, server_hostname=HOSTNAME, max_send_chunk=20_000
    )
    server = TLSStream(server_transport, server_context(), server_side=True)
    payload = memoryview(os.urandom(100_003))
    received = bytearray()

    async def reader() -> None:
        while chunk := await server.receive_some():
            received.extend(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await client.send_all(payload)
            await client.aclose()
    assert received == payload


async def test_ragged_eof_is_broken_by_default(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(b"hello")
        await client.transport_stream.aclose()  # no close_notify
        assert await server.receive_some() == b"hello"
        with pytest.raises(trio.BrokenResourceError, match="close_notify"):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()


async def test_ragged_eof_is_eof_when_https_compatible(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport, https_compatible=True)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(b"hello")
        await client.transport_stream.aclose()
        assert await server.receive_some() == b"hello"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""


async def test_eof_during_handshake_is_broken(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, _ = tls_pair(client_ctx, client_transport, server_transport)
    with trio.fail_after(10):
        await server_transport.send_stream.aclose()  # the client will read EOF
        with pytest.raises(trio.BrokenResourceError, match="closed the connection"):
            await client.do_handshake()
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"x")
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")


async def test_garbage_during_handshake_is_broken() -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    server = TLSStream(server_transport, server_context(), server_side=True)
    with trio.fail_after(10):
        await client_transport.send_all(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        with pytest.raises(trio.BrokenResourceError) as info:
            await server.do_handshake()
    assert isinstance(info.value.__cause__, ssl.SSLError)


async def test_aclose_before_handshake_and_twice(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, _ = tls_pair(client_ctx, client_transport, server_transport)
    with trio.fail_after(10):
        await client.aclose()
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await client.do_handshake()


def test_rejects_bad_chunk_sizes(client_ctx: ssl.SSLContext) -> None:
    client_transport, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="max_receive_chunk"):
        TLSStream(client_transport, client_ctx, server_hostname=HOSTNAME, max_receive_chunk=0)


# ---- real loopback TCP, interop with trio.SSLStream ---------------------------------

Wrap = Callable[[trio.SocketStream], AnyStream]


def _ours_server(stream: trio.SocketStream) -> AnyStream:
    return TLSStream(stream, server_context(), server_side=True)


def _trio_server(stream: trio.SocketStream) -> AnyStream:
    return trio.SSLStream(stream, server_context(), server_side=True)


def _ours_client(ctx: ssl.SSLContext) -> Wrap:
    return lambda stream: TLSStream(stream, ctx, server_hostname=HOSTNAME)


def _trio_client(ctx: ssl.SSLContext) -> Wrap:
    return lambda stream: trio.SSLStream(stream, ctx, server_hostname=HOSTNAME)


@asynccontextmanager
async def _tcp_pair(
    wrap_client: Wrap, wrap_server: Wrap
) -> AsyncIterator[tuple[AnyStream, AnyStream]]:
    """A connected (client, server) pair of TLS streams over loopback TCP."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            accepted: list[trio.SocketStream] = []

            async def accept() -> None:
                accepted.append(await listener.accept())

            nursery.start_soon(accept)
            client_sock = await trio.open_tcp_stream("127.0.0.1", port)
        client = wrap_client(client_sock)
        server = wrap_server(accepted[0])
        async with client, server:
            yield client, server


async def _do_handshake(stream: AnyStream) -> None:
    assert isinstance(stream, (TLSStream, trio.SSLStream))
    await stream.do_handshake()


async def _echo_round_trip(client: AnyStream, server: AnyStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_do_handshake, client)
        nursery.start_soon(_do_handshake, server)
    await client.send_all(b"ping")
    assert await server.receive_some(100) == b"ping"
    await server.send_all(b"pong" * 10_000)
    received = b""
    while len(received) < 40_000:
        received += await client.receive_some()
    assert received == b"pong" * 10_000
    # Graceful close from the client; the server sees a clean EOF.
    await client.aclose()
    assert await server.receive_some() == b""


@pytest.mark.parametrize(
    ("client_kind", "server_kind"),
    [("ours", "trio"), ("trio", "ours"), ("ours", "ours")],
)
async def test_interop_over_tcp(
    client_ctx: ssl.SSLContext, client_kind: str, server_kind: str
) -> None:
    wrap_client = _ours_client(client_ctx) if client_kind == "ours" else _trio_client(client_ctx)
    wrap_server = _ours_server if server_kind == "ours" else _trio_server
    with trio.fail_after(10):
        async with _tcp_pair(wrap_client, wrap_server) as (client, server):
            await _echo_round_trip(client, server)


async def _send_and_hash(stream: AnyStream, total: int, write_size: int) -> str:
    digest = hashlib.sha256()
    rng_block = os.urandom(1024 * 1024 + write_size)
    sent = 0
    while sent < total:
        size = min(write_size, total - sent)
        offset = sent % (1024 * 1024)
        chunk = memoryview(rng_block)[offset : offset + size]
        digest.update(chunk)
        await stream.send_all(chunk)
        sent += size
    await stream.aclose()
    return digest.hexdigest()


async def _receive_and_hash(stream: AnyStream) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    while chunk := await stream.receive_some():
        digest.update(chunk)
        count += len(chunk)
    return digest.hexdigest(), count


@pytest.mark.parametrize(
    ("client_kind", "server_kind"), [("ours", "ours"), ("ours", "trio"), ("trio", "ours")]
)
async def test_64_mib_over_tcp_sha256(client_kind: str, server_kind: str) -> None:
    ctx = client_context("tls13")
    wrap_client = _ours_client(ctx) if client_kind == "ours" else _trio_client(ctx)
    wrap_server = _ours_server if server_kind == "ours" else _trio_server
    total = 64 * 1024 * 1024
    results: dict[str, Any] = {}

    async def run(name: str, afn: Callable[[], Awaitable[Any]]) -> None:
        results[name] = await afn()

    with trio.fail_after(60):
        async with (
            _tcp_pair(wrap_client, wrap_server) as (client, server),
            trio.open_nursery() as nursery,
        ):
            # An odd write size so records and writes never line up.
            nursery.start_soon(run, "sent", lambda: _send_and_hash(client, total, 200_003))
            nursery.start_soon(run, "received", lambda: _receive_and_hash(server))
    assert results["received"] == (results["sent"], total)


async def _handshake_expecting_failure(client: AnyStream, server: AnyStream) -> BaseException:
    """Handshake both ends; both must fail. Returns the client's error."""
    server_errors: list[BaseException] = []

    async def server_side() -> None:
        try:
            await _do_handshake(server)
        except trio.BrokenResourceError as exc:
            server_errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        with pytest.raises(trio.BrokenResourceError) as client_error:
            await _do_handshake(client)
    # The server fails too (it gets the client's alert, or EOF).
    assert len(server_errors) == 1
    # And the client stays broken.
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")
    return client_error.value


@pytest.mark.parametrize("server_kind", ["ours", "trio"])
async def test_bad_certificate_fails_handshake(server_kind: str) -> None:
    # The server presents a certificate from a CA the client does not trust.
    def wrap_server(stream: trio.SocketStream) -> AnyStream:
        ctx = server_context(OTHER_CERT)
        if server_kind == "ours":
            return TLSStream(stream, ctx, server_side=True)
        return trio.SSLStream(stream, ctx, server_side=True)

    with trio.fail_after(10):
        async with _tcp_pair(_ours_client(client_context()), wrap_server) as (client, server):
            error = await _handshake_expecting_failure(client, server)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


async def test_wrong_hostname_fails_handshake() -> None:
    def wrap_client(stream: trio.SocketStream) -> AnyStream:
        return TLSStream(stream, client_context(), server_hostname="elsewhere.example.org")

    with trio.fail_after(10):
        async with _tcp_pair(wrap_client, _ours_server) as (client, server):
            error = await _handshake_expecting_failure(client, server)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


async def test_garbage_from_tcp_peer_is_broken() -> None:
    # Not os.urandom: about one draw in 500 starts like an SSLv2-style ClientHello whose
    # length runs past the 4 KiB sent, and the handshake then (rightly) waits for the rest.
    garbage = b"not TLS at all\r\n" + random.Random(4096).randbytes(4096)
    with trio.fail_after(10):
        async with _tcp_pair(lambda s: s, _ours_server) as (raw_client, server):
            await raw_client.send_all(garbage)
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()


async def test_initial_data_is_read_before_the_transport(client_ctx: ssl.SSLContext) -> None:
    """The front door reads the ClientHello to route it, then hands the bytes back."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = TLSStream(client_transport, client_ctx, server_hostname=HOSTNAME)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        hello = await server_transport.receive_some(65536)
        assert hello[:1] == b"\x16"  # a TLS handshake record
        server = TLSStream(server_transport, server_context(), server_side=True, initial_data=hello)
        await server.do_handshake()
    await client.send_all(b"ping")
    assert await server.receive_some(10) == b"ping"


# ---- straight to the socket: the plain-socket fast paths and send_now ---------------


async def test_check_two_way_stream_over_tcp(client_ctx: ssl.SSLContext) -> None:
    """trio's generic checks with a real socket underneath, where TLSStream reads and writes
    the socket itself rather than through trio.SocketStream."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]

        async def stream_maker() -> tuple[TLSStream[AnyStream], TLSStream[AnyStream]]:
            client_sock = await trio.open_tcp_stream("127.0.0.1", port)
            server_sock = await listener.accept()
            return tls_pair(client_ctx, client_sock, server_sock)

        with trio.fail_after(30):
            await trio.testing.check_two_way_stream(stream_maker, None)


async def test_send_now_writes_at_once_only_over_a_socket(client_ctx: ssl.SSLContext) -> None:
    with trio.fail_after(10):
        left, right = trio.testing.memory_stream_pair()
        client, server = tls_pair(client_ctx, left, right)
        await handshake_both(client, server)
        assert not client.can_send_now()  # a memory stream has no socket to write
        async with _tcp_pair(_ours_client(client_ctx), _ours_server) as (tcp_client, tcp_server):
            assert isinstance(tcp_client, TLSStream) and isinstance(tcp_server, TLSStream)
            assert not tcp_client.can_send_now()  # before the handshake
            await handshake_both(tcp_client, tcp_server)
            assert tcp_client.can_send_now()
            assert tcp_client.send_now(b"hello")
            assert await tcp_server.receive_some() == b"hello"


async def test_send_now_on_a_full_socket_keeps_the_rest_for_flush(
    client_ctx: ssl.SSLContext,
) -> None:
    """A peer that does not read: send_now returns False once the socket is full, sending
    waits (can_send_now is False) until flush has written the rest, and everything arrives
    in order, including what send_all sent after it."""
    block = os.urandom(256 * 1024)
    with trio.fail_after(30):
        async with _tcp_pair(_ours_client(client_ctx), _ours_server) as (client, server):
            assert isinstance(client, TLSStream) and isinstance(server, TLSStream)
            await handshake_both(client, server)
            sent = 0
            while client.send_now(block):
                sent += len(block)
                assert sent < 256 * 1024 * 1024, "the socket never filled up"
            sent += len(block)
            assert not client.can_send_now()
            expected = hashlib.sha256(block * (sent // len(block)) + b"tail").hexdigest()

            async def writer() -> None:
                await client.flush()
                assert client.can_send_now()
                await client.send_all(b"tail")
                await client.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                digest, count = await _receive_and_hash(server)
    assert count == sent + 4
    assert digest == expected


async def test_a_transport_read_after_a_short_one_waits_for_readability_first(
    client_ctx: ssl.SSLContext,
) -> None:
    """Over a socket: after a read that came back short (the socket is most likely drained),
    the next transport read waits for readability first rather than meeting EAGAIN; after a
    full one it reads again at once, without a checkpoint, as bulk transfers want."""
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listeners[0] as listener:
            port = listener.socket.getsockname()[1]
            client_sock = await trio.open_tcp_stream("127.0.0.1", port)
            server_sock = await listener.accept()
            client = TLSStream(client_sock, client_ctx, server_hostname=HOSTNAME)
            server = TLSStream(
                server_sock, server_context(), server_side=True, max_receive_chunk=64
            )
            async with client, server:
                await handshake_both(client, server)
                await client.send_all(b"a" * 1000)  # about 1 KiB of ciphertext, read 64 at a time
                assert len(await server._receive_transport()) == 64
                with trio.testing.assert_no_checkpoints():
                    assert len(await server._receive_transport()) == 64  # after a full read
                assert not server._transport_yielded
                while len(await server._receive_transport()) == 64:
                    pass  # up to the short read that drained the socket
                await client.send_all(b"b")  # on loopback the ciphertext is there at once
                with trio.testing.assert_checkpoints():
                    assert await server._receive_transport()
                assert server._transport_yielded
