"""HTTP/2 on the public https port: one client connection whose streams are each relayed as an
HTTP/1.1 exchange over a proxy stream of their own, as ngrok does (the agent and the upstream
only ever see HTTP/1.1).

Theory of operation
-------------------
The front door hands over a TLS stream whose ALPN chose "h2" (offered only when `http.http2`
is on). `h2`, python-hyper's sans-IO HTTP/2, parses and frames; this module owns the tasks:

* One reader task feeds the client's bytes to `h2` and dispatches its events: a request head
  starts a stream task, body bytes and END_STREAM are queued on that stream, RST_STREAM
  cancels it, WINDOW_UPDATE wakes the streams waiting to send, GOAWAY ends everything.
* One task per request stream: translate the head (`edge.http_headers.translate_h2_request`:
  Host from `:authority`, the same hop-by-hop and `X-Forwarded-*` rules as HTTP/1.1), route by
  that host, open a NEW proxy stream (`HttpRoute.open_stream`), write the request with an h11
  CLIENT machine (the body framed by the request's Content-Length, else chunked), and relay
  the response back as HTTP/2 headers and DATA frames. The proxy stream is closed at the end:
  one request per proxy stream, so nothing is kept between requests.
* Every h2 call only queues bytes; `_flush` sends `data_to_send()` under one lock. That write
  is shielded (a write cancelled half-way would break the TLS stream every stream shares) and
  bounded by `idle_timeout` (a client that takes nothing for that long loses the connection).

Memory and flow control. Request bodies: the client may send at most `STREAM_WINDOW` per
stream and `CONNECTION_WINDOW` in all beyond what the edge acknowledged, and a stream task
acknowledges (`acknowledge_received_data`) only what its proxy stream has taken, so an upload
runs at the upstream's pace and one connection holds at most `CONNECTION_WINDOW` of request
bodies (h2 makes overrunning a window a connection error). Response bodies: a stream task
reads at most `READ_SIZE` from its proxy stream, sends it as DATA frames as the client's
windows allow (waiting for WINDOW_UPDATE), and reads again only once it all went out.

Errors the edge answers itself, as HTTP/2 responses on the stream (pages: `edge.error_pages`):

| condition                                                         | status | code           |
| ----------------------------------------------------------------- | ------ | -------------- |
| no route for the :authority                                       | 404    | ERR_NGROK_3200 |
| `open_stream` failed or took longer than `idle_timeout`           | 502    | ERR_NGROK_3200 |
| the agent reset the stream STREAM_REFUSED before a response head  | 502    | ERR_NGROK_8012 |
| EOF, another reset, or non-HTTP bytes before a whole response head| 502    | ERR_NGROK_3004 |
| nothing moved on the stream for `idle_timeout` before a response  | 504    | BURROW_*       |
| a missing or bad :authority, Content-Length values that disagree  | 400    | BURROW_*       |
| a request body that breaks its Content-Length                     | 400    | BURROW_*       |
| CONNECT (this is a reverse proxy; extended CONNECT is not offered)| 405    | BURROW_*       |

Once a response head went out, a failure resets that stream (INTERNAL_ERROR) and nothing
else. A response that ends before its request body did is followed by RST_STREAM(NO_ERROR),
which tells the client to stop sending (RFC 9113 §8.1). The client's RST_STREAM closes that
stream's proxy stream at once; GOAWAY, EOF or a connection error close all of them.

Limits: `max_head_size` is the advertised SETTINGS_MAX_HEADER_LIST_SIZE, enforced by h2's
HPACK decoder (a larger header list is a connection error, as the setting told the client); a
header block split into CONTINUATION frames is bounded by h2 (64 frames) and nothing may
interleave with it, so a stalled one stalls the whole connection into its idle timeout.
`MAX_CONCURRENT_STREAMS` is advertised, and enforced by h2 and by `_open`. The first request
must arrive within `head_timeout` of the handshake, as on HTTP/1.1; afterwards a connection
with no stream open for `idle_timeout` gets GOAWAY and is closed, and a stream on which
nothing moved for `idle_timeout` gets a 504 (or a reset, once its response started).

Not here: server push, extended CONNECT (websockets over HTTP/2: ENABLE_CONNECT_PROTOCOL is
not advertised, so clients open an HTTP/1.1 connection for them), trailers (dropped both
ways, as on HTTP/1.1) and priorities (every stream gets what its windows allow).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from edge.config import HttpConfig
from edge.error_pages import (
    ErrorPage,
    agent_unreachable,
    bad_request,
    endpoint_offline,
    gateway_timeout,
    invalid_response,
    prefers_json,
    render,
    upstream_unreachable,
)
from edge.http_exchange import (
    READ_SIZE,
    ClientBodyError,
    ClientGoneError,
    RelayError,
    UpstreamError,
)
from edge.http_headers import Headers, RefusedError, h2_response_headers, translate_h2_request
from edge.http_proxy import CLOSE_TIMEOUT, HttpRouter
from protocol.errors import ErrorCode
from protocol.mux import reset_code
from protocol.units import KiB, MiB
from protocol.urls import format_host_port

__all__ = ["CONNECTION_WINDOW", "MAX_CONCURRENT_STREAMS", "STREAM_WINDOW", "serve_http2"]

log = logging.getLogger(__name__)

#: Requests one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS): each is a
#: task, a proxy stream and a read buffer; 100 is what h2, nginx and Go's server default to.
MAX_CONCURRENT_STREAMS = 100
#: Request body bytes a client may send on one stream ahead of the upstream
#: (SETTINGS_INITIAL_WINDOW_SIZE): a proxy stream's muxado window, more would only wait here.
STREAM_WINDOW = 256 * KiB
#: Request body bytes a client may send on all its streams ahead of the upstreams: what one
#: connection holds at most (Go's HTTP/2 server uses 1 MiB per connection too).
CONNECTION_WINDOW = 1 * MiB
#: The connection window every HTTP/2 connection starts with (RFC 9113 §6.9.2).
_DEFAULT_WINDOW = 65535


async def serve_http2(
    client: trio.abc.Stream,
    *,
    client_addr: tuple[str, int],
    router: HttpRouter,
    limits: HttpConfig,
) -> None:
    """Serve one HTTP/2 client connection (TLS already terminated, ALPN "h2") until it ends,
    routing each request by its `:authority` among https endpoints through `router`.

    Always closes `client` and every proxy stream it opened. Never raises for connection-level
    trouble (a reset, a protocol error, a dead agent: each is answered or logged); cancellation
    propagates after both sides are closed forcefully.
    """
    connection = _Connection(client, client_addr, router, limits)
    try:
        await connection.run()
    except Exception:
        connection.abort = True
        log.exception("http2 %s: the connection failed unexpectedly; closing it", connection.peer)
    except BaseException:
        connection.abort = True
        raise
    finally:
        await connection.close()


# --------------------------------------------------------------------------------- internals


class _Stream:
    """One request stream: what the reader hands its task, and how far the exchange got."""

    __slots__ = (
        "arrived",
        "body",
        "body_bytes",
        "chunks",
        "ended",
        "fields",
        "held",
        "id",
        "idle",
        "request_done",
        "request_sent",
        "response_done",
        "response_started",
        "scope",
        "started",
        "status",
        "timer",
        "window",
    )

    def __init__(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, ended: bool, idle: float
    ) -> None:
        self.id = stream_id
        self.fields = fields  # the request's header list, pseudo-headers first
        self.body = not ended  # a body follows the head
        self.chunks: list[bytes] = []  # body bytes not yet sent upstream
        self.held = 0  # flow-controlled bytes received and not yet acknowledged
        self.ended = ended  # the client's END_STREAM arrived
        self.arrived = trio.Event()  # set when `chunks` or `ended` change
        self.window = trio.Event()  # set when the client's windows may have opened
        self.scope = trio.CancelScope()  # the task; cancelled by the client's RST_STREAM
        self.idle = idle
        self.timer: trio.CancelScope | None = None  # the current phase's idle deadline
        self.started = trio.current_time()
        self.request_done = ended  # the client's request body was read whole
        self.request_sent = False  # ... and written whole to the proxy stream
        self.response_started = False  # a final response head went to the client
        self.response_done = False
        self.status = 0
        self.body_bytes = 0

    def touch(self) -> None:
        """Bytes moved: push the current phase's idle deadline later."""
        timer = self.timer
        if timer is not None:
            timer.deadline = trio.current_time() + self.idle

    def phase(self) -> trio.CancelScope:
        """A new idle deadline scope for the next phase of the exchange."""
        self.timer = trio.CancelScope(deadline=trio.current_time() + self.idle)
        return self.timer


