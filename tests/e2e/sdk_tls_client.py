"""Bind a tls endpoint with ngrok's official Python SDK and hold it open (run by the tests).

usage: sdk_tls_client.py SERVER_ADDR CA_PEM AUTHTOKEN UPSTREAM_URL DOMAIN [CERT KEY [CLIENT_CA]]

Connects with SessionBuilder, binds `session.tls_endpoint().domain(DOMAIN)` forwarding to
UPSTREAM_URL, with `.termination(cert, key)` (the PEM files CERT and KEY) when they are given:
the SDK then uploads them in the Bind (`TLSTermination`) for the edge to terminate TLS with;
and `.mutual_tlsca(ca)` (the PEM file CLIENT_CA, sent as `MutualTLSAtEdge`) when given.
Prints one JSON line: `{"url": ..., "proto": ...}`, or `{"connect_error": [...]}` /
`{"bind_error": [...]}`. It then keeps the endpoint up until its stdin reaches EOF (the test
closes it when its own clients are done) or HOLD_SECONDS pass, closes the listener and the
session, and prints `{"closed": true}`. The process leaves with os._exit: the SDK's runtime
can crash at interpreter shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

#: How long the endpoint stays up if the test never closes stdin (a hang guard, not a wait).
HOLD_SECONDS = 120
#: Bound on connect and bind: the edge answers both in well under a second on loopback.
RPC_SECONDS = 20


def emit(value: dict[str, object]) -> None:
    print(json.dumps(value), flush=True)


async def main(
    server_addr: str, ca_path: str, token: str, upstream: str, domain: str, pems: list[str]
) -> None:
    import ngrok  # the official SDK (PyPI: ngrok)

    with open(ca_path, "rb") as f:
        ca_pem = f.read()
    try:
        session = await asyncio.wait_for(
            ngrok.SessionBuilder()
            .authtoken(token)
            .server_addr(server_addr)
            .ca_cert(bytearray(ca_pem))
            .connect(),
            RPC_SECONDS,
        )
    except Exception as exc:
        emit({"connect_error": [str(a) for a in exc.args]})
        return
    builder = session.tls_endpoint().domain(domain)
    if pems:
        with open(pems[0], "rb") as cert, open(pems[1], "rb") as key:
            builder = builder.termination(bytearray(cert.read()), bytearray(key.read()))
    if len(pems) > 2:
        with open(pems[2], "rb") as ca:
            builder = builder.mutual_tlsca(bytearray(ca.read()))
    try:
        listener = await asyncio.wait_for(builder.listen_and_forward(upstream), RPC_SECONDS)
    except Exception as exc:
        emit({"bind_error": [str(a) for a in exc.args]})
        await session.close()
        return
    emit({"url": listener.url(), "proto": listener.proto()})
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), HOLD_SECONDS)
    await listener.close()
    await session.close()
    emit({"closed": True})


if __name__ == "__main__":
    addr, ca, tok, up, dom = sys.argv[1:6]
    try:
        asyncio.run(main(addr, ca, tok, up, dom, sys.argv[6:9]))
    except Exception as exc:
        emit({"error": repr(exc)})
    os._exit(0)
