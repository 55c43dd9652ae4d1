"""`edge.front_door.tcp_ports`: a tcp:// endpoint's listener on 127.0.0.1, each public connection
spliced to its own proxy stream. The agent side is a trio.testing memory stream pair handed out
by a small opener that stands in for the agent session."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest
import trio
import trio.testing

from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.front_door.tcp_ports import (
    SharedPort,
    open_tcp_endpoint_listeners,
    peer_address,
    proxy_connection,
    serve_shared_port,
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


async def test_a_shared_port_serves_the_pool_online_now_and_frees_the_port_on_close() -> None:
    registry = EndpointRegistry()
    agents = [FakeAgent(), FakeAgent()]
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
        for index, agent in enumerate(agents):
            member = Member(
                bind_id=f"tun_{index}",
                token="",
                session_id=f"ts_{index}",
                client_id="client",
                opener=agent.open,
                pooling=True,
            )
            registry.add(
                Endpoint(
                    url=url,
                    proto="tcp",
                    host="127.0.0.1",
                    port=port,
                    members=(member,),
                    runtime=registry.runtime,
                )
            )
        shared = SharedPort(url, listeners)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_shared_port, shared, registry, connections=nursery))
            clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
            ends = [await agent.streams.receive() for agent in agents for _ in range(2)]
            # Each connection held open: the power of two choices gives each member two.
            assert [len(agent.client_addrs) for agent in agents] == [2, 2]
            # The member that opened the port leaves: the port serves the rest of the pool.
            endpoint = registry.lookup(url)
            assert endpoint is not None
            registry.remove(url, endpoint.members[0])
            late = await trio.open_tcp_stream("127.0.0.1", port)
            await agents[1].streams.receive()
            assert [len(agent.client_addrs) for agent in agents] == [2, 3]
            # The last member leaves: a connection already queued finds no endpoint and is
            # closed; then the port closes, free for anyone at once.
            registry.remove(url, endpoint.members[1])
            orphan = await trio.open_tcp_stream("127.0.0.1", port)
            assert await orphan.receive_some(10) == b""
            shared.close()
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
            again = await open_tcp_endpoint_listeners("127.0.0.1", port)
            for stream in [*clients, *ends, late, orphan, *again]:
                await stream.aclose()
            nursery.cancel_scope.cancel()
