"""The muxado frame codec: exact bytes for each frame type and the header's bit layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.wire import frames
from protocol.wire.errors import ErrorCode
from protocol.wire.frames import Flags, FrameHeader, FrameType
from tests.protocol.helpers import F, parse_frames


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------ ngrok.md §8.10 walk-through


def test_walkthrough_auth_syn_frame() -> None:
    # 1. DATA, SYN, stream 1, payload = stream type 0 (Auth)
    frame = frames.data_frame(1, b"\x00\x00\x00\x00", Flags.SYN)
    assert frame == h("000004 12 00000001 00000000".replace(" ", ""))


def test_walkthrough_json_data_frame() -> None:
    # 2. DATA (no flags) with the JSON body; the length is the body's
    body = b'{"Version":["3","2"],"ClientId":"","Extra":{}}\n'
    frame = frames.data_frame(1, body)
    assert frame[:8] == len(body).to_bytes(3, "big") + h("10 00000001".replace(" ", ""))
    assert frame[8:] == body


def test_walkthrough_wndinc_frame() -> None:
    # 3. WNDINC for stream 1
    assert frames.wndinc_frame(1, 0x1234) == h("000004200000000100001234")


def test_walkthrough_zero_length_fin() -> None:
    # 5. zero-length DATA+FIN on close
    assert frames.data_frame(1, b"", Flags.FIN) == h("0000001100000001")


def test_walkthrough_proxy_syn_from_server() -> None:
    # 6. SYN, stream 2, type 3 (ProxyReq)
    assert frames.data_frame(2, (3).to_bytes(4, "big"), Flags.SYN) == h("000004120000000200000003")


# ------------------------------------------------------------------------- each frame type


def test_rst_bytes() -> None:
    assert frames.rst_frame(5, ErrorCode.STREAM_REFUSED) == h("000004000000000500000005")
    assert frames.rst_frame(0x7FFFFFFF, 0xFFFFFFFF) == h("000004007FFFFFFFFFFFFFFF")


def test_data_bytes_with_syn_and_fin() -> None:
    assert frames.data_frame(3, b"ab", Flags.SYN | Flags.FIN) == h("0000021300000003") + b"ab"


def test_data_bytes_largest_stream_id() -> None:
    assert frames.data_frame(frames.MAX_STREAM_ID, b"x") == h("000001107FFFFFFF") + b"x"


def test_wndinc_bytes_max_increment() -> None:
    assert frames.wndinc_frame(2, frames.MAX_WINDOW_INCREMENT) == h("00000420000000027FFFFFFF")


def test_goaway_bytes_with_debug() -> None:
    frame = frames.goaway_frame(7, ErrorCode.PROTOCOL_ERROR, b"bye")
    assert frame == h("00000B30000000000000000700000001") + b"bye"


def test_goaway_bytes_without_debug() -> None:
    assert frames.goaway_frame(0, ErrorCode.NO_ERROR) == h("00000830000000000000000000000000")


def test_unknown_type_header_bytes() -> None:
    assert F.unknown(0xF, 9, b"xyz", flags=0x5) == h("000003F500000009") + b"xyz"


def test_frame_type_and_flag_values() -> None:
    assert [int(t) for t in FrameType] == [0x0, 0x1, 0x2, 0x3]
    assert (int(Flags.FIN), int(Flags.SYN)) == (0x1, 0x2)


def test_builders_parse_back() -> None:
    wire = (
        F.data(1, b"hello", syn=True)
        + F.rst(3, ErrorCode.STREAM_CANCELLED)
        + F.wndinc(1, 1000)
        + F.goaway(4, ErrorCode.NO_ERROR, b"done")
        + F.data(1, fin=True)
    )
    parsed = parse_frames(wire)
    assert [(f.type, f.flags, f.stream_id) for f in parsed] == [
        (FrameType.DATA, Flags.SYN, 1),
        (FrameType.RST, 0, 3),
        (FrameType.WNDINC, 0, 1),
        (FrameType.GOAWAY, 0, 0),
        (FrameType.DATA, Flags.FIN, 1),
    ]
    assert parsed[0].payload == b"hello"
    assert parsed[1].code == ErrorCode.STREAM_CANCELLED
    assert parsed[2].increment == 1000
    assert (parsed[3].last_stream_id, parsed[3].code, parsed[3].payload[8:]) == (4, 0, b"done")


# ---------------------------------------------------------------------------- header layout


def test_parse_header_needs_eight_bytes() -> None:
    wire = frames.rst_frame(1, 0)
    for n in range(8):
        assert frames.parse_header(wire[:n]) is None
    assert frames.parse_header(wire[:8]) == FrameHeader(
        length=4, type=FrameType.RST, flags=0, stream_id=1
    )


def test_parse_header_at_offset_consumes_nothing() -> None:
    wire = b"junk" + frames.wndinc_frame(9, 1)
    buf = bytearray(wire)
    assert frames.parse_header(buf, 4) == FrameHeader(
        length=4, type=FrameType.WNDINC, flags=0, stream_id=9
    )
    assert frames.parse_header(buf, len(buf) - 7) is None  # only 7 bytes left there
    assert bytes(buf) == wire


def test_parse_header_short_from_offset() -> None:
    assert frames.parse_header(b"\x00" * 10, 3) is None
    assert frames.parse_header(b"\x00" * 11, 3) is not None


def test_reserved_stream_id_bit_is_ignored() -> None:
    wire = frames.pack_header(0, FrameType.DATA, Flags.FIN, 0x80000001)
    assert wire == h("0000001180000001")
    header = frames.parse_header(wire)
    assert header is not None
    assert header.stream_id == 1
    assert frames.unpack_header(wire, 0) == (0, FrameType.DATA, Flags.FIN, 1)


def test_largest_length_uses_all_24_bits() -> None:
    wire = frames.pack_header(frames.MAX_FRAME_LENGTH, FrameType.DATA, 0, 1)
    assert wire[:3] == b"\xff\xff\xff"
    assert wire[3] == 0x10
    assert frames.unpack_header(wire, 0) == (0xFFFFFF, FrameType.DATA, 0, 1)


def test_length_does_not_bleed_into_type_nibble() -> None:
    # Type and flags are byte 3 alone: a maximal length leaves them intact, and maximal type and
    # flags leave the length intact.
    header = frames.parse_header(frames.pack_header(0xFFFFFF, 0x0, 0x0, 0))
    assert header == FrameHeader(length=0xFFFFFF, type=0, flags=0, stream_id=0)
    header = frames.parse_header(frames.pack_header(0, 0xF, 0xF, 0))
    assert header == FrameHeader(length=0, type=0xF, flags=0xF, stream_id=0)


def test_data_frame_rejects_oversized_payload() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        frames.data_frame(1, bytes(frames.MAX_FRAME_LENGTH + 1))


def test_unpack_u32() -> None:
    assert frames.unpack_u32(h("00deadbeef"), 1) == 0xDEADBEEF


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(0, frames.MAX_FRAME_LENGTH),
    frame_type=st.integers(0, 0xF),
    flags=st.integers(0, 0xF),
    stream_id=st.integers(0, 0xFFFFFFFF),
)
def test_header_round_trip(length: int, frame_type: int, flags: int, stream_id: int) -> None:
    wire = frames.pack_header(length, frame_type, flags, stream_id)
    assert len(wire) == frames.HEADER_SIZE
    expected = (length, frame_type, flags, stream_id & frames.STREAM_ID_MASK)
    assert frames.unpack_header(wire, 0) == expected
    header = frames.parse_header(wire)
    assert header is not None
    assert (header.length, header.type, header.flags, header.stream_id) == expected
    # and back to the same bytes once the reserved bit is cleared
    assert frames.pack_header(*expected) == wire[:4] + (stream_id & 0x7FFFFFFF).to_bytes(4, "big")


@settings(max_examples=100, deadline=None)
@given(
    stream_id=st.integers(1, frames.MAX_STREAM_ID),
    payload=st.binary(max_size=64),
    flags=st.sampled_from([0, Flags.SYN, Flags.FIN, Flags.SYN | Flags.FIN]),
)
def test_data_frame_round_trip(stream_id: int, payload: bytes, flags: int) -> None:
    (frame,) = parse_frames(frames.data_frame(stream_id, payload, flags))
    assert (frame.type, frame.flags, frame.stream_id, frame.payload) == (
        FrameType.DATA,
        flags,
        stream_id,
        payload,
    )


@settings(max_examples=100, deadline=None)
@given(
    last=st.integers(0, frames.MAX_STREAM_ID),
    code=st.integers(0, 0xFFFFFFFF),
    debug=st.binary(max_size=32),
)
def test_goaway_round_trip(last: int, code: int, debug: bytes) -> None:
    (frame,) = parse_frames(frames.goaway_frame(last, code, debug))
    assert (frame.type, frame.stream_id) == (FrameType.GOAWAY, 0)
    assert (frame.last_stream_id, frame.code, frame.payload[8:]) == (last, code, debug)
