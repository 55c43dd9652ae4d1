"""Reaching the edge: the TLS context that verifies it, the TLS layer over the transport, and
a one-line reason a person can act on when dialing fails.

Trust: `connect_cas` is a PEM path (the edge's CA, e.g. the development edge's `ca.pem`), or
`host` / `trusted`, which both mean the operating system's store. Burrow bundles no root of its
own: unlike ngrok, there is no single vendor edge to pin. The TCP part of the dial, direct or
through a proxy, is `agent.proxy_dial`.
"""

from __future__ import annotations

import ssl

import trio

from agent.errors import AgentError
from protocol.adapters.tls import TLSStream

__all__ = ["edge_tls_context", "why_dial_failed", "wrap_edge_tls"]


def edge_tls_context(connect_cas: str) -> ssl.SSLContext:
    """The client context that verifies the edge: a PEM file path, or the OS store for `host`
    and `trusted` (Burrow bundles no roots). Raises AgentError if the file is unusable."""
    try:
        if connect_cas in ("host", "trusted"):
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=connect_cas)
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(
            f"connect_cas {connect_cas!r}: cannot load CA certificates ({exc}); "
            "give a PEM file such as the edge's ca.pem"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # ngrok's agents require TLS 1.2 or later
    return context


async def wrap_edge_tls(
    transport: trio.abc.Stream, context: ssl.SSLContext, server_hostname: str
) -> trio.abc.Stream:
    """The one place the edge connection gets its TLS layer: wrap `transport` in
    `protocol.adapters.tls.TLSStream` (which drains every ready TLS record per read) and complete
    the handshake. On failure (BrokenResourceError whose cause is the ssl error, or cancellation)
    the transport is closed."""
    tls = TLSStream(transport, context, server_hostname=server_hostname)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


def why_dial_failed(exc: BaseException) -> str:
    """A one-line reason for a dial failure, with a hint for the common TLS trust problem."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    if isinstance(cause.__cause__, BaseExceptionGroup):
        # trio.open_tcp_stream: "all attempts to connect to H:P failed" from one error per
        # address tried; the addresses' own reasons are what a person needs.
        reasons = [
            error.strerror or str(error)
            for error in cause.__cause__.exceptions
            if isinstance(error, OSError)
        ]
        return "; ".join(dict.fromkeys(reasons)) or str(cause)
    text = str(cause) or type(cause).__name__
    if isinstance(cause, ssl.SSLCertVerificationError):
        text += (
            "; if the edge uses its own CA, set connect_cas (or BURROW_CONNECT_CAS) to its "
            "CA certificate, e.g. the edge's ca.pem"
        )
    return text
