"""Drive ngrok's official Python SDK against a Burrow edge (run as a subprocess by the tests).

usage: sdk_client.py SERVER_ADDR CA_PEM_PATH AUTHTOKEN UPSTREAM_PORT

Connects with SessionBuilder, binds a tcp:// endpoint forwarding to the upstream, round-trips
payloads through the endpoint, and prints one JSON line with what happened. The process leaves
with os._exit: the SDK's runtime can crash at interpreter shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys


def roundtrip(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        out = bytearray()
        while data := conn.recv(262144):
            out += data
    return bytes(out)


async def main(server_addr: str, ca_path: str, token: str, upstream: int) -> dict[str, object]:
    import ngrok  # the official SDK (PyPI: ngrok)

    with open(ca_path, "rb") as f:
        ca_pem = f.read()
    result: dict[str, object] = {}
    try:
        session = await asyncio.wait_for(
            ngrok.SessionBuilder()
            .authtoken(token)
            .server_addr(server_addr)
            .ca_cert(bytearray(ca_pem))
            .heartbeat_interval(1)
            .heartbeat_tolerance(2)
            .connect(),
            20,
        )
    except Exception as exc:
        return {"connect_error": [str(a) for a in exc.args]}
    listener = await asyncio.wait_for(
        session.tcp_endpoint().listen_and_forward(f"tcp://127.0.0.1:{upstream}"), 20
    )
    result["url"] = listener.url()
    result["proto"] = listener.proto()
    loop = asyncio.get_running_loop()
    small = await loop.run_in_executor(None, roundtrip, listener.url(), b"hello burrow\n")
    result["small_ok"] = small == b"hello burrow\n"
    await asyncio.sleep(3)  # several heartbeats each way
    big = os.urandom(3 * 1024 * 1024 + 7)
    echoed = await loop.run_in_executor(None, roundtrip, listener.url(), big)
    result["big_ok"] = hashlib.sha256(echoed).digest() == hashlib.sha256(big).digest()
    await listener.close()
    await session.close()
    return result


if __name__ == "__main__":
    addr, ca, tok, port = sys.argv[1:5]
    try:
        out = asyncio.run(main(addr, ca, tok, int(port)))
    except Exception as exc:
        out = {"error": repr(exc)}
    print(json.dumps(out), flush=True)
    os._exit(0)
