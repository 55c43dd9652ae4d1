"""The admin API's HTTP/1.1 server: h11 over trio, optionally inside TLS. A thin shell around
`AdminApi.handle`, which does everything that is not bytes and time.

Theory of operation. One task per connection reads bytes into an `h11.Connection` and asks it
for events; every wait has a deadline:

* A connection may sit idle, before a request's first byte, for `idle_timeout` (keep-alive).
* Once a request's first byte has arrived, its whole head must follow within `head_timeout`
  (slowloris), and its whole body within `body_timeout`; the TLS handshake counts against the
  first request's head.
* A head larger than `max_head_bytes` is answered 431 (h11's own bound); a body larger than
  `max_body_bytes`, declared or sent, is answered 413 without reading it; garbage is 400.
* A response must drain to the peer within `send_timeout`, so a reader that never reads cannot
  pin the task.
* At most `max_connections` connections are served at once; more are closed on accept.

Every refusal at this level carries ngrok's error body and closes the connection. Whatever goes
wrong with one connection ends that connection alone; the listener keeps serving.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from functools import partial

import h11
import trio

from edge.admin.errors import ApiError, status_code
from edge.admin.probes import Probes
from edge.admin.routes import AdminApi, Request, Response
from edge.front_door.tcp_ports import peer_address
from protocol.formats.units import KiB
from protocol.formats.urls import format_host_port

__all__ = ["HttpLimits", "serve_admin"]

log = logging.getLogger(__name__)

SERVER_HEADER = "burrow-edge-admin"
#: Bytes asked of the socket at a time: a whole request is usually far smaller.
READ_SIZE = 16 * KiB
#: A Host header good enough to build `uri` fields from: a name or an address, and a port.
_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    # A request head (request line and headers): ours are a few hundred bytes; 16 KiB fits any
    # honest client and bounds what a hostile one makes us buffer before we can refuse.
    max_head_bytes: int = 16 * KiB
    # A request body: the largest valid one is a credential with 1024 ACL rules of up to 255
    # bytes each (about 270 KB of JSON), so 512 KiB fits it with room to spare.
    max_body_bytes: int = 512 * KiB
    # Seconds a keep-alive connection may wait for its next request (requests' default pools
    # reuse connections within seconds; a minute covers a person at a REPL).
    idle_timeout: float = 60.0
    # Seconds from a request's first byte to the end of its head: honest clients send a head in
    # one write; this stops slowloris without troubling a slow link.
    head_timeout: float = 10.0
    # Seconds to receive a whole body once the head is in: 512 KiB at 50 KB/s.
    body_timeout: float = 10.0
    # Seconds for a response to drain to the client.
    send_timeout: float = 10.0
    # Connections served at once: the API is for operators and scripts, not the public.
    max_connections: int = 256


class _RefusedError(Exception):
    """End this connection, after sending `response` if the protocol state allows."""

    def __init__(self, response: Response | None) -> None:
        super().__init__()
        self.response = response


async def serve_admin(
    api: AdminApi,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    limits: HttpLimits | None = None,
    probes: Probes | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API on host:port until cancelled; `task_status.started` gets the bound
    address (port 0 picks one). `OSError` if the address cannot be bound. `probes` answers
    /metrics, /healthz and /readyz first (`edge.admin.probes`)."""
    limits = limits or HttpLimits()
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()
    bound = (str(address[0]), int(address[1]))
    scheme = "https" if tls is not None else "http"
    log.info("admin API: %s://%s", scheme, format_host_port(*bound))
    task_status.started(bound)
    slots = trio.Semaphore(limits.max_connections)
    handler = partial(_serve_connection, api, probes, tls, limits, slots, scheme, bound)
    await trio.serve_listeners(handler, listeners)


async def _serve_connection(
    api: AdminApi,
    probes: Probes | None,
    tls: ssl.SSLContext | None,
    limits: HttpLimits,
    slots: trio.Semaphore,
    scheme: str,
    bound: tuple[str, int],
    conn: trio.SocketStream,
) -> None:
    try:
        slots.acquire_nowait()
    except trio.WouldBlock:
        log.warning("admin API: %d connections open; refusing another", limits.max_connections)
        await trio.aclose_forcefully(conn)
        return
    try:
        remote = peer_address(conn)
        if remote is None:
            await trio.aclose_forcefully(conn)
            return
        stream: trio.abc.Stream = conn
        if tls is not None:
            stream = trio.SSLStream(conn, tls, server_side=True)
        connection = _Connection(api, stream, limits, remote[0], scheme, bound, probes)
        try:
            await connection.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            log.debug("admin API: connection from %s ended: %s", remote[0], exc)
        except Exception:
            log.exception("admin API: connection from %s failed; closing it", remote[0])
        finally:
            await trio.aclose_forcefully(stream)
    finally:
        slots.release()


