"""upstream.proxy_protocol: the PROXY header the upstream sees, before anything else, carrying
the public client's address (ProxyHeader.ClientAddr) and the address the agent dialed."""

from __future__ import annotations

import contextlib
import logging
import ssl

import pytest
import trio

from agent.forward import Route
from agent.tls_contexts import termination_context, upstream_context
from protocol.adapters.mux import receive_exactly
from protocol.adapters.tls import TLSStream
from protocol.formats import proxy_protocol
from protocol.formats.proxy_protocol import Family, ProxyProtocolHeader, SocketAddress
from protocol.formats.urls import UpstreamURL
from protocol.rpc.messages import StreamType
from tests.agent.conftest import PemFiles
from tests.agent.proxying import (
    CLIENT_ADDR,
    HeaderFirst,
    header,
    mux_pair,
    read_all,
    serve_one,
    serve_upstream,
)


class ProxyAwareUpstream:
    """A TCP upstream that requires a PROXY header: records it and the payload after it, then
    answers "ok". With `tls`, what follows the header is TLS and this is its server. The
    payload is read until EOF, or (`request_size`: TLS has no half-close) that many bytes."""

    def __init__(self, tls: ssl.SSLContext | None = None, request_size: int | None = None) -> None:
        self.tls = tls
        self.request_size = request_size
        self.headers: list[ProxyProtocolHeader] = []
        self.payloads: list[bytes] = []
        self.connections = 0
        self.done = trio.Event()  # set once a connection's payload is recorded

    async def serve(self, tcp: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        while (parsed := proxy_protocol.parse(buffer)) is None:  # a partial header: read more
            chunk = await tcp.receive_some()
            assert chunk, "EOF before the PROXY header"
            buffer += chunk
        found, consumed = parsed
        self.headers.append(found)
        rest = buffer[consumed:]
        stream: trio.abc.Stream = tcp
        if self.tls is not None:
            stream = TLSStream(tcp, self.tls, server_side=True, initial_data=rest)
            rest = b""
        if self.request_size is None:
            payload = rest + await read_all(stream)
        else:
            payload = rest + await receive_exactly(stream, self.request_size - len(rest))
        self.payloads.append(payload)
        self.done.set()
        with contextlib.suppress(trio.BrokenResourceError):  # a client that did not wait
            await stream.send_all(b"ok")
        await trio.aclose_forcefully(stream)


def route(port: int, version: int, proto: str = "tcp", **kw: object) -> dict[str, Route]:
    scheme = "https" if kw.get("upstream_tls") else "tcp"
    target = UpstreamURL(scheme, "localhost", port)
    return {
        "bd_1": Route(name="db", url="", proto=proto, upstream=target, proxy_protocol=version, **kw)  # type: ignore[arg-type]
    }


async def run_plain(
    upstream: ProxyAwareUpstream, version: int, client_addr: str
) -> tuple[bytes, int]:
    """Send "hello upstream" and EOF from `client_addr`; the reply and the upstream's port."""
    reply = b""
    async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
        port = await serve_upstream(nursery, upstream.serve)
        nursery.start_soon(serve_one, agent, route(port, version))
        stream = await edge.open_typed_stream(StreamType.PROXY)
        await stream.send_all(header(client_addr=client_addr) + b"hello ")
        await stream.send_all(b"upstream")
        await stream.send_eof()
        reply = await read_all(stream)
        nursery.cancel_scope.cancel()
    return reply, port


@pytest.mark.parametrize("version", [1, 2])
async def test_tcp_upstream_gets_the_header_first_with_the_real_client(version: int) -> None:
    upstream = ProxyAwareUpstream()
    with trio.fail_after(5):
        reply, port = await run_plain(upstream, version, CLIENT_ADDR)
    assert reply == b"ok"
    (seen,) = upstream.headers
    assert seen.version == version
    assert seen.family is Family.TCP4
    assert seen.source == SocketAddress.parse(CLIENT_ADDR)
    assert seen.destination == SocketAddress.parse(f"127.0.0.1:{port}")
    assert upstream.payloads == [b"hello upstream"]


@pytest.mark.parametrize("version", [1, 2])
async def test_an_ipv6_client_to_an_ipv4_upstream_is_sent_as_tcp6(version: int) -> None:
    upstream = ProxyAwareUpstream()
    with trio.fail_after(5):
        reply, port = await run_plain(upstream, version, "[2001:db8::1]:443")
    assert reply == b"ok"
    (seen,) = upstream.headers
    assert seen.family is Family.TCP6
    assert seen.source == SocketAddress.parse("[2001:db8::1]:443")
    assert seen.destination == SocketAddress.parse(f"[::ffff:127.0.0.1]:{port}")


async def test_https_upstream_gets_the_header_before_the_client_hello(
    localhost_pems: PemFiles,
) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    localhost_pems.cert.configure_cert(server)
    upstream = ProxyAwareUpstream(server, request_size=len(b"request"))
    context = upstream_context(cas=localhost_pems.ca_path)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await serve_upstream(nursery, upstream.serve)
            nursery.start_soon(serve_one, agent, route(port, 2, "https", upstream_tls=context))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + b"request")
            assert await read_all(stream) == b"ok"
            nursery.cancel_scope.cancel()
    assert [h.source for h in upstream.headers] == [SocketAddress.parse(CLIENT_ADDR)]
    assert upstream.payloads == [b"request"]


async def test_terminated_tls_sends_the_header_then_plaintext(localhost_pems: PemFiles) -> None:
    termination = termination_context(localhost_pems.cert_path, localhost_pems.key_path)
    client = ssl.create_default_context()
    localhost_pems.ca.configure_trust(client)
    upstream = ProxyAwareUpstream(request_size=len(b"request"))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await serve_upstream(nursery, upstream.serve)
            nursery.start_soon(serve_one, agent, route(port, 1, "tls", termination=termination))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            tls = TLSStream(HeaderFirst(stream, header()), client, server_hostname="localhost")
            await tls.send_all(b"request")
            assert await receive_exactly(tls, 2) == b"ok"
            await upstream.done.wait()
            await tls.aclose()
            nursery.cancel_scope.cancel()
    (seen,) = upstream.headers
    assert (seen.version, seen.source) == (1, SocketAddress.parse(CLIENT_ADDR))
    assert upstream.payloads == [b"request"]


async def test_a_client_address_that_is_not_ip_port_closes_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = ProxyAwareUpstream()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await serve_upstream(nursery, upstream.serve)
            nursery.start_soon(serve_one, agent, route(port, 2))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            with caplog.at_level(logging.WARNING, logger="agent.forward"):
                await stream.send_all(header(client_addr="client.example.com:1234"))
                assert await read_all(stream) == b""
            nursery.cancel_scope.cancel()
    assert upstream.connections == 0
    assert "client address 'client.example.com:1234' is not ip:port" in caplog.text
