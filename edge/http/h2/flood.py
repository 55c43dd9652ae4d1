"""Counting an HTTP/2 client's cheap frames, to cut off floods.

Theory of operation
-------------------
Some HTTP/2 frames cost the sender nine bytes and the receiver real work: a SETTINGS or a PING
must be parsed and answered, a HEADERS frame followed at once by RST_STREAM starts (and
cancels) a whole exchange ("rapid reset", CVE-2023-44487), PRIORITY, empty DATA and unknown
frames are parsed for nothing (CVE-2019-9512/9515/9518). Flow control bounds none of them. The
servers patched since count them per connection and end a connection that sends too many
with GOAWAY ENHANCE_YOUR_CALM (nginx's "excessive" control frames and empty-DATA checks,
Netty's RST frames per window, Go's x/net/http2 reset-stream accounting); so does this.

`FloodGuard` sees the client's bytes before the HTTP/2 parser does (`receive`): it follows
the frame boundaries (a 9-byte header, then `length` bytes of payload, after the 24-byte
connection preface) and counts, per connection, in fixed windows of `FloodLimits.window`
seconds that start with the first counted frame after the previous window ran out:

* resets: the client's RST_STREAM frames, plus every stream the edge had to refuse
  (`refused`, told by the proxy);
* control frames: SETTINGS (and their ACKs), PING (and PING ACKs), PRIORITY, GOAWAY, empty
  DATA without END_STREAM, HEADERS that open no new stream, frames of unknown types, and
  WINDOW_UPDATE beyond the credit that the edge's own DATA frames earn (`data_sent`: a client
  that reads a response grants window for it, so those updates are free).

The first frame over a limit is the verdict (`Flood`); it stays the verdict, and the proxy
hands the parser nothing from that frame on, so a flood costs the edge at most the limit's
worth of frames. DATA with a payload, HEADERS that open a stream and CONTINUATION are not
counted: flow control, SETTINGS_MAX_CONCURRENT_STREAMS and h2's CONTINUATION bound limit them.

No clock inside: every call takes `now`. No I/O, no logging.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CONNECTION_PREFACE_SIZE",
    "FRAME_HEADER_SIZE",
    "MAX_BANKED_WINDOW_UPDATES",
    "WINDOW_UPDATES_PER_DATA_FRAME",
    "Abuse",
    "Flood",
    "FloodGuard",
    "FloodLimits",
]

#: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", which a client sends before its first frame.
CONNECTION_PREFACE_SIZE = 24
#: Every HTTP/2 frame starts with length (3 bytes), type, flags and stream id (4 bytes).
FRAME_HEADER_SIZE = 9
#: WINDOW_UPDATEs one DATA frame sent by the edge makes free: one for the stream and one for
#: the connection, times four because clients may return a 16 KiB frame's window in 4 KiB
#: steps (Go's transport does).
WINDOW_UPDATES_PER_DATA_FRAME = 8
#: The most free WINDOW_UPDATEs a connection can bank: enough for a client that returns a
#: whole 16 MiB of received data's window late, small enough that a client that downloaded a
#: lot cannot turn that into a flood of its own.
MAX_BANKED_WINDOW_UPDATES = 8 * 1024

_DATA = 0x0
_HEADERS = 0x1
_RST_STREAM = 0x3
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
_END_STREAM = 0x1


class Abuse(enum.Enum):
    """What a flooding client sent too many of (the value reads in a sentence)."""

    RESETS = "reset or refused streams"
    CONTROL_FRAMES = "control frames"


@dataclass(frozen=True, kw_only=True)
class FloodLimits:
    """How many resets and control frames one connection may send in `window` seconds."""

    window: float
    max_resets: int
    max_control_frames: int


@dataclass(frozen=True, kw_only=True)
class Flood:
    """The verdict on a flooding connection: `count` of `abuse` within `window` seconds."""

    abuse: Abuse
    count: int
    window: float

    def describe(self) -> str:
        return f"{self.count} {self.abuse.value} within {self.window:g}s"


class _Counter:
    """Events in the current fixed window; the window starts at the first event after the last
    one ran out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.started = 0.0

    def add(self, now: float, window: float) -> bool:
        """Count one event at `now`; True when that is more than the limit."""
        if self.count == 0 or now - self.started >= window:
            self.started = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class FloodGuard:
    """One connection's frame accounting: bytes and events in, a `Flood` verdict out.

    The verdict, once given, is final (`flood`); `receive` then ignores further bytes."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self.flood: Flood | None = None
        self._resets = _Counter(limits.max_resets)
        self._control = _Counter(limits.max_control_frames)
        self._credit = 0  # free WINDOW_UPDATEs banked by DATA frames sent
        self._preface = CONNECTION_PREFACE_SIZE  # preface bytes still to skip
        self._header = bytearray()  # a frame header split across reads
        self._payload = 0  # payload bytes of the current frame still to skip
        self._highest_stream = 0  # the highest stream id a HEADERS frame opened

    def receive(self, data: bytes | bytearray, now: float) -> Flood | None:
        """Account for the client's next bytes (as read, in order) at `now`. Returns the
        verdict when a frame in `data` goes over a limit (the caller must then pass none of
        `data` on to the parser, and end the connection); None while within the limits."""
        if self.flood is not None:
            return self.flood
        view = memoryview(data)
        offset = 0
        end = len(view)
        if self._preface:
            skipped = min(self._preface, end)
            self._preface -= skipped
            offset = skipped
        while offset < end:
            if self._payload:
                skipped = min(self._payload, end - offset)
                self._payload -= skipped
                offset += skipped
                continue
            if self._header or end - offset < FRAME_HEADER_SIZE:
                take = min(FRAME_HEADER_SIZE - len(self._header), end - offset)
                self._header += view[offset : offset + take]
                offset += take
                if len(self._header) < FRAME_HEADER_SIZE:
                    break
                header = bytes(self._header)
                self._header.clear()
            else:
                header = bytes(view[offset : offset + FRAME_HEADER_SIZE])
                offset += FRAME_HEADER_SIZE
            length = int.from_bytes(header[0:3], "big")
            self._payload = length
            flood = self._frame(header[3], header[4], header, length, now)
            if flood is not None:
                return flood
        return None

    def refused(self, now: float) -> Flood | None:
        """The edge refused a stream (too many open) at `now`: it counts as a reset."""
        if self.flood is None and self._resets.add(now, self.limits.window):
            self._judge(Abuse.RESETS, self._resets.count)
        return self.flood

    def data_sent(self, frames: int) -> None:
        """The edge sent `frames` DATA frames: the client may grant their window back."""
        self._credit = min(
            MAX_BANKED_WINDOW_UPDATES, self._credit + frames * WINDOW_UPDATES_PER_DATA_FRAME
        )

    # ----------------------------------------------------------------------------- internals

    def _frame(self, kind: int, flags: int, header: bytes, length: int, now: float) -> Flood | None:
        if kind == _RST_STREAM:
            if self._resets.add(now, self.limits.window):
                return self._judge(Abuse.RESETS, self._resets.count)
            return None
        if kind == _DATA:
            if length or flags & _END_STREAM:
                return None  # flow control bounds it; an empty END_STREAM ends a stream
        elif kind == _HEADERS:
            stream_id = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
            if stream_id > self._highest_stream:
                self._highest_stream = stream_id
                return None  # opens a stream: bounded by the advertised concurrency
        elif kind == _CONTINUATION:
            return None  # bounded by h2 (and nothing may interleave with it)
        elif kind == _WINDOW_UPDATE and self._credit:
            self._credit -= 1
            return None
        if self._control.add(now, self.limits.window):
            return self._judge(Abuse.CONTROL_FRAMES, self._control.count)
        return None

    def _judge(self, abuse: Abuse, count: int) -> Flood:
        self.flood = Flood(abuse=abuse, count=count, window=self.limits.window)
        return self.flood
