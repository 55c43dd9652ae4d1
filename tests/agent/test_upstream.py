"""Opening an upstream: plain TCP, the PROXY header first, TLS after it; and how each failure
reads in the log."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from agent import upstream as upstream_module
from agent.tls_contexts import upstream_context
from agent.upstream import (
    SELF_CONNECT_REASON,
    UpstreamError,
    dial_tcp,
    display_upstream,
    open_upstream,
    refuse_self_connect,
)
from protocol.formats import proxy_protocol
from protocol.formats.proxy_protocol import SocketAddress
from protocol.formats.urls import UpstreamURL
from tests.agent.conftest import PemFiles
from tests.agent.proxying import CLIENT_ADDR, free_port, read_all, serve_upstream


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (UpstreamURL("http", "localhost", 8080), "http://localhost:8080"),
        (UpstreamURL("https", "::1", 443), "https://[::1]:443"),
        (UpstreamURL("tcp", "10.0.0.6", 5432), "10.0.0.6:5432"),
        (UpstreamURL("tls", "::1", 5433), "[::1]:5433"),
    ],
)
def test_display_upstream(target: UpstreamURL, shown: str) -> None:
    assert display_upstream(target) == shown


async def test_a_refused_connection_says_so() -> None:
    target = UpstreamURL("tcp", "127.0.0.1", await free_port())
    with trio.fail_after(5), pytest.raises(UpstreamError, match=r"^cannot connect: .*refused"):
        await open_upstream(target, connect_timeout=2)


async def self_connected() -> trio.SocketStream:
    """A real TCP socket connected to itself: bound to a loopback port, then connected to that
    same address (TCP simultaneous open with itself), as a dial to a port where nothing
    listens ends up when the kernel picks that port as the dial's source port."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    await sock.connect(sock.getsockname())
    return trio.SocketStream(sock)


async def test_a_socket_connected_to_itself_is_closed_and_refused() -> None:
    with trio.fail_after(5):
        stream = await self_connected()
        assert stream.socket.getsockname() == stream.socket.getpeername()
        await stream.send_all(b"echo?")  # what such an "upstream" does: it echoes
        assert await stream.receive_some(5) == b"echo?"
        with pytest.raises(ConnectionRefusedError) as refused:
            await refuse_self_connect(stream)
        assert refused.value.strerror == SELF_CONNECT_REASON
        assert stream.socket.fileno() == -1  # closed


async def test_a_connection_to_a_listener_is_kept() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, read_all)
            stream = await dial_tcp("127.0.0.1", port, connect_timeout=2)
            await refuse_self_connect(stream)  # a real peer: nothing happens
            assert stream.socket.fileno() != -1
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_dial_that_reaches_itself_fails_as_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`open_upstream` reports such a dial as an unreachable upstream (ERR_NGROK_8012's
    "connection refused"), never as a working one. The kernel picks the source port, so the
    dial is made to reach itself here by handing `dial_tcp` a really self-connected socket
    (the slow test below makes the kernel do it for real)."""

    async def open_tcp_stream(host: str, port: int) -> trio.SocketStream:
        return await self_connected()

    monkeypatch.setattr(upstream_module.trio, "open_tcp_stream", open_tcp_stream)
    target = UpstreamURL("tcp", "127.0.0.1", 1)
    with trio.fail_after(5), pytest.raises(UpstreamError, match=r"^cannot connect: .*refused"):
        await open_upstream(target, connect_timeout=2)


#: Dials of one dead port before giving up on seeing the kernel pick it as the source port:
#: Linux walks the even ports of the ephemeral range (about 14,000 by default) for one
#: destination, so this covers the walk several times over.
SELF_CONNECT_DIALS = 120_000


async def free_even_port(low: int, high: int) -> int:
    """An even port of the ephemeral range that nothing holds: Linux gives bind(port 0) the
    odd ports and tries the even ones first for connect(), so a dial's source port can be
    this one."""
    start = (await free_port()) // 2 * 2
    for candidate in (*range(start, high + 1, 2), *range(low + low % 2, start, 2)):
        probe = trio.socket.socket()
        try:
            await probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        finally:
            probe.close()
        return candidate
    raise AssertionError("no free even port in the ephemeral range")


@pytest.mark.slow
async def test_repeated_dials_of_a_dead_port_never_yield_a_self_connected_upstream() -> None:
    """Dial a loopback port where nothing listens until the kernel, picking that very port as
    the source port, makes the dial reach itself: `dial_tcp` refuses it like every other dial
    of that port, and no dial ever returns a stream."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    port = await free_even_port(low, high)
    refused_itself = 0
    with trio.fail_after(600):
        for _ in range(SELF_CONNECT_DIALS):
            try:
                stream = await dial_tcp("127.0.0.1", port, connect_timeout=2)
            except ConnectionRefusedError as exc:
                if exc.strerror == SELF_CONNECT_REASON:
                    refused_itself += 1
                    break
                continue
            except OSError:
                continue
            await stream.aclose()
            raise AssertionError(f"a dial of dead port {port} returned a connected stream")
    assert low <= port <= high
    assert refused_itself == 1, f"the kernel never picked {port} in {SELF_CONNECT_DIALS} dials"


async def test_the_proxy_header_is_the_first_thing_on_the_connection() -> None:
    received: list[bytes] = []

    async def upstream(stream: trio.SocketStream) -> None:
        received.append(await read_all(stream))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, upstream)
            target = UpstreamURL("tcp", "localhost", port)
            proxy = (1, SocketAddress.parse(CLIENT_ADDR))
            stream = await open_upstream(target, connect_timeout=2, proxy=proxy)
            await stream.send_all(b"payload")
            await stream.aclose()
            while not received:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    expected = f"PROXY TCP4 203.0.113.5 127.0.0.1 51234 {port}\r\n".encode()
    assert received == [expected + b"payload"]
    assert proxy_protocol.parse(received[0]) is not None


async def test_an_upstream_that_never_answers_the_handshake_times_out(
    localhost_pems: PemFiles,
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, silent)
            target = UpstreamURL("https", "localhost", port)
            context = upstream_context(cas=localhost_pems.ca_path)
            with pytest.raises(UpstreamError, match=r"^no TLS handshake within 0.2s$"):
                await open_upstream(target, connect_timeout=2, tls=context, handshake_timeout=0.2)
            nursery.cancel_scope.cancel()


async def test_a_plain_http_server_behind_an_https_upstream_url_fails_the_handshake(
    localhost_pems: PemFiles,
) -> None:
    async def plain_http(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, plain_http)
            target = UpstreamURL("https", "localhost", port)
            context = upstream_context(cas=localhost_pems.ca_path)
            with pytest.raises(UpstreamError, match=r"^TLS handshake failed: "):
                await open_upstream(target, connect_timeout=2, tls=context)
            nursery.cancel_scope.cancel()


async def test_an_ip_literal_upstream_is_checked_against_its_ip_address(
    localhost_pems: PemFiles,
) -> None:
    """`https://127.0.0.1:PORT`: no SNI is sent for an address, but the certificate must still
    name it (the trustme certificate has 127.0.0.1 among its SANs)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    localhost_pems.cert.configure_cert(server)
    sni: list[str | None] = []

    def on_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        sni.append(name)

    server.sni_callback = on_sni

    async def https(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, server, server_side=True)
        await stream.do_handshake()
        await trio.aclose_forcefully(stream)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, https)
            target = UpstreamURL("https", "127.0.0.1", port)
            context = upstream_context(cas=localhost_pems.ca_path)
            stream = await open_upstream(target, connect_timeout=2, tls=context)
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
    assert sni == [None]
