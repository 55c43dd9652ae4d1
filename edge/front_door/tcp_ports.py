"""A tcp:// endpoint: a listener whose every connection becomes a proxy stream to the agent,
once the endpoint's `on_tcp_connect` policy let it through (`edge.front_door.connect_policy`).

`proxy_connection` is also how the front door passes a tls:// connection through."""

from __future__ import annotations

import logging
import socket

import trio

from edge.endpoints.registry import Endpoint
from edge.front_door.connect_policy import admit
from protocol.adapters.pipe import splice
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

#: Pending connections the kernel queues per endpoint listener.
LISTEN_BACKLOG = 1024


async def open_tcp_endpoint_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bind the endpoint's port now, so that a taken port is refused at Bind time."""
    return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)


async def serve_tcp_endpoint(listeners: list[trio.SocketListener], record: Endpoint) -> None:
    """Accept until cancelled; each connection is proxied over its own stream. The caller owns
    the listeners (it closes them when the endpoint is released)."""

    async def handle(conn: trio.SocketStream) -> None:
        try:
            await proxy_connection(conn, record)
        except Exception:
            # One connection's failure must never end the endpoint, the session or the edge.
            log.exception("endpoint %s: a public connection failed unexpectedly", record.url)
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
    conn: trio.SocketStream,
    record: Endpoint,
    *,
    initial_data: bytes | bytearray = b"",
    sni: str | None = None,
) -> None:
    """Run the endpoint's `on_tcp_connect` policy (`connect_policy.admit`; `sni` is the
    ClientHello's, for a tls:// endpoint), then open a proxy stream to the endpoint's agent,
    send `initial_data` (bytes the edge already read, such as a ClientHello), and splice the
    bytes both ways. Always closes `conn` (at once if the policy closed the connection)."""
    peer = peer_address(conn)
    if peer is None:
        await trio.aclose_forcefully(conn)
        return
    if not await admit(conn, record, peer, sni=sni):
        return
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    client_addr = format_host_port(*peer)
    stream: trio.abc.HalfCloseableStream | None = None
    try:
        stream = await record.open_proxy(client_addr)
        if initial_data:
            await stream.send_all(initial_data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("endpoint %s: agent unreachable for %s: %s", record.url, client_addr, exc)
        if stream is not None:
            await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(conn)
        return
    except BaseException:  # cancelled before splice took ownership: close both
        if stream is not None:
            await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(conn)
        raise
    await splice(conn, stream)
