"""The muxado session, sans-IO.

Theory of operation: `receive_data(bytes)` parses every complete frame in what has arrived and
returns events; action methods (`open_stream`, `send_data`, `end_stream`, `reset_stream`,
`acknowledge_received`, `go_away`) only queue bytes; `data_to_send()` drains them. No clock, no
logging, no I/O: the trio adapter in `protocol/adapters/mux.py` does those.

Bad input is contained at the smallest scope that can hold it:

* a frame that breaks the session's framing (bad length for its type, a stream id where none may
  be, a peer using our id parity) raises `RemoteProtocolError` after queuing a GOAWAY with its
  code; the caller flushes `data_to_send()` and closes the transport;
* a frame that breaks one stream's rules (data past its window, data after FIN, a zero WNDINC)
  resets that stream with the matching code and reports `StreamReset(remote=False)`; other streams
  never notice;
* a DATA frame for a stream that is gone is answered with RST STREAM_CLOSED and its payload is
  skipped as it streams in, never buffered.

Memory: a DATA frame is buffered whole before it is delivered, but its length is checked against
the stream's credit as soon as the header arrives, so at most one window per stream is ever held;
payloads of frames that will be dropped (and of unknown frame types) are skipped, not buffered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from protocol.wire import frames
from protocol.wire.errors import (
    ErrorCode,
    FrameSizeError,
    LocalProtocolError,
    RemoteGoneAwayError,
    RemoteProtocolError,
    StreamGoneError,
    StreamProtocolError,
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
from protocol.wire.frames import Flags, FrameType
from protocol.wire.states import StreamInput, StreamState, transition
from protocol.wire.windows import (
    DEFAULT_MAX_STREAM_WINDOW,
    DEFAULT_SESSION_BUDGET,
    INITIAL_WINDOW,
    ReceiveWindow,
    SessionBudget,
)

_DATA = FrameType.DATA
_RST = FrameType.RST
_WNDINC = FrameType.WNDINC
_GOAWAY = FrameType.GOAWAY
# Plain ints: `int & IntFlag` goes through enum's Flag operators, costly per frame.
_FIN = int(Flags.FIN)
_SYN = int(Flags.SYN)
_HEADER = frames.HEADER_SIZE


class Role(Enum):
    """Which id space is ours: the agent (client) opens odd ids, the edge (server) even ids."""

    CLIENT = 1
    SERVER = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    #: Streams open at once (either side); the peer's opens past it are refused, bounding the
    #: memory one peer can make us hold (each stream may buffer up to one window).
    max_streams: int = 4096
    #: Ceiling for one stream's auto-tuned receive window.
    max_stream_window: int = DEFAULT_MAX_STREAM_WINDOW
    #: Grow receive windows past 256 KiB from the start. Only safe when the peer's sender keeps
    #: credit beyond its initial window: ngrok's muxado implementations clamp their send window
    #: at 256 KiB and would silently lose the extra credit (a deadlock), so growth stays off
    #: until the handshake shows a Burrow peer (`allow_window_growth`).
    window_growth: bool = False
    #: Window growth over all streams of the session together (beyond the 256 KiB each).
    session_window_budget: int = DEFAULT_SESSION_BUDGET
    #: Largest DATA payload we send: big enough that headers cost nothing, small enough that a
    #: receiver never waits long for a whole frame.
    max_send_frame: int = 64 * 1024
    #: GOAWAY debug text kept; the rest is skipped (muxado reads at most 1 MiB).
    max_goaway_debug: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_send_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"SessionConfig.{name} must be at least 1")
        if not INITIAL_WINDOW <= self.max_stream_window <= frames.MAX_WINDOW_INCREMENT:
            raise ValueError("SessionConfig.max_stream_window must be between 256 KiB and 2 GiB")
        if self.max_send_frame > frames.MAX_FRAME_LENGTH:
            raise ValueError(
                f"SessionConfig.max_send_frame must be at most {frames.MAX_FRAME_LENGTH}"
            )


class _Stream:
    __slots__ = ("id", "read_closed", "recv", "send_window", "state", "syn_pending")

    def __init__(self, stream_id: int, state: StreamState, recv: ReceiveWindow) -> None:
        self.id = stream_id
        self.state = state
        self.send_window = INITIAL_WINDOW
        self.recv = recv
        self.syn_pending = False
        self.read_closed = False


class Session:
    """One muxado session (either role) as a state machine over bytes."""

    def __init__(self, role: Role, config: SessionConfig | None = None) -> None:
        self.role = role
        self.config = config or SessionConfig()
        self._parity = 1 if role is Role.CLIENT else 0
        self._next_id = 1 if role is Role.CLIENT else 2
        self._streams: dict[int, _Stream] = {}
        self._budget = SessionBudget(self.config.session_window_budget)
        self._inbuf = bytearray()
        self._skip = 0  # payload bytes of a dropped frame still to be skipped
        self._out = bytearray()
        self._last_remote_id = 0
        self._window_ceiling = (
            self.config.max_stream_window if self.config.window_growth else INITIAL_WINDOW
        )
        self.local_goaway = False
        self.remote_goaway = False
        self.terminated = False
        #: Streams open at once; starts at `config.max_streams` and may be lowered (e.g. until
        #: a peer has authenticated) with `limit_streams`.
        self.max_streams = self.config.max_streams

    # ----------------------------------------------------------------------------- inspection

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        return stream.state if stream is not None else StreamState.CLOSED

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.send_window if stream is not None else 0

    def receive_window(self, stream_id: int) -> int:
        """The window currently offered to the peer on a stream (grows as its reader keeps up)."""
        stream = self._streams.get(stream_id)
        return stream.recv.size if stream is not None else 0

    @property
    def outbound_size(self) -> int:
        """Bytes queued for the transport and not yet taken by `data_to_send()`."""
        return len(self._out)

    def is_local(self, stream_id: int) -> bool:
        return (stream_id & 1) == self._parity

    # ---------------------------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the transport; `b""` means the transport reached EOF.

        Returns the events in order. Raises `RemoteProtocolError` if the peer broke the
        session's framing; a GOAWAY is queued first and the session is then terminated.
        """
        if self.terminated:
            return []
        events: list[Event] = []
        if not data:
            self._terminate()
            events.append(
                SessionTerminated(error_code=ErrorCode.PEER_EOF, message="transport closed")
            )
            return events
        buf = self._inbuf
        # Parse straight from the caller's bytes when nothing is pending (the usual case for
        # large reads); only an incomplete tail is copied into the buffer.
        if buf:
            buf += data
            view: bytes | bytearray | memoryview = buf
        else:
            view = data
        pos = 0
        try:
            pos = self._parse(view, events)
        except RemoteProtocolError as exc:
            if not self.local_goaway:  # at most one GOAWAY per session
                self._out += frames.goaway_frame(self._last_remote_id, exc.code, str(exc).encode())
            self.local_goaway = True
            self._terminate()
            buf.clear()
            raise
        if view is buf:
            del buf[:pos]
        elif pos < len(view):
            buf += memoryview(view)[pos:]
        return events

    def _parse(self, buf: bytes | bytearray | memoryview, events: list[Event]) -> int:
        pos = 0
        end = len(buf)
        while True:
            if self._skip:
                taken = min(self._skip, end - pos)
                pos += taken
                self._skip -= taken
                if self._skip:
                    return pos
            if end - pos < _HEADER:
                return pos
            length, ftype, flags, sid = frames.unpack_header(buf, pos)
            body = pos + _HEADER
            if ftype == _DATA:
                if sid == 0:
                    raise RemoteProtocolError("DATA frame on stream 0")
                stream = self._streams.get(sid)
                if not self._data_wanted(stream, sid, length, flags, events):
                    pos = body
                    self._skip = length
                    continue
                if end - body < length:
                    return pos
                payload = bytes(buf[body : body + length])
                pos = body + length
                self._on_data(stream, sid, payload, flags, events)
            elif ftype in (_WNDINC, _RST):
                if length != 4:
                    name = "WNDINC" if ftype == _WNDINC else "RST"
                    raise FrameSizeError(f"{name} frame with length {length}, expected 4")
                if sid == 0:
                    raise RemoteProtocolError(f"{FrameType(ftype).name} frame on stream 0")
                if end - body < 4:
                    return pos
                value = frames.unpack_u32(buf, body)
                pos = body + 4
                if ftype == _WNDINC:
                    self._on_wndinc(sid, value & frames.MAX_WINDOW_INCREMENT, events)
                else:
                    self._on_rst(sid, value, events)
            elif ftype == _GOAWAY:
                if length < 8:
                    raise FrameSizeError(f"GOAWAY frame with length {length}, expected at least 8")
                if sid != 0:
                    raise RemoteProtocolError(f"GOAWAY frame on stream {sid}")
                kept = min(length, 8 + self.config.max_goaway_debug)
                if end - body < kept:
                    return pos
                last_id = frames.unpack_u32(buf, body) & frames.STREAM_ID_MASK
                code = frames.unpack_u32(buf, body + 4)
                debug = bytes(buf[body + 8 : body + kept])
                pos = body + kept
                self._skip = length - kept
                self._on_goaway(last_id, code, debug, events)
            else:
                # Unknown frame types are skipped for forward compatibility.
                pos = body
                self._skip = length

    def _data_wanted(
        self, stream: _Stream | None, sid: int, length: int, flags: int, events: list[Event]
    ) -> bool:
        """Decide, from the header alone, whether a DATA frame's payload will be kept.

        Frames that will be dropped are answered here (once) and their payload skipped.
        """
        if stream is None:
            if flags & _SYN:
                if (sid & 1) == self._parity:
                    raise RemoteProtocolError(f"peer opened stream {sid} in our id space")
                if self.local_goaway:
                    self._refuse(sid, ErrorCode.STREAM_REFUSED, events)
                    return False
                if len(self._streams) >= self.max_streams:
                    self._refuse(sid, ErrorCode.STREAM_REFUSED, events)
                    return False
                if length > INITIAL_WINDOW:
                    self._refuse(sid, ErrorCode.FLOW_CONTROL_ERROR, events)
                    return False
                return True
            if length or not flags & _FIN:
                # Data for a stream that is gone (a zero-length FIN is harmless and ignored).
                self._out += frames.rst_frame(sid, ErrorCode.STREAM_CLOSED)
            return False
        if stream.read_closed and length:
            self._reset(stream, ErrorCode.STREAM_CLOSED, events)
            return False
        if length > stream.recv.credit:
            self._reset(stream, ErrorCode.FLOW_CONTROL_ERROR, events)
            return False
        return True

    def _on_data(
        self, stream: _Stream | None, sid: int, payload: bytes, flags: int, events: list[Event]
    ) -> None:
        try:
            if stream is None:
                stream = _Stream(
                    sid,
                    transition(StreamState.IDLE, StreamInput.RECV_SYN, stream_id=sid),
                    ReceiveWindow(self._budget, self._window_ceiling),
                )
                self._streams[sid] = stream
                self._last_remote_id = max(self._last_remote_id, sid)
                events.append(StreamOpened(stream_id=sid))
            elif flags & _SYN:
                raise StreamProtocolError(
                    f"SYN on open stream {sid}", stream_id=sid, code=ErrorCode.PROTOCOL_ERROR
                )
            if payload:
                stream.state = transition(stream.state, StreamInput.RECV_DATA, stream_id=sid)
                stream.recv.accept(len(payload))  # checked against credit from the header
                if not stream.read_closed:
                    events.append(DataReceived(stream_id=sid, data=payload))
            if flags & _FIN:
                stream.state = transition(stream.state, StreamInput.RECV_FIN, stream_id=sid)
                events.append(StreamEnded(stream_id=sid))
                if stream.state is StreamState.CLOSED:
                    self._remove(stream)
        except StreamProtocolError as exc:
            if stream is not None:
                self._reset(stream, exc.code, events)

    def _on_wndinc(self, sid: int, increment: int, events: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return  # a late update for a stream that is gone
        if increment == 0:
            self._reset(stream, ErrorCode.PROTOCOL_ERROR, events)
            return
        try:
            stream.state = transition(stream.state, StreamInput.RECV_WNDINC, stream_id=sid)
        except StreamProtocolError as exc:
            self._reset(stream, exc.code, events)
            return
        if stream.send_window + increment > frames.MAX_WINDOW_INCREMENT:
            self._reset(stream, ErrorCode.FLOW_CONTROL_ERROR, events)
            return
        stream.send_window += increment
        events.append(WindowUpdated(stream_id=sid, delta=increment))

    def _on_rst(self, sid: int, code: int, events: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.state = transition(stream.state, StreamInput.RECV_RST, stream_id=sid)
        self._remove(stream)
        events.append(StreamReset(stream_id=sid, error_code=code, remote=True))

    def _on_goaway(self, last_id: int, code: int, debug: bytes, events: list[Event]) -> None:
        self.remote_goaway = True
        events.append(GoAwayReceived(last_stream_id=last_id, error_code=code, debug=debug))
        for stream in [s for s in self._streams.values() if self.is_local(s.id) and s.id > last_id]:
            # The peer never saw these streams and never will.
            stream.state = StreamState.CLOSED
            self._remove(stream)
            events.append(
                StreamReset(stream_id=stream.id, error_code=ErrorCode.REMOTE_GONE_AWAY, remote=True)
            )

    # -------------------------------------------------------------------------------- actions

    def open_stream(self) -> int:
        """Allocate the next local stream id; SYN goes out on the stream's first frame."""
        if self.terminated:
            raise StreamGoneError("the session is closed", code=ErrorCode.SESSION_CLOSED)
        if self.remote_goaway:
            raise RemoteGoneAwayError("the peer sent GOAWAY; no new streams")
        if self.local_goaway:
            raise LocalProtocolError("this session sent GOAWAY; no new streams")
        if len(self._streams) >= self.max_streams:
            raise StreamGoneError(
                f"{self.max_streams} streams are already open", code=ErrorCode.STREAMS_EXHAUSTED
            )
        sid = self._next_id
        if sid > frames.MAX_STREAM_ID:
            raise StreamGoneError("stream ids exhausted", code=ErrorCode.STREAMS_EXHAUSTED)
        self._next_id += 2
        stream = _Stream(
            sid,
            transition(StreamState.IDLE, StreamInput.SEND_SYN, stream_id=sid),
            ReceiveWindow(self._budget, self._window_ceiling),
        )
        stream.syn_pending = True
        self._streams[sid] = stream
        return sid

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, *, end_stream: bool = False
    ) -> int:
        """Queue as much of `data` as the send window allows; returns the bytes taken.

        With `end_stream`, FIN goes on the last frame once all of `data` is taken. Raises
        `StreamGoneError` if the stream was reset or closed, `LocalProtocolError` after FIN.
        """
        stream = self._live(stream_id)
        total = len(data)
        taken = min(total, stream.send_window)
        finishing = end_stream and taken == total
        if taken == 0 and not finishing:
            if total:  # with no window left, still refuse data after FIN
                transition(stream.state, StreamInput.SEND_DATA, stream_id=stream_id)
            return 0
        if taken:
            stream.state = transition(stream.state, StreamInput.SEND_DATA, stream_id=stream_id)
        if finishing:
            stream.state = transition(stream.state, StreamInput.SEND_FIN, stream_id=stream_id)
        view = memoryview(data)
        out = self._out
        step = self.config.max_send_frame
        offset = 0
        while True:
            chunk = min(step, taken - offset)
            flags = 0
            if stream.syn_pending:
                flags |= _SYN
                stream.syn_pending = False
            if finishing and offset + chunk == taken:
                flags |= _FIN
            out += frames.pack_header(chunk, _DATA, flags, stream_id)
            out += view[offset : offset + chunk]
            offset += chunk
            if offset >= taken:
                break
        stream.send_window -= taken
        if stream.state is StreamState.CLOSED:
            self._remove(stream)
        return taken

    def end_stream(self, stream_id: int, *, stop_reading: bool = False) -> None:
        """Half-close our direction (FIN). With `stop_reading`, data the peer sends afterwards is
        answered with RST STREAM_CLOSED instead of being delivered (muxado's Close); unread data
        is dropped and counts as read, so if that leaves credit due (always so when the peer has
        none left) a WNDINC goes out too: a peer writer blocked on the window then sends again
        and learns from the RST that nobody reads, instead of waiting forever."""
        stream = self._live(stream_id)
        increment = 0
        if stop_reading:
            stream.read_closed = True
            increment = stream.recv.discard()
        if stream.state not in (StreamState.HALF_CLOSED_LOCAL, StreamState.CLOSED):
            self.send_data(stream_id, b"", end_stream=True)
        # after the FIN: a peer that already sent FIN (the stream is now closed) needs no credit
        if increment and stream.state in (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL):
            self._out += frames.wndinc_frame(stream_id, increment)

    def reset_stream(self, stream_id: int, code: int = ErrorCode.STREAM_CANCELLED) -> None:
        """Abort both directions with RST. A stream that is already gone is left alone."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._reset(stream, code, None)

    def acknowledge_received(self, stream_id: int, length: int) -> None:
        """The reader consumed `length` bytes of a stream: grant credit back when it is due."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        increment = stream.recv.consume(length)
        if increment and stream.state in (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL):
            self._out += frames.wndinc_frame(stream_id, increment)

    def limit_streams(self, limit: int) -> None:
        """Change how many streams may be open at once (never above `config.max_streams`).
        Streams already open stay; new ones past the limit are refused."""
        self.max_streams = max(1, min(limit, self.config.max_streams))

    def allow_window_growth(self) -> None:
        """The peer's sender honours credit past 256 KiB (a Burrow peer): let windows grow."""
        self._window_ceiling = self.config.max_stream_window
        for stream in self._streams.values():
            stream.recv.max_size = self._window_ceiling

    def go_away(self, code: int = ErrorCode.NO_ERROR, debug: bytes = b"") -> None:
        """Tell the peer we accept no new streams; existing ones carry on. Sent at most once."""
        if self.local_goaway or self.terminated:
            return
        self.local_goaway = True
        self._out += frames.goaway_frame(self._last_remote_id, code, debug)

    def data_to_send(self) -> bytearray:
        """Everything queued so far (possibly empty); the caller owns the returned buffer."""
        out, self._out = self._out, bytearray()
        return out

    # ------------------------------------------------------------------------------- helpers

    def _live(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            if self.terminated:
                raise StreamGoneError("the session is closed", code=ErrorCode.SESSION_CLOSED)
            raise StreamGoneError(f"stream {stream_id} is closed or was reset")
        return stream

    def _refuse(self, sid: int, code: int, events: list[Event]) -> None:
        self._out += frames.rst_frame(sid, code)
        events.append(StreamReset(stream_id=sid, error_code=code, remote=False))

    def _reset(self, stream: _Stream, code: int, events: list[Event] | None) -> None:
        stream.state = transition(stream.state, StreamInput.SEND_RST, stream_id=stream.id)
        self._out += frames.rst_frame(stream.id, code)
        self._remove(stream)
        if events is not None:
            events.append(StreamReset(stream_id=stream.id, error_code=code, remote=False))

    def _remove(self, stream: _Stream) -> None:
        if self._streams.pop(stream.id, None) is not None:
            stream.recv.release()

    def _terminate(self) -> None:
        self.terminated = True
        for stream in self._streams.values():
            stream.state = StreamState.CLOSED
            stream.recv.release()
        self._streams.clear()
