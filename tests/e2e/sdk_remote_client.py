"""ngrok's official Python SDK as an agent that the edge stops and restarts remotely (run as a
subprocess by tests/e2e/test_remote_management.py).

usage: sdk_remote_client.py SERVER_ADDR CA_PEM_PATH AUTHTOKEN UPSTREAM_PORT MODE

MODE `handlers`: the session registers stop and restart handlers (`handle_stop_command`,
`handle_restart_command`), as an application that supports remote management does; each
prints a JSON line when called, and the stop handler then closes the session, as the SDK's
documentation suggests an application may. MODE `plain`: no handlers (the SDK then tells the
edge it does not support either).

Prints {"url": ...} once the endpoint is bound, {"called": "restart"|"stop"} from the handlers,
and {"closed": true} after the session closed; leaves on a stop, or after 60 s either way.
The process leaves with os._exit: the SDK's runtime can crash at interpreter shutdown.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

#: Seconds the client lives at most: the tests finish well within it.
LIFETIME = 60


def say(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


async def main(server_addr: str, ca_path: str, token: str, upstream: int, mode: str) -> None:
    import ngrok  # the official SDK (PyPI: ngrok)

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def on_stop() -> None:  # called on the SDK's own thread: hand over to the loop
        say({"called": "stop"})
        loop.call_soon_threadsafe(stopped.set)

    def on_restart() -> None:
        say({"called": "restart"})

    with open(ca_path, "rb") as f:
        ca_pem = f.read()
    builder = (
        ngrok.SessionBuilder()
        .authtoken(token)
        .server_addr(server_addr)
        .ca_cert(bytearray(ca_pem))
        .metadata(f"sdk-{mode}")
    )
    if mode == "handlers":
        builder = builder.handle_stop_command(on_stop).handle_restart_command(on_restart)
    session = await asyncio.wait_for(builder.connect(), 20)
    listener = await asyncio.wait_for(
        session.tcp_endpoint().listen_and_forward(f"tcp://127.0.0.1:{upstream}"), 20
    )
    say({"url": listener.url()})
    try:
        await asyncio.wait_for(stopped.wait(), LIFETIME)
    except TimeoutError:
        say({"timed_out": True})
    await session.close()
    say({"closed": True})


if __name__ == "__main__":
    addr, ca, tok, port, how = sys.argv[1:6]
    try:
        asyncio.run(main(addr, ca, tok, int(port), how))
    except Exception as exc:
        say({"error": repr(exc)})
    os._exit(0)
