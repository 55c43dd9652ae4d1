"""A bare trio + h11 HTTP/1.1 server: the Python ceiling beside the tunnels in the http measure.

`python -m benchmarks.h11_origin PORT` listens on 127.0.0.1:PORT and answers `GET /small` with
the nginx origin's `SMALL_BODY` (any other path: 404), keep-alive, one h11 machine per
connection, one `send_all` per response. It is the "trio + h11 keep-alive" row of
reference/performance.md (about 11k req/s on one core there): what a Python server on trio pays
per small request with nothing in between, so Burrow's https:// endpoint, which does that work
and more on every request, is read against it in the same run.

It prints `listening PORT` once bound. A connection that breaks h11's rules, or a client's EOF
or reset, closes the connection quietly. It runs until killed.
"""

from __future__ import annotations

import sys

import h11
import trio

from benchmarks.origin import SMALL_BODY, SMALL_PATH

#: Bytes asked of a connection per read (a keep-alive GET is about 100 bytes; wrk pipelines none).
READ_SIZE = 64 * 1024
_SMALL = SMALL_PATH.encode()
_HEADERS = [
    (b"Content-Type", b"text/plain"),
    (b"Content-Length", str(len(SMALL_BODY)).encode()),
]


def answer(conn: h11.Connection, request: h11.Request) -> bytes:
    """The bytes of the response to `request` (the small body, or a 404), framed by `conn`."""
    if request.method == b"GET" and request.target == _SMALL:
        body, status = SMALL_BODY, 200
        headers = _HEADERS
    else:
        body, status = b"not found\n", 404
        headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"10")]
    parts = [conn.send(h11.Response(status_code=status, headers=headers))]
    parts.append(conn.send(h11.Data(data=body)))
    parts.append(conn.send(h11.EndOfMessage()))
    return b"".join(p for p in parts if p)


async def serve_connection(stream: trio.abc.Stream) -> None:
    """Answer requests on `stream` until the client closes it or breaks HTTP/1.1."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(READ_SIZE)))
                continue
            if isinstance(event, h11.Request):
                await stream.send_all(answer(conn, event))
            elif isinstance(event, h11.EndOfMessage):
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                else:
                    return
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on 127.0.0.1:`port` (0: any free port) and serve connections until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(serve_connection, listeners)


async def _main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, port)
        print(f"listening {bound}", flush=True)


if __name__ == "__main__":
    trio.run(_main, int(sys.argv[1]))
