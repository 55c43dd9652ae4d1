"""Helpers for tests that drive `agent.forward` through a real proxy stream.

`mux_pair` wires an agent-side and an edge-side MuxSession together in memory; the edge side opens
a PROXY stream, writes a ProxyHeader (`header`) and then plays the public client. Upstreams are
real TCP listeners on loopback (`serve_upstream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing

from agent.forward import Route, handle_proxy_stream
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.rpc.codec import Codec, encode_proxy_header
from protocol.rpc.messages import ProxyHeader, StreamType
from protocol.wire.session import Role

CLIENT_ADDR = "203.0.113.5:51234"


@asynccontextmanager
async def mux_pair() -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    agent_side, edge_side = trio.testing.memory_stream_pair()
    async with (
        open_mux_session(agent_side, Role.CLIENT) as agent,
        open_mux_session(edge_side, Role.SERVER) as edge,
    ):
        yield agent, edge


async def serve_one(agent: MuxSession, routes: dict[str, Route]) -> None:
    """Accept one proxy stream on the agent side and hand it to `handle_proxy_stream`."""
    stream = await agent.accept_stream()
    assert await read_stream_type(stream) == StreamType.PROXY
    await handle_proxy_stream(stream, routes, Codec.MSGPACK, connect_timeout=2)


async def serve_upstream(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    """A TCP listener on 127.0.0.1 running `handler` per connection; returns its port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


def header(bind_id: str = "bd_1", client_addr: str = CLIENT_ADDR) -> bytes:
    return encode_proxy_header(ProxyHeader(id=bind_id, client_addr=client_addr), Codec.MSGPACK)


async def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


class HeaderFirst(trio.abc.Stream):
    """The edge-side proxy stream as a public client's TLS sees it: the ProxyHeader goes out in
    the same write as the client's first bytes (the ClientHello), as the edge sends them."""

    def __init__(self, stream: MuxStream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        prefix, self._prefix = self._prefix, b""
        await self.stream.send_all(prefix + bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()
