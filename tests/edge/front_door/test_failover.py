"""A tcp/tls connection to a pool moves to another member when the first refuses it before
answering (edge/front_door/failover.py), over real muxado sessions and a real socket pair."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from edge.endpoints.health import HealthPolicy
from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member, PoolStream
from edge.front_door.failover import REPLAY_LIMIT, first_answer
from edge.policy.document import load_policy
from edge.policy.validate import validate
from protocol.adapters.mux import MuxSession, read_stream_type
from protocol.rpc.messages import StreamType
from protocol.wire.errors import ErrorCode
from tests.agent.proxying import mux_pair

TIMEOUT = 10


async def refuse(agent: MuxSession) -> None:
    """An agent whose upstream is down: it reads the stream's first bytes, then refuses it."""
    stream = await agent.accept_stream()
    await read_stream_type(stream)
    await stream.receive_some()
    stream.reset(ErrorCode.STREAM_REFUSED)


async def shout(agent: MuxSession, received: list[bytes]) -> None:
    """A working agent: answers every chunk it gets in upper case until EOF."""
    stream = await agent.accept_stream()
    await read_stream_type(stream)
    while data := await stream.receive_some():
        received.append(bytes(data))
        await stream.send_all(bytes(data).upper())
    await stream.aclose()


async def refuse_at_once(agent: MuxSession) -> None:
    """An agent whose upstream is down and that refuses before reading anything (its dial
    failed before the client's first bytes reached it)."""
    stream = await agent.accept_stream()
    await read_stream_type(stream)
    stream.reset(ErrorCode.STREAM_REFUSED)


