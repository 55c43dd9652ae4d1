"""A real HTTP/1.1 upstream on 127.0.0.1 for the inspector's tests: it records each request it
reads (method, target, headers, body) and answers `200 seen N` with Connection: close."""

from __future__ import annotations

import h11
import trio


class RecordingUpstream:
    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]] = []
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request = None
        body = b""
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            assert request is not None
            self.requests.append((request.method, request.target, dict(request.headers), body))
            answer = f"seen {len(self.requests)}".encode()
            out = conn.send(
                h11.Response(
                    status_code=200,
                    headers=[("Content-Length", str(len(answer))), ("Connection", "close")],
                )
            )
            out = (out or b"") + (conn.send(h11.Data(data=answer)) or b"")
            out += conn.send(h11.EndOfMessage()) or b""
            await stream.send_all(out)
