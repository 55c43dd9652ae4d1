"""A tcp:// endpoint: a listener whose every connection becomes a proxy stream to the agent."""

from __future__ import annotations

import logging
import socket

import trio

from protocol.codec import Codec, encode_proxy_header
from protocol.messages import ProxyHeader, StreamType
from protocol.mux import MuxSession
from protocol.pipe import splice

log = logging.getLogger(__name__)

#: ProxyHeader.EdgeType for tcp endpoints (ngrok's legacy enum: 1 = TCP), a decimal string.
EDGE_TYPE_TCP = "1"
#: Pending connections the kernel queues per endpoint listener.
LISTEN_BACKLOG = 1024


async def open_tcp_endpoint_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bind the endpoint's port now, so that a taken port is refused at Bind time."""
    return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)


async def serve_tcp_endpoint(
    listeners: list[trio.SocketListener], *, mux: MuxSession, bind_id: str, codec: Codec
) -> None:
    """Accept until cancelled; each connection is proxied over its own stream."""

    async def handle(conn: trio.SocketStream) -> None:
        await proxy_connection(conn, mux=mux, bind_id=bind_id, codec=codec)

    try:
        await trio.serve_listeners(handle, listeners)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


async def proxy_connection(
    conn: trio.SocketStream, *, mux: MuxSession, bind_id: str, codec: Codec
) -> None:
    """Open a proxy stream (type 3), send the ProxyHeader, then splice the bytes both ways."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    peer = conn.socket.getpeername()
    client_addr = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
    try:
        stream = await mux.open_typed_stream(StreamType.PROXY)
        header = ProxyHeader(
            id=bind_id,
            client_addr=client_addr,
            proto="tcp",
            edge_type=EDGE_TYPE_TCP,
            passthrough_tls=False,
        )
        await stream.send_all(encode_proxy_header(header, codec))
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("endpoint %s: agent unreachable for %s: %s", bind_id, client_addr, exc)
        await trio.aclose_forcefully(conn)
        return
    await splice(conn, stream)
