"""A bare trio TCP relay: the Python ceiling beside the tunnels in the tcp:// request measures.

`python -m benchmarks.trio_relay PORT UPSTREAM_PORT` listens on 127.0.0.1:PORT and, for each
connection, dials 127.0.0.1:UPSTREAM_PORT and copies bytes both ways (`receive_some` then
`send_all`, one task per direction) until either side ends. One process, no TLS, no framing, no
multiplexing: what a trio program pays per byte it forwards with nothing in between. A `tcp://`
endpoint does that work twice (edge and agent, each its own process) and more: TLS on the
agent's connection and the mux's frames. Read `burrow/relay` against that, and `relay/ssh` as
how far plain trio already is from OpenSSH on the same load.

It prints `listening PORT` once bound. A connection whose upstream refuses it, or that either
side resets, is closed quietly. It runs until killed.
"""

from __future__ import annotations

import sys

import trio

#: Bytes asked of a socket per read (the tunnels under test read 64 KiB too).
READ_SIZE = 64 * 1024


async def _copy(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    """Copy until `source` ends, then end `sink`'s sending side (half-close, as the tunnels do)."""
    try:
        while data := await source.receive_some(READ_SIZE):
            await sink.send_all(data)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def relay(client: trio.SocketStream, upstream_port: int) -> None:
    """Carry one client connection to the upstream and back."""
    try:
        upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
    except OSError:
        await trio.aclose_forcefully(client)
        return
    async with client, upstream, trio.open_nursery() as nursery:
        nursery.start_soon(_copy, client, upstream)
        nursery.start_soon(_copy, upstream, client)


async def serve(
    port: int, upstream_port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on 127.0.0.1:`port` (0: any free port) and relay connections until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(lambda stream: relay(stream, upstream_port), listeners)


async def _main(port: int, upstream_port: int) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, port, upstream_port)
        print(f"listening {bound}", flush=True)


if __name__ == "__main__":
    trio.run(_main, int(sys.argv[1]), int(sys.argv[2]))
