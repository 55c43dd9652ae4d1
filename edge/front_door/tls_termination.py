"""The edge's side of a `terminate-tls` policy action on a `tls://` endpoint: the handshake.

A tls:// endpoint normally gets the client's TLS bytes untouched (passthrough). When its
`on_tcp_connect` rules ran `terminate-tls` (`edge.policy.actions_tls`), the front door instead
ends TLS here, with the context that action built when the policy loaded (the policy's
certificate and key; client certificates required and verified against its CAs when it names
any), and the agent's proxy stream carries the plaintext.

`terminate` is the I/O shell: it wraps the connection (handing back the ClientHello bytes the
front door already read to route by SNI), runs the handshake within `handshake_seconds`, and
returns the plaintext stream, or closes the connection and returns None when the handshake
fails, is too slow, or the client's certificate is missing or not signed by one of the CAs
(one INFO line saying which). The edge ends its side with a `close_notify`, as a TLS server
should; a client that closes TCP without one is taken as a possible truncation (TLSStream's
default), so the agent's stream is then closed at once rather than half-closed.
"""

from __future__ import annotations

import logging

import trio

from edge.policy.actions_tls import TerminateTlsConfig
from protocol.adapters.tls import TLSStream
from protocol.formats.urls import format_host_port

log = logging.getLogger(__name__)

__all__ = ["terminate"]


def _why(exc: BaseException) -> str:
    """The most specific reason a handshake failed (the OpenSSL error chained under trio's)."""
    cause = exc.__cause__
    return str(cause) if cause is not None else (str(exc) or type(exc).__name__)


async def terminate(
    conn: trio.SocketStream,
    config: TerminateTlsConfig,
    *,
    initial_data: bytes | bytearray,
    handshake_seconds: float,
    peer: tuple[str, int],
    url: str,
) -> TLSStream[trio.SocketStream] | None:
    """The client's plaintext, once the TLS handshake with `config.context` is done; None if
    it failed (then `conn` is closed). `initial_data` is ciphertext already read (the
    ClientHello); the handshake gets `handshake_seconds`. Cancellation closes `conn` and
    propagates."""
    stream = TLSStream(
        conn,
        config.context,
        server_side=True,
        initial_data=initial_data,
    )
    try:
        with trio.fail_after(handshake_seconds):
            await stream.do_handshake()
    except trio.TooSlowError:
        log.info(
            "endpoint %s: TLS from %s not done within %gs (terminate-tls); closing",
            url,
            format_host_port(*peer),
            handshake_seconds,
        )
        await trio.aclose_forcefully(stream)
        return None
    except trio.BrokenResourceError as exc:
        log.info(
            "endpoint %s: TLS handshake with %s failed (terminate-tls, %s): %s",
            url,
            format_host_port(*peer),
            "client certificate required" if config.client_cas else "no client certificate",
            _why(exc),
        )
        await trio.aclose_forcefully(stream)
        return None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
