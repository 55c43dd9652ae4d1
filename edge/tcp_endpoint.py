"""A tcp:// endpoint: a listener whose every connection becomes a proxy stream to the agent."""

from __future__ import annotations

import logging
import socket

import trio

from protocol.codec import Codec, encode_proxy_header
from protocol.messages import ProxyHeader, StreamType
from protocol.mux import MuxSession, MuxStream
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
    """Accept until cancelled; each connection is proxied over its own stream. The caller owns
    the listeners (it closes them when the endpoint is released)."""

    async def handle(conn: trio.SocketStream) -> None:
        try:
            await proxy_connection(conn, mux=mux, bind_id=bind_id, codec=codec)
        except Exception:
            # One connection's failure must never end the endpoint, the session or the edge.
            log.exception("endpoint %s: a public connection failed unexpectedly", bind_id)
            await trio.aclose_forcefully(conn)

    await trio.serve_listeners(handle, listeners)


def peer_address(conn: trio.SocketStream) -> tuple[str, int] | None:
    """The connection's remote (host, port), or None if it was already reset."""
    try:
        peer = conn.socket.getpeername()
    except OSError:
        return None
    return str(peer[0]), int(peer[1])


async def proxy_connection(
    conn: trio.SocketStream, *, mux: MuxSession, bind_id: str, codec: Codec
) -> None:
    """Open a proxy stream (type 3), send the ProxyHeader, then splice the bytes both ways.
    Always closes `conn`."""
    peer = peer_address(conn)
    if peer is None:
        await trio.aclose_forcefully(conn)
        return
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    client_addr = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
    stream: MuxStream | None = None
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
        if stream is not None:
            stream.close_now()
        await trio.aclose_forcefully(conn)
        return
    except BaseException:  # cancelled before splice took ownership: close both
        if stream is not None:
            stream.close_now()
        await trio.aclose_forcefully(conn)
        raise
    await splice(conn, stream)