class _Connection:
    def __init__(
        self,
        api: AdminApi,
        stream: trio.abc.Stream,
        limits: HttpLimits,
        remote: str,
        scheme: str,
        bound: tuple[str, int],
        probes: Probes | None = None,
    ) -> None:
        self.api = api
        self.stream = stream
        self.limits = limits
        self.remote = remote
        self.scheme = scheme
        self.bound = bound
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
        self.probes = probes

    async def run(self) -> None:
        """Serve requests until the peer closes, a limit is hit, or either side says close."""
        first = True
        while True:
            try:
                request = await self._read_request(first)
            except _RefusedError as refused:
                if refused.response is not None:
                    await self._send_refusal(refused.response)
                return
            if request is None:
                return  # a clean close between requests
            now = trio.current_time()
            response = None if self.probes is None else self.probes.handle(request, now=now)
            if response is None:
                response = self.api.handle(request, now=now)
            if response.deferred is not None:  # waits for an agent's reply (bounded there)
                response = await response.deferred()
            await self._send(response)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()
            first = False

    async def _read_request(self, first: bool) -> Request | None:
        now = trio.current_time()
        # The first request's clock starts at accept (the TLS handshake counts against it);
        # later ones may idle first.
        deadline = now + (self.limits.head_timeout if first else self.limits.idle_timeout)
        started = first
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise _RefusedError(self._error(exc.error_status_hint, str(exc))) from exc
            if event is h11.NEED_DATA:
                data = await self._receive(deadline, head is not None)
                if data and not started:
                    started = True
                    deadline = trio.current_time() + self.limits.head_timeout
                try:
                    self.h11.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise _RefusedError(self._error(exc.error_status_hint, str(exc))) from exc
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None  # h11 raises instead when the close cuts a request short
            if isinstance(event, h11.Request):
                head = event
                self._check_head(event)
                deadline = trio.current_time() + self.limits.body_timeout
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body_bytes:
                    raise _RefusedError(self._too_large())
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return self._request(head, bytes(body))

    async def _receive(self, deadline: float, in_body: bool) -> bytes:
        with trio.move_on_at(deadline):
            return bytes(await self.stream.receive_some(READ_SIZE))
        if in_body:
            raise _RefusedError(self._error(408, "The request body did not arrive in time."))
        if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
            raise _RefusedError(None)  # idle keep-alive connection: close quietly
        raise _RefusedError(self._error(408, "The request head did not arrive in time."))

    def _check_head(self, head: h11.Request) -> None:
        # h11 bounds only a head that is still incomplete; one that arrived whole in a single
        # read is measured here, so the limit holds however the bytes were split.
        size = (
            len(head.method) + len(head.target) + sum(len(n) + len(v) + 4 for n, v in head.headers)
        )
        if size > self.limits.max_head_bytes:
            raise _RefusedError(self._error(431, ""))
        for name, value in head.headers:
            if name == b"content-length" and int(value) > self.limits.max_body_bytes:
                raise _RefusedError(self._too_large())

    def _too_large(self) -> Response:
        return self._error(
            413, f"The request body is larger than {self.limits.max_body_bytes} bytes."
        )

    def _error(self, status: int, message: str) -> Response:
        if status == 501:  # h11: a Transfer-Encoding it cannot read; the client's to fix (4xx)
            status = 400
        if status == 431:
            message = f"The request head is larger than {self.limits.max_head_bytes} bytes."
        return self.api.error_response(ApiError(status, status_code(status), message), close=True)

    def _request(self, head: h11.Request, body: bytes) -> Request:
        headers = tuple(
            (name.decode("ascii"), value.decode("latin-1")) for name, value in head.headers
        )
        host = next((v for n, v in headers if n == "host"), "")
        if not _HOST_RE.fullmatch(host):
            host = format_host_port(*self.bound)
        return Request(
            method=head.method.decode("ascii"),
            target=head.target.decode("latin-1"),
            headers=headers,
            body=body,
            remote=self.remote,
            base_url=f"{self.scheme}://{host}",
        )

    async def _send(self, response: Response) -> None:
        headers = [("server", SERVER_HEADER), *response.headers]
        if response.status != 204:
            headers.append(("content-length", str(len(response.body))))
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers))
        if response.body:
            data = (data or b"") + (self.h11.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        with trio.fail_after(self.limits.send_timeout):
            await self.stream.send_all(data)

    async def _send_refusal(self, response: Response) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await self._send(response)
        except (h11.LocalProtocolError, trio.TooSlowError):
            return
