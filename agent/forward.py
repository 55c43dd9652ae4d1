"""One proxy stream: read its ProxyHeader, open the endpoint's upstream, pipe both ways.

Theory of operation
-------------------
The edge opens a typed stream of type PROXY for every public connection (reference §8.8):

    int64 little-endian N | N bytes of ProxyHeader | the connection's raw bytes ...

`handle_proxy_stream` reads until the header is complete (bounded by the codec's
`MAX_PROXY_HEADER_SIZE` and by `HEADER_TIMEOUT`) and finds the endpoint's `Route` by the header's
`Id` (the bind id the edge returned in BindResp). What follows depends on the endpoint:

* tcp://, and tls:// passed through: the bytes are opaque (for tls, the client's own TLS, its
  ClientHello first); they are written to the upstream as they came.
* tls:// with `agent_tls_termination`: the agent is the TLS server. The handshake (client
  certificate checks included) completes first (`agent.tls_termination`); only then is the
  upstream dialed, and the decrypted bytes are piped to it.
* http:// and https://: the bytes are HTTP/1.1 requests, possibly several on one stream; the
  agent does not parse them, it pipes them to the upstream, over TLS if the upstream is https://.
  When the endpoint is inspected (`inspect`, on by default, and a capture store given), the
  edge side is wrapped in `agent.inspector.tap.TapStream`, which shows the bytes both ways to
  the inspector's capture on their way; otherwise nothing is added to the path.

Opening the upstream (`agent.upstream.open_upstream`) writes the PROXY protocol header first if
the endpoint asks for one, with the public client (ProxyHeader.ClientAddr) as the source.

Each connection served logs one info line when it closes (client, upstream, duration, bytes);
an inspected http(s) endpoint logs each request instead (agent.console), its connections at
debug. Failures are per connection and never raise; each logs one line. An unknown id or a malformed
header closes the stream; so does a TLS client refused at the handshake. An upstream that
cannot be reached (refused, timed out, or its TLS handshake failed) is logged with ngrok's
ERR_NGROK_8012; the stream is then reset with STREAM_REFUSED, which the edge turns into its
ERR_NGROK_8012 error page for http(s) endpoints, and for tcp and tls endpoints into a retry on
another member of the endpoint's pool, or a closed connection (a raw TCP client has no way to
be told more). A tls endpoint whose TLS the agent terminated closes the client's TLS instead.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from agent.config import EndpointSettings
from agent.inspector.capture import CaptureStore, ConnectionCapture
from agent.inspector.tap import TapStream, wall_and_monotonic
from agent.metrics import AgentMetrics
from agent.tls_contexts import termination_context, upstream_context
from agent.tls_termination import ClientRefusedError, accept_tls
from agent.upstream import UpstreamError, display_upstream, open_upstream
from protocol.adapters.mux import MuxStream
from protocol.adapters.pipe import CLOSE_TIMEOUT, splice
from protocol.formats.proxy_protocol import SocketAddress
from protocol.formats.urls import UpstreamURL
from protocol.rpc.codec import Codec, parse_proxy_header
from protocol.rpc.errcodes import ERR_NGROK_8012
from protocol.rpc.messages import ProxyHeader, RpcDecodeError
from protocol.wire.errors import ErrorCode

__all__ = [
    "HEADER_TIMEOUT",
    "UPSTREAM_CONNECT_TIMEOUT",
    "Route",
    "handle_proxy_stream",
    "route_for",
]

log = logging.getLogger(__name__)

#: The edge writes the header together with the stream's SYN; a stream that has not delivered
#: one by then is stuck and is closed rather than held open.
HEADER_TIMEOUT = 10.0
#: How long to wait for an upstream TCP connect (a local service answers in microseconds; a
#: remote one behind a slow link still gets well under a client's own patience).
UPSTREAM_CONNECT_TIMEOUT = 10.0
#: Bytes asked of the proxy stream per read while looking for the header.
_HEADER_READ = 64 * 1024
#: Endpoint schemes whose streams carry HTTP: the edge answers the browser when they fail.
_HTTP_PROTOS = ("http", "https")


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where the proxy streams of one bound endpoint go, and how.

    The TLS contexts are built once per endpoint (`route_for`), never per connection.
    """

    name: str  # the endpoint's name, for logs
    url: str  # the URL the edge gave it (BindResp.URL)
    proto: str  # the endpoint's scheme: http, https, tcp or tls
    upstream: UpstreamURL
    proxy_protocol: int | None = None  # write a PROXY v1/v2 header to the upstream first
    upstream_tls: ssl.SSLContext | None = None  # the client context for an https upstream
    termination: ssl.SSLContext | None = None  # the server context when the agent terminates
    inspect: bool = False  # an http(s) endpoint whose requests the inspector captures


def route_for(endpoint: EndpointSettings, url: str = "") -> Route:
    """The route for `endpoint`, its TLS contexts built from its settings. Raises
    TLSMaterialError (an AgentError) if a certificate, key or CA cannot be loaded."""
    upstream = endpoint.upstream
    upstream_tls = None
    if upstream.target.scheme == "https":
        upstream_tls = upstream_context(verify=upstream.tls_verify, cas=upstream.tls_verify_cas)
    termination = None
    if endpoint.agent_tls_termination is not None:
        settings = endpoint.agent_tls_termination
        termination = termination_context(
            settings.server_certificate,
            settings.server_private_key,
            settings.mutual_tls_certificate_authorities,
            alpn=settings.alpn_protocols,
        )
    return Route(
        name=endpoint.name,
        url=url,
        proto=endpoint.endpoint_url.scheme,
        upstream=upstream.target,
        proxy_protocol=upstream.proxy_protocol,
        upstream_tls=upstream_tls,
        termination=termination,
        inspect=endpoint.inspect and endpoint.endpoint_url.scheme in _HTTP_PROTOS,
    )