class _Connection:
    """One public HTTP/2 connection: the reader, the stream tasks, the writer lock."""

    def __init__(
        self,
        client: trio.abc.Stream,
        client_addr: tuple[str, int],
        router: HttpRouter,
        limits: HttpConfig,
    ) -> None:
        self.client = client
        self.peer = format_host_port(*client_addr)
        self.client_ip = client_addr[0].encode("ascii")
        self.router = router
        self.limits = limits
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_head_size,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        # Not offered: websockets over HTTP/2 (RFC 8441) are out of scope.
        del conn.local_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL]
        # Settings given as initial values are in force at once; h2 applies this one to its
        # HPACK decoder only when a setting changes, so it is set here too.
        conn.decoder.max_header_list_size = limits.max_head_size
        self.conn = conn
        self.streams: dict[int, _Stream] = {}
        self.send_lock = trio.Lock()
        #: The reader's deadline: the first request, then idle with no stream open.
        self.idle_scope = trio.CancelScope(deadline=trio.current_time() + limits.head_timeout)
        self.nursery: trio.Nursery | None = None
        self.broken = False  # a write failed: nothing more can be sent
        #: Close the client connection with a reset rather than a GOAWAY and close_notify.
        self.abort = False

    # ---------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        conn = self.conn
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            with self.idle_scope:
                await self._flush()
                await self._read_loop()
            if self.idle_scope.cancelled_caught:
                log.debug("http2 %s: idle; closing", self.peer)
            nursery.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self.client.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("http2 %s: the client connection failed: %s", self.peer, exc)
                self.abort = True
                return
            if not data:
                log.debug("http2 %s: the client closed the connection", self.peer)
                return
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued a GOAWAY with the error's code; close() sends it.
                log.info("http2 %s: protocol error: %s; closing", self.peer, exc)
                return
            done = False
            for event in events:
                done = self._dispatch(event) or done
            await self._flush()
            if done:
                return

    def _dispatch(self, event: h2.events.Event) -> bool:
        """Act on one h2 event; True when the connection is over (GOAWAY)."""
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length
            if stream is None:  # its task has finished: give the window back at once
                if length:
                    self._acknowledge(event.stream_id, length)
            else:
                stream.held += length
                if event.data:
                    stream.chunks.append(event.data)
                stream.arrived.set()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                self._wake_all()
            else:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window.set()
        elif isinstance(event, h2.events.RequestReceived):
            self._open(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended = True
                stream.arrived.set()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                log.debug(
                    "http2 %s: stream %d reset (%s)", self.peer, event.stream_id, event.error_code
                )
                stream.scope.cancel()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self._wake_all()
        elif isinstance(event, h2.events.ConnectionTerminated):
            log.debug("http2 %s: GOAWAY from the client (%s)", self.peer, event.error_code)
            return True
        return False  # trailers are dropped; pings and settings acks are h2's own business

    def _open(self, event: h2.events.RequestReceived) -> None:
        """A request head arrived: start its stream task."""
        stream_id = event.stream_id
        if len(self.streams) >= MAX_CONCURRENT_STREAMS:
            # h2 counts a stream the client reset as closed, but its task may not have ended
            # yet: a client resetting streams as fast as it opens them (CVE-2023-44487) must
            # not get more tasks than the setting allows.
            log.debug("http2 %s: stream %d refused: too many open", self.peer, stream_id)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(
            stream_id,
            event.headers,
            ended=event.stream_ended is not None,
            idle=self.limits.idle_timeout,
        )
        self.streams[stream_id] = stream
        self.idle_scope.deadline = math.inf
        assert self.nursery is not None
        self.nursery.start_soon(self._serve_stream, stream)

    def _wake_all(self) -> None:
        for stream in self.streams.values():
            stream.window.set()

    async def close(self) -> None:
        """Say GOAWAY (unless the connection broke) and close the client connection."""
        if self.abort or self.broken:
            await trio.aclose_forcefully(self.client)
            return
        closed = False
        with trio.move_on_after(CLOSE_TIMEOUT):
            if self.conn.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.conn.close_connection()
            await self._flush(CLOSE_TIMEOUT)
            if not self.broken:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.client.aclose()
                closed = True
        if not closed:
            await trio.aclose_forcefully(self.client)

    # ----------------------------------------------------------------------------- writing

    async def _flush(self, limit: float | None = None) -> None:
        """Send what h2 has queued. A write that fails, or takes longer than `limit` seconds
        (default `idle_timeout`), breaks the connection: every task is cancelled."""
        async with self.send_lock:
            data = self.conn.data_to_send()
            if not data or self.broken:
                return
            if limit is None:
                limit = self.limits.idle_timeout
            with trio.CancelScope(shield=True, deadline=trio.current_time() + limit) as scope:
                try:
                    await self.client.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._break(f"the client connection failed: {exc}")
            if scope.cancelled_caught:
                self._break(f"the client took nothing for {limit:g}s")

    def _break(self, reason: str) -> None:
        log.debug("http2 %s: %s", self.peer, reason)
        self.broken = True
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def _acknowledge(self, stream_id: int, length: int) -> None:
        """Give `length` flow-controlled bytes back to the client (sent by the next flush)."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.acknowledge_received_data(length, stream_id)

    async def _send_headers(
        self, stream: _Stream, headers: Headers, *, end_stream: bool = False
    ) -> None:
        try:
            self.conn.send_headers(stream.id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise ClientGoneError(f"the client's stream is gone: {exc}") from exc
        await self._flush()
        stream.touch()

    async def _send_body(self, stream: _Stream, data: bytes, *, end_stream: bool = False) -> None:
        """Send `data` as DATA frames as the client's windows allow (waiting for them to
        open), with END_STREAM on the last one if `end_stream`."""
        conn = self.conn
        view = memoryview(data)
        try:
            while view:
                window = conn.local_flow_control_window(stream.id)
                if window <= 0:
                    stream.window = trio.Event()
                    await stream.window.wait()
                    continue
                size = min(window, len(view))
                frame = conn.max_outbound_frame_size
                for offset in range(0, size, frame):
                    end = min(offset + frame, size)
                    last = end_stream and end == len(view)
                    conn.send_data(stream.id, view[offset:end], end_stream=last)
                view = view[size:]
                if not view:
                    end_stream = False  # it went with the last frame
                await self._flush()
                stream.touch()
            if end_stream:
                conn.end_stream(stream.id)
                await self._flush()
        except h2.exceptions.ProtocolError as exc:
            raise ClientGoneError(f"the client's stream is gone: {exc}") from exc

    async def _reset(self, stream: _Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.id, code)
        await self._flush()

    # -------------------------------------------------------------------------- one stream

    async def _serve_stream(self, stream: _Stream) -> None:
        try:
            with stream.scope:
                await self._exchange(stream)
        finally:
            del self.streams[stream.id]
            if stream.held:
                self._acknowledge(stream.id, stream.held)
            if not self.streams:
                self.idle_scope.deadline = trio.current_time() + self.limits.idle_timeout
        if stream.scope.cancelled_caught:
            log.debug("http2 %s: stream %d ended by the client", self.peer, stream.id)
        await self._flush()

    async def _exchange(self, stream: _Stream) -> None:
        """Answer one request: route it, relay it over a new proxy stream, or answer a page."""
        try:
            request = translate_h2_request(
                stream.fields, body=stream.body, client_ip=self.client_ip, scheme=b"https"
            )
        except RefusedError as refusal:
            await self._refuse(stream, refusal.page, refusal.reason, accept=refusal.accept)
            return
        stream.fields = []  # translated: do not hold the originals for the whole exchange
        host, accept = request.host, request.accept
        route = self.router.route(host, "https")
        if route is None:
            page = endpoint_offline(host)
            await self._refuse(stream, page, "no endpoint is online", accept=accept, host=host)
            return
        upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.limits.max_head_size)
        try:
            head = upstream.send(
                h11.Request(method=request.method, target=request.target, headers=request.headers)
            )
        except h11.LocalProtocolError as exc:
            page = bad_request(400, "The request cannot be forwarded.")
            await self._refuse(stream, page, f"unforwardable request: {exc}", accept=accept)
            return
        assert head is not None
        agent: trio.abc.HalfCloseableStream | None = None
        with stream.phase() as timer:
            try:
                agent = await route.open_stream(self.peer)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("http2 %s: open_stream failed: %s", self.peer, exc)
        if agent is None:
            reason = "the agent did not open a stream in time" if timer.cancelled_caught else ""
            page = agent_unreachable(host)
            await self._refuse(
                stream, page, reason or "the agent is unreachable", accept=accept, host=host
            )
            return
        failure: RelayError | None = None
        clean = False
        try:
            with stream.phase() as timer:
                try:
                    await self._relay(stream, agent, upstream, head)
                except RelayError as exc:
                    failure = exc
            clean = (
                stream.response_done
                and stream.request_sent
                and upstream.their_state in (h11.DONE, h11.MUST_CLOSE)
            )
        finally:
            await _close_agent_stream(agent, clean=clean)
        if stream.response_done:
            if not stream.ended:
                await self._reset(stream, ErrorCodes.NO_ERROR)  # stop sending, we answered
            self._log_done(stream, request.method, host, request.target)
        elif timer.cancelled_caught:
            if stream.response_started:
                log.warning(
                    "http2 %s: %s: response aborted: nothing moved for %gs",
                    self.peer,
                    host,
                    self.limits.idle_timeout,
                )
                await self._reset(stream, ErrorCodes.INTERNAL_ERROR)
            else:
                page = gateway_timeout(self.limits.idle_timeout)
                reason = "nothing moved for the idle timeout before a response"
                await self._refuse(stream, page, reason, accept=accept, host=host)
        else:
            assert failure is not None
            await self._failed(stream, failure, route.forwards_to, accept, host)

    async def _failed(
        self,
        stream: _Stream,
        failure: RelayError,
        forwards_to: str,
        accept: bytes | None,
        host: str,
    ) -> None:
        """The exchange ended without a whole response: a page if none started, else reset."""
        if isinstance(failure, ClientGoneError):
            log.debug("http2 %s: %s", self.peer, failure)
            return
        if stream.response_started:
            log.warning(
                "http2 %s: %s: response aborted after it started: %s", self.peer, host, failure
            )
            await self._reset(stream, ErrorCodes.INTERNAL_ERROR)
            return
        if isinstance(failure, ClientBodyError):
            page = bad_request(400, "The request body is malformed.")
            reason = str(failure)
        elif reset_code(_root(failure)) == ErrorCode.STREAM_REFUSED:
            page = upstream_unreachable(forwards_to)
            reason = f"the agent could not reach {forwards_to}"
        else:
            page = invalid_response()
            reason = str(failure)
        await self._refuse(stream, page, reason, accept=accept, host=host)

    async def _refuse(
        self,
        stream: _Stream,
        page: ErrorPage,
        reason: str,
        *,
        accept: bytes | None,
        host: str | None = None,
    ) -> None:
        """Log and answer with an error page; then stop the request body if it is still
        coming."""
        level = logging.WARNING if page.status in (502, 504) else logging.INFO
        log.log(
            level,
            "http2 %s: %s: %d %s: %s",
            self.peer,
            host or "-",
            page.status,
            page.code,
            reason,
        )
        headers, body = render(page, as_json=prefers_json(accept))
        fields: Headers = [(b":status", b"%d" % page.status)]
        fields += [(name.lower(), value) for name, value in headers]
        with stream.phase() as timer:
            try:
                await self._send_headers(stream, fields)
                await self._send_body(stream, body, end_stream=True)
            except ClientGoneError as exc:
                log.debug("http2 %s: the page did not reach the client: %s", self.peer, exc)
                return
        if timer.cancelled_caught:  # the client granted no window for it
            await self._reset(stream, ErrorCodes.CANCEL)
        elif not stream.ended:
            await self._reset(stream, ErrorCodes.NO_ERROR)

    # ----------------------------------------------------------------------------- relaying

    async def _relay(
        self,
        stream: _Stream,
        agent: trio.abc.HalfCloseableStream,
        upstream: h11.Connection,
        head: bytes,
    ) -> None:
        """Relay the request and its response; raises RelayError for what went wrong. A
        response may come before the request ended (the request is then cut short)."""
        if not stream.body:
            try:
                end = upstream.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:  # a Content-Length above 0, and no body
                raise ClientBodyError(f"bad request body: {exc}") from exc
            try:
                await agent.send_all(head + end)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise UpstreamError(f"sending the request failed: {exc}") from exc
            stream.request_sent = True
            stream.touch()
            await self._relay_response(stream, agent, upstream)
            return
        failures: list[RelayError] = []
        async with trio.open_nursery() as nursery:

            async def guard(relay: Callable[[], Awaitable[None]]) -> None:
                try:
                    await relay()
                except RelayError as exc:
                    failures.append(exc)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(guard, lambda: self._relay_request(stream, agent, upstream, head))
            await guard(lambda: self._relay_response(stream, agent, upstream))
            if not stream.request_done:
                nursery.cancel_scope.cancel()  # answered before the request ended
        if failures:
            raise failures[0]

    async def _relay_request(
        self,
        stream: _Stream,
        agent: trio.abc.HalfCloseableStream,
        upstream: h11.Connection,
        head: bytes,
    ) -> None:
        """Client -> upstream: the head, then the body as it arrives, acknowledged to the
        client only once the proxy stream took it."""
        parts: list[bytes] = [head]
        while True:
            chunks, stream.chunks = stream.chunks, []
            taken = stream.held
            ended = stream.ended
            try:
                for chunk in chunks:
                    parts.extend(_data(upstream, chunk))
                if ended:
                    parts.append(upstream.send(h11.EndOfMessage()))
            except h11.LocalProtocolError as exc:  # more or less than its Content-Length
                raise ClientBodyError(f"bad request body: {exc}") from exc
            try:
                await agent.send_all(b"".join(parts) if len(parts) != 1 else parts[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # Leave the verdict to the response side: the upstream may have answered
                # already (and closed), or its reset tells why it is gone.
                log.debug("http2 %s: upstream stopped taking the request: %s", self.peer, exc)
                return
            stream.touch()
            if taken:
                stream.held -= taken
                self._acknowledge(stream.id, taken)
                await self._flush()
            if ended:
                stream.request_done = stream.request_sent = True
                return
            parts = []
            while not stream.chunks and not stream.ended:
                stream.arrived = trio.Event()
                await stream.arrived.wait()

    async def _relay_response(
        self, stream: _Stream, agent: trio.abc.HalfCloseableStream, upstream: h11.Connection
    ) -> None:
        """Upstream -> client: 1xx heads, the head, the body; returns at the response's end."""
        pending: Headers | None = None  # a head not sent yet: it may carry END_STREAM
        ended = False
        while True:
            try:
                event = upstream.next_event()
            except h11.RemoteProtocolError as exc:
                if ended:
                    what = "response" if stream.status else "response head"
                    reason = f"the upstream stream ended before a complete {what}"
                else:
                    reason = f"invalid response: {exc}"
                raise UpstreamError(reason) from exc
            if event is h11.NEED_DATA:
                if pending is not None:
                    await self._send_final_headers(stream, pending)
                    pending = None
                try:
                    data = await agent.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise UpstreamError(f"the upstream stream failed: {exc}") from exc
                if data:
                    stream.touch()
                else:
                    ended = True
                upstream.receive_data(cast(bytes, data))
                continue
            kind = type(event)
            if kind is h11.Data:
                if pending is not None:
                    await self._send_final_headers(stream, pending)
                    pending = None
                payload = cast(h11.Data, event).data
                await self._send_body(stream, payload)
                stream.body_bytes += len(payload)
            elif kind is h11.Response:
                response = cast(h11.Response, event)
                stream.status = response.status_code
                pending = h2_response_headers(response.status_code, response.headers)
            elif kind is h11.EndOfMessage:
                if pending is not None:
                    await self._send_final_headers(stream, pending, end_stream=True)
                else:
                    await self._send_body(stream, b"", end_stream=True)
                stream.response_done = True
                return
            elif kind is h11.InformationalResponse:
                info = cast(h11.InformationalResponse, event)
                if info.status_code == 101:
                    raise UpstreamError("the upstream switched protocols, which HTTP/2 cannot")
                informational = h2_response_headers(info.status_code, info.headers)
                await self._send_headers(stream, informational)
            else:  # ConnectionClosed or PAUSED cannot come before the response ends
                raise UpstreamError(f"the upstream stream ended early ({event!r})")

    async def _send_final_headers(
        self, stream: _Stream, headers: Headers, *, end_stream: bool = False
    ) -> None:
        await self._send_headers(stream, headers, end_stream=end_stream)
        stream.response_started = True

    def _log_done(self, stream: _Stream, method: bytes, host: str, target: bytes) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "http2 %s: %s %s %s %d %d %.1fms",
            self.peer,
            method.decode("ascii", "replace"),
            host,
            target.decode("ascii", "replace"),
            stream.status,
            stream.body_bytes,
            (trio.current_time() - stream.started) * 1000,
        )


def _data(upstream: h11.Connection, chunk: bytes) -> list[bytes]:
    """The bytes that frame `chunk` on `upstream`, the chunk itself among them (no copy)."""
    parts = upstream.send_with_data_passthrough(h11.Data(data=chunk))
    assert parts is not None  # None only for ConnectionClosed
    return parts


async def _close_agent_stream(stream: trio.abc.HalfCloseableStream, *, clean: bool) -> None:
    if not clean:
        await trio.aclose_forcefully(stream)
        return
    with trio.move_on_after(CLOSE_TIMEOUT):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()
            return
    await trio.aclose_forcefully(stream)


def _root(failure: BaseException) -> BaseException:
    """The exception a relay failure was raised from (a stream error carries the reset code)."""
    cause = failure.__cause__
    return cause if cause is not None else failure
