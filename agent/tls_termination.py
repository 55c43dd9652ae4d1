"""TLS terminated at the agent (`agent_tls_termination` on a tls:// endpoint).

Theory of operation: a tls:// endpoint's proxy stream carries the public client's raw TLS (the
edge routed it by SNI without decrypting it); the bytes that arrived with the ProxyHeader begin
with the ClientHello. `accept_tls` hands those bytes to a server-side `TLSStream` over the proxy
stream as `initial_data` and runs the handshake, bounded by `TLS_HANDSHAKE_TIMEOUT`, before the
upstream is dialed: a client that fails it never causes a connection to the upstream.

With `mutual_tls_certificate_authorities` the context requires a client certificate
(`agent.tls_contexts.termination_context`), so a client with none, one from another CA, or an
expired one fails inside OpenSSL's handshake, which queues an alert that `TLSStream` sends before
giving up. Under TLS 1.3 the client finishes its side of the handshake before the server has
checked its certificate, so such a client sees the alert on its first read instead.
"""

from __future__ import annotations

import ssl

import trio

from agent.upstream import tls_failure_reason
from protocol.adapters.tls import TLSStream

__all__ = ["TLS_HANDSHAKE_TIMEOUT", "ClientRefusedError", "accept_tls"]

#: A public client gets this long to complete its handshake (the ClientHello is already here; a
#: real client needs one or two round trips). It stops a silent client from holding a stream.
TLS_HANDSHAKE_TIMEOUT = 10.0


class ClientRefusedError(Exception):
    """The public client's TLS handshake failed; the message says why, in one line."""


async def accept_tls(
    transport: trio.abc.Stream, context: ssl.SSLContext, initial_data: bytes
) -> TLSStream[trio.abc.Stream]:
    """Complete the server side of the client's handshake over `transport`, whose first
    `initial_data` bytes were already read. Raises ClientRefusedError (the caller closes
    `transport`); cancellation propagates."""
    tls: TLSStream[trio.abc.Stream] = TLSStream(
        transport, context, server_side=True, initial_data=initial_data
    )
    try:
        with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
            await tls.do_handshake()
    except trio.TooSlowError:
        raise ClientRefusedError(f"no TLS handshake within {TLS_HANDSHAKE_TIMEOUT:g}s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ClientRefusedError(tls_failure_reason(exc)) from None
    return tls
