"""protocol/wire/errors.py: the muxado error codes and the codes each exception carries."""

from __future__ import annotations

import pytest

from protocol.wire.errors import (
    ErrorCode,
    FrameSizeError,
    LocalProtocolError,
    MuxError,
    RemoteGoneAwayError,
    RemoteProtocolError,
    StreamGoneError,
    StreamProtocolError,
    describe,
)


def test_codes_are_muxados() -> None:
    """The wire values are fixed by muxado (docs/spec.md, "Error codes")."""
    assert {code.name: int(code) for code in ErrorCode} == {
        "NO_ERROR": 0x0,
        "PROTOCOL_ERROR": 0x1,
        "INTERNAL_ERROR": 0x2,
        "FLOW_CONTROL_ERROR": 0x3,
        "STREAM_CLOSED": 0x4,
        "STREAM_REFUSED": 0x5,
        "STREAM_CANCELLED": 0x6,
        "STREAM_RESET": 0x7,
        "FRAME_SIZE_ERROR": 0x8,
        "ACCEPT_QUEUE_FULL": 0x9,
        "ENHANCE_YOUR_CALM": 0xA,
        "REMOTE_GONE_AWAY": 0xB,
        "STREAMS_EXHAUSTED": 0xC,
        "WRITE_TIMEOUT": 0xD,
        "SESSION_CLOSED": 0xE,
        "PEER_EOF": 0xF,
    }


def test_from_wire_keeps_unknown_codes_as_ints() -> None:
    known = ErrorCode.from_wire(0x6)
    assert known is ErrorCode.STREAM_CANCELLED
    unknown = ErrorCode.from_wire(0x1234)
    assert unknown == 0x1234
    assert not isinstance(unknown, ErrorCode)
    assert ErrorCode.from_wire(0xFFFFFFFF) == 0xFFFFFFFF


def test_describe_names_known_codes_and_shows_unknown_ones_in_hex() -> None:
    assert describe(0x0) == "NO_ERROR"
    assert describe(ErrorCode.ENHANCE_YOUR_CALM) == "ENHANCE_YOUR_CALM"
    assert describe(0x10) == "0x10"
    assert describe(0xDEADBEEF) == "0xDEADBEEF"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MuxError("x"), ErrorCode.INTERNAL_ERROR),
        (RemoteProtocolError("x"), ErrorCode.PROTOCOL_ERROR),
        (FrameSizeError("x"), ErrorCode.FRAME_SIZE_ERROR),
        (StreamProtocolError("x", stream_id=3), ErrorCode.PROTOCOL_ERROR),
        (LocalProtocolError("x"), ErrorCode.INTERNAL_ERROR),
        (StreamGoneError("x"), ErrorCode.STREAM_CLOSED),
        (RemoteGoneAwayError("x"), ErrorCode.REMOTE_GONE_AWAY),
    ],
)
def test_each_error_carries_its_default_code(error: MuxError, code: ErrorCode) -> None:
    assert error.code == code
    assert str(error) == "x"


def test_a_code_given_at_raise_time_wins_for_that_instance_only() -> None:
    flow = RemoteProtocolError("window overrun", code=ErrorCode.FLOW_CONTROL_ERROR)
    assert flow.code == ErrorCode.FLOW_CONTROL_ERROR
    assert RemoteProtocolError("other").code == ErrorCode.PROTOCOL_ERROR
    reset = StreamGoneError("reset by peer", code=0x1234)
    assert reset.code == 0x1234
    assert StreamGoneError.code == ErrorCode.STREAM_CLOSED


def test_stream_protocol_error_names_its_stream() -> None:
    error = StreamProtocolError("data after FIN", stream_id=7, code=ErrorCode.STREAM_CLOSED)
    assert error.stream_id == 7
    assert error.code == ErrorCode.STREAM_CLOSED
    assert str(error) == "data after FIN"


def test_the_tree() -> None:
    """Callers catch by branch: session-ending, one stream, our misuse, a gone stream."""
    assert issubclass(FrameSizeError, RemoteProtocolError)
    assert issubclass(RemoteGoneAwayError, StreamGoneError)
    for cls in (RemoteProtocolError, StreamProtocolError, LocalProtocolError, StreamGoneError):
        assert issubclass(cls, MuxError)
    assert not issubclass(StreamProtocolError, RemoteProtocolError)
    assert not issubclass(StreamGoneError, RemoteProtocolError)
