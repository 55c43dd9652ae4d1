"""Opening an upstream: plain TCP, the PROXY header first, TLS after it; and how each failure
reads in the log."""

from __future__ import annotations

import ssl

import pytest
import trio

from agent.tls_contexts import upstream_context
from agent.upstream import UpstreamError, display_upstream, open_upstream
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
