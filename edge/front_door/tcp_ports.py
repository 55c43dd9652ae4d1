"""A tcp:// endpoint: a listener whose every connection becomes a proxy stream to the agent,
once the endpoint's `on_tcp_connect` policy let it through (`edge.front_door.forwarding`, which
may also hand it to an internal endpoint with forward-internal).

The port belongs to the URL, not to one agent session: the first member's Bind opens it
(`SharedPort`), the members of a pool share it, and it closes when the last member leaves.
Each connection finds the endpoint as it is when it arrives, so it is balanced over the
members online then (`Endpoint.open_proxy`), and a connection to a pool whose chosen member
refuses it before answering is moved to another (`edge.front_door.failover`).

`proxy_connection` is also how the front door passes a tls:// connection through."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field

import trio

from edge.admin.metrics import EdgeMetrics
from edge.endpoints.registry import Endpoint, EndpointRegistry, PoolStream
from edge.front_door.failover import first_answer
from edge.front_door.forwarding import InternalTargets, admit_to
from edge.front_door.tls_termination import terminate
from edge.policy.actions_tls import TerminateTlsConfig
from protocol.adapters.pipe import splice
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

#: Pending connections the kernel queues per endpoint listener.
LISTEN_BACKLOG = 1024


async def open_tcp_endpoint_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bind the endpoint's port now, so that a taken port is refused at Bind time."""
    return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)


async def serve_tcp_endpoint(
    listeners: list[trio.SocketListener],
    record: Endpoint,
    *,
    internal: InternalTargets | None = None,
    metrics: EdgeMetrics | None = None,
) -> None:
    """Accept until cancelled; each connection is proxied over its own stream (or handed to
    an internal endpoint in `internal` by the policy's forward-internal). The caller owns the
    listeners (it closes them when the endpoint is released)."""

    async def handle(conn: trio.SocketStream) -> None:
        try:
            await proxy_connection(conn, record, internal=internal, metrics=metrics)
        except Exception:
            # One connection's failure must never end the endpoint, the session or the edge.
            log.exception("endpoint %s: a public connection failed unexpectedly", record.url)
            await trio.aclose_forcefully(conn)

    await trio.serve_listeners(handle, listeners)


#: accept() errors that mean "out of descriptors or buffers for now": wait and accept again
#: (as `trio.serve_listeners` does) instead of giving up the port.
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: How long to wait before accepting again after such an error.
_ACCEPT_CAPACITY_SLEEP = 0.1


@dataclass(slots=True)
class SharedPort:
    """A public tcp endpoint's listening sockets, shared by the members of its pool. `close`
    stops accepting and frees the port at once; connections already accepted carry on."""

    url: str
    listeners: list[trio.SocketListener]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def close(self) -> None:
        self.scope.cancel()
        for listener in self.listeners:
            listener.socket.close()


async def serve_shared_port(
    port: SharedPort,
    registry: EndpointRegistry,
    *,
    connections: trio.Nursery,
    internal: InternalTargets | None = None,
    metrics: EdgeMetrics | None = None,
) -> None:
    """Accept on `port` until it is closed (or this is cancelled); each connection runs in
    `connections` (so it outlives the member whose Bind opened the port) and goes to the
    endpoint online at `port.url` when it arrives; one that arrives when none is (the last
    member just left) is closed."""

    async def handle(conn: trio.SocketStream) -> None:
        endpoint = registry.lookup(port.url)
        if endpoint is None:
            await trio.aclose_forcefully(conn)
            return
        try:
            await proxy_connection(conn, endpoint, internal=internal, metrics=metrics)
        except Exception:
            # One connection's failure must never end the endpoint, the session or the edge.
            log.exception("endpoint %s: a public connection failed unexpectedly", port.url)
            await trio.aclose_forcefully(conn)

    async def accept_loop(listener: trio.SocketListener) -> None:
        while True:
            try:
                conn = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    # Never into the hub's nursery (it would end the edge): this port stops.
                    log.error(  # noqa: TRY400 - one line, no traceback
                        "endpoint %s: accept failed (%s); the port stops", port.url, exc
                    )
                    return
                log.warning("endpoint %s: accept failed (%s); retrying", port.url, exc)
                await trio.sleep(_ACCEPT_CAPACITY_SLEEP)
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            connections.start_soon(handle, conn)

    with port.scope:
        async with trio.open_nursery() as nursery:
            for listener in port.listeners:
                nursery.start_soon(accept_loop, listener)


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
    handshake_timeout: float | None = None,
    internal: InternalTargets | None = None,
    metrics: EdgeMetrics | None = None,
) -> None:
    """Run the endpoint's `on_tcp_connect` policy (`edge.front_door.forwarding.admit_to`;
    `sni` is the ClientHello's, for a tls:// endpoint; a forward-internal hands the connection
    to an internal endpoint in `internal`, whose policy runs in turn, and the stream below goes
    to that endpoint's agent instead), then open a proxy stream to the endpoint's agent,
    send `initial_data` (bytes the edge already read, such as a ClientHello), and splice the
    bytes both ways. Always closes `conn` (at once if the policy closed the connection).

    If the policy ran terminate-tls, the edge first ends the client's TLS itself (within
    `handshake_timeout`; `edge.front_door.tls_termination`) and the agent gets the plaintext;
    a failed handshake closes `conn` before any stream is opened. Without a
    `handshake_timeout` (a tcp:// endpoint, where validation refuses terminate-tls) such a
    connection is closed: fail closed rather than pass TLS through."""
    peer = peer_address(conn)
    if peer is None:
        await trio.aclose_forcefully(conn)
        return
    # A forward-internal hands the connection, bytes untouched, to an internal endpoint.
    record, member, admitted = await admit_to(
        conn, record, peer, sni=sni, internal=internal, metrics=metrics
    )
    if not admitted:
        return
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    client: trio.abc.Stream = conn
    if isinstance(admitted, TerminateTlsConfig):
        if handshake_timeout is None:
            log.warning("endpoint %s: terminate-tls cannot run here; closing", record.url)
            await trio.aclose_forcefully(conn)
            return
        plaintext = await terminate(
            conn,
            admitted,
            initial_data=initial_data,
            handshake_seconds=handshake_timeout,
            peer=peer,
            url=record.url,
        )
        if plaintext is None:
            return
        client, initial_data = plaintext, b""
    client_addr = format_host_port(*peer)
    stream: trio.abc.HalfCloseableStream | None = None
    try:
        # To the member whose policy ran, or one with the same policy (`admit_to`).
        stream = await record.open_proxy(client_addr, first=member, like=member)
        if initial_data:
            await stream.send_all(initial_data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("endpoint %s: agent unreachable for %s: %s", record.url, client_addr, exc)
        if stream is not None:
            await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(client)
        return
    except BaseException:  # cancelled before splice took ownership: close both
        if stream is not None:
            await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(client)
        raise
    if isinstance(stream, PoolStream) and client is conn and len(record.members) > 1:
        # A pool: until the agent answers, a refusal moves the connection to another member.
        answered = await first_answer(client, stream, sent=initial_data, client_addr=client_addr)
        if answered is None:
            return
        stream = answered.stream
        if answered.first:
            try:
                await client.send_all(answered.first)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await trio.aclose_forcefully(stream)
                await trio.aclose_forcefully(client)
                return
            except BaseException:
                await trio.aclose_forcefully(stream)
                await trio.aclose_forcefully(client)
                raise
    await splice(client, stream)
