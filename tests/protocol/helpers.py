"""Test helpers for the sans-IO muxado core: raw frame builders and an in-memory session pair.

`FrameFactory` builds single frames (through `protocol.wire.frames`, plus a `raw` escape hatch for
frames no correct peer would send). `SessionPair` wires a client and a server `Session` together:
`flush()` moves each side's `data_to_send()` into the other's `receive_data()` until both are quiet
and returns what each side saw. `parse_frames` decodes a byte string back into frames so tests can
assert on what a session put on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol.wire import frames
from protocol.wire.events import DataReceived, Event
from protocol.wire.frames import Flags, FrameType
from protocol.wire.session import Role, Session, SessionConfig

Splitter = Callable[[bytes], list[bytes]]


class FrameFactory:
    """Builders for the bytes of one frame each."""

    @staticmethod
    def data(
        stream_id: int, payload: bytes = b"", *, syn: bool = False, fin: bool = False
    ) -> bytes:
        flags = (Flags.SYN if syn else 0) | (Flags.FIN if fin else 0)
        return frames.data_frame(stream_id, payload, flags)

    @staticmethod
    def rst(stream_id: int, code: int) -> bytes:
        return frames.rst_frame(stream_id, code)

    @staticmethod
    def wndinc(stream_id: int, increment: int) -> bytes:
        return frames.wndinc_frame(stream_id, increment)

    @staticmethod
    def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
        return frames.goaway_frame(last_stream_id, code, debug)

    @staticmethod
    def unknown(frame_type: int, stream_id: int = 0, payload: bytes = b"", flags: int = 0) -> bytes:
        assert 0x4 <= frame_type <= 0xF
        return frames.pack_header(len(payload), frame_type, flags, stream_id) + payload

    @staticmethod
    def raw(
        length: int, frame_type: int, flags: int, stream_id: int, payload: bytes = b""
    ) -> bytes:
        """A header that may lie about its length, followed by `payload` as given."""
        return frames.pack_header(length, frame_type, flags, stream_id) + payload


F = FrameFactory


@dataclass(frozen=True)
class Frame:
    """A decoded frame, for assertions on a session's output."""

    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def code(self) -> int:
        """The error code of an RST or GOAWAY."""
        if self.type == FrameType.RST:
            return frames.unpack_u32(self.payload, 0)
        assert self.type == FrameType.GOAWAY
        return frames.unpack_u32(self.payload, 4)

    @property
    def increment(self) -> int:
        assert self.type == FrameType.WNDINC
        return frames.unpack_u32(self.payload, 0)

    @property
    def last_stream_id(self) -> int:
        assert self.type == FrameType.GOAWAY
        return frames.unpack_u32(self.payload, 0)


def parse_frames(data: bytes | bytearray) -> list[Frame]:
    """Decode a complete sequence of frames; fails the test on a truncated or malformed one."""
    out: list[Frame] = []
    pos = 0
    while pos < len(data):
        header = frames.parse_header(data, pos)
        assert header is not None, f"truncated header at {pos}"
        body = pos + frames.HEADER_SIZE
        assert body + header.length <= len(data), f"truncated payload at {pos}"
        frame = Frame(
            header.type, header.flags, header.stream_id, bytes(data[body : body + header.length])
        )
        check_well_formed(frame)
        out.append(frame)
        pos = body + header.length
    return out


def check_well_formed(frame: Frame) -> None:
    """The rules of ngrok.md §8.1 that every frame a session emits must follow."""
    if frame.type in (FrameType.RST, FrameType.WNDINC):
        assert len(frame.payload) == 4, frame
        assert frame.stream_id != 0, frame
        assert frame.flags == 0, frame
    elif frame.type == FrameType.GOAWAY:
        assert len(frame.payload) >= 8, frame
        assert frame.stream_id == 0, frame
    elif frame.type == FrameType.DATA:
        assert frame.stream_id != 0, frame
        assert frame.flags & ~(Flags.SYN | Flags.FIN) == 0, frame
    else:
        raise AssertionError(f"a session emitted an unknown frame type: {frame}")
    if frame.type == FrameType.WNDINC:
        assert frame.increment != 0, frame


def merge_data(events: Iterable[Event]) -> list[Event]:
    """Events with consecutive DataReceived for the same stream joined into one."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
        ):
            merged[-1] = DataReceived(stream_id=event.stream_id, data=last.data + event.data)
        else:
            merged.append(event)
    return merged


def received_bytes(events: Iterable[Event]) -> dict[int, bytes]:
    """Payload delivered per stream, in order."""
    out: dict[int, bytearray] = {}
    for event in events:
        if isinstance(event, DataReceived):
            out.setdefault(event.stream_id, bytearray()).extend(event.data)
    return {sid: bytes(data) for sid, data in out.items()}


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def feed(session: Session, data: bytes, split: Splitter = whole) -> list[Event]:
    """Feed `data` in the pieces `split` makes (never an empty piece: that would mean EOF)."""
    events: list[Event] = []
    for piece in split(data):
        if piece:
            events += session.receive_data(piece)
    return events


@dataclass
class Flushed:
    client: list[Event] = field(default_factory=list)
    server: list[Event] = field(default_factory=list)


class SessionPair:
    """A client and a server session connected in memory."""

    def __init__(
        self,
        client_config: SessionConfig | None = None,
        server_config: SessionConfig | None = None,
        *,
        split: Splitter = whole,
    ) -> None:
        self.client = Session(Role.CLIENT, client_config)
        self.server = Session(Role.SERVER, server_config)
        self.split = split
        #: Every byte each side has put on the wire so far, in order.
        self.client_wire = bytearray()
        self.server_wire = bytearray()

    def flush(self, *, ack: bool = False, max_rounds: int = 10_000) -> Flushed:
        """Deliver queued bytes both ways until neither side has anything to send.

        With `ack`, every DataReceived is acknowledged as soon as it arrives (a reader that keeps
        up); otherwise nothing is acknowledged.
        """
        seen = Flushed()
        for _ in range(max_rounds):
            to_server = bytes(self.client.data_to_send())
            to_client = bytes(self.server.data_to_send())
            if not to_server and not to_client:
                return seen
            self.client_wire += to_server
            self.server_wire += to_client
            if to_server:
                events = feed(self.server, to_server, self.split)
                seen.server += events
                if ack:
                    acknowledge_all(self.server, events)
            if to_client:
                events = feed(self.client, to_client, self.split)
                seen.client += events
                if ack:
                    acknowledge_all(self.client, events)
        raise AssertionError("the pair never went quiet")

    def open_stream(self, *, from_client: bool = True, first: bytes = b"!") -> tuple[int, Flushed]:
        """Open a stream from one side and send `first` so the peer learns about it."""
        opener = self.client if from_client else self.server
        sid = opener.open_stream()
        assert opener.send_data(sid, first) == len(first)
        return sid, self.flush()


def acknowledge_all(session: Session, events: Iterable[Event]) -> None:
    for event in events:
        if isinstance(event, DataReceived):
            session.acknowledge_received(event.stream_id, len(event.data))
