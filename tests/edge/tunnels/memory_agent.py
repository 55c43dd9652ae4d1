"""An agent in memory for the session tests: the edge side of one agent connection run as
`edge.server` runs it (a SERVER mux session and an `AgentSession` over it, GOAWAY once the session
ends), and the agent side as a CLIENT mux session whose accept loop answers the edge's heartbeats
and hands proxy streams to the test, over `trio.testing` memory streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import trio.testing

from edge.tunnels.hub import EdgeHub
from edge.tunnels.session import AgentSession
from protocol.adapters.heartbeat import answer_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.adapters.rpc import call
from protocol.rpc.codec import Codec, parse_proxy_header
from protocol.rpc.messages import (
    Auth,
    AuthExtra,
    AuthResp,
    Bind,
    BindExtra,
    BindResp,
    ProxyHeader,
    StreamType,
    Unbind,
    UnbindResp,
)
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role

#: Every test here is in memory; none should come near this.
TIMEOUT = 10
AGENT_ADDR = ("203.0.113.9", 50123)
OTHER_ADDR = ("198.51.100.20", 40404)
CODEC = Codec.MSGPACK


@dataclass
class Connection:
    """One agent connection: the edge's session, the agent's mux, the proxy streams the edge
    opened (their type already read), and an event set once the edge's session has ended."""

    session: AgentSession
    agent: MuxSession
    proxies: trio.MemoryReceiveChannel[MuxStream]
    ended: trio.Event

    async def auth(self, token: str, *, client_id: str = "", cookie: str = "") -> AuthResp:
        request = Auth(
            version=("2",),
            client_id=client_id,
            extra=AuthExtra(authtoken=token, cookie=cookie, version="3.0.0", os="linux"),
        )
        return await call(self.agent, StreamType.AUTH, request, AuthResp, CODEC)

    async def bind(self, url: str, *, bind_id: str = "", pooling: bool = False) -> BindResp:
        proto = url.split("://", 1)[0]
        request = Bind(
            id=bind_id,
            proto=proto,
            opts={"URL": url},
            forwards_to="localhost:3000",
            extra=BindExtra(pooling_enabled=pooling),
        )
        return await call(self.agent, StreamType.BIND, request, BindResp, CODEC)

    async def unbind(self, bind_id: str) -> UnbindResp:
        return await call(self.agent, StreamType.UNBIND, Unbind(id=bind_id), UnbindResp, CODEC)


async def serve_edge(
    hub: EdgeHub,
    transport: trio.abc.Stream,
    remote: tuple[str, int] = AGENT_ADDR,
    *,
    task_status: trio.TaskStatus[tuple[AgentSession, trio.Event]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """What `edge.server._serve_agent_connection` does once TLS is up."""
    async with open_mux_session(transport, Role.SERVER) as mux:
        session = AgentSession(hub, mux, remote)
        ended = trio.Event()
        task_status.started((session, ended))
        try:
            await session.run()
        finally:
            ended.set()
        await mux.aclose(ErrorCode.NO_ERROR, session.stop_reason or "session closed")


async def agent_accepts(mux: MuxSession, proxies: trio.MemorySendChannel[MuxStream]) -> None:
    """The agent's side of edge-opened streams: heartbeats are answered, proxies handed over."""
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await mux.accept_stream()
                kind = await read_stream_type(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if kind == StreamType.HEARTBEAT:
                nursery.start_soon(answer_heartbeats, stream)
            elif kind == StreamType.PROXY:
                await proxies.send(stream)


@asynccontextmanager
async def connect(hub: EdgeHub, remote: tuple[str, int] = AGENT_ADDR) -> AsyncIterator[Connection]:
    edge_side, agent_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        session, ended = await nursery.start(serve_edge, hub, edge_side, remote)
        async with open_mux_session(agent_side, Role.CLIENT) as agent:
            send, receive = trio.open_memory_channel[MuxStream](16)
            nursery.start_soon(agent_accepts, agent, send)
            yield Connection(session, agent, receive, ended)
        nursery.cancel_scope.cancel()


async def read_proxy_header(stream: MuxStream) -> ProxyHeader:
    buf = bytearray()
    while (parsed := parse_proxy_header(buf, CODEC)) is None:
        chunk = await stream.receive_some()
        assert chunk, "the proxy stream ended before its header"
        buf += chunk
    header, used = parsed
    assert used == len(buf)  # nothing but the header was sent yet
    return header
