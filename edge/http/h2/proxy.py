"""HTTP/2 on the public https port: one client connection whose streams are each relayed as an
HTTP/1.1 exchange over a agent stream of their own, as ngrok does (the agent and the upstream
only ever see HTTP/1.1).

Theory of operation
-------------------
The front door hands over a TLS stream whose ALPN chose "h2" (offered only when `http.http2`
is on). `h2`, python-hyper's sans-IO HTTP/2, parses and frames; this module owns the
connection and its tasks, and is the only one that touches the `H2Connection`:

* One reader task feeds the client's bytes to `h2` and dispatches its events: a request head
  starts a stream task, body bytes and END_STREAM are queued on that stream, RST_STREAM
  cancels it, WINDOW_UPDATE wakes the streams waiting to send, GOAWAY ends everything.
* One task per request stream runs `edge.http.h2.stream.Exchanger.run`: it routes the request
  (`edge.http.seam.decide`, as HTTP/1.1 does), relays it over an agent stream as HTTP/1.1
  (one the connection kept from an earlier exchange, `edge.http.h2.kept`, else a new one;
  a sweeper task closes kept ones idle for `AGENT_STREAM_HOLD`) and the response back, or
  answers an error page (`edge.http.seam.failure_response`). It sends through this
  connection's `Frames` methods (`send_headers`, `send_body`, `reset`, `acknowledge`,
  `flush`); when it ends, the connection forgets the stream and gives back the window it
  still held.
* Every h2 call only queues bytes; `flush` sends `data_to_send()` under one lock. That write
  is shielded (a write cancelled half-way would break the TLS stream every stream shares) and
  bounded by `idle_timeout` (a client that takes nothing for that long loses the connection).

Memory and flow control. Request bodies: the client may send at most `STREAM_WINDOW` per
stream and `CONNECTION_WINDOW` in all beyond what the edge acknowledged, and a stream task
acknowledges only what its agent stream has taken, so one connection holds at most
`CONNECTION_WINDOW` of request bodies (h2 makes overrunning a window a connection error).
Response bodies: `send_body` sends DATA frames as the client's windows allow, waiting for the
reader's WINDOW_UPDATE wake-up; a stream task hands it at most `READ_SIZE` at a time.

The client's RST_STREAM closes that stream's agent stream at once; GOAWAY, EOF or a connection
error close all of them, and the kept ones.

Limits: `max_head_size` is the advertised SETTINGS_MAX_HEADER_LIST_SIZE, enforced by h2's
HPACK decoder (a larger header list is a connection error, as the setting told the client); a
header block split into CONTINUATION frames is bounded by h2 (64 frames) and nothing may
interleave with it, so a stalled one stalls the whole connection into its idle timeout.
`MAX_CONCURRENT_STREAMS` is advertised, and enforced by h2 and by `_open`. The first request
must arrive within `head_timeout` of the handshake, as on HTTP/1.1; afterwards a connection
with no stream open for `keepalive_timeout` gets GOAWAY and is closed, and a stream on which
nothing moved for `idle_timeout` gets a 504 (or a reset, once its response started).

Floods. Frames that cost nothing to send and flow control does not bound (RST_STREAM right
after HEADERS, SETTINGS, PING, PRIORITY, empty DATA, ...) are counted by an
`edge.http.h2.flood.FloodGuard` per connection, before h2 parses them, and streams `_open`
refuses count as resets. The first frame (or refusal) over a limit (`http.h2_max_*`) ends
the connection: h2 parses nothing from that frame on, no further event of the same read is
acted on, and the client gets GOAWAY ENHANCE_YOUR_CALM; so a flood costs at most its limit's
worth of frames, and the reader stops reading it at once.

Not here: server push, extended CONNECT (websockets over HTTP/2: ENABLE_CONNECT_PROTOCOL is
not advertised, so clients open an HTTP/1.1 connection for them), trailers (dropped both
ways, as on HTTP/1.1) and priorities (every stream gets what its windows allow).
"""

from __future__ import annotations

import contextlib
import logging
import math

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from edge.admin.metrics import EdgeMetrics
from edge.config import HttpConfig
from edge.http.h1.exchange import READ_SIZE
from edge.http.h2.flood import Flood, FloodGuard, FloodLimits
from edge.http.h2.stream import Exchanger, H2Stream
from edge.http.headers import Headers
from edge.http.policy import ClientConn
from edge.http.routing import HttpRouter
from edge.http.seam import CLOSE_TIMEOUT, ClientGoneError
from protocol.formats.units import KiB, MiB
from protocol.formats.urls import format_host_port

__all__ = ["CONNECTION_WINDOW", "MAX_CONCURRENT_STREAMS", "STREAM_WINDOW", "serve_http2"]

log = logging.getLogger(__name__)