async def handle_proxy_stream(
    stream: MuxStream,
    routes: Mapping[str, Route],
    codec: Codec,
    *,
    connect_timeout: float = UPSTREAM_CONNECT_TIMEOUT,
    captures: CaptureStore | None = None,
    metrics: AgentMetrics | None = None,
) -> None:
    """Serve one proxy stream until both directions end; always closes (or resets) `stream`.

    `captures`: where inspected endpoints' requests are captured (None: nothing is).
    `metrics`: counted there if given. Never raises for a connection-level failure (logged
    instead); cancellation propagates, closing both sides.
    """
    try:
        found = await _read_header(stream, codec)
        if found is None:
            return
        header, payload = found
        route = routes.get(header.id)
        if route is None:
            log.warning("proxy stream for unknown endpoint id %r; closing it", header.id)
            return
        client_addr = header.client_addr
        del found, header  # not kept for the connection's life (thousands may be idle)
        if metrics is None:
            await _forward(stream, route, client_addr, payload, connect_timeout, captures)
        else:
            metrics.stream_opened(route.name)
            try:
                await _forward(
                    stream, route, client_addr, payload, connect_timeout, captures, metrics
                )
            finally:
                metrics.stream_closed(route.name)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("proxy stream %d ended early: %s", stream.stream_id, exc)
    finally:
        stream.close_now()


async def _forward(
    stream: MuxStream,
    route: Route,
    client_addr: str,
    payload: bytes,
    connect_timeout: float,
    captures: CaptureStore | None,
    metrics: AgentMetrics | None = None,
) -> None:
    proxy = None
    if route.proxy_protocol is not None:
        try:
            proxy = (route.proxy_protocol, SocketAddress.parse(client_addr))
        except ValueError:
            log.warning(
                "endpoint %s: client address %r is not ip:port, so no PROXY header can be "
                "written for the upstream; closing the connection",
                route.name,
                client_addr,
            )
            return
    downstream: trio.abc.Stream = stream
    if route.termination is not None:
        try:
            downstream = await accept_tls(stream, route.termination, payload)
        except ClientRefusedError as exc:
            log.warning("endpoint %s: refused TLS client %s: %s", route.name, client_addr, exc)
            return
        payload = b""  # it was the ClientHello
    dial_started = time.monotonic()
    try:
        upstream = await open_upstream(
            route.upstream, connect_timeout=connect_timeout, tls=route.upstream_tls, proxy=proxy
        )
    except UpstreamError as exc:
        if metrics is not None:
            metrics.upstream_dial_failed(route.name)
        log.warning(
            "endpoint %s: agent could not reach upstream %s: %s (%s)",
            route.name,
            display_upstream(route.upstream),
            exc,
            ERR_NGROK_8012,
        )
        if route.proto in _HTTP_PROTOS or downstream is stream:
            # The edge turns it into 8012 (http), or moves the connection to another pool
            # member (tcp, tls passed through); a lone member's client sees it closed.
            stream.reset(ErrorCode.STREAM_REFUSED)
        else:
            with trio.move_on_after(CLOSE_TIMEOUT):  # close_notify to the client, bounded
                await downstream.aclose()
        return
    if metrics is not None:
        metrics.upstream_dialled(route.name, time.monotonic() - dial_started)
    log.debug("endpoint %s: %s -> %s", route.name, client_addr, display_upstream(route.upstream))
    if route.inspect and captures is not None:
        capture = ConnectionCapture(
            captures, tunnel_name=route.name, remote_addr=client_addr, clock=wall_and_monotonic
        )
        if payload:
            capture.request_bytes(payload)
        # One tap, on the edge side: it sees requests arrive and responses leave, so the
        # upstream socket stays plain (splice reads it directly).
        downstream = TapStream(
            downstream, capture, capture.request_bytes, sent=capture.response_bytes
        )
    try:
        if payload:
            await upstream.send_all(payload)
    except BaseException:
        await trio.aclose_forcefully(upstream)
        raise
    inbound, outbound = await splice(downstream, upstream)  # closes both
    if metrics is not None:
        metrics.relayed(route.name, inbound=inbound + len(payload), outbound=outbound)
    # One line per connection at info; an inspected http endpoint logs each request instead
    # (agent.console.log_request), so its connections are only debug.
    log.log(
        logging.DEBUG if route.inspect and captures is not None else logging.INFO,
        "%s connection from %s to %s closed after %.3fs: %d bytes in, %d bytes out",
        route.proto,
        client_addr,
        display_upstream(route.upstream),
        time.monotonic() - dial_started,
        inbound + len(payload),
        outbound,
        extra={"endpoint": route.name},
    )


async def _read_header(stream: MuxStream, codec: Codec) -> tuple[ProxyHeader, bytes] | None:
    """The header and the payload bytes that came after it, or None if the stream ended, timed
    out or carried a malformed header (logged)."""
    buffer = bytearray()
    with trio.move_on_after(HEADER_TIMEOUT):
        while True:
            try:
                parsed = parse_proxy_header(buffer, codec)
            except RpcDecodeError as exc:
                log.warning("proxy stream %d: malformed header: %s", stream.stream_id, exc)
                return None
            if parsed is not None:
                header, consumed = parsed
                return header, bytes(buffer[consumed:])
            # parse_proxy_header rejects a length over its limit as soon as the 8 length
            # bytes are in, so this buffer holds at most one header plus one read.
            chunk = await stream.receive_some(_HEADER_READ)
            if not chunk:
                log.debug("proxy stream %d ended before its header", stream.stream_id)
                return None
            buffer += chunk
    log.warning("proxy stream %d: no header within %gs", stream.stream_id, HEADER_TIMEOUT)
    return None
