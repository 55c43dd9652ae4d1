"""`edge.front_door.tcp_ports`: a tcp:// endpoint's listener on 127.0.0.1, each public connection
spliced to its own proxy stream. The agent side is a trio.testing memory stream pair handed out
by a small opener that stands in for the agent session."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest
import trio
import trio.testing

from edge.endpoints.registry import Endpoint, Member
from edge.front_door.tcp_ports import (
    open_tcp_endpoint_listeners,
    peer_address,
    proxy_connection,
    serve_tcp_endpoint,
)
from protocol.formats.urls import format_host_port

#: Generous: everything here is loopback and memory, done in milliseconds.
BOUND = 10


class FakeAgent:
    """Opens proxy streams as a session would: each call hands the edge one end of a fresh
    memory stream pair and queues the other end (the agent's) for the test."""

    def __init__(self) -> None:
        self.client_addrs: list[str] = []
        self._send, self.streams = trio.open_memory_channel[trio.abc.HalfCloseableStream](10)

    async def open(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        self.client_addrs.append(client_addr)
        edge_end, agent_end = trio.testing.memory_stream_pair()
        await self._send.send(agent_end)
        return edge_end


def tcp_endpoint(port: int, opener: FakeAgent | None) -> Endpoint:
    members: tuple[Member, ...] = ()
    if opener is not None:
        members = (
            Member(
                bind_id="tun_1",
                token="tok",
                session_id="ts_1",
                client_id="client",
                opener=opener.open,
            ),
        )
    return Endpoint(
        url=f"tcp://127.0.0.1:{port}", proto="tcp", host="127.0.0.1", port=port, members=members
    )


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


async def test_a_connection_is_spliced_to_a_proxy_stream_both_ways_then_closed() -> None:
    agent = FakeAgent()
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_tcp_endpoint, listeners, tcp_endpoint(port, agent))
            client = await trio.open_tcp_stream("127.0.0.1", port)
            proxied = await agent.streams.receive()
            # The session is told who connected: the client's own address.
            assert agent.client_addrs == [format_host_port(*client.socket.getsockname()[:2])]

            await client.send_all(b"hello agent")
            assert await receive_exactly(proxied, 11) == b"hello agent"
            await proxied.send_all(b"hello client")
            assert await receive_exactly(client, 12) == b"hello client"

            # Each side's EOF reaches the other; then both are closed.
            await client.send_eof()
            assert await proxied.receive_some(100) == b""
            await proxied.send_all(b"last words")
            assert await receive_exactly(client, 10) == b"last words"
            await proxied.send_eof()
            assert await client.receive_some(100) == b""
            await client.aclose()
            await proxied.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()


async def test_every_connection_gets_its_own_stream() -> None:
    agent = FakeAgent()
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_tcp_endpoint, listeners, tcp_endpoint(port, agent))
            first = await trio.open_tcp_stream("127.0.0.1", port)
            first_proxied = await agent.streams.receive()
            second = await trio.open_tcp_stream("127.0.0.1", port)
            second_proxied = await agent.streams.receive()
            await second.send_all(b"two")
            await first.send_all(b"one")
            assert await receive_exactly(first_proxied, 3) == b"one"
            assert await receive_exactly(second_proxied, 3) == b"two"
            assert len(set(agent.client_addrs)) == 2
            for stream in (first, second, first_proxied, second_proxied):
                await stream.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()


async def test_an_unreachable_agent_closes_the_connection_and_the_endpoint_serves_on() -> None:
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            # No member: open_proxy raises BrokenResourceError, as for a session that is gone.
            nursery.start_soon(serve_tcp_endpoint, listeners, tcp_endpoint(port, None))
            for _ in range(2):
                client = await trio.open_tcp_stream("127.0.0.1", port)
                # The edge closes it: EOF, or a reset, which is as good (a hang fails the bound).
                with contextlib.suppress(trio.BrokenResourceError):
                    assert await client.receive_some(100) == b""
                await client.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()


async def test_initial_data_goes_first_on_the_proxy_stream() -> None:
    agent = FakeAgent()
    with trio.fail_after(BOUND):
        [listener] = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        conn = await listener.accept()
        assert peer_address(conn) == client.socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    proxy_connection, conn, tcp_endpoint(port, agent), initial_data=b"\x16hello"
                )
            )
            proxied = await agent.streams.receive()
            await client.send_all(b" and then")
            assert await receive_exactly(proxied, 15) == b"\x16hello and then"
            await client.aclose()
            assert await proxied.receive_some(100) == b""
            await proxied.aclose()  # both directions ended: proxy_connection returns
        await listener.aclose()


async def test_a_taken_port_is_refused_when_binding() -> None:
    with trio.fail_after(BOUND):
        [holder] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        try:
            with pytest.raises(OSError):
                await open_tcp_endpoint_listeners("127.0.0.1", holder.socket.getsockname()[1])
        finally:
            await holder.aclose()
