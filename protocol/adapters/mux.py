"""The trio adapter: one muxado session over any trio stream.

Theory of operation: `MuxSession` owns a sans-IO `Session` and two tasks. The reader task is the
only caller of `transport.receive_some`; it feeds the bytes to the session and dispatches the
events to the `MuxStream`s (pure bookkeeping, no awaits per frame). The writer task is the only
caller of `transport.send_all`; every action only queues bytes in the session and kicks the
writer, which sends everything queued in one write. Frames queued while a write is in flight go
out together in the next one, so writes coalesce under load and two frames' bytes never
interleave. `MuxStream` (one stream, `protocol.adapters.mux_stream`) is re-exported here.

Backpressure: a `MuxStream.send_all` hands the session at most `SEND_CHUNK` bytes at a time, never
more than the stream's send window, and waits while the session's unsent bytes exceed
`MuxConfig.outbound_high_water`. A stream's unread bytes are bounded by the receive window it
grants (see `protocol/wire/windows.py`). Nothing here buffers without a bound.

Errors: transport failures, protocol errors and EOF end the session; every stream then fails with
`trio.BrokenResourceError` whose `__cause__` says why. A peer's RST fails one stream the same way,
after any data that arrived before it has been read.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import trio
from trio.lowlevel import ParkingLot, checkpoint, checkpoint_if_cancelled

from protocol.adapters.mux_stream import MuxStream
from protocol.adapters.tls import TLSStream
from protocol.wire.errors import (
    ErrorCode,
    MuxError,
    RemoteProtocolError,
    StreamGoneError,
    describe,
)
from protocol.wire.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    SessionTerminated,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from protocol.wire.session import Role, Session, SessionConfig
from protocol.wire.states import StreamState

log = logging.getLogger(__name__)

#: Bytes asked of the transport per read: large reads amortise per-call cost (performance.md).
RECEIVE_CHUNK = 256 * 1024
#: Unsent bytes a sending task may write itself instead of waking the writer task.
DIRECT_WRITE_LIMIT = 64 * 1024
#: How long a closing session waits for its GOAWAY to be written (muxado uses 250 ms).
GOAWAY_FLUSH_TIMEOUT = 0.25

_TYPE = struct.Struct(">I")


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxConfig:
    session: SessionConfig = field(default_factory=SessionConfig)
    #: Streams the peer opened that nobody has accepted yet; more are reset ACCEPT_QUEUE_FULL.
    accept_backlog: int = 256
    #: Unsent bytes at which senders pause until the writer catches up (about 4 TLS writes).
    outbound_high_water: int = 1024 * 1024
    #: A small write the peer does not take within this long ends the session (WRITE_TIMEOUT).
    #: Such writes are shielded from cancellation (half a frame must never go out), so this
    #: is what bounds them when the peer stops reading.
    write_timeout: float = 15.0


class MuxSession:
    """A muxado session running over a trio stream. Create it with `open_mux_session`."""

    def __init__(
        self, transport: trio.abc.Stream, role: Role, config: MuxConfig | None = None
    ) -> None:
        self.config = config or MuxConfig()
        self.role = role
        self._transport = transport
        self._conn = Session(role, self.config.session)
        self._streams: dict[int, MuxStream] = {}
        self._backlog: deque[MuxStream] = deque()
        self._accept_lot = ParkingLot()
        self._drained_lot = ParkingLot()
        self._wake = trio.Event()
        #: Held by whoever writes to the transport (the writer task, or a closing flush).
        self._send_lock = trio.Lock()
        self._closing = False
        #: Set once the session is over (transport gone, protocol error, or closed locally).
        self.closed = trio.Event()
        #: Why the session ended, once it has.
        self.error: MuxError | None = None
        #: The peer's GOAWAY, if it sent one.
        self.goaway: GoAwayReceived | None = None
        #: Set when the peer's GOAWAY arrives (it opens no new streams; its open ones go on).
        self.goaway_received = trio.Event()
        #: Streams the session refused or reset because the peer misbehaved (for metrics/tests).
        self.refused_streams = 0

    # ---------------------------------------------------------------------------- public API

    @property
    def open_stream_count(self) -> int:
        return self._conn.open_streams

    def limit_streams(self, limit: int) -> None:
        """Lower (or restore) how many streams may be open at once; see `Session.limit_streams`."""
        self._conn.limit_streams(limit)

    def allow_window_growth(self) -> None:
        """Call once the peer is known to honour large windows (see `protocol/wire/windows.py`)."""
        self._conn.allow_window_growth()

    async def open_stream(self) -> MuxStream:
        """Open a stream; nothing is sent until its first write (muxado's lazy SYN)."""
        await checkpoint()
        self._check_open()
        try:
            sid = self._conn.open_stream()
        except MuxError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        stream = MuxStream(self, sid)
        self._streams[sid] = stream
        return stream

    async def open_typed_stream(self, stream_type: int) -> MuxStream:
        """Open a stream whose first 4 bytes name its type (muxado typed streams)."""
        stream = await self.open_stream()
        stream.stream_type = stream_type
        try:
            self._conn.send_data(stream.stream_id, _TYPE.pack(stream_type))
        except MuxError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        self._kick()
        return stream

    async def accept_stream(self) -> MuxStream:
        """The next stream the peer opened; raises BrokenResourceError once the session ends.

        The checkpoint comes first: nothing may run between finding a stream in the backlog
        and taking it (the session ending, or another acceptor, could empty it meanwhile)."""
        await checkpoint()
        while not self._backlog:
            if self.closed.is_set():
                raise trio.BrokenResourceError(f"mux session ended: {self.error}") from self.error
            await self._accept_lot.park()
        return self._backlog.popleft()

    def go_away(self, code: int = ErrorCode.NO_ERROR, debug: str = "") -> None:
        """Tell the peer (GOAWAY) that this side opens and accepts no new streams, without
        closing: open streams carry on, and `aclose` ends the session later. Streams the peer
        opens afterwards are refused (STREAM_REFUSED). Sent at most once."""
        self._conn.go_away(code, debug.encode())
        self._kick()

    async def aclose(self, code: int = ErrorCode.NO_ERROR, debug: str = "") -> None:
        """Send GOAWAY (waiting at most GOAWAY_FLUSH_TIMEOUT for it to be written), then close
        the transport and fail every stream. Safe to call more than once."""
        if self._closing:
            await checkpoint()
            return
        self._closing = True
        self._conn.go_away(code, debug.encode())
        with trio.CancelScope(shield=True):
            await self._flush_goaway()
        self._finish(StreamGoneError("the session was closed", code=ErrorCode.SESSION_CLOSED))
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._transport)

    # ------------------------------------------------------------------------------ tasks

    async def _reader(self) -> None:
        conn = self._conn
        transport = self._transport
        try:
            while True:
                data = await transport.receive_some(RECEIVE_CHUNK)
                try:
                    events = conn.receive_data(data)
                except RemoteProtocolError as exc:
                    log.warning("mux session: peer broke the protocol: %s", exc)
                    await self._flush_goaway()
                    self._finish(exc)
                    return
                self._dispatch(events)
                if conn.outbound_size:
                    self._kick()
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._finish(StreamGoneError(f"transport failed: {exc}", code=ErrorCode.PEER_EOF))

    def _dispatch(self, events: list[Event]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, DataReceived):  # the hot path, first
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._feed(event.data)
                else:
                    self._conn.reset_stream(event.stream_id, ErrorCode.STREAM_CLOSED)
            elif isinstance(event, WindowUpdated):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._window_opened()
            elif isinstance(event, StreamOpened):
                self._on_opened(event.stream_id)
            elif isinstance(event, StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._feed_eof()
                    self._forget_if_closed(event.stream_id)
            elif isinstance(event, StreamReset):
                self._on_reset(event)
            elif isinstance(event, GoAwayReceived):
                self.goaway = event
                self.goaway_received.set()
                log.info(
                    "mux session: peer sent GOAWAY (%s): %s",
                    describe(event.error_code),
                    event.debug.decode(errors="replace"),
                )
            elif isinstance(event, SessionTerminated):
                self._finish(StreamGoneError(event.message, code=event.error_code))

    def _on_opened(self, stream_id: int) -> None:
        if len(self._backlog) >= self.config.accept_backlog or self._closing:
            code = ErrorCode.STREAM_REFUSED if self._closing else ErrorCode.ACCEPT_QUEUE_FULL
            self._conn.reset_stream(stream_id, code)
            self.refused_streams += 1
            log.warning("mux session: refused stream %d: %s", stream_id, describe(code))
            return
        stream = MuxStream(self, stream_id)
        self._streams[stream_id] = stream
        self._backlog.append(stream)
        self._accept_lot.unpark_all()  # woken acceptors that find nothing park again

    def _on_reset(self, event: StreamReset) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if not event.remote:
            self.refused_streams += 1
            log.warning(
                "mux session: reset stream %d: %s", event.stream_id, describe(event.error_code)
            )
        if stream is not None:
            who = "peer" if event.remote else "session"
            stream._fail(
                StreamGoneError(
                    f"stream {event.stream_id} reset by {who}: {describe(event.error_code)}",
                    code=event.error_code,
                )
            )

    async def _writer(self) -> None:
        conn = self._conn
        transport = self._transport
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                async with self._send_lock:
                    while conn.outbound_size:
                        await transport.send_all(conn.data_to_send())
                self._drained_lot.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._finish(StreamGoneError(f"transport failed: {exc}", code=ErrorCode.PEER_EOF))
            self._drained_lot.unpark_all()

    # ---------------------------------------------------------------------------- helpers

    async def _flush_goaway(self) -> None:
        """Put what is queued (the GOAWAY last) on the wire within GOAWAY_FLUSH_TIMEOUT.

        Writes directly under the send lock rather than waiting for the writer task, which may
        already be cancelled when the session is being torn down by cancellation."""
        with trio.move_on_after(GOAWAY_FLUSH_TIMEOUT):
            async with self._send_lock:
                data = self._conn.data_to_send()
                if data and not self.closed.is_set():
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._transport.send_all(data)

    async def _write_soon(self) -> None:
        """Get what is queued on its way, then wait while too much is unsent. Always a checkpoint.

        A small batch goes out from the calling task when no write is in progress: one task
        switch fewer per message, which is most of the latency a small round trip pays. It
        yields once first, so that the other tasks that are ready queue their frames and one
        write (one TLS record, one syscall) carries them all: under load that is most of the
        cost of a small message. Larger batches, or any while a write is in flight, are left to
        the writer task, which coalesces them. The direct write is shielded, because a
        cancelled caller must not leave half a frame on the wire; `MuxConfig.write_timeout`
        bounds the shield, after which the peer is taken for dead and the session ends with
        WRITE_TIMEOUT."""
        conn = self._conn
        lock = self._send_lock
        if conn.outbound_size <= DIRECT_WRITE_LIMIT and not lock.locked():
            # Let the other tasks that are ready queue their frames first: under load one
            # write then carries a whole batch of them.
            try:
                await checkpoint()
            except BaseException:
                self._kick()  # cancelled: what we queued must still go out
                raise
            if not conn.outbound_size:
                return  # another task's write took ours along
        if conn.outbound_size > DIRECT_WRITE_LIMIT or lock.locked() or self.closed.is_set():
            self._kick()
            await checkpoint()
            await self._wait_outbound_room()
            return
        lock.acquire_nowait()
        try:
            transport = self._transport
            data = conn.data_to_send()
            # TLS over a socket takes a small batch at once (the usual case): then there is
            # no await, so no shield and no schedule point past the yield above.
            tls = transport if isinstance(transport, TLSStream) else None
            if tls is not None and not tls.can_send_now():
                tls = None
            timed_out = False
            if tls is None:
                with trio.CancelScope(shield=True, deadline=self._write_deadline()) as scope:
                    await transport.send_all(data)
                timed_out = scope.cancelled_caught
            elif not tls.send_now(data):
                # The socket is full: wait for it to take the rest, bounded as above.
                with trio.CancelScope(shield=True, deadline=self._write_deadline()) as scope:
                    await tls.flush()
                timed_out = scope.cancelled_caught
            if timed_out:
                # The peer has not taken a small write for write_timeout: it is gone, and half
                # a frame may be on the wire. End the session rather than wait on it.
                self._finish(
                    StreamGoneError(
                        f"the peer took no data for {self.config.write_timeout:g}s",
                        code=ErrorCode.WRITE_TIMEOUT,
                    )
                )
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(self._transport)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._finish(StreamGoneError(f"transport failed: {exc}", code=ErrorCode.PEER_EOF))
        finally:
            lock.release()
        if conn.outbound_size:
            self._kick()
        await checkpoint_if_cancelled()

    def _write_deadline(self) -> float:
        return trio.current_time() + self.config.write_timeout

    def _kick(self) -> None:
        self._wake.set()

    async def _wait_outbound_room(self) -> None:
        while self._conn.outbound_size > self.config.outbound_high_water:
            if self.closed.is_set():
                return
            await self._drained_lot.park()

    def _acknowledge(self, stream_id: int, length: int) -> None:
        before = self._conn.outbound_size
        self._conn.acknowledge_received(stream_id, length)
        if self._conn.outbound_size != before:
            self._kick()

    def _forget_if_closed(self, stream_id: int) -> None:
        if self._conn.stream_state(stream_id) is StreamState.CLOSED:
            self._streams.pop(stream_id, None)

    def _close_stream(self, stream: MuxStream, *, abort: bool) -> None:
        """Closing with unread data resets the stream, as TCP does; otherwise FIN, and data the
        peer sends afterwards is refused (the peer still holds credit, so it cannot stall)."""
        sid = stream.stream_id
        self._streams.pop(sid, None)
        if self._conn.stream_state(sid) is StreamState.CLOSED or self.closed.is_set():
            return
        if abort:
            self._conn.reset_stream(sid, ErrorCode.STREAM_CLOSED)
            self._kick()
            return
        try:
            self._conn.end_stream(sid, stop_reading=True)
        except MuxError:
            return
        self._kick()

    def _check_open(self) -> None:
        if self.closed.is_set() or self._closing:
            raise trio.BrokenResourceError(f"mux session ended: {self.error}") from self.error

    def _finish(self, error: MuxError) -> None:
        if self.closed.is_set():
            return
        self.error = error
        self.closed.set()
        for stream in list(self._streams.values()):
            stream._fail(error)
        self._streams.clear()
        for stream in self._backlog:
            stream._fail(error)
        self._backlog.clear()
        self._accept_lot.unpark_all()
        self._drained_lot.unpark_all()
        self._wake.set()


@asynccontextmanager
async def open_mux_session(
    transport: trio.abc.Stream, role: Role, config: MuxConfig | None = None
) -> AsyncIterator[MuxSession]:
    """Run a muxado session over `transport` for the duration of the block.

    On exit the session sends GOAWAY and closes the transport. An exception raised in the block
    propagates as itself (never wrapped in an ExceptionGroup).
    """
    session = MuxSession(transport, role, config)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session._reader)
        nursery.start_soon(session._writer)
        try:
            yield session
        except BaseException as exc:  # re-raised below, outside the nursery
            body_error = exc
        finally:
            await session.aclose()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


def reset_code(exc: BaseException) -> int | None:
    """The muxado code behind a stream failure (a `BrokenResourceError` raised by `MuxStream`):
    the RST code when the stream was reset, the session's code when the session ended; None
    for anything else."""
    cause = exc.__cause__
    return int(cause.code) if isinstance(cause, StreamGoneError) else None


async def receive_exactly(stream: trio.abc.ReceiveStream, length: int) -> bytes:
    """Read exactly `length` bytes; raises BrokenResourceError on EOF before that."""
    parts: list[bytes | bytearray] = []
    remaining = length
    while remaining:
        chunk = await stream.receive_some(remaining)
        if not chunk:
            raise trio.BrokenResourceError(
                f"stream ended after {length - remaining} of {length} bytes"
            )
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


async def read_stream_type(stream: MuxStream) -> int:
    """Read the 4-byte type that opens a typed stream (and remember it on the stream)."""
    (stream_type,) = _TYPE.unpack(await receive_exactly(stream, 4))
    stream.stream_type = stream_type
    return int(stream_type)


__all__ = [
    "MuxConfig",
    "MuxSession",
    "MuxStream",
    "open_mux_session",
    "read_stream_type",
    "receive_exactly",
]
