"""The edge's public ports: one TLS port routed by SNI, and one plain-HTTP port routed by Host.

Theory of operation. Every connection to the TLS port is first read, without answering, until
its ClientHello is complete (`edge.front_door.clienthello`, at most `MAX_HELLO_BYTES`, within
`limits.hello_timeout`). The hello's SNI picks the way on:

    connect host (or `localhost`)  an agent session: TLS ends here with the connect
                                   certificate, then muxado (`edge.server`)
    a tls:// endpoint's host       the bytes go to that endpoint's agent untouched, ClientHello
                                   included, on a proxy stream (the agent or upstream ends TLS);
                                   unless its policy ran terminate-tls: then TLS ends here with
                                   the policy's certificate and the agent gets the plaintext
                                   (`edge.front_door.tls_termination`)
    an https:// endpoint's host    TLS ends here with that host's certificate (`CertStore`),
                                   then HTTP/1.1 (`edge.http.h1.proxy`), or HTTP/2 if ALPN
                                   chose h2 (`edge.http.h2.proxy`, with `http.http2` on)
    anything else, or no SNI       a fatal `unrecognized_name` alert, then close

Before anything is forwarded or answered for a tls:// or https:// endpoint, its Traffic Policy's
`on_tcp_connect` rules run (`edge.front_door.connect_policy`; for https before the TLS
handshake): a connection they close is closed at once, with no alert. (http:// endpoints do
not run on_tcp_connect: the plain-HTTP port learns the endpoint per request, from Host; the
Bind path refuses such rules.)

The bytes already read are handed to whoever goes on (TLSStream's `initial_data`, or sent
first on the proxy stream), so nothing is consumed twice or lost. A tls:// endpoint wins over
an https:// one for the same host: a tls endpoint asked for the raw bytes explicitly.

The plain-HTTP port goes straight to `serve_http` with scheme "http"; routing is per request
by Host, among http:// endpoints only. HTTP requests are routed in `edge.http` (`edge.http.seam`
decides, `edge.http.routing.EndpointRouter` looks endpoints up); the front door only hands the
connection over with that router. Both ports share one bound on concurrent connections
(`limits.max_public_connections`): past it, the accept loops stop accepting and new
connections wait in the kernel's backlog instead of costing tasks and buffers. One source
address (an IPv6 /64) may hold `limits.max_connections_per_address` of them
(`edge.front_door.address_limits`): past it, a new connection is closed at once, before
anything is read, and the refusals are logged as one summary line per interval.

Every refusal costs a bounded read, one log line and a close; nothing one connection does can
end the listener or touch another connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Literal

import trio

from edge.admin.metrics import EdgeMetrics
from edge.certs.cert_store import CertStore
from edge.config import EdgeConfig
from edge.endpoints.registry import EndpointRegistry
from edge.front_door.address_limits import AddressLimits, address_key
from edge.front_door.clienthello import (
    MAX_HELLO_BYTES,
    Alert,
    ClientHello,
    ClientHelloError,
    alert_record,
    parse_client_hello,
)
from edge.front_door.forwarding import InternalTargets, admit
from edge.front_door.sni import Passthrough, Terminate, ToAgent, route_sni
from edge.front_door.tcp_ports import peer_address, proxy_connection
from edge.http.h1.proxy import serve_http
from edge.http.h2.proxy import serve_http2
from edge.http.routing import EndpointRouter
from protocol.adapters.tls import TLSStream
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

#: Pending connections the kernel queues per public listener (also where connections wait
#: while `max_public_connections` are being served).
LISTEN_BACKLOG = 4096
#: After accept() fails for lack of file descriptors, wait this long before trying again
#: (what trio.serve_listeners does), instead of spinning.
ACCEPT_RETRY_DELAY = 0.1
#: A refusal's alert gets this long to leave before the connection is closed anyway.
ALERT_SEND_TIMEOUT = 1.0
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: Runs an agent session over a TLS stream whose handshake is not done yet. Args: the stream,
#: the peer address, and the trio time by which Auth must succeed.
AgentHandler = Callable[[TLSStream[trio.SocketStream], tuple[str, int], float], Awaitable[None]]


class FrontDoor:
    def __init__(
        self,
        config: EdgeConfig,
        registry: EndpointRegistry,
        *,
        agent_tls: ssl.SSLContext,
        certs: CertStore,
        serve_agent: AgentHandler,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        #: Counts failed public TLS handshakes (`edge.admin.metrics`); a fresh set when None.
        self.metrics = metrics or EdgeMetrics()
        self.agent_tls = agent_tls
        self.certs = certs
        # Requests go where `edge.http` decides.
        self.http_router = EndpointRouter(
            registry, max_forward_hops=config.limits.forward_internal_max_hops
        )
        # Where a tls:// endpoint's forward-internal may hand its connections.
        self.internal_targets = InternalTargets(
            registry, config.limits.forward_internal_max_hops
        )
        self._serve_agent = serve_agent
        self._agent_names = {config.connect_host.lower(), "localhost"}
        self._limiter = trio.CapacityLimiter(config.limits.max_public_connections)
        self._addresses = AddressLimits(config.limits.max_connections_per_address)
        # Each accept loop's scope, so that a drain stops accepting without touching the
        # connections already accepted (`stop_accepting`).
        self._accepting: list[tuple[trio.CancelScope, trio.SocketListener]] = []
        self._stopped = False

    def stop_accepting(self) -> None:
        """Stop accepting on every listener and close them (the ports are free at once);
        connections already accepted carry on until they end or `serve` is cancelled. Used by
        a drain (SIGTERM); accept loops started afterwards end at once."""
        self._stopped = True
        for scope, listener in self._accepting:
            scope.cancel()
            listener.socket.close()

    # ----------------------------------------------------------------------------- accept

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        handler: Callable[[trio.SocketStream], Awaitable[None]],
    ) -> None:
        """Accept on every listener until cancelled, each connection in its own task."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, handler, nursery)

    async def _accept_loop(
        self,
        listener: trio.SocketListener,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        with trio.CancelScope() as accepting:
            self._accepting.append((accepting, listener))
            if self._stopped:
                accepting.cancel()
            await self._accept_until_cancelled(listener, handler, nursery)

    async def _accept_until_cancelled(
        self,
        listener: trio.SocketListener,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        while True:
            token = object()
            await self._limiter.acquire_on_behalf_of(token)
            try:
                conn = await listener.accept()
            except OSError as exc:
                self._limiter.release_on_behalf_of(token)
                if exc.errno not in _OUT_OF_FDS:
                    raise
                log.error(  # noqa: TRY400 - expected under load; no traceback wanted
                    "accept failed (%s); retrying in %gs", exc, ACCEPT_RETRY_DELAY
                )
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            except trio.ClosedResourceError:
                self._limiter.release_on_behalf_of(token)
                if self._stopped:  # closed by stop_accepting
                    return
                raise
            except BaseException:
                self._limiter.release_on_behalf_of(token)
                raise
            nursery.start_soon(self._run, handler, conn, token)

    async def _run(
        self,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        conn: trio.SocketStream,
        token: object,
    ) -> None:
        key: str | None = None
        try:
            peer = peer_address(conn)
            if peer is not None:
                key = address_key(peer[0])
                if not self._addresses.admit(key):
                    key = None
                    summary = self._addresses.report(trio.current_time())
                    if summary is not None:
                        log.warning("public connections: %s", summary)
                    await trio.aclose_forcefully(conn)
                    return
            await handler(conn)
        except Exception:
            log.exception("public connection failed unexpectedly; closing it")
            await trio.aclose_forcefully(conn)
        finally:
            if key is not None:
                self._addresses.release(key)
            self._limiter.release_on_behalf_of(token)

    # ------------------------------------------------------------------------- TLS port

    async def handle_tls(self, conn: trio.SocketStream) -> None:
        """One connection to the TLS port: read the ClientHello, route it by SNI."""
        accepted = trio.current_time()
        peer = peer_address(conn)
        if peer is None:
            await trio.aclose_forcefully(conn)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        deadline = accepted + self.config.limits.hello_timeout
        hello, data = await self._read_hello(conn, peer, deadline)
        if hello is None:
            return
        sni = hello.sni
        decided = route_sni(sni, agent_names=self._agent_names, registry=self.registry)
        if isinstance(decided, ToAgent):
            stream = TLSStream(conn, self.agent_tls, server_side=True, initial_data=data)
            await self._serve_agent(stream, peer, accepted + self.config.limits.auth_timeout)
            return
        if isinstance(decided, Passthrough):
            await proxy_connection(
                conn,
                decided.endpoint,
                initial_data=data,
                sni=sni,
                handshake_timeout=self.config.limits.hello_timeout,  # if terminate-tls runs
                internal=self.internal_targets,
                metrics=self.metrics,
            )
            return
        if isinstance(decided, Terminate):
            # on_tcp_connect runs before the handshake: a closed connection gets no TLS at all.
            router = self.http_router
            if decided.endpoint is not None:
                admitted, admitted_by = await admit(
                    conn, decided.endpoint, peer, sni=sni, metrics=self.metrics
                )
                if not admitted:
                    return
                if admitted_by is not None:  # its requests go only where those rules hold
                    router = router.admitted(decided.endpoint.url, admitted_by)
            await self._terminate_https(conn, peer, decided.host, data, deadline, router)
            return
        log.info(
            "TLS connection from %s for %s: no endpoint; unrecognized_name",
            format_host_port(*peer),
            sni if sni is not None else "no SNI",
        )
        await _refuse(conn, Alert.UNRECOGNIZED_NAME)

    async def _read_hello(
        self, conn: trio.SocketStream, peer: tuple[str, int], deadline: float
    ) -> tuple[ClientHello | None, bytearray]:
        """(the hello, every byte read) or (None, ...) once the connection was refused or
        ended: a bad hello gets its alert, a slow or truncated one a plain close."""
        data = bytearray()
        with trio.move_on_at(deadline):
            while True:
                try:
                    hello = parse_client_hello(data)
                except ClientHelloError as exc:
                    log.info(
                        "TLS connection from %s: bad ClientHello (%s); %s",
                        format_host_port(*peer),
                        exc.reason,
                        exc.alert.value,
                    )
                    await _refuse(conn, exc.alert)
                    return None, data
                if hello is not None:
                    return hello, data
                room = MAX_HELLO_BYTES - len(data)
                if room <= 0:  # the parser refuses oversized hellos first; belt and braces
                    await _refuse(conn, Alert.DECODE_ERROR)
                    return None, data
                try:
                    chunk = await conn.receive_some(room)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    log.debug("TLS connection from %s closed before its ClientHello", peer[0])
                    await trio.aclose_forcefully(conn)
                    return None, data
                data += chunk
        log.info(
            "TLS connection from %s: no complete ClientHello within %gs; closing",
            format_host_port(*peer),
            self.config.limits.hello_timeout,
        )
        await trio.aclose_forcefully(conn)
        return None, data

    async def _terminate_https(
        self,
        conn: trio.SocketStream,
        peer: tuple[str, int],
        sni: str,
        data: bytearray,
        deadline: float,
        router: EndpointRouter,
    ) -> None:
        context = self.certs.context_for(sni)
        if context is None:
            log.warning(
                "TLS connection from %s for %s: no certificate for this host; "
                "unrecognized_name (add it to certificates.files)",
                format_host_port(*peer),
                sni,
            )
            await _refuse(conn, Alert.UNRECOGNIZED_NAME)
            return
        stream = TLSStream(
            conn, context, server_side=True, initial_data=data, https_compatible=True
        )
        handshake_deadline = max(deadline, trio.current_time() + self.config.limits.hello_timeout)
        try:
            with trio.fail_at(handshake_deadline):
                await stream.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.info("https connection from %s for %s: TLS handshake failed: %s", peer[0], sni, exc)
            self.metrics.handshake_failed("https")
            await trio.aclose_forcefully(stream)
            return
        if stream.selected_alpn_protocol() == "h2":  # offered only when http.http2 is on
            await serve_http2(
                stream,
                client_addr=peer,
                router=router,
                limits=self.config.http,
                sni=sni,
                metrics=self.metrics,
            )
            return
        await self._serve_http(stream, peer, "https", sni, router)

    # ------------------------------------------------------------------------ HTTP port

    async def handle_http(self, conn: trio.SocketStream) -> None:
        """One connection to the plain-HTTP port."""
        peer = peer_address(conn)
        if peer is None:
            await trio.aclose_forcefully(conn)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        await self._serve_http(conn, peer, "http", None, self.http_router)

    async def _serve_http(
        self,
        stream: trio.abc.Stream,
        peer: tuple[str, int],
        scheme: Literal["http", "https"],
        sni: str | None,
        router: EndpointRouter,
    ) -> None:
        await serve_http(
            stream,
            client_addr=peer,
            scheme=scheme,
            router=router,
            limits=self.config.http,
            sni=sni,
            metrics=self.metrics,
        )


async def open_public_listeners(address: tuple[str, int]) -> list[trio.SocketListener]:
    host, port = address
    return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)


async def _refuse(conn: trio.SocketStream, alert: Alert) -> None:
    """Send a fatal alert (best effort, bounded) and close."""
    with (
        trio.move_on_after(ALERT_SEND_TIMEOUT),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await conn.send_all(alert_record(alert))
    await trio.aclose_forcefully(conn)
