"""One proxy stream: read its ProxyHeader, dial the endpoint's upstream, pipe both ways.

The edge opens a typed stream of type PROXY for every public connection (reference §8.8):

    int64 little-endian N | N bytes of ProxyHeader | the connection's raw bytes ...

`handle_proxy_stream` reads until the header is complete (bounded by the codec's
`MAX_PROXY_HEADER_SIZE` and by `HEADER_TIMEOUT`), finds the endpoint by the header's `Id` (the
bind id the edge returned in BindResp), dials the upstream, writes any payload bytes that came
in with the header, and then splices the two streams with half-close.

Failures are per connection and never raise: an unknown id, a malformed header or an upstream
that cannot be reached close the proxy stream (the edge sees it end) and log one line. An
upstream dial failure uses ngrok's ERR_NGROK_8012 wording; for http(s) endpoints the agent
also answers with a small 502 page carrying that code, as ngrok's agent does, so the person at
the browser learns where the connection stopped.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from protocol.codec import Codec, parse_proxy_header
from protocol.errcodes import ERR_NGROK_8012
from protocol.messages import RpcDecodeError
from protocol.mux import MuxStream
from protocol.pipe import splice
from protocol.urls import UpstreamURL, format_host_port, is_loopback_name

__all__ = [
    "HEADER_TIMEOUT",
    "UPSTREAM_CONNECT_TIMEOUT",
    "Route",
    "dial_tcp",
    "format_host_port",
    "handle_proxy_stream",
    "resolve_host",
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
_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Route:
    """Where the proxy streams of one bound endpoint go."""

    name: str  # the endpoint's name, for logs
    url: str  # the URL the edge gave it (BindResp.URL)
    proto: str  # the endpoint's scheme: http, https, tcp or tls
    upstream: UpstreamURL


def resolve_host(host: str) -> str:
    """The address to dial for `host`: loopback names (`localhost`, `*.localhost`, RFC 6761)
    become 127.0.0.1 here, without asking the system resolver; IP literals and other names are
    returned unchanged (trio resolves names)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _LOOPBACK if is_loopback_name(host) else host
    return host


async def dial_tcp(host: str, port: int, *, connect_timeout: float) -> trio.SocketStream:
    """Open a TCP connection with TCP_NODELAY set; `host` goes through `resolve_host`.

    Raises OSError (refused, unreachable, name not found) or trio.TooSlowError.
    """
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(resolve_host(host), port)
    # trio already sets TCP_NODELAY on the streams it opens; say so explicitly because the
    # tunnel's latency depends on it (small writes must not wait for Nagle's algorithm).
    try:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def handle_proxy_stream(
    stream: MuxStream,
    routes: Mapping[str, Route],
    codec: Codec,
    *,
    connect_timeout: float = UPSTREAM_CONNECT_TIMEOUT,
) -> None:
    """Serve one proxy stream until both directions end; always closes `stream`.

    Never raises for a connection-level failure (logged instead); cancellation propagates,
    closing both sides.
    """
    upstream: trio.SocketStream | None = None
    try:
        found = await _read_header(stream, codec)
        if found is None:
            return
        header_id, client_addr, payload = found
        route = routes.get(header_id)
        if route is None:
            log.warning("proxy stream for unknown endpoint id %r; closing it", header_id)
            return
        target = route.upstream
        address = format_host_port(target.host, target.port)
        try:
            upstream = await dial_tcp(target.host, target.port, connect_timeout=connect_timeout)
        except (OSError, trio.TooSlowError) as exc:
            reason = str(exc) or "timed out"
            log.warning(
                "endpoint %s: agent could not reach upstream %s: %s (%s)",
                route.name,
                address,
                reason,
                ERR_NGROK_8012,
            )
            if route.proto in ("http", "https"):
                await _send_bad_gateway(stream, address)
            return
        log.debug("endpoint %s: %s -> %s", route.name, client_addr, address)
        if payload:
            await upstream.send_all(payload)
        pair, upstream = upstream, None  # splice owns and closes both from here
        await splice(stream, pair)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("proxy stream %d ended early: %s", stream.stream_id, exc)
    finally:
        if upstream is not None:
            await trio.aclose_forcefully(upstream)
        stream.close_now()


async def _read_header(stream: MuxStream, codec: Codec) -> tuple[str, str, bytes] | None:
    """(Id, ClientAddr, payload bytes after the header), or None if the stream ended, timed
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
                return header.id, header.client_addr, bytes(buffer[consumed:])
            # parse_proxy_header rejects a length over its limit as soon as the 8 length
            # bytes are in, so this buffer holds at most one header plus one read.
            chunk = await stream.receive_some(_HEADER_READ)
            if not chunk:
                log.debug("proxy stream %d ended before its header", stream.stream_id)
                return None
            buffer += chunk
    log.warning("proxy stream %d: no header within %gs", stream.stream_id, HEADER_TIMEOUT)
    return None


async def _send_bad_gateway(stream: MuxStream, address: str) -> None:
    body = (
        f"Burrow: the agent could not reach its upstream at {address}.\n"
        f"Make sure a service is listening there. ({ERR_NGROK_8012})\n"
    ).encode()
    head = (
        "HTTP/1.1 502 Bad Gateway\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Burrow-Error-Code: {ERR_NGROK_8012}\r\n"
        f"ngrok-error-code: {ERR_NGROK_8012}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        await stream.send_all(head + body)
        await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
