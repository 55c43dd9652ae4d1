"""Dial the edge, directly or through an outbound proxy: the trio shell around
`agent.proxy_url` (which proxy) and `agent.proxy_handshake` (the bytes).

`dial_edge_transport` returns a connected byte stream to the edge's `host:port`, before the TLS
handshake (the session adds TLS on top, as for a direct connection, so the edge's certificate is
checked end to end and the proxy sees only ciphertext). Through a proxy it:

1. opens TCP to the proxy (its name resolved here) within `connect_timeout`;
2. for an `https://` proxy, completes TLS with it (verified against the system store and the
   proxy's host name; `SSL_CERT_FILE` points OpenSSL elsewhere);
3. runs the CONNECT or SOCKS5 handshake within `PROXY_HANDSHAKE_TIMEOUT`, sending the edge's
   host name for the proxy to resolve.

Errors: every failure is `trio.BrokenResourceError` whose `__cause__` is a `ProxyError` with one
line naming the proxy (`cannot reach the proxy 127.0.0.1:3128 (agent.proxy_url): connection
refused`, `proxy 127.0.0.1:3128 refused the credentials (407); ...`), and the stream is closed.
A direct dial raises what `agent.upstream.dial_tcp` raises (OSError, trio.TooSlowError).
Cancellation closes whatever was opened.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from typing import NoReturn

import trio

from agent.proxy_handshake import ProxyError, handshake_for
from agent.proxy_url import ProxyURL, ProxyURLError, choose_proxy
from agent.upstream import dial_tcp
from protocol.adapters.tls import TLSStream

__all__ = ["PROXY_HANDSHAKE_TIMEOUT", "dial_edge_transport", "open_through_proxy"]

log = logging.getLogger(__name__)

#: A proxy answers CONNECT or a SOCKS5 step in one round trip each once it has reached the edge;
#: 10 s (ngrok's connect_timeout default) leaves room for the proxy's own dial and DNS.
PROXY_HANDSHAKE_TIMEOUT = 10.0
#: Bytes asked of the proxy per read during the handshake (its answers are small).
_RECEIVE_CHUNK = 4096


async def dial_edge_transport(
    host: str,
    port: int,
    *,
    proxy: ProxyURL | None,
    connect_timeout: float,
    environ: Mapping[str, str] | None = None,
) -> trio.abc.Stream:
    """A stream to `host:port` through `proxy`, else through the environment's proxy
    (HTTPS_PROXY, ALL_PROXY, minus NO_PROXY; `environ` defaults to os.environ), else direct."""
    try:
        chosen = choose_proxy(proxy, os.environ if environ is None else environ, host)
    except ProxyURLError as exc:
        _fail(str(exc))
    if chosen is None:
        return await dial_tcp(host, port, connect_timeout=connect_timeout)
    log.debug("dialling %s:%d through %s (%s)", host, port, chosen, chosen.source)
    return await open_through_proxy(chosen, host, port, connect_timeout=connect_timeout)


async def open_through_proxy(
    proxy: ProxyURL,
    host: str,
    port: int,
    *,
    connect_timeout: float,
    handshake_timeout: float = PROXY_HANDSHAKE_TIMEOUT,
    proxy_tls: ssl.SSLContext | None = None,
) -> trio.abc.Stream:
    """A tunnel to `host:port` through `proxy`; `proxy_tls` verifies an https:// proxy
    (default: the system store). Raises trio.BrokenResourceError from ProxyError."""
    try:
        tcp = await dial_tcp(proxy.host, proxy.port, connect_timeout=connect_timeout)
    except trio.TooSlowError:
        _fail(f"cannot reach the proxy {proxy.address} ({proxy.source}): timed out")
    except OSError as exc:
        _fail(f"cannot reach the proxy {proxy.address} ({proxy.source}): {_os_reason(exc)}")
    stream: trio.abc.Stream = tcp
    try:
        with trio.fail_after(handshake_timeout):
            if proxy.scheme == "https":
                stream = await _proxy_tls(stream, proxy, proxy_tls)
            await _handshake(stream, proxy, host, port)
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        _fail(
            f"proxy {proxy.address} ({proxy.source}) did not finish the handshake within "
            f"{handshake_timeout:g}s"
        )
    except ProxyError as exc:
        await trio.aclose_forcefully(stream)
        raise trio.BrokenResourceError(str(exc)) from exc
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        reason = exc.__cause__ or exc
        _fail(f"proxy {proxy.address} ({proxy.source}): {reason}")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _proxy_tls(
    stream: trio.abc.Stream, proxy: ProxyURL, context: ssl.SSLContext | None
) -> trio.abc.Stream:
    tls = TLSStream(stream, context or ssl.create_default_context(), server_hostname=proxy.host)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        raise ProxyError(
            f"TLS with the proxy {proxy.address} ({proxy.source}) failed: {exc.__cause__ or exc}"
        ) from None
    return tls


async def _handshake(stream: trio.abc.Stream, proxy: ProxyURL, host: str, port: int) -> None:
    """Drive the handshake until the tunnel is open. Raises ProxyError."""
    handshake = handshake_for(proxy, host, port)
    while True:
        out = handshake.data_to_send()
        if out:
            await stream.send_all(out)
        data = await stream.receive_some(_RECEIVE_CHUNK)
        leftover = handshake.receive_data(bytes(data))
        if leftover is not None:
            if leftover:
                # The edge speaks only after the agent's TLS ClientHello, so nothing may come
                # through the tunnel yet: these bytes are the proxy's, and not understood.
                raise ProxyError(
                    f"proxy {proxy.address} sent {len(leftover)} unexpected bytes after "
                    "opening the tunnel"
                )
            return


def _fail(message: str) -> NoReturn:
    """Raise trio.BrokenResourceError from a ProxyError, both saying `message`."""
    raise trio.BrokenResourceError(message) from ProxyError(message)


def _os_reason(exc: OSError) -> str:
    """The OS's reason (`connection refused`); for trio's "all attempts to connect failed",
    each address's reason once."""
    cause = exc.__cause__
    errors = [exc]
    if isinstance(cause, BaseExceptionGroup):
        errors = [error for error in cause.exceptions if isinstance(error, OSError)] or errors
    # trio's own OSErrors prefix the address to strerror; a gaierror's errno is negative.
    reasons = [
        os.strerror(error.errno)
        if error.errno and error.errno > 0
        else error.strerror or str(error)
        for error in errors
    ]
    return "; ".join(dict.fromkeys(reason.lower() for reason in reasons))
