"""muxado error codes and the protocol package's exception tree.

One `ErrorCode` enum is used both on the wire (RST and GOAWAY carry it) and inside exceptions, so
whatever goes wrong can be told to the peer with the right code (muxado does the same).

    MuxError                      anything this package raises about the protocol
    ├── RemoteProtocolError       the peer broke the protocol; the session must end (GOAWAY)
    │   └── FrameSizeError        a frame with an impossible length
    ├── StreamProtocolError       the peer broke the protocol on one stream; that stream is reset
    ├── LocalProtocolError        our own caller misused the session (e.g. sent after FIN)
    └── StreamGoneError           an action on a stream that was reset or closed
        └── RemoteGoneAwayError   the peer sent GOAWAY; no new streams may be opened
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The 32-bit codes of RST and GOAWAY frames (docs/spec.md, "Error codes")."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_CLOSED = 0x4
    STREAM_REFUSED = 0x5
    STREAM_CANCELLED = 0x6
    STREAM_RESET = 0x7
    FRAME_SIZE_ERROR = 0x8
    ACCEPT_QUEUE_FULL = 0x9
    ENHANCE_YOUR_CALM = 0xA
    REMOTE_GONE_AWAY = 0xB
    STREAMS_EXHAUSTED = 0xC
    WRITE_TIMEOUT = 0xD
    SESSION_CLOSED = 0xE
    PEER_EOF = 0xF

    @classmethod
    def from_wire(cls, value: int) -> ErrorCode | int:
        """The enum member for a known code; unknown codes stay plain ints (never an error)."""
        try:
            return cls(value)
        except ValueError:
            return value


def describe(code: int) -> str:
    """A readable name for a wire code, known or not."""
    member = ErrorCode.from_wire(code)
    return member.name if isinstance(member, ErrorCode) else f"0x{code:X}"


class MuxError(Exception):
    """Base of every protocol error; `code` is what goes on the wire about it."""

    code: int = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class RemoteProtocolError(MuxError):
    """The peer violated the protocol in a way that ends the whole session."""

    code = ErrorCode.PROTOCOL_ERROR


class FrameSizeError(RemoteProtocolError):
    """A frame whose length is wrong for its type (RST and WNDINC are exactly 4, GOAWAY >= 8)."""

    code = ErrorCode.FRAME_SIZE_ERROR


class StreamProtocolError(MuxError):
    """The peer violated the protocol on one stream; only that stream is reset."""

    code = ErrorCode.PROTOCOL_ERROR

    def __init__(self, message: str, *, stream_id: int, code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.stream_id = stream_id


class LocalProtocolError(MuxError):
    """Our own caller asked for something the protocol does not allow."""


class StreamGoneError(MuxError):
    """The stream was reset (by either side) or closed; `code` says why."""

    code = ErrorCode.STREAM_CLOSED


class RemoteGoneAwayError(StreamGoneError):
    """The peer sent GOAWAY: it will not accept new streams."""

    code = ErrorCode.REMOTE_GONE_AWAY