class ReadAsRefused(trio.abc.Stream):
    """The public client's socket, whose first read completes just as the agent's refusal
    arrives: the read has taken the bytes, and it returns them even though the watch has
    cancelled it meanwhile (as a trio socket read that found data does). It holds its first
    read's bytes until that cancellation has happened, so the test does not depend on the
    scheduler's order."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.held = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if not self.held:
            self.held = True
            # -inf once this task's scope is cancelled (the refusal was seen) or the test's
            # fail_after expired; each pass lets the other tasks run.
            while trio.current_effective_deadline() != -math.inf:
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def listen(agent: MuxSession) -> None:
    """An agent whose upstream reads and never answers (a client-speaks-first protocol)."""
    stream = await agent.accept_stream()
    await read_stream_type(stream)
    while await stream.receive_some():
        pass


@asynccontextmanager
async def pool_of_two(
    policy_b: str | None = None,
) -> AsyncIterator[tuple[Endpoint, MuxSession, MuxSession]]:
    """An endpoint pooled over two real mux sessions (the second member with Traffic Policy
    `policy_b`, if given); yields it and the two agent sides."""
    async with mux_pair() as (agent_a, edge_a), mux_pair() as (agent_b, edge_b):
        registry = EndpointRegistry(health_policy=HealthPolicy(backoff=5.0, backoff_max=5.0))

        def member(session_id: str, edge: MuxSession) -> Member:
            async def opener(client_addr: str) -> trio.abc.HalfCloseableStream:
                return await edge.open_typed_stream(StreamType.PROXY)

            text = policy_b if session_id == "ts_b" else None
            return Member(
                policy=(
                    None
                    if text is None
                    else AttachedPolicy(validate(load_policy(text), protocol="tcp"), text)
                ),
                bind_id="tun_1",
                token="",
                session_id=session_id,
                client_id="cl",
                opener=opener,
                pooling=True,
            )

        url = "tcp://127.0.0.1:20001"
        for name, edge in (("ts_a", edge_a), ("ts_b", edge_b)):
            registry.add(
                Endpoint(
                    url=url,
                    proto="tcp",
                    host="127.0.0.1",
                    members=(member(name, edge),),
                    runtime=registry.runtime,
                )
            )
        endpoint = registry.lookup(url)
        assert endpoint is not None
        yield endpoint, agent_a, agent_b


async def test_a_refused_connection_is_replayed_on_the_other_member() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, pool_of_two() as (endpoint, a, b):
            received: list[bytes] = []
            nursery.start_soon(refuse, a)
            nursery.start_soon(shout, b, received)
            client, far = trio.testing.memory_stream_pair()  # stand-in for the public socket
            stream = await endpoint.open_proxy("1.1.1.1:1", first=endpoint.members[0])
            assert isinstance(stream, PoolStream)
            await stream.send_all(b"hello")
            await far.send_all(b" world")  # the client keeps talking meanwhile
            answered = await first_answer(client, stream, sent=b"hello", client_addr="1.1.1.1:1")
            assert answered is not None
            assert isinstance(answered.stream, PoolStream)
            assert answered.stream.member is endpoint.members[1]
            assert b"".join(received).startswith(b"hello")  # replayed to the second member
            assert answered.first.startswith(b"HELLO")
            assert endpoint.members[0].load.health.failures == 1  # in back-off now
            await answered.stream.aclose()
            nursery.cancel_scope.cancel()


async def test_bytes_read_as_the_refusal_arrives_are_replayed_not_lost() -> None:
    """The client's first bytes, taken from its socket in the same moment the first member
    refused, still reach the second member (they were once dropped: the client then waited
    for an answer to bytes nobody got, stop 16's intermittent pool hang)."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, pool_of_two() as (endpoint, a, b):
            received: list[bytes] = []
            nursery.start_soon(refuse_at_once, a)
            nursery.start_soon(shout, b, received)
            near, far = trio.testing.memory_stream_pair()
            client = ReadAsRefused(near)
            stream = await endpoint.open_proxy("1.1.1.1:1", first=endpoint.members[0])
            assert isinstance(stream, PoolStream)
            await far.send_all(b"ping")
            answered = await first_answer(client, stream, sent=b"", client_addr="1.1.1.1:1")
            assert client.held  # the read did complete after the refusal
            assert answered is not None
            assert isinstance(answered.stream, PoolStream)
            assert answered.stream.member is endpoint.members[1]
            assert received == [b"ping"]
            assert answered.first == b"PING"
            await answered.stream.aclose()
            nursery.cancel_scope.cancel()


async def test_without_another_member_the_connection_is_closed() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, pool_of_two() as (endpoint, a, b):
            nursery.start_soon(refuse, a)
            nursery.start_soon(refuse, b)
            client, far = trio.testing.memory_stream_pair()
            stream = await endpoint.open_proxy("1.1.1.1:1", first=endpoint.members[0])
            assert isinstance(stream, PoolStream)
            await stream.send_all(b"hello")
            answered = await first_answer(client, stream, sent=b"hello", client_addr="1.1.1.1:1")
            assert answered is None  # retried once (on b, refused too), then closed
            assert [m.load.health.failures for m in endpoint.members] == [1, 1]
            assert await far.receive_some() == b""  # the client sees its connection end
            nursery.cancel_scope.cancel()


async def test_watching_stops_once_the_client_sent_more_than_the_replay_limit() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, pool_of_two() as (endpoint, a, _):
            nursery.start_soon(listen, a)
            client, far = trio.testing.memory_stream_pair()
            stream = await endpoint.open_proxy("1.1.1.1:1", first=endpoint.members[0])
            assert isinstance(stream, PoolStream)
            nursery.start_soon(far.send_all, b"x" * (REPLAY_LIMIT + 1))
            # The agent answers nothing until it has read; the watch ends at the limit, with
            # no answer read, and the splice takes over from there.
            answered = await first_answer(client, stream, sent=b"", client_addr="1.1.1.1:1")
            assert answered is not None and answered.stream is stream
            nursery.cancel_scope.cancel()


async def test_a_refused_connection_never_moves_to_a_member_whose_policy_did_not_run() -> None:
    """The connection's on_tcp_connect ran for the first member (no policy); the second one
    restricts who may connect, so the connection is closed rather than moved there."""
    restrict = (
        "on_tcp_connect:\n"
        "  - actions:\n"
        "      - type: restrict-ips\n"
        "        config: {allow: [10.0.0.0/8]}\n"
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, pool_of_two(restrict) as (endpoint, a, b):
            received: list[bytes] = []
            nursery.start_soon(refuse, a)
            nursery.start_soon(shout, b, received)
            client, far = trio.testing.memory_stream_pair()
            stream = await endpoint.open_proxy("1.1.1.1:1", first=endpoint.members[0])
            assert isinstance(stream, PoolStream)
            await stream.send_all(b"hello")
            answered = await first_answer(client, stream, sent=b"hello", client_addr="1.1.1.1:1")
            assert answered is None
            assert endpoint.members[1].load.opened == 0 and received == []
            assert await far.receive_some() == b""
            nursery.cancel_scope.cancel()
