"""Proxy streams: header parsing, upstream dialing, payload order, failures."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from agent.forward import Route, handle_proxy_stream, resolve_host
from protocol.codec import Codec, encode_proxy_header
from protocol.messages import ProxyHeader, StreamType
from protocol.mux import MuxSession, open_mux_session, read_stream_type, receive_exactly
from protocol.session import Role
from protocol.urls import UpstreamURL


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("localhost", "127.0.0.1"),
        ("connect.burrow.localhost", "127.0.0.1"),
        ("LOCALHOST.", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "::1"),
        ("example.com", "example.com"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_resolve_host_keeps_loopback_names_off_the_resolver(host: str, address: str) -> None:
    assert resolve_host(host) == address


@asynccontextmanager
async def mux_pair() -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    agent_side, edge_side = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(agent_side, Role.CLIENT) as agent,
        open_mux_session(edge_side, Role.SERVER) as edge,
    ):
        yield agent, edge


async def serve_one(agent: MuxSession, routes: dict[str, Route]) -> None:
    stream = await agent.accept_stream()
    assert await read_stream_type(stream) == StreamType.PROXY
    await handle_proxy_stream(stream, routes, Codec.MSGPACK, connect_timeout=2)


async def upstream_server(nursery: trio.Nursery, handler: object) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


def route(port: int, proto: str = "tcp") -> dict[str, Route]:
    return {"bd_1": Route("db", "tcp://edge:1", proto, UpstreamURL("tcp", "localhost", port))}


def header(bind_id: str = "bd_1") -> bytes:
    return encode_proxy_header(ProxyHeader(id=bind_id, client_addr="1.2.3.4:5"), Codec.MSGPACK)


async def free_port() -> int:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def test_payload_after_the_header_reaches_the_upstream_first() -> None:
    received: list[bytes] = []

    async def upstream(stream: trio.SocketStream) -> None:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        received.append(data)
        await stream.send_all(b"bye")
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await upstream_server(nursery, upstream)
            nursery.start_soon(serve_one, agent, route(port))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + b"first ")
            await stream.send_all(b"second")
            await stream.send_eof()  # half-close: the reply still comes back
            assert await receive_exactly(stream, 3) == b"bye"
            assert await stream.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert received == [b"first second"]


async def test_unreachable_upstream_logs_8012_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    port = await free_port()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(port))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            with caplog.at_level(logging.WARNING, logger="agent.forward"):
                await stream.send_all(header())
                assert await stream.receive_some() == b""
    assert f"agent could not reach upstream localhost:{port}" in caplog.text
    assert "ERR_NGROK_8012" in caplog.text


async def test_unreachable_http_upstream_gets_a_502_page() -> None:
    port = await free_port()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(port, proto="https"))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header())
            reply = b""
            while chunk := await stream.receive_some():
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"Burrow-Error-Code: ERR_NGROK_8012\r\n" in reply
    assert f"localhost:{port}".encode() in reply


async def test_unknown_endpoint_id_closes_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header("bd_unknown"))
            assert await stream.receive_some() == b""
    assert "unknown endpoint id 'bd_unknown'" in caplog.text


async def test_oversized_header_length_closes_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all((1 << 40).to_bytes(8, "little"))
            assert await stream.receive_some() == b""
    assert "malformed header" in caplog.text


async def test_stream_that_ends_before_its_header_is_closed() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header()[:4])
            await stream.send_eof()
            assert await stream.receive_some() == b""