#: Requests one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS): each is a
#: task, a agent stream and a read buffer; 100 is what h2, nginx and Go's server default to.
MAX_CONCURRENT_STREAMS = 100
#: Request body bytes a client may send on one stream ahead of the upstream
#: (SETTINGS_INITIAL_WINDOW_SIZE): a agent stream's muxado window, more would only wait here.
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
    sni: str | None = None,
    metrics: EdgeMetrics | None = None,
) -> None:
    """Serve one HTTP/2 client connection (TLS already terminated, ALPN "h2"; `sni` is the name
    its ClientHello asked for) until it ends, routing each request by its `:authority` among
    https endpoints through `router`.

    Always closes `client` and every agent stream it opened. Never raises for connection-level
    trouble (a reset, a protocol error, a dead agent: each is answered or logged); cancellation
    propagates after both sides are closed forcefully.
    """
    connection = _Connection(client, client_addr, router, limits, sni, metrics)
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


class _Connection:
    """One public HTTP/2 connection: the reader, the stream tasks, the writer lock; the
    `edge.http.h2.stream.Frames` its stream tasks send through."""

    def __init__(
        self,
        client: trio.abc.Stream,
        client_addr: tuple[str, int],
        router: HttpRouter,
        limits: HttpConfig,
        sni: str | None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.client = client
        self.peer = format_host_port(*client_addr)
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
        self.guard = FloodGuard(
            FloodLimits(
                window=limits.h2_flood_window,
                max_resets=limits.h2_max_resets_per_window,
                max_control_frames=limits.h2_max_control_frames_per_window,
            )
        )
        self.streams: dict[int, H2Stream] = {}
        self.exchanger = Exchanger(
            self,
            peer=self.peer,
            client_ip=client_addr[0].encode("ascii"),
            router=router,
            limits=limits,
            sni=sni,
            conn=ClientConn(client, client_addr, sni),
            metrics=metrics,
        )
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
        kept = self.exchanger.kept
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(kept.sweep)
                with self.idle_scope:
                    await self.flush()
                    await self._read_loop()
                if self.idle_scope.cancelled_caught:
                    log.debug("http2 %s: idle; closing", self.peer)
                nursery.cancel_scope.cancel()
        finally:
            await kept.close_all(clean=not (self.abort or self.broken))

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
            flood = self.guard.receive(data, trio.current_time())
            if flood is not None:  # h2 never sees these bytes
                self._calm(flood)
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
                if self.guard.flood is not None:  # a refused stream too many
                    self._calm(self.guard.flood)
                    return
            await self.flush()
            if done:
                return

    def _dispatch(self, event: h2.events.Event) -> bool:
        """Act on one h2 event; True when the connection is over (GOAWAY)."""
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length
            if stream is None:  # its task has finished: give the window back at once
                if length:
                    self.acknowledge(event.stream_id, length)
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
            self.guard.refused(trio.current_time())
            return
        stream = H2Stream(
            stream_id,
            event.headers,
            ended=event.stream_ended is not None,
            idle=self.limits.idle_timeout,
        )
        self.streams[stream_id] = stream
        self.idle_scope.deadline = math.inf
        assert self.nursery is not None
        self.nursery.start_soon(self._serve_stream, stream)

    def _calm(self, flood: Flood) -> None:
        """Queue GOAWAY ENHANCE_YOUR_CALM for a flooding client (close() sends it)."""
        log.info("http2 %s: flood: %s; closing", self.peer, flood.describe())
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(
                ErrorCodes.ENHANCE_YOUR_CALM, additional_data=flood.describe().encode()
            )

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
            await self.flush(CLOSE_TIMEOUT)
            if not self.broken:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.client.aclose()
                closed = True
        if not closed:
            await trio.aclose_forcefully(self.client)

    # --------------------------------------------------------- writing (`Frames`, for streams)

    async def flush(self, limit: float | None = None) -> None:
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

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give `length` flow-controlled bytes back to the client (sent by the next flush)."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.acknowledge_received_data(length, stream_id)

    async def send_headers(
        self, stream: H2Stream, headers: Headers, *, end_stream: bool = False
    ) -> None:
        try:
            self.conn.send_headers(stream.id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise ClientGoneError(f"the client's stream is gone: {exc}") from exc
        await self.flush()
        stream.touch()

    async def send_body(self, stream: H2Stream, data: bytes, *, end_stream: bool = False) -> None:
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
                offsets = range(0, size, frame)
                for offset in offsets:
                    end = min(offset + frame, size)
                    last = end_stream and end == len(view)
                    conn.send_data(stream.id, view[offset:end], end_stream=last)
                self.guard.data_sent(len(offsets))
                view = view[size:]
                if not view:
                    end_stream = False  # it went with the last frame
                await self.flush()
                stream.touch()
            if end_stream:
                conn.end_stream(stream.id)
                await self.flush()
        except h2.exceptions.ProtocolError as exc:
            raise ClientGoneError(f"the client's stream is gone: {exc}") from exc

    async def reset(self, stream: H2Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.id, code)
        await self.flush()

    # -------------------------------------------------------------------------- one stream

    async def _serve_stream(self, stream: H2Stream) -> None:
        try:
            with stream.scope:
                await self.exchanger.run(stream)
        finally:
            del self.streams[stream.id]
            if stream.held:
                self.acknowledge(stream.id, stream.held)
            if not self.streams:
                self.idle_scope.deadline = trio.current_time() + self.limits.keepalive_timeout
        if stream.scope.cancelled_caught:
            log.debug("http2 %s: stream %d ended by the client", self.peer, stream.id)
        await self.flush()
