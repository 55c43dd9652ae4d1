"""Opening one connection to an endpoint's upstream: TCP, then a PROXY header, then TLS.

Theory of operation: the order is the wire's. A PROXY protocol header (when
`upstream.proxy_protocol` asks for one) is the first thing on the TCP connection, before any TLS
ClientHello, because the upstream's listener reads it before anything else. Its source is the
public client (ProxyHeader.ClientAddr) and its destination the address the agent actually dialed.
For an `https://` upstream a TLS client handshake follows, with SNI and certificate checks for
the upstream's host name, so that failures to reach the upstream (refused, timed out, untrusted
certificate) all happen here, before the first payload byte, where the caller can still refuse
the whole stream.

Every failure is an `UpstreamError` whose message is one line saying why (the caller's log line
names the upstream); cancellation propagates. On failure the half-open connection is closed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import ssl

import trio

from protocol.adapters.tls import TLSStream
from protocol.formats import proxy_protocol
from protocol.formats.proxy_protocol import SocketAddress
from protocol.formats.urls import UpstreamURL, format_host_port, is_loopback_name

__all__ = [
    "SELF_CONNECT_REASON",
    "UPSTREAM_TLS_HANDSHAKE_TIMEOUT",
    "UpstreamError",
    "dial_tcp",
    "display_upstream",
    "open_upstream",
    "proxy_protocol_header",
    "refuse_self_connect",
    "resolve_host",
    "tls_failure_reason",
]

#: An https upstream gets this long to complete its handshake after the TCP connect (a local
#: service answers in milliseconds; this only stops a stuck one from holding the stream).
UPSTREAM_TLS_HANDSHAKE_TIMEOUT = 10.0
#: The strerror of the ConnectionRefusedError a dial that connected to itself raises.
SELF_CONNECT_REASON = "Connection refused (the connection reached itself: nothing listens there)"
_LOOPBACK = "127.0.0.1"


class UpstreamError(Exception):
    """The upstream could not be reached or its TLS handshake failed; the message says why."""


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

    Raises OSError (refused, unreachable, name not found; a connection to itself is refused,
    see `refuse_self_connect`) or trio.TooSlowError.
    """
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(resolve_host(host), port)
    await refuse_self_connect(stream)
    # trio already sets TCP_NODELAY on the streams it opens; say so explicitly because the
    # tunnel's latency depends on it (small writes must not wait for Nagle's algorithm).
    try:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def refuse_self_connect(stream: trio.SocketStream) -> None:
    """Close `stream` and raise ConnectionRefusedError if it is connected to itself.

    A dial to a local port where nothing listens can be answered by the dialling socket
    itself: when the kernel happens to pick that same port as the connection's source port,
    the SYN meets its own socket (TCP simultaneous open) and the connect succeeds. The
    "upstream" then echoes whatever it is sent. Its local address equals its peer address;
    nothing was listening, so the dial fails as refused, as it would have without the
    coincidence.
    """
    sock = stream.socket
    try:
        connected_to_itself = sock.getsockname() == sock.getpeername()
    except OSError:  # already reset: the first read or write reports it
        return
    if connected_to_itself:
        await trio.aclose_forcefully(stream)
        raise ConnectionRefusedError(errno.ECONNREFUSED, SELF_CONNECT_REASON)


def display_upstream(target: UpstreamURL) -> str:
    """The upstream as the Forwarding line and ForwardsTo show it (as ngrok prints them): the
    URL for http(s) upstreams, `host:port` for tcp and tls ones."""
    if target.scheme in ("http", "https"):
        return str(target)
    return format_host_port(target.host, target.port)


def proxy_protocol_header(version: int, client: SocketAddress, upstream: SocketAddress) -> bytes:
    """The PROXY header of `version` (1 or 2) for a connection from `client` to `upstream`."""
    if version == 1:
        return proxy_protocol.encode_v1(client, upstream)
    if version == 2:
        return proxy_protocol.encode_v2(client, upstream)
    raise ValueError(f"PROXY protocol version {version} is not 1 or 2")


async def open_upstream(
    target: UpstreamURL,
    *,
    connect_timeout: float,
    tls: ssl.SSLContext | None = None,
    proxy: tuple[int, SocketAddress] | None = None,
    handshake_timeout: float = UPSTREAM_TLS_HANDSHAKE_TIMEOUT,
) -> trio.abc.Stream:
    """Connect to `target` and return the stream to splice with.

    `proxy` is (PROXY protocol version, client address): the header is written first. `tls`
    wraps the connection in TLS (client side, SNI = `target.host`, a transport EOF without
    close_notify read as EOF as browsers do) and completes the handshake within
    `handshake_timeout`. Raises UpstreamError.
    """
    try:
        tcp = await dial_tcp(target.host, target.port, connect_timeout=connect_timeout)
    except trio.TooSlowError:
        raise UpstreamError(f"no TCP connection within {connect_timeout:g}s") from None
    except OSError as exc:
        raise UpstreamError(f"cannot connect: {_os_reason(exc)}") from None
    try:
        if proxy is not None:
            await _send_proxy_header(tcp, *proxy)
        if tls is None:
            return tcp
        # For an IP literal Python's ssl sends no SNI (RFC 6066 forbids it) and checks the
        # certificate against the address instead.
        stream = TLSStream(tcp, tls, server_hostname=target.host, https_compatible=True)
        with trio.fail_after(handshake_timeout):
            await stream.do_handshake()
        return stream
    except trio.TooSlowError:
        await trio.aclose_forcefully(tcp)
        raise UpstreamError(f"no TLS handshake within {handshake_timeout:g}s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(tcp)
        raise UpstreamError(f"TLS handshake failed: {tls_failure_reason(exc)}") from None
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise


async def _send_proxy_header(tcp: trio.SocketStream, version: int, client: SocketAddress) -> None:
    """Write the PROXY header; its destination is the address actually dialed."""
    try:
        host, port = tcp.socket.getpeername()[:2]
        dialed = SocketAddress(ipaddress.ip_address(host), port)
        await tcp.send_all(proxy_protocol_header(version, client, dialed))
    except (OSError, trio.BrokenResourceError) as exc:
        raise UpstreamError(
            f"the connection failed while sending the PROXY header: {exc}"
        ) from None


def tls_failure_reason(exc: BaseException) -> str:
    """One line saying why a TLSStream handshake failed: OpenSSL's verification message (e.g.
    "certificate has expired") or reason, or how the transport ended."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return (cause.reason or str(cause)).lower().replace("_", " ")
    if isinstance(cause, ssl.CertificateError):
        return str(cause)
    return str(exc) or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    """The reason without trio's "Error connecting to ('127.0.0.1', 8080):" prefix (the log
    line names the upstream already). trio.open_tcp_stream raises one OSError for all the
    addresses it tried, caused by a group of their errors; each one's own reason counts."""
    errors: list[OSError] = [exc]
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        errors = [e for e in group.exceptions if isinstance(e, OSError)] or errors
    return "; ".join(dict.fromkeys(map(_one_reason, errors)))


def _one_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):  # its errno is a getaddrinfo code, not an errno
        return f"cannot resolve the name: {exc.strerror or exc}"
    return os.strerror(exc.errno) if exc.errno else str(exc)
