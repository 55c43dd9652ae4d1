"""TLS test material shared by test_tls.py and test_tls_records.py: a CA and certificates from
trustme, client and server contexts, and a pair of `TLSStream`s over given transports."""

from __future__ import annotations

import ssl
from typing import Any

import trio
import trustme

from protocol.adapters.tls import TLSStream

HOSTNAME = "burrow-test.example.org"
CA = trustme.CA()
SERVER_CERT = CA.issue_cert(HOSTNAME)
OTHER_CA = trustme.CA()
OTHER_CERT = OTHER_CA.issue_cert(HOSTNAME)

AnyStream = trio.abc.Stream


def server_context(cert: trustme.LeafCert = SERVER_CERT) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Let OpenSSL report a ragged EOF, so the trio.SSLStream peers stay strict too.
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["burrow/1", "h2"])
    return ctx


def client_context(version: str = "tls13", ca: trustme.CA = CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["burrow/1"])
    if version == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_pair(
    client_ctx: ssl.SSLContext,
    client_transport: AnyStream,
    server_transport: AnyStream,
    **kwargs: Any,
) -> tuple[TLSStream[AnyStream], TLSStream[AnyStream]]:
    client = TLSStream(client_transport, client_ctx, server_hostname=HOSTNAME, **kwargs)
    server = TLSStream(server_transport, server_context(), server_side=True, **kwargs)
    return client, server


async def handshake_both(*streams: TLSStream[AnyStream]) -> None:
    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(stream.do_handshake)
